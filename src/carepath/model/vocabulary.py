"""The words the pathway language is written in: names, durations and clock times, its
enumerations, and the declarations other parts refer to (parameters, the clinic, event data).

`carepath.model.pathway` re-exports every name here; import from either.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, Strict, WithJsonSchema
from pydantic_core import PydanticCustomError

from carepath.model.durations import SyntaxProblem, param_name, parse_clock, parse_offset, referenced_name

NAME_PATTERN = r"^[a-z][a-z0-9_]*$"
Name = Annotated[str, Field(pattern=NAME_PATTERN, description="lower_snake_case name")]
_NAME_SCHEMA = {"type": "string", "pattern": NAME_PATTERN}
NameList = Annotated[
    list[Name],
    BeforeValidator(lambda v: [v] if isinstance(v, str) else v),
    WithJsonSchema({"anyOf": [_NAME_SCHEMA, {"type": "array", "items": _NAME_SCHEMA}],
                    "description": "a name, or a list of names"}),
]
"""One name or a list of them: `on: session_completed` reads better than a one-item list."""
ParamRef = Annotated[str, Field(pattern=r"^\$[a-z][a-z0-9_]*$", description="a parameter, e.g. $min_session_gap")]


def _offset(value: Any) -> Any:
    if not isinstance(value, str):
        raise PydanticCustomError("duration", "expected a duration such as '24h', or a $parameter")
    if referenced_name(value) is None:
        try:
            parse_offset(value)
        except SyntaxProblem as exc:
            kind = "negative_duration" if exc.negative else "duration"
            raise PydanticCustomError(kind, str(exc)) from None
    return value


def _clock(value: Any) -> Any:
    if not isinstance(value, str):
        raise PydanticCustomError("duration", "expected a clock time such as '23:59', or a $parameter")
    if param_name(value) is None:
        try:
            parse_clock(value)
        except SyntaxProblem as exc:
            raise PydanticCustomError("duration", str(exc)) from None
    return value


class Offset(str):
    """'24h', '40m after', '1h before', or a $parameter holding one."""

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> Any:
        from pydantic_core import core_schema

        return core_schema.no_info_plain_validator_function(
            _offset, json_schema_input_schema=core_schema.str_schema()
        )

    @classmethod
    def __get_pydantic_json_schema__(cls, schema: Any, handler: Any) -> dict[str, Any]:
        return {
            "type": "string",
            "pattern": r"^(\$[a-z][a-z0-9_]*(\s+(before|after))?"
                       r"|\d+\s*(m|min|minutes?|h|hours?|d|days?|w|weeks?)(\s+(before|after))?)$",
            "description": "a duration such as '24h', '40m after', '1h before', or a $parameter",
        }


class Clock(str):
    """'HH:MM' (24-hour clinic-local clock) or a $parameter holding one."""

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> Any:
        from pydantic_core import core_schema

        return core_schema.no_info_plain_validator_function(
            _clock, json_schema_input_schema=core_schema.str_schema()
        )

    @classmethod
    def __get_pydantic_json_schema__(cls, schema: Any, handler: Any) -> dict[str, Any]:
        return {"type": "string", "pattern": r"^(\$[a-z][a-z0-9_]*|([01]\d|2[0-3]):[0-5]\d)$",
                "description": "a clinic-local clock time HH:MM, or a $parameter"}


Count = int | ParamRef


def enum_of(enum: type[StrEnum]) -> Any:
    """An enum field that accepts its plain string values (strict mode would not)."""
    return Annotated[enum, Strict(False)]
"""A whole number written out, or a $parameter holding one."""


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


# --- enums -------------------------------------------------------------------------


class SourceTag(StrEnum):
    """Where a parameter's default comes from (label/REMS, a published convention, or a clinic's own policy)."""

    LABEL = "LABEL"
    PUB = "PUB"
    CLINIC = "CLINIC"


class Priority(StrEnum):
    ROUTINE = "routine"
    HIGH = "high"
    URGENT = "urgent"


class Basis(StrEnum):
    """What '24h' means: true elapsed hours, or the same local clock time later."""

    ELAPSED = "elapsed"
    WALL_CLOCK = "wall_clock"


class ClosedPolicy(StrEnum):
    """What to do when a window contains no open clinic hours."""

    ESCALATE = "escalate"
    NEXT_OPEN_SLOT = "next_open_slot"


class OutsideHours(StrEnum):
    """Whether a task's due time may fall while the clinic is closed."""

    ALLOWED = "allowed"            # the deadline stands (on-call, same-day safety work); the worklist marks it
    NEXT_OPENING = "next_opening"  # moved to the close of the clinic's next opening


class PatientStatus(StrEnum):
    ACTIVE = "active"
    PENDING_ELIGIBILITY = "pending_eligibility"
    BLOCKED = "blocked"
    DISCHARGED = "discharged"


class FieldType(StrEnum):
    TEXT = "text"
    INTEGER = "integer"
    NUMBER = "number"
    BOOLEAN = "boolean"
    DATETIME = "datetime"
    TEXT_LIST = "text_list"
    INTEGER_LIST = "integer_list"


class Weekday(StrEnum):
    MON = "mon"
    TUE = "tue"
    WED = "wed"
    THU = "thu"
    FRI = "fri"
    SAT = "sat"
    SUN = "sun"


# --- parameters, clinic, events ----------------------------------------------------

ParamValue = bool | int | float | str | list[str] | list[int]


class Parameter(Frozen):
    """A named, signed-off value. Every clinic policy lives here, never in code."""

    value: ParamValue
    source: SourceTag = Field(strict=False)
    note: str | None = None


class Clinic(Frozen):
    name: str
    phone: str
    crisis_line: str = Field(default="988", description="shown in safety letters (US: call or text 988)")
    timezone: str = Field(description="IANA zone, e.g. America/New_York")
    hours: dict[enum_of(Weekday), str | list[str]] = Field(
        description="opening spans per weekday, e.g. '08:00-18:00', a list of spans, or 'closed'",
    )
    closed_dates: list[str] = Field(default_factory=list, description="ISO dates the clinic is closed")
    paper: Literal["letter", "a4"] | None = Field(
        default=None, description="paper size of PDF letters; default: letter for a clinic in the US, Canada, "
                                  "Mexico or the Philippines (by its time zone), A4 elsewhere")


class DataField(Frozen):
    type: FieldType = Field(strict=False)
    optional: bool = False
    one_of: tuple[str, ...] | None = Field(default=None, strict=False)


DataFieldSpec = Annotated[
    DataField,
    # `session: text` is shorthand for `session: {type: text}`.
    BeforeValidator(lambda v: {"type": v} if isinstance(v, str) else v),
    WithJsonSchema({"anyOf": [
        {"enum": [t.value for t in FieldType]},
        {"type": "object", "additionalProperties": False, "required": ["type"], "properties": {
            "type": {"enum": [t.value for t in FieldType]},
            "optional": {"type": "boolean"},
            "one_of": {"type": "array", "items": {"type": "string"}},
        }},
    ], "description": "a field type, e.g. 'text', or {type, optional, one_of}"}),
]


class EventType(Frozen):
    description: str | None = None
    data: dict[Name, DataFieldSpec] = Field(default_factory=dict)
