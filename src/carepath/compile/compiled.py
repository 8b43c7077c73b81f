"""The immutable, fully resolved form of a pathway that the engine runs.

No `$parameter`, no duration string, no expression text survives compilation: the
engine never parses anything and never looks at the model again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, time, timedelta
from zoneinfo import ZoneInfo

from carepath.compile.conditions import Condition
from carepath.model.pathway import Basis, ClosedPolicy, DataField, PatientStatus, Priority


@dataclass(frozen=True)
class ClinicCalendar:
    name: str
    phone: str
    crisis_line: str
    zone: ZoneInfo
    hours: tuple[tuple[tuple[time, time], ...], ...]  # index 0 = Monday
    closed_dates: frozenset[date]
    paper: str = "a4"  # PDF letters' paper size: "letter" or "a4"


@dataclass(frozen=True)
class OffsetDue:
    delta: timedelta


@dataclass(frozen=True)
class ClockDue:
    at: time
    days_later: int


@dataclass(frozen=True)
class BusinessDue:
    business_days: int


DueSpec = OffsetDue | ClockDue | BusinessDue


@dataclass(frozen=True)
class Window:
    opens: timedelta
    due: DueSpec | None
    basis: Basis
    when_clinic_closed: ClosedPolicy | None
    conflict_step: str | None
    unmet_flag: str | None
    move_outside_hours: bool = False  # a due on a closed day or after hours moves to the next opening's close
    opens_at_opening: bool = False    # opens at the clinic's opening on the anchor's local day, not `opens` after it


@dataclass(frozen=True)
class Overdue:
    after: timedelta
    flag: str | None
    task: str | None
    priority: Priority | None


@dataclass(frozen=True)
class Step:
    name: str
    title: str
    role: str
    priority: Priority
    anchor_field: str | None  # None: the event's own time
    key_field: str | None     # None: one task per triggering event
    window: Window
    done_by: frozenset[str]
    cancelled_by: frozenset[str]
    holds: tuple[str, ...]
    overdue: Overdue | None
    safety: bool = False                 # never withdrawn by a status change or a stage exit
    flag_while_open: str | None = None
    decisions: tuple[str, ...] = ()      # what a decision_recorded on it may say (named in refusals)
    gates: str | None = None             # a hold its open task gates for its own occurrence key
    while_held: str | None = None        # the task stands only while this hold is in force
    in_session: bool = False             # done in its session: the due keeps the session's clock (review tools)


@dataclass(frozen=True)
class Letter:
    name: str
    template: str
    anchor_field: str | None
    send: timedelta
    withheld_while: frozenset[PatientStatus] = frozenset()
    expires: timedelta | None = None  # the letter's own expiry after its send time
    key_field: str | None = None      # one letter per value of this data field (None: per event)


@dataclass(frozen=True)
class Task:
    step: str
    due: DueSpec | None


@dataclass(frozen=True)
class SendLetter:
    letter: str


@dataclass(frozen=True)
class SetFlag:
    flag: str


@dataclass(frozen=True)
class ClearFlag:
    flag: str


@dataclass(frozen=True)
class Goto:
    stage: str


@dataclass(frozen=True)
class SetStatus:
    status: PatientStatus


@dataclass(frozen=True)
class Complete:
    step: str


@dataclass(frozen=True)
class Remember:
    fact: str


@dataclass(frozen=True)
class Forget:
    fact: str


Action = Task | SendLetter | SetFlag | ClearFlag | Goto | SetStatus | Complete | Remember | Forget


@dataclass(frozen=True)
class Hold:
    name: str
    breached_by: frozenset[str]
    on_breach: tuple[Action, ...]
    booked_by: frozenset[str]
    on_booking: tuple[Action, ...]
    while_status: frozenset[PatientStatus] = frozenset()  # statuses that keep the hold in force
    withdraws: frozenset[str] = frozenset()               # routine steps those statuses withdraw


@dataclass(frozen=True)
class Rule:
    id: str
    on: frozenset[str]
    stages: frozenset[str] | None
    when: Condition | None
    consecutive: int | None
    reset_by: frozenset[str]
    until_confirmed: tuple[Action, ...]
    then: tuple[Action, ...]


@dataclass(frozen=True)
class Transition:
    to: str
    on: frozenset[str] | None
    when: Condition | None
    then: tuple[Action, ...]


@dataclass(frozen=True)
class CalendarBlock:
    first_week: int
    last_week: int
    per_week: int


@dataclass(frozen=True)
class Series:
    sessions: int
    calendar: tuple[CalendarBlock, ...]
    step: str | None


@dataclass(frozen=True)
class Recurring:
    step: str
    every: timedelta
    choices: tuple[tuple[str, timedelta], ...]  # decision → interval, when chosen by a decision
    decision_of: str | None
    starting: timedelta
    early_tolerance: timedelta | None = None  # set: anchored on the actual completion, early ones count


@dataclass(frozen=True)
class Silence:
    after: timedelta
    broken_by: frozenset[str]
    task: str


@dataclass(frozen=True)
class Stage:
    name: str
    on_enter: tuple[Action, ...]
    series: Series | None
    recurring: tuple[Recurring, ...]
    transitions: tuple[Transition, ...]
    silence: Silence | None = None


@dataclass(frozen=True)
class CompiledPathway:
    id: str
    version: str
    title: str
    clinic: ClinicCalendar
    template_dir: str
    parameters: dict[str, object]
    flags: tuple[str, ...]
    event_fields: dict[str, dict[str, DataField]]  # core and declared event types with their data
    min_session_gap: timedelta | None
    start: str
    stages: dict[str, Stage]
    steps: dict[str, Step]
    letters: dict[str, Letter]
    rules: tuple[Rule, ...]
    # What the worklist needs to speak in the pathway's words (no effect on planning):
    flag_severity: dict[str, str] = field(default_factory=dict)   # flag → attention | info | good
    notes: dict[str, str] = field(default_factory=dict)           # "rule:<id>", "stage:<name>", "step:<name>",
                                                                  # "event:<type>" → the pathway's description
    worklist: WorklistView = field(default_factory=lambda: WorklistView(timedelta(days=7), 300))
    holds: dict[str, Hold] = field(default_factory=dict)
    facts: tuple[str, ...] = ()
    letter_expiry: timedelta = timedelta(days=7)  # the model's default; pathways set it from a parameter
    phq9_bands: tuple[tuple[int, str], ...] = ()  # (highest total, band name), rising
    letter_channel: str = "file"  # file | email | print
    escalation: Escalation | None = None  # None: urgent work is shown, but escalates to nobody
    # Derived once, here, from the fields above: the engine's lookups by event type.
    tables: Tables = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "tables", _tables(self))


@dataclass(frozen=True)
class Escalation:
    tiers: tuple[str, ...]          # roles told in turn
    delay_in_hours: timedelta       # to the next tier, for work raised while the clinic is open
    delay_out_of_hours: timedelta   # the same, for work raised while it is closed
    repeat: timedelta               # a safety task open past its due escalates again this often


def escalates(step: Step) -> bool:
    """Whether a step's tasks are acknowledged and escalate: urgent or safety-critical work."""
    return step.safety or step.priority is Priority.URGENT


@dataclass(frozen=True)
class WorklistView:
    horizon: timedelta
    rows: int


@dataclass(frozen=True)
class Tables:
    """Lookups derived from a compiled pathway, so that folding an event asks a dict
    instead of scanning every rule and step (the fold runs millions of times per sweep)."""

    rules_by_type: dict[str, tuple[Rule, ...]]      # rules listening to an event type, in file order
    resets_by_type: dict[str, tuple[str, ...]]      # rule ids whose streak an event type resets
    closing_types: frozenset[str]                   # event types some step is done or cancelled by
    breaches_by_type: dict[str, tuple[Hold, ...]]   # holds an event type breaks
    bookings_by_type: dict[str, tuple[Hold, ...]]   # holds an event type books past
    dose_types: frozenset[str]                      # event types completing early-tolerant recurring work
    status_holds: dict[PatientStatus, tuple[str, ...]] = field(default_factory=dict)  # status → holds it keeps
    withdrawn_while: dict[PatientStatus, frozenset[str]] = field(default_factory=dict)  # status → steps withdrawn
    gates_by_type: dict[str, tuple[Step, ...]] = field(default_factory=dict)  # breaching event → gating steps
    tracks_holds: bool = False                      # some step stands only while a hold is in force


def _tables(p: CompiledPathway) -> Tables:
    rules: dict[str, list[Rule]] = {}
    resets: dict[str, list[str]] = {}
    for rule in p.rules:
        for event_type in rule.on:
            rules.setdefault(event_type, []).append(rule)
        for event_type in rule.reset_by:
            resets.setdefault(event_type, []).append(rule.id)
    closing = frozenset(t for step in p.steps.values() for t in (*step.done_by, *step.cancelled_by))
    breaches: dict[str, list[Hold]] = {}
    bookings: dict[str, list[Hold]] = {}
    for hold in p.holds.values():
        for event_type in hold.breached_by:
            breaches.setdefault(event_type, []).append(hold)
        for event_type in hold.booked_by:
            bookings.setdefault(event_type, []).append(hold)
    doses = frozenset(t for stage in p.stages.values() for r in stage.recurring if r.early_tolerance is not None
                      for t in p.steps[r.step].done_by if t not in ("task_completed", "decision_recorded"))
    status_holds: dict[PatientStatus, list[str]] = {}
    withdrawn: dict[PatientStatus, set[str]] = {}
    for hold in p.holds.values():
        for status in hold.while_status:
            status_holds.setdefault(status, []).append(hold.name)
            withdrawn.setdefault(status, set()).update(hold.withdraws)
    gates: dict[str, list[Step]] = {}
    for step in p.steps.values():
        if step.gates is not None and step.gates in p.holds:
            for event_type in p.holds[step.gates].breached_by:
                gates.setdefault(event_type, []).append(step)
    return Tables({k: tuple(v) for k, v in rules.items()}, {k: tuple(v) for k, v in resets.items()}, closing,
                  {k: tuple(v) for k, v in breaches.items()}, {k: tuple(v) for k, v in bookings.items()}, doses,
                  {k: tuple(v) for k, v in status_holds.items()}, {k: frozenset(v) for k, v in withdrawn.items()},
                  {k: tuple(v) for k, v in gates.items()},
                  any(step.while_held is not None for step in p.steps.values()))
