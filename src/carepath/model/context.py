"""What the engine provides to conditions and letter templates, as typed shapes.

This is a contract in both directions: `check` refuses a pathway whose expressions or
templates use anything not listed here, and the engine must provide every name listed
here. A shape is a `Kind` for a leaf, or a dict of attribute → shape for an object.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Union

from carepath.model.pathway import DataField, FieldType, Pathway


class Kind(StrEnum):
    BOOL = "bool"
    INT = "int"
    NUMBER = "number"
    TEXT = "text"
    DATETIME = "datetime"
    LIST = "list"
    ANY = "any"


Shape = Union[Kind, dict[str, "Shape"]]

_FIELD_KINDS = {
    FieldType.TEXT: Kind.TEXT,
    FieldType.INTEGER: Kind.INT,
    FieldType.NUMBER: Kind.NUMBER,
    FieldType.BOOLEAN: Kind.BOOL,
    FieldType.DATETIME: Kind.DATETIME,
    FieldType.TEXT_LIST: Kind.LIST,
    FieldType.INTEGER_LIST: Kind.LIST,
}

PHQ9_SHAPE: dict[str, Shape] = {
    "recorded": Kind.BOOL,   # false until the patient's first PHQ-9
    "total": Kind.INT,       # latest total, 0..27
    "item9": Kind.INT,       # latest item 9 answer, 0..3
    "items": Kind.LIST,
    "band": Kind.TEXT,       # the pathway's `phq9_bands` name of the latest total ("none" before it or without)
}

SERIES_SHAPE: dict[str, Shape] = {
    "completed": Kind.INT,   # sessions completed since entering the current stage
    "missed": Kind.INT,
    "scheduled": Kind.INT,
    "complete": Kind.BOOL,   # completed >= the stage's series size
}

SESSIONS_SHAPE: dict[str, Shape] = {
    "completed": Kind.INT,   # whole history
    "missed": Kind.INT,
    "consecutive_missed": Kind.INT,
    "consecutive_attended": Kind.INT,  # completed since the last missed session
}

TASK_SHAPE: dict[str, Shape] = {
    # The task a task_completed / decision_recorded / task_acknowledged event names ("" for other events).
    "step": Kind.TEXT,
}

SCREENING_SHAPE: dict[str, Shape] = {
    "recorded": Kind.BOOL,
    "trd_trials": Kind.INT,
    "contraindications": Kind.LIST,
    "cautions": Kind.LIST,
}


def _param_kind(value: object) -> Kind:
    if isinstance(value, bool):
        return Kind.BOOL
    if isinstance(value, int):
        return Kind.INT
    if isinstance(value, float):
        return Kind.NUMBER
    if isinstance(value, list):
        return Kind.LIST
    return Kind.TEXT


def data_shape(fields: dict[str, DataField]) -> dict[str, Shape]:
    return {name: _FIELD_KINDS[f.type] for name, f in fields.items()}


def condition_context(pathway: Pathway, event_data: Shape | None) -> dict[str, Shape]:
    """Names a condition may use. `event_data` None: the trigger is any event (no data)."""
    event: dict[str, Shape] = {"id": Kind.TEXT, "type": Kind.TEXT, "at": Kind.DATETIME}
    if event_data is not None:
        event["data"] = event_data
    return {
        "event": event,
        "params": {name: _param_kind(p.value) for name, p in pathway.parameters.items()},
        "flags": {name: Kind.BOOL for name in pathway.flags},
        "holds": Kind.LIST,
        "stage": Kind.TEXT,
        "status": Kind.TEXT,
        "phq9": PHQ9_SHAPE,
        "series": SERIES_SHAPE,
        "sessions": SESSIONS_SHAPE,
        "screening": SCREENING_SHAPE,
        "facts": {name: Kind.BOOL for name in pathway.facts},
        "task": TASK_SHAPE,
    }


def letter_context(pathway: Pathway) -> dict[str, Shape]:
    """Variables a letter template may use; times are pre-formatted in the patient's zone."""
    return {
        "patient": {"given_name": Kind.TEXT, "family_name": Kind.TEXT, "timezone": Kind.TEXT},
        "clinic": {"name": Kind.TEXT, "phone": Kind.TEXT, "crisis_line": Kind.TEXT, "timezone": Kind.TEXT},
        "letter": {"id": Kind.TEXT, "name": Kind.TEXT, "send_at": Kind.TEXT},
        # The session the letter is about; None for letters not tied to a session.
        "session": Kind.ANY,
        # Sessions booked so far, each with `id` and `start` (written out, patient's zone).
        "scheduled_sessions": Kind.LIST,
        "params": {name: _param_kind(p.value) for name, p in pathway.parameters.items()},
        "pathway": {"id": Kind.TEXT, "version": Kind.TEXT, "title": Kind.TEXT},
    }
