"""Why a task exists, in clinical words: what the triggering event recorded.

The plan already names the rule and the event id that produced a task (provenance); a
clinician needs the event itself: "PHQ-9 item 9 answered 2", "Session s-3 missed". The
sentence is built from the event's type and its coded data only: never a name, an address
or a declared free-text field, since task lists travel further than the patients file.
When it happened is kept beside it as an instant, for each reader to show in its zone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from zoneinfo import ZoneInfo

from carepath.model.pathway import FieldType

# Declared event data of these types is shown; text may be free text and is shown only
# when the pathway restricts it to coded values (`one_of`).
_SHOWN_TYPES = frozenset({FieldType.INTEGER, FieldType.NUMBER, FieldType.BOOLEAN, FieldType.INTEGER_LIST})


def _shown(spec: object) -> bool:
    return getattr(spec, "type", None) in _SHOWN_TYPES or bool(getattr(spec, "one_of", None))


def _plural(n: object, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _names(values: object) -> str:
    if isinstance(values, (list, tuple)):
        return ", ".join(str(v).replace("_", " ") for v in values)
    return str(values).replace("_", " ")


def _phq9(data: Mapping[str, object]) -> str:
    items = data.get("items")
    if not isinstance(items, Sequence) or isinstance(items, str) or len(items) != 9:
        return "PHQ-9 recorded"
    total = sum(int(i) for i in items)  # type: ignore[arg-type]
    if int(items[8]) > 0:  # type: ignore[arg-type]
        return f"PHQ-9 item 9 answered {items[8]} (total {total})"
    return f"PHQ-9 total {total}"


def _clock(value: object, zone: ZoneInfo) -> str:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return value
    if isinstance(value, datetime) and value.tzinfo is not None:
        local = value.astimezone(zone)
        return f"{local:%a} {local.day} {local:%b %H:%M} {local.tzname()}"
    return str(value)


def describe(event_type: str, data: Mapping[str, object], zone: ZoneInfo,
             declared: Mapping[str, object] | None = None, description: str | None = None) -> str:
    """One line saying what the event recorded. `declared` is the pathway's data fields for
    a pathway-specific event type, `description` its description there."""
    session = data.get("session")
    if event_type == "assessment_recorded":
        instrument = str(data.get("instrument", "assessment"))
        return _phq9(data) if instrument == "phq9" else f"{instrument.upper()} recorded"
    if event_type == "screening_recorded":
        parts = [f"Screening: {_plural(data.get('trd_trials', 0), 'documented antidepressant trial')}"]
        if data.get("contraindications"):
            parts.append(f"contraindication {_names(data['contraindications'])}")
        if data.get("cautions"):
            parts.append(f"caution {_names(data['cautions'])}")
        return "; ".join(parts)
    if event_type == "vitals_recorded":
        phase = str(data.get("phase", "")).replace("_", "-")
        return f"Blood pressure {data.get('systolic')}/{data.get('diastolic')}" + (f" ({phase})" if phase else "")
    if event_type == "session_scheduled":
        return f"Session {session} booked for {_clock(data.get('start'), zone)}"
    if event_type in ("session_completed", "session_missed", "session_cancelled"):
        return f"Session {session} {event_type.removeprefix('session_')}"
    if event_type == "decision_recorded":
        return f"Decision recorded: {_names(data.get('decision', ''))}"
    if event_type == "task_completed":
        return "A task was completed"
    if event_type == "enrolled":
        return "Enrolled"
    if event_type == "discharged":
        return "Discharged"
    head = description.rstrip(".") if description else event_type.replace("_", " ").capitalize()
    shown = [f"{key.replace('_', ' ')} {_names(data[key])}" for key, spec in (declared or {}).items()
             if key in data and _shown(spec)]
    return head + (f": {', '.join(shown)}" if shown else "")
