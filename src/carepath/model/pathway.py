"""The pathway language as frozen, strict pydantic models.

This is the single definition of what a pathway file may say (with `vocabulary.py`, the
names, durations, enumerations and declarations it is written in); the JSON Schema
editors use is generated from it. Cross-references (a step named by a rule, a `$parameter`)
are plain names here and are resolved by the check layer, which can report them all
with positions instead of stopping at the first.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    Discriminator,
    Field,
    Tag,
    WithJsonSchema,
)

from carepath.model.vocabulary import (
    NAME_PATTERN,
    Basis,
    Clinic,
    Clock,
    ClosedPolicy,
    Count,
    DataField,
    DataFieldSpec,
    EventType,
    FieldType,
    Frozen,
    Name,
    NameList,
    Offset,
    OutsideHours,
    Parameter,
    ParamRef,
    ParamValue,
    PatientStatus,
    Priority,
    SourceTag,
    Weekday,
    enum_of,
)

# The vocabulary (carepath.model.vocabulary) is re-exported: import either module.
__all__ = [
    "Action", "Basis", "BusinessDue", "CalendarBlock", "Choice", "Clinic", "Clock", "ClockDue", "ClosedPolicy",
    "CompleteAction", "Count", "DataField", "DataFieldSpec", "Due", "Escalation", "EventType", "Expr", "FieldType",
    "Flag", "FlagAction", "FlagSeverity", "FlagSpec", "ForgetAction", "Frozen", "GotoAction", "Hold", "Letter",
    "LetterAction", "NAME_PATTERN", "Name", "NameList", "Offset", "OutsideHours", "Overdue", "PHQ9_MAX_TOTAL",
    "ParamRef", "ParamValue", "Parameter", "Pathway", "PatientStatus", "Phq9Bands", "Priority", "Recurring",
    "RememberAction", "Rule", "Series", "Sessions", "Silence", "SourceTag", "Stage", "StatusAction", "Step",
    "TaskAction", "Transition", "UnflagAction", "Weekday", "Window", "WorklistView", "action_kind", "enum_of",
]


# --- windows -----------------------------------------------------------------------


class ClockDue(Frozen):
    """Due at a clinic-local clock time on the anchor's day (plus `days_later`)."""

    at: Clock
    days_later: Count = 0


class BusinessDue(Frozen):
    """Due at closing time on the Nth open clinic day after the anchor (0 = that day)."""

    business_days: Count


def _due_tag(value: Any) -> str:
    # Called with raw YAML data when validating and with model instances when dumping.
    if isinstance(value, (dict, ClockDue, BusinessDue)):
        return "clock" if isinstance(value, ClockDue) or (isinstance(value, dict) and "at" in value) else "business"
    return "offset"


Due = Annotated[
    Annotated[Offset, Tag("offset")] | Annotated[ClockDue, Tag("clock")] | Annotated[BusinessDue, Tag("business")],
    Discriminator(_due_tag),
]


class Window(Frozen):
    """When a task may be done: `opens` after its anchor, `due` by a deadline."""

    opens: Offset = Offset("0h")
    due: Due | None = None
    basis: enum_of(Basis) | ParamRef = Basis.ELAPSED
    when_clinic_closed: enum_of(ClosedPolicy) | ParamRef | None = Field(
        default=None,
        description="if the window holds no open clinic hours: escalate, or move to the next open slot",
    )
    conflict_step: Name | None = Field(default=None, description="step created under the escalate policy")
    unmet_flag: Name | None = Field(default=None, description="flag raised when the window passes undone")
    opens_at: Literal["clinic_opening"] | None = Field(
        default=None,
        description="clinic_opening: the window opens at the clinic's first opening time on the anchor's "
                    "clinic-local day (local midnight on a closed day), never after the anchor; replaces 'opens'",
    )
    due_outside_hours: enum_of(OutsideHours) | ParamRef | None = Field(
        default=None,
        description="a due time on a closed day or outside opening hours: allowed (it stands), or next_opening "
                    "(moved to the close of the next opening). Default: allowed for urgent steps, clock-time dues "
                    "and windows with when_clinic_closed; next_opening otherwise",
    )


class Overdue(Frozen):
    """What happens when a task passes its due time undone."""

    after: Offset = Offset("0h")
    flag: Name | None = None
    task: Name | None = Field(default=None, description="an escalation step to create")
    priority: enum_of(Priority) | None = Field(default=None, description="raise the task's own priority")


# --- actions -----------------------------------------------------------------------


class TaskAction(Frozen):
    task: Name
    due: Due | None = Field(default=None, description="tighter deadline for this occurrence (earliest wins)")


class LetterAction(Frozen):
    letter: Name


class FlagAction(Frozen):
    flag: Name


class UnflagAction(Frozen):
    unflag: Name


class GotoAction(Frozen):
    goto: Name


class StatusAction(Frozen):
    status: PatientStatus = Field(strict=False)


class CompleteAction(Frozen):
    complete: Name = Field(description="mark the patient's open tasks of this step done")


class RememberAction(Frozen):
    remember: Name = Field(description="set a fact conditions read as facts.<name> (never shown as a flag)")


class ForgetAction(Frozen):
    forget: Name = Field(description="clear a remembered fact")


_ACTION_KEYS = ("task", "letter", "flag", "unflag", "goto", "status", "complete", "remember", "forget")


def _action_tag(value: Any) -> str | None:
    if isinstance(value, BaseModel):
        value = type(value).model_fields
    if isinstance(value, dict):
        for key in _ACTION_KEYS:
            if key in value:
                return key
    return None


Action = Annotated[
    Annotated[TaskAction, Tag("task")]
    | Annotated[LetterAction, Tag("letter")]
    | Annotated[FlagAction, Tag("flag")]
    | Annotated[UnflagAction, Tag("unflag")]
    | Annotated[GotoAction, Tag("goto")]
    | Annotated[StatusAction, Tag("status")]
    | Annotated[CompleteAction, Tag("complete")]
    | Annotated[RememberAction, Tag("remember")]
    | Annotated[ForgetAction, Tag("forget")],
    Discriminator(
        _action_tag,
        custom_error_type="action",
        custom_error_message="an action is one of: task, letter, flag, unflag, goto, status, complete, "
                             "remember, forget",
    ),
]

Expr = Annotated[str, Field(description="a condition, e.g. \"phq9.total >= params.relapse_threshold\"")]


# --- steps and letters -------------------------------------------------------------


class Step(Frozen):
    """A kind of clinician task. One task exists per occurrence key (see `per`)."""

    title: str
    role: Name
    priority: Priority = Field(default=Priority.ROUTINE, strict=False)
    description: str | None = None
    anchor: str = Field(default="at", description="'at' (the event's time) or 'data.<field>' (a datetime in its data)")
    per: str = Field(default="event", description="'event' (one task per triggering event) or 'data.<field>'")
    window: Window
    done_by: NameList = Field(default_factory=lambda: ["task_completed"],
                                description="event types that complete the task")
    cancelled_by: NameList = Field(default_factory=list,
                                     description="event types that withdraw the task (matched by `per` key)")
    holds: NameList = Field(default_factory=list, description="holds (e.g. dosing) active while the task is open")
    overdue: Overdue | None = None
    safety: bool = Field(default=False, description="safety-critical: a status change (e.g. discharge) or "
                                                    "leaving a stage never withdraws it")
    flag_while_open: Name | None = Field(default=None, description="a flag shown while a task of this step is open")
    in_session: bool = Field(default=False, description="done in the session it is anchored on (e.g. post-dose "
                                                        "blood pressure): its deadline keeps the session's clock "
                                                        "and is never moved to the next opening")
    decisions: list[str] = Field(default_factory=list,
                                 description="the decisions a decision_recorded on this step's tasks may take; "
                                             "named when a task_completed the step cannot take is refused")
    gates: Name | None = Field(default=None,
                               description="a hold this step's task gates for its own occurrence: the hold's "
                                           "breaching event for the same `per` key while the task is open is a "
                                           "breach (e.g. a dose given before the pre-dose check)")
    while_held: Name | None = Field(default=None,
                                    description="the task stands only while this hold is in force: released "
                                                "before its due, it closes itself; a hold that returns reopens it")



class Letter(Frozen):
    """A patient letter: a template, sent at an offset from its anchor."""

    template: Name
    description: str | None = None
    anchor: str = "at"
    send: Offset = Offset("0h")
    withheld_while: list[enum_of(PatientStatus)] = Field(
        default_factory=list, description="patient statuses in which this letter is not sent (e.g. blocked)")
    per: str = Field(default="event", description="'event' (one letter per triggering event) or 'data.<field>' "
                                                  "(one letter per value, e.g. one per session however often it "
                                                  "is recorded)")
    expires: Offset | None = Field(
        default=None, description="how long after its send time the letter may still go out (default: the "
                                  "pathway's letter_expiry; a letter anchored on a session's booked start "
                                  "also expires at that start)")


# --- rules, stages -----------------------------------------------------------------


class Rule(Frozen):
    """A reaction to an event, in any stage unless `stages` narrows it."""

    id: Name
    description: str | None = None
    on: NameList = Field(description="event type(s) that trigger the rule")
    stages: NameList | None = Field(default=None, description="stages where the rule applies (default: all)")
    when: Expr | None = None
    consecutive: Count | None = Field(
        default=None, description="fire only when this many matching events come in a row"
    )
    reset_by: NameList = Field(default_factory=list, description="event types that break a run of matches")
    until_confirmed: list[Action] = Field(default_factory=list,
                                          description="actions on a match before the run is long enough")
    then: list[Action]



class Transition(Frozen):
    to: Name
    on: NameList | None = Field(default=None, description="event type(s); omitted = after any event")
    when: Expr | None = None
    then: list[Action] = Field(default_factory=list)



class CalendarBlock(Frozen):
    """`per_week` sessions in each week from `weeks[0]` to `weeks[1]` (1-based, inclusive)."""

    weeks: list[int] = Field(min_length=2, max_length=2, description="[first, last], e.g. [1, 4]")
    per_week: Count = Field(description="sessions in each of these weeks, 1 to 7")


class Series(Frozen):
    """A counted run of dosing sessions within a stage.

    With a calendar, the stage's first completed session (the first dose) lays out one
    task of `step` per slot, and the nth completed session fills slot n. Week k is the
    seven clinic-local days from k-1 weeks after the first dose's day; a week's days are
    shared out among its sessions in order (2 a week: days 1-3, 4-7), and a slot's window
    runs from local midnight of its first day to local midnight after its last.
    """

    sessions: Count | None = Field(default=None, description="how many sessions make the series")
    calendar: list[CalendarBlock] | None = Field(
        default=None, description="a week-by-week schedule counted from the first dose (clinic-local days)"
    )
    step: Name | None = Field(default=None, description="step to create for each calendar slot; the slot's "
                                                          "days are its window, so the step sets no opens/due")


class Choice(Frozen):
    """A value chosen by a recorded decision on a step's task, with a default."""

    decision_of: Name
    options: dict[str, Offset]
    default: Offset


class Recurring(Frozen):
    step: Name
    every: Annotated[Offset, Tag("offset")] | Choice = Field(union_mode="left_to_right")
    starting: Offset = Field(default=Offset("0h"), description="first occurrence after entering the stage")
    early_tolerance: Offset | None = Field(
        default=None, description="completed up to this long before its window opens still counts as the "
                                  "occurrence; the next interval then runs from the actual completion")


class Silence(Frozen):
    """Lost to follow-up: no `broken_by` event for `after` while in the stage raises one
    task, which supersedes the stage's recurring work left overdue (not a pile of rows)."""

    after: Offset = Field(description="how long without a breaking event, e.g. $lost_to_follow_up_after")
    broken_by: NameList = Field(description="event types that show the patient is still in care "
                                            "(e.g. session_completed, assessment_recorded)")
    task: Name = Field(description="the outreach step created once per silence")


class Stage(Frozen):
    description: str | None = None
    on_enter: list[Action] = Field(default_factory=list)
    series: Series | None = None
    recurring: list[Recurring] = Field(default_factory=list)
    transitions: list[Transition] = Field(default_factory=list)
    silence: Silence | None = Field(default=None, description="lost to follow-up in this stage")


class FlagSeverity(StrEnum):
    """What a flag means for whoever reads the worklist: only `attention` flags put a
    patient under "needing attention"; `good` news (e.g. remission) and `info` do not."""

    ATTENTION = "attention"
    INFO = "info"
    GOOD = "good"


class Flag(Frozen):
    meaning: str
    severity: enum_of(FlagSeverity) = Field(
        default=FlagSeverity.ATTENTION, description="attention (needs a clinician), info, or good (good news)")


FlagSpec = Annotated[
    Flag,
    # `relapse_risk: Consecutive missed sessions.` is shorthand for `{meaning: ...}` (severity attention).
    BeforeValidator(lambda v: {"meaning": v} if isinstance(v, str) else v),
    WithJsonSchema({"anyOf": [
        {"type": "string"},
        {"type": "object", "additionalProperties": False, "required": ["meaning"], "properties": {
            "meaning": {"type": "string"},
            "severity": {"enum": [s.value for s in FlagSeverity]},
        }},
    ], "description": "the flag's meaning, or {meaning, severity}; severity attention (default), info or good"}),
]


class WorklistView(Frozen):
    """What the clinicians' worklist page lists: overdue work plus what falls due within
    `horizon`, at most `rows` rows per band (the rest are counted)."""

    horizon: Offset = Field(default=Offset("7d"), description="how far ahead the worklist lists upcoming work")
    rows: Annotated[int, Field(ge=1)] = Field(default=300, description="rows listed per band; the rest are counted")
class Hold(Frozen):
    """A hold (e.g. dosing) that steps keep while open, and how the pathway reacts to its breach."""

    description: str | None = None
    breached_by: NameList = Field(
        default_factory=list, description="event types that break the hold while it is open (e.g. session_completed)")
    on_breach: list[Action] = Field(default_factory=list, description="actions when the hold is breached")
    booked_by: NameList = Field(default_factory=list,
                                description="event types that book what the hold stops (e.g. session_scheduled); "
                                            "their tasks show the hold while it is open")
    on_booking: list[Action] = Field(default_factory=list, description="actions on a booking while the hold is open")
    while_status: list[enum_of(PatientStatus)] = Field(
        default_factory=list, description="patient statuses that keep the hold in force, as an open step does "
                                          "(e.g. blocked)")
    withdraws: NameList = Field(
        default_factory=list, description="routine steps (e.g. boosters) withdrawn when one of while_status "
                                          "begins; their occurrences come withdrawn while it lasts")


class Escalation(Frozen):
    """Who is told, in turn, of urgent or safety work nobody has acknowledged, and when.

    A task raised in opening hours reaches the first tier after `delay_in_hours` without a
    `task_acknowledged`, otherwise after `delay_out_of_hours`; each next tier after the
    same delay again. A safety task still open past its due escalates again every
    `repeat`, acknowledged or not, until done."""

    tiers: list[Name] = Field(min_length=1, description="roles told in turn, e.g. [on_call_prescriber, "
                                                        "medical_director]")
    delay_in_hours: Offset = Field(description="unacknowledged this long after being raised in opening hours: "
                                               "the next tier, e.g. $escalation_delay_in_hours")
    delay_out_of_hours: Offset = Field(description="the same for work raised while the clinic is closed, e.g. "
                                                   "$escalation_delay_out_of_hours")
    repeat: Offset = Field(description="a safety task open past its due escalates again this often, "
                                       "acknowledged or not, e.g. $escalation_repeat")


class Sessions(Frozen):
    min_gap: Offset | None = Field(default=None, description="reject bookings closer than this to another session")


PHQ9_MAX_TOTAL = 27  # nine items, each 0..3


def _rising_bands(bands: dict[str, int]) -> dict[str, int]:
    limits = list(bands.values())
    if limits and (any(low >= high for low, high in zip(limits, limits[1:], strict=False))
                   or limits[-1] != PHQ9_MAX_TOTAL):
        raise ValueError(f"PHQ-9 bands give each band's highest total, rising, the last {PHQ9_MAX_TOTAL} "
                         "(e.g. minimal: 4, mild: 9, moderate: 14, moderately_severe: 19, severe: 27)")
    return bands


Phq9Bands = Annotated[dict[Name, Annotated[int, Field(ge=0, le=PHQ9_MAX_TOTAL)]], AfterValidator(_rising_bands)]


class Pathway(Frozen):
    schema_: str | None = Field(default=None, alias="$schema", exclude=True)
    id: Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]*$")]
    version: Annotated[str, Field(pattern=r"^[0-9]+\.[0-9]+\.[0-9]+$")]  # ASCII digits: \d takes "١.٠.٠"
    title: str
    description: str | None = None
    templates: str = Field(default="../templates/letters",
                           description="folder of letter templates, relative to this file")
    clinic: Clinic
    parameters: dict[Name, Parameter] = Field(default_factory=dict)
    roles: dict[Name, str] = Field(description="who does the work; name → description")
    flags: dict[Name, FlagSpec] = Field(default_factory=dict,
                                        description="patient flags; name → meaning, or {meaning, severity}")
    events: dict[Name, EventType] = Field(default_factory=dict, description="event types beyond the core ones")
    sessions: Sessions = Sessions()
    start: Name = Field(description="the stage a newly enrolled patient is in")
    stages: dict[Name, Stage]
    steps: dict[Name, Step]
    letters: dict[Name, Letter] = Field(default_factory=dict)
    rules: list[Rule] = Field(default_factory=list)
    worklist: WorklistView = WorklistView()
    holds: dict[Name, Hold] = Field(default_factory=dict, description="holds steps keep, and what breaks them")
    escalation: Escalation | None = Field(
        default=None, description="who is told of unacknowledged urgent or safety work, and after how long")
    facts: dict[Name, str] = Field(default_factory=dict,
                                   description="remembered facts conditions read (facts.<name>); name → meaning")
    letter_expiry: Offset = Field(
        default=Offset("7d"), description="how long after its send time a letter may still go out, unless the "
                                          "letter states its own `expires`, e.g. $letter_expiry")
    phq9_bands: Phq9Bands = Field(
        default_factory=dict, description="PHQ-9 bands in rising order, band name → the highest total in it (the "
                                          "last 27); conditions read the latest total's band as phq9.band "
                                          "(\"none\" before the first PHQ-9, or when no bands are declared)")
    letter_channel: Literal["file", "email", "print"] = Field(
        default="file", description="how `carepath run` sends due letters: files, email over SMTP (settings "
                                    "from the environment) or the day's print batch; CAREPATH_LETTER_CHANNEL "
                                    "overrides it for a run")


def action_kind(action: BaseModel) -> Literal["task", "letter", "flag", "unflag", "goto", "status", "complete",
                                              "remember", "forget"]:
    return _action_tag(action.model_dump())  # type: ignore[return-value]
