"""The planner: fold a patient's events, in time order, through the compiled pathway.

plan(compiled, patient, events, as_of) is a pure function (the plan is recomputed from history and time): no clock
reads, no I/O; the same inputs give the same plan, whatever order the events came in.
Only events at or before `as_of` are known; recurring work and overdue status are
evaluated at `as_of`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Protocol

from carepath.compile import compiled as c
from carepath.compile.conditions import ConditionError
from carepath.engine import calendar as cal
from carepath.engine import escalation, loops, why
from carepath.engine.aliases import NAMES_TASK, AliasIndex, IdAliases
from carepath.engine.clock import AsOf, Moment
from carepath.engine.ids import output_id
from carepath.engine.letter_lifecycle import settle_letters
from carepath.engine.result import (
    Acknowledgement,
    EngineRejection,
    PatientPlan,
    PlannedLetter,
    PlannedSession,
    PlannedTask,
)
from carepath.engine.slots import calendar_slots
from carepath.model.pathway import ClosedPolicy, PatientStatus, Priority

_PHQ9_BANDS = ((4, "minimal"), (9, "mild"), (14, "moderate"), (19, "moderately_severe"), (27, "severe"))
_PRIORITY_RANK = {Priority.ROUTINE: 0, Priority.HIGH: 1, Priority.URGENT: 2}
# Events that name one task (an acknowledgement names one too, and is refused the same way).
_COMPLETIONS = frozenset({"task_completed", "decision_recorded", "task_acknowledged"})
_OPEN = frozenset({"open", "overdue"})


class EventLike(Protocol):
    id: str
    patient: str
    type: str
    at: datetime
    data: Mapping[str, object]
    line: int


class PatientLike(Protocol):
    ref: str
    timezone: str


@dataclass
class _Task:
    id: str
    step: c.Step
    key: str
    trigger: str
    created_at: datetime          # completion events must come at or after this
    earliest: datetime
    due: datetime | None
    priority: Priority
    source: str
    out_of_window: bool = False
    done_at: datetime | None = None
    cancelled_at: datetime | None = None
    reason: str | None = None     # what the triggering event recorded (engine/why.py), and when
    reason_at: datetime | None = None
    superseded_at: datetime | None = None  # an open task is withdrawn once this passes (its window's end)
    closed_reason: str | None = None  # why it was withdrawn or superseded, when the plan can say

    @property
    def is_open(self) -> bool:
        return self.done_at is None and self.cancelled_at is None


@dataclass
class _Session:
    id: str
    status: str = "scheduled"
    start: datetime | None = None
    completed_at: datetime | None = None
    scheduled_by: str | None = None
    bookings: dict[str, datetime] = field(default_factory=dict)  # booking event id → the start it booked


@dataclass
class _Visit:
    """One stay in a stage: when it began and what recurring work it has produced."""

    stage: c.Stage
    entered_at: datetime
    trigger: str
    occurrences: dict[str, int] = field(default_factory=dict)  # recurring step → occurrences produced
    first_dose: str | None = None  # the event that anchored the stage's calendar series
    # recurring step → (occurrences, when the next one opens), for fixed intervals only:
    # most events come long before the next occurrence, and this answers in one comparison.
    upcoming: dict[str, tuple[int, datetime]] = field(default_factory=dict)
    wake: datetime | None = None  # the earliest of those, when every recurring step has a fixed interval
    completed: int = 0
    missed: int = 0
    scheduled: int = 0
    # recurring step → what its next interval runs from (the latest occurrence's anchor, or
    # the completion that counted for it), for work anchored on the actual completion
    since: dict[str, datetime] = field(default_factory=dict)
    contact: tuple[datetime, str] | None = None  # the latest event that broke the stage's silence
    silent: bool = False                         # a silence's outreach is raised and not yet broken
    silences: set[str] = field(default_factory=set)


class _Fold:
    def __init__(self, compiled: c.CompiledPathway, patient: PatientLike, aliases: IdAliases | None = None) -> None:
        self.p = compiled
        self.aliases = aliases
        self.alias_index: AliasIndex | None = None  # built on the first event naming an unknown id
        self.patient = patient
        self.zone = compiled.clinic.zone
        from zoneinfo import ZoneInfo

        self.patient_zone = ZoneInfo(patient.timezone)
        self.status = PatientStatus.ACTIVE
        self.discharged_at: datetime | None = None  # letters not yet due then are withdrawn
        self.flags: set[str] = set()
        self.tasks: dict[str, _Task] = {}
        self.holding: list[_Task] = []  # tasks whose step keeps a hold: holds() scans only these
        self.letters: dict[str, PlannedLetter] = {}
        self.sessions: dict[str, _Session] = {}
        self.streaks: dict[str, int] = {}
        self.decisions: dict[str, str] = {}  # task id → decision
        self.acks: dict[str, Acknowledgement] = {}  # task id → its first task_acknowledged
        self.phq9: dict[str, object] = {"recorded": False, "total": 0, "item9": 0, "items": [], "band": "none"}
        self.screening: dict[str, object] = {"recorded": False, "trd_trials": 0, "contraindications": [],
                                             "cautions": []}
        self.consecutive_missed = 0
        self.consecutive_attended = 0
        self.facts: set[str] = set()
        self.bookings: dict[str, tuple[str, ...]] = {}  # booking event id → holds it books past
        self.completed_total = 0
        self.missed_total = 0
        self.visit: _Visit | None = None
        self.rejected: list[EngineRejection] = []
        self.fired: set[str] = set()
        self.withheld: list[tuple[str, EventLike, str]] = []
        self.letter_keys: set[tuple[str, str]] = set()  # (letter, value) for letters sent once per value  # letters a status withheld, to release later
        self.withdrawn_letters: set[str] = set()  # letter ids an earlier discharge or a status withdrew
        self.paused_letters: set[str] = set()  # of those, the ones a status withholds (back when it ends)
        self.hold_history = loops.HoldHistory() if compiled.tables.tracks_holds else None
        self.tables = compiled.tables
        self.rules_by_type = self.tables.rules_by_type

    # --- context for conditions --------------------------------------------------

    def context(self, event: EventLike) -> _Context:
        """What conditions may read (model/context.py), each entry built only when read."""
        return _Context(self, event)

    def holds(self) -> set[str]:
        held = {h for t in self.holding if t.is_open for h in t.step.holds}
        by_status = self.tables.status_holds.get(self.status)
        return held.union(by_status) if by_status else held

    # --- the fold ------------------------------------------------------------------

    def run(self, events: list[EventLike], as_of: Moment) -> None:
        for event in events:
            visit = self.visit
            # Most events come in stages without recurring work, or long before the next
            # occurrence opens: then materialising would change nothing (see `wake`).
            if visit is not None and visit.stage.recurring and (visit.wake is None or visit.wake <= event.at):
                self.materialise_recurring(Moment(event.at))
            if visit is not None and visit.stage.silence is not None:
                loops.silence_check(self, Moment(event.at))
            self.apply(event)
            if self.hold_history is not None:
                self.hold_history.note(event.at, self.holds())
        self.materialise_recurring(as_of, include_next=True)
        loops.silence_check(self, as_of)

    def apply(self, event: EventLike) -> None:
        if self.visit is None:
            self.enter(self.p.start, event)
        elif event.type == "enrolled" and self.status is PatientStatus.DISCHARGED:
            loops.new_episode(self, event)
        if event.type in NAMES_TASK:
            event = self.aliased(event)
        if event.type == "session_scheduled" and not self.accept_booking(event):
            return
        if event.type in _COMPLETIONS and (not self.names_real_task(event) or loops.refuses_completion(self, event)):
            return
        breached = self.breached_holds(event) if event.type in self.tables.breaches_by_type else ()
        if event.type in self.tables.gates_by_type:
            breached = loops.gated_breaches(self, event, breached)
        loops.contact(self, event)
        if event.type in self.tables.bookings_by_type:
            self.booking(event)
        if event.type in self.tables.dose_types:
            self.dose_anchored(event)
        self.record(event)
        self.close_tasks(event)
        for hold in breached:
            self.act(hold.on_breach, event, f"hold:{hold.name}:breach")
        # Rules still run after discharge: a positive PHQ-9 item 9 must be assessed in any stage.
        stage_before = self.visit.stage.name if self.visit else None
        ctx: dict[str, object] | None = None
        for rule in self.rules_by_type.get(event.type, ()):
            if rule.stages is not None and (self.visit is None or self.visit.stage.name not in rule.stages):
                continue
            if rule.when is not None:
                ctx = self.context(event)
                matched = self.decide(rule.when, ctx, event)
            else:
                matched = True
            if rule.consecutive is None:
                if matched:
                    self.act(rule.then, event, f"rule:{rule.id}")
                continue
            streak = self.streaks.get(rule.id, 0) + 1 if matched else 0
            self.streaks[rule.id] = streak
            if matched:
                actions = rule.then if streak >= rule.consecutive else rule.until_confirmed
                self.act(actions, event, f"rule:{rule.id}")
        for rule_id in self.tables.resets_by_type.get(event.type, ()):
            self.streaks[rule_id] = 0
        if self.visit is not None and self.visit.stage.name == stage_before:
            for k, transition in enumerate(self.visit.stage.transitions):
                if transition.on is not None and event.type not in transition.on:
                    continue
                if transition.when is not None and not self.decide(transition.when, self.context(event), event):
                    continue
                self.act(transition.then, event, f"stage:{stage_before}:transition:{k}")
                self.enter(transition.to, event)
                break

    def decide(self, condition, ctx: dict[str, object], event: EventLike) -> bool:
        try:
            return condition(ctx)
        except ConditionError as exc:
            # A condition that cannot be decided is reported, never taken as false silently.
            self.rejected.append(EngineRejection(event.line, event.id, f"not evaluated: {exc}"))
            return False

    def accept_booking(self, event: EventLike) -> bool:
        gap = self.p.min_session_gap
        start = event.data.get("start")
        session_id = str(event.data.get("session"))
        if gap is None or not isinstance(start, datetime):
            return True
        for other in self.sessions.values():
            if other.id == session_id or other.status in ("cancelled", "missed"):
                continue
            when = other.completed_at if other.status == "completed" else other.start
            if when is None:
                continue
            if start.tzinfo is not when.tzinfo or type(start.tzinfo) is timezone:
                apart = abs(start - when)  # Python subtracts these as instants already
            else:  # one zone on both sides: aware subtraction would give wall-clock time
                apart = abs(start.astimezone(UTC) - when.astimezone(UTC))
            if apart < gap:
                hours = apart.total_seconds() / 3600
                self.rejected.append(EngineRejection(
                    event.line, event.id,
                    f"session {session_id} would start {hours:g} h from session {other.id}; "
                    f"the minimum gap between sessions is {_hours(gap)} — book it later or change the other session",
                ))
                return False
        return True

    def record(self, event: EventLike) -> None:
        """Update the facts conditions read, before any rule sees the event."""
        data, visit = event.data, self.visit
        kind = event.type
        if kind == "session_scheduled":
            session = self.session(str(data["session"]))
            if session.status != "completed":
                if session.status != "scheduled" or session.scheduled_by is None:
                    if visit:
                        visit.scheduled += 1
                session.status = "scheduled"
            session.start = data["start"]  # type: ignore[assignment]
            session.scheduled_by = event.id
            session.bookings[event.id] = data["start"]  # type: ignore[assignment]
        elif kind in ("session_completed", "session_missed", "session_cancelled"):
            session = self.session(str(data["session"]))
            if kind == "session_completed":
                if session.status != "completed" and visit:
                    visit.completed += 1
                    self.fill_calendar(event)
                if session.status != "completed":
                    self.completed_total += 1
                session.status, session.completed_at = "completed", event.at
                self.consecutive_missed = 0
                self.consecutive_attended += 1
            elif kind == "session_missed":
                session.status = "missed"
                self.consecutive_attended = 0
                self.missed_total += 1
                self.consecutive_missed += 1
                if visit:
                    visit.missed += 1
            else:
                session.status = "cancelled"
        elif kind == "assessment_recorded" and data.get("instrument") == "phq9":
            items = list(data["items"])  # type: ignore[arg-type]
            total = sum(items)
            band = next(name for limit, name in _PHQ9_BANDS if total <= limit)
            self.phq9 = {"recorded": True, "total": total, "item9": items[8], "items": items, "band": band}
        elif kind == "screening_recorded":
            self.screening = {"recorded": True, "trd_trials": data.get("trd_trials", 0),
                              "contraindications": list(data.get("contraindications") or []),
                              "cautions": list(data.get("cautions") or [])}
        elif kind == "decision_recorded":
            self.decisions[str(data["task"])] = str(data["decision"])
        elif kind == "task_acknowledged":
            self.acks.setdefault(str(data["task"]), Acknowledgement(str(data["by"]), event.at))
        elif kind == "discharged":
            self.discharge(event.at)

    def discharge(self, at: datetime) -> None:
        """Discharge withdraws routine work, never safety work (an open suicide-risk
        assessment, a hold-breach review: any step marked `safety`)."""
        # Planned recurring work that earlier plans showed is withdrawn, not dropped.
        self.materialise_recurring(Moment(at), include_next=True)
        self.status = PatientStatus.DISCHARGED
        self.discharged_at = at
        for task in self.tasks.values():
            if task.is_open and not task.step.safety:
                task.cancelled_at = at

    def session(self, session_id: str) -> _Session:
        session = self.sessions.get(session_id)
        if session is None:
            session = self.sessions[session_id] = _Session(session_id)
        return session

    def close_tasks(self, event: EventLike) -> None:
        """Completion and withdrawal of open tasks by this event."""
        target = event.data.get("task") if event.type in ("task_completed", "decision_recorded") else None
        if target is not None:
            # Only the named task can be closed: look it up instead of scanning them all.
            task = self.tasks.get(target)  # type: ignore[arg-type]
            if task is not None and task.is_open and task.id == target and (
                    event.type == "decision_recorded" or event.type in task.step.done_by):
                task.done_at = event.at
            return
        if event.type not in self.tables.closing_types:
            return  # no step is done or cancelled by this kind of event
        for task in self.tasks.values():
            if not task.is_open:
                continue
            if target is not None:
                # A decision always settles its task; ticking a task off counts only where the
                # step allows it (a step done_by decision_recorded waits for the decision).
                if task.id == target and (event.type == "decision_recorded" or event.type in task.step.done_by):
                    task.done_at = event.at
                continue
            step = task.step
            if event.type not in step.done_by and event.type not in step.cancelled_by:
                continue  # the common case, decided before the time and key comparisons
            if event.at < task.created_at or event.id == task.trigger:
                continue
            key_matches = step.key_field is None or _key(event, step.key_field) == task.key
            if event.type in step.done_by and key_matches:
                task.done_at = event.at
            elif event.type in step.cancelled_by and key_matches:
                task.cancelled_at = event.at

    # --- stages and actions ------------------------------------------------------------

    def enter(self, stage_name: str, event: EventLike) -> None:
        stage = self.p.stages[stage_name]
        for rule in self.p.rules:
            # A run of matches only counts within stages where the rule applies.
            if rule.stages is not None and stage_name not in rule.stages:
                self.streaks[rule.id] = 0
        if self.visit is not None:
            # Recurring work belongs to its stay: leaving the stage withdraws what is still
            # open, including the occurrence earlier plans showed ahead.
            self.materialise_recurring(Moment(event.at), include_next=True)
            left = (f"stage:{self.visit.stage.name}:recurring", f"stage:{self.visit.stage.name}:series")
            for task in self.tasks.values():
                if task.is_open and task.source in left and not task.step.safety:
                    task.cancelled_at = event.at
        self.visit = _Visit(stage, event.at, event.id)
        self.act(stage.on_enter, event, f"stage:{stage_name}:on_enter")

    def act(self, actions: Iterable[c.Action], event: EventLike, source: str) -> None:
        self.fired.add(source)
        for action in actions:
            if isinstance(action, c.Task):
                self.create_task(action.step, event, source, action.due)
            elif isinstance(action, c.SendLetter):
                self.create_letter(action.letter, event, source)
            elif isinstance(action, c.SetFlag):
                self.flags.add(action.flag)
            elif isinstance(action, c.ClearFlag):
                self.flags.discard(action.flag)
            elif isinstance(action, c.SetStatus):
                if action.status is PatientStatus.DISCHARGED and self.status is not PatientStatus.DISCHARGED:
                    self.discharge(event.at)  # however the pathway discharges, the same work ends
                before, self.status = self.status, action.status
                loops.status_changed(self, before, event)
            elif isinstance(action, c.Goto):
                self.enter(action.stage, event)
            elif isinstance(action, c.Complete):
                for task in self.tasks.values():
                    if task.step.name == action.step and task.is_open:
                        task.done_at = event.at
            elif isinstance(action, c.Remember):
                self.facts.add(action.fact)
            elif isinstance(action, c.Forget):
                self.facts.discard(action.fact)

    def anchor(self, field_name: str | None, event: EventLike) -> datetime:
        if field_name is None:
            return event.at
        value = event.data.get(field_name)
        return value if isinstance(value, datetime) else event.at

    def create_task(self, step_name: str, event: EventLike, source: str, due_override: c.DueSpec | None = None,
                    *, key: str | None = None, anchor: datetime | None = None) -> _Task:
        step = self.p.steps[step_name]
        if key is None:
            key = _key(event, step.key_field) if step.key_field else f"event:{event.id}"
        task_id = output_id("t", self.p.id, self.patient.ref, step_name, key)
        start = anchor if anchor is not None else self.anchor(step.anchor_field, event)
        window = step.window
        earliest = (cal.day_opening(self.p.clinic, start) if window.opens_at_opening
                    else cal.shift(start, window.opens, window.basis, self.zone))
        if anchor is None and step.anchor_field is not None and earliest < event.at:
            # Measured from a booked start, a window may "open" before the booking itself:
            # the work exists only from the event that calls for it.
            earliest = event.at
        due = self.due(window.due, start, window) if window.due else None
        if due_override is not None:
            tighter = self.due(due_override, start, window)
            due = tighter if due is None or tighter < due else due
        existing = self.tasks.get(task_id)
        if existing is not None:
            if existing.trigger == event.id:
                # Several rules on one event for one occurrence: the earliest due wins.
                if due is not None and (existing.due is None or due < existing.due):
                    existing.due = due
                return existing
            if existing.done_at is not None:
                return existing
            # Otherwise the occurrence moves to its new anchor (a corrected completion
            # time, or a cancelled session that happened after all).
        task = _Task(task_id, step, key, event.id, event.at if anchor is None else earliest, earliest, due,
                     step.priority, source)
        if not isinstance(event, _Marker):
            task.reason, task.reason_at = why.describe(
                event.type, event.data, self.zone, self.p.event_fields.get(event.type),
                self.p.notes.get(f"event:{event.type}")), event.at
        self.tasks[task_id] = task
        if self.tables.withdrawn_while:
            loops.withdrawn_at_birth(self, task)
        if step.holds:
            if existing is not None and existing in self.holding:
                self.holding.remove(existing)
            self.holding.append(task)
        if window.when_clinic_closed is not None and due is not None:
            self.apply_clinic_policy(task, event, source)
        return task

    def due(self, spec: c.DueSpec, start: datetime, window: c.Window) -> datetime:
        due = cal.resolve_due(self.p.clinic, spec, start, window.basis)
        if not isinstance(spec, c.OffsetDue) and due < start:
            # "Before closing today" after closing time, or 23:59 already past: due at once.
            return start.astimezone(self.zone)
        return cal.within_hours(self.p.clinic, due) if window.move_outside_hours else due

    def apply_clinic_policy(self, task: _Task, event: EventLike, source: str) -> None:
        window = task.step.window
        assert task.due is not None
        if cal.has_open_hours(self.p.clinic, task.earliest, task.due):
            return
        if window.when_clinic_closed is ClosedPolicy.NEXT_OPEN_SLOT:
            opens, closes = cal.next_opening(self.p.clinic, task.due)
            task.earliest, task.due, task.out_of_window = opens, closes, True
        elif window.conflict_step is not None:
            conflict = self.create_task(window.conflict_step, event, f"{source}:window_conflict",
                                        key=f"conflict:{task.id}", anchor=event.at)
            # Once the window has passed, the unmet-window flag says what the conflict said.
            conflict.superseded_at = task.due
            if conflict.due is not None and conflict.due > task.due:
                # No clinic time is left before the window passes (e.g. a Friday-evening
                # session): the conflict needs attention at once, not after the weekend.
                conflict.due = event.at.astimezone(self.zone)

    def create_letter(self, letter_name: str, event: EventLike, source: str, *,
                      release_at: datetime | None = None) -> None:
        letter = self.p.letters[letter_name]
        if self.status in letter.withheld_while:
            # e.g. no session instructions to a patient who must not be dosed; kept to be
            # released if the status ends (engine/loops.py)
            self.withheld.append((letter_name, event, source))
            return
        letter_id = output_id("l", self.p.id, self.patient.ref, letter_name, f"event:{event.id}")
        if letter_id in self.letters:
            return
        if letter.key_field is not None:
            # One letter per value (one session recorded twice under two ids: one reminder).
            per = (letter_name, str(event.data.get(letter.key_field)))
            if per in self.letter_keys:
                return
            self.letter_keys.add(per)
        at_utc = event.at.astimezone(UTC)
        anchor = self.anchor(letter.anchor_field, event)
        planned = (at_utc if anchor is event.at else anchor.astimezone(UTC)) + letter.send
        # A letter cannot go out before the event that calls for it was recorded (or, for a
        # withheld letter, before it was released).
        send_at = max(planned, at_utc, release_at.astimezone(UTC) if release_at else at_utc
                      ).astimezone(self.patient_zone)
        if release_at is not None and letter.anchor_field is None and \
                release_at >= planned + (letter.expires or self.p.letter_expiry):
            return  # released after it would have expired: it is never sent
        session = event.data.get("session")
        self.letters[letter_id] = PlannedLetter(letter_id, letter_name, letter.template, send_at, event.id, source,
                                                str(session) if session is not None else None)

    def fill_calendar(self, event: EventLike) -> None:
        """The nth dose of a calendar series fills slot n; the first dose lays out every slot."""
        visit = self.visit
        series = visit.stage.series if visit else None
        if visit is None or series is None or not series.calendar or series.step is None:
            return
        source = f"stage:{visit.stage.name}:series"
        if visit.completed == 1:
            for slot in calendar_slots(series.calendar, event.at, self.zone):
                task = self.create_task(series.step, event, source, anchor=slot.opens,
                                        key=f"{visit.stage.name}:{event.id}:slot:{slot.number}")
                task.earliest, task.due, task.created_at = slot.opens, slot.closes, event.at
            visit.first_dose = event.id
        slot_id = output_id("t", self.p.id, self.patient.ref, series.step,
                            f"{visit.stage.name}:{visit.first_dose}:slot:{visit.completed}")
        task = self.tasks.get(slot_id)
        if task is not None and task.is_open:
            task.done_at = event.at

    # --- safety semantics: real completions, holds, work anchored on the dose ---------------

    def names_real_task(self, event: EventLike) -> bool:
        """A completion must name a task this patient has: a typo or another patient's task id
        would otherwise leave urgent work open without anyone noticing."""
        target = event.data.get("task")
        if target in self.tasks or target in self.expected_task_ids():
            return True
        self.rejected.append(EngineRejection(
            event.line, event.id,
            f"{event.type} names task {target}, which this patient does not have at {event.at.isoformat()}: "
            "check the task id against the patient's plan",
        ))
        return False

    def expected_task_ids(self) -> set[str]:
        return set(self.expected_occurrences())

    def expected_occurrences(self) -> dict[str, tuple[str, str]]:
        """Tasks a plan shows that the fold has not created yet, id → (step, key): overdue
        escalations and the next occurrence of each recurring step (a clinician may tick
        either off)."""
        found: dict[str, tuple[str, str]] = {}
        for task in self.tasks.values():
            overdue = task.step.overdue
            if overdue is not None and overdue.task is not None:
                key = f"overdue:{task.id}"
                found[output_id("t", self.p.id, self.patient.ref, overdue.task, key)] = (overdue.task, key)
        visit = self.visit
        if visit is not None:
            for recurring in visit.stage.recurring:
                n = visit.occurrences.get(recurring.step, 0)
                key = f"{visit.stage.name}:{visit.trigger}:{n + 1}"
                found[output_id("t", self.p.id, self.patient.ref, recurring.step, key)] = (recurring.step, key)
        return found

    def aliased(self, event: EventLike) -> EventLike:
        """The event naming its task by today's id, when it names it by an id the task had
        under other rules (engine/aliases.py: a version-hashed id, a renamed step)."""
        target = event.data.get("task")
        if not isinstance(target, str) or target in self.tasks:
            return event
        expected = self.expected_occurrences()
        if target in expected:
            return event
        occurrences = [(t.id, t.step.name, t.key) for t in self.tasks.values()]
        occurrences += [(i, step, key) for i, (step, key) in expected.items()]

        if self.alias_index is None:
            def embedded(task_id: str) -> tuple[str, str] | None:
                task = self.tasks.get(task_id)
                return (task.step.name, task.key) if task is not None else None

            self.alias_index = AliasIndex(self.p.id, self.patient.ref, self.p.version, self.aliases, embedded)
        found = self.alias_index.resolve(target, occurrences)
        if not found:
            return event
        for other in found[1:]:  # a split step: the old occurrence's completion settles each successor
            task = self.tasks.get(other)
            if task is not None and task.is_open and event.at >= task.created_at:
                task.done_at = event.at
        return _Aliased(event.id, event.patient, event.type, event.at, {**event.data, "task": found[0]}, event.line)

    def breached_holds(self, event: EventLike) -> tuple[c.Hold, ...]:
        """Holds this event breaks: open when it happens (before it closes anything)."""
        open_holds = self.holds()
        return tuple(h for h in self.tables.breaches_by_type[event.type] if h.name in open_holds)

    def booking(self, event: EventLike) -> None:
        """A booking is never refused for a hold (the clinic's calendar is not ours); its tasks
        show the holds while they are open, and a hold open now gets its booking reaction."""
        holds = self.tables.bookings_by_type[event.type]
        self.bookings[event.id] = tuple(h.name for h in holds)
        open_holds = self.holds()
        for hold in holds:
            if hold.name in open_holds:
                self.act(hold.on_booking, event, f"hold:{hold.name}:booking")

    def dose_anchored(self, event: EventLike) -> None:
        """Recurring work with an early tolerance follows the dose actually given: a completion
        up to the tolerance before the next occurrence opens counts as that occurrence, and
        the next interval runs from the completion, not from the plan."""
        visit = self.visit
        if visit is None or self.status is PatientStatus.DISCHARGED:
            return
        source = f"stage:{visit.stage.name}:recurring"
        for recurring in visit.stage.recurring:
            step = self.p.steps[recurring.step]
            if recurring.early_tolerance is None or event.type not in step.done_by:
                continue
            every = self.interval(recurring)
            opened = any(t.is_open and t.step is step and t.source == source and t.created_at <= event.at
                         for t in self.tasks.values())
            if not opened:
                n = visit.occurrences.get(recurring.step, 0)
                anchor = self.next_anchor(visit, recurring, every)
                opens = cal.shift(anchor, step.window.opens, step.window.basis, self.zone)
                if event.at < opens - recurring.early_tolerance:
                    continue  # too early to count: an extra session, not this occurrence
                visit.occurrences[recurring.step] = n + 1
                task = self.create_task(recurring.step, _Marker(visit.trigger, anchor), source,
                                        key=f"{visit.stage.name}:{visit.trigger}:{n + 1}", anchor=anchor)
                task.created_at = event.at  # close_tasks completes it with this event
            visit.since[recurring.step] = event.at
            visit.upcoming.pop(recurring.step, None)
            visit.wake = None

    @staticmethod
    def next_anchor(visit: _Visit, recurring: c.Recurring, every: timedelta) -> datetime:
        """The next occurrence of work anchored on the actual completion: one interval (as
        chosen now) after the latest occurrence or the completion that counted for it."""
        since = visit.since.get(recurring.step)
        return visit.entered_at + recurring.starting if since is None else since + every

    # --- time-driven work -----------------------------------------------------------------

    def materialise_recurring(self, until: Moment, *, include_next: bool = False) -> None:
        """Recurring tasks whose windows have opened by `until` (and, at as_of, the next one ahead)."""
        visit = self.visit
        if visit is None or self.status is PatientStatus.DISCHARGED:
            return
        if not include_next and visit.wake is not None and until.before(visit.wake):
            return  # nothing opens before `until`: the loop below would change nothing
        for recurring in visit.stage.recurring:
            fixed = recurring.decision_of is None
            if fixed and not include_next:
                known = visit.upcoming.get(recurring.step)
                if known is not None and until.before(known[1]) and known[0] == visit.occurrences.get(recurring.step, 0):
                    continue
            step = self.p.steps[recurring.step]
            every = self.interval(recurring)
            while True:
                n = visit.occurrences.get(recurring.step, 0)
                anchor = visit.entered_at + recurring.starting + n * every
                if recurring.early_tolerance is not None:
                    anchor = self.next_anchor(visit, recurring, every)
                opens = cal.shift(anchor, step.window.opens, step.window.basis, self.zone)
                ahead = until.before(opens)
                if ahead and not include_next:
                    if fixed:
                        visit.upcoming[recurring.step] = (n, opens)
                    break
                visit.occurrences[recurring.step] = n + 1
                if recurring.early_tolerance is not None:
                    visit.since[recurring.step] = anchor
                task = self.create_task(recurring.step, _Marker(visit.trigger, anchor),
                                        f"stage:{visit.stage.name}:recurring",
                                        key=f"{visit.stage.name}:{visit.trigger}:{n + 1}", anchor=anchor)
                task.created_at = opens
                if visit.silent and not task.step.safety:
                    loops.supersede(task, opens)  # the silence's outreach stands for it
                if ahead:
                    break  # the plan gains the following occurrence once this one opens
        if not include_next and visit.stage.recurring and len(visit.upcoming) == len(visit.stage.recurring):
            visit.wake = min(opens for _, opens in visit.upcoming.values())


    def interval(self, recurring: c.Recurring) -> timedelta:
        if recurring.decision_of is None:
            return recurring.every
        chosen = [self.decisions[t.id] for t in self.tasks.values()
                  if t.step.name == recurring.decision_of and t.id in self.decisions]
        options = dict(recurring.choices)
        return options.get(chosen[-1], recurring.every) if chosen else recurring.every

    # --- the result -------------------------------------------------------------------------

    def result(self, as_of: AsOf) -> PatientPlan:
        flags = set(self.flags)
        tasks: list[PlannedTask] = []
        holds = self.holds()
        unmet: dict[str, tuple[datetime, bool]] = {}
        history = self.hold_history
        for task in self.tasks.values():
            status = _status(task, as_of)
            closed_reason = task.closed_reason if status == "cancelled" else None
            if history is not None and loops.released(task, history, as_of):
                status, closed_reason = "cancelled", loops.HOLD_RELEASED
            priority = task.priority
            window = task.step.window
            if window.unmet_flag and task.due is not None and task.cancelled_at is None:
                self.window_outcome(task, as_of, unmet)
            if task.step.flag_while_open and status in _OPEN:
                flags.add(task.step.flag_while_open)
            overdue = task.step.overdue
            if overdue is not None and status == "overdue" and task.due is not None and as_of.after(task.due + overdue.after):
                if overdue.flag:
                    flags.add(overdue.flag)
                if overdue.priority and _PRIORITY_RANK[overdue.priority] > _PRIORITY_RANK[priority]:
                    priority = overdue.priority
            tasks.append(PlannedTask(
                id=task.id, step=task.step.name, title=task.step.title, role=task.step.role, priority=str(priority),
                earliest=task.earliest.astimezone(self.zone),
                due=task.due.astimezone(self.zone) if task.due else None,
                status=status, trigger=task.trigger, out_of_window=task.out_of_window, source=task.source,
                completed_at=task.done_at.astimezone(self.zone) if task.done_at else None,
                reason=task.reason, reason_at=task.reason_at.astimezone(self.zone) if task.reason_at else None,
                held=self.held(task, status, holds), closed_reason=closed_reason,
            ))
        flags.update(flag for flag, (_, missed) in unmet.items() if missed)
        escalations = self.escalations(as_of, tasks)
        tasks.extend(escalations)
        tasks.sort(key=lambda t: (t.due or t.earliest, t.earliest, t.step, t.id))
        letters = settle_letters(self.p, self.letters.values(), self.sessions, as_of, self.discharged_at,
                                 frozenset(self.withdrawn_letters))
        tasks, _ = escalation.settle(self.p, tasks, self.acks, self.closed_at, as_of)
        sessions = sorted(
            (PlannedSession(s.id, s.status, s.start.astimezone(self.zone) if s.start else None,
                            s.completed_at.astimezone(self.zone) if s.completed_at else None)
             for s in self.sessions.values()),
            key=lambda s: (s.start or s.completed_at or datetime.min.replace(tzinfo=UTC), s.id),
        )
        return PatientPlan(
            patient=self.patient.ref, stage=self.visit.stage.name if self.visit else self.p.start,
            status=str(self.status), flags=tuple(sorted(flags)), holds=tuple(sorted(holds)),
            tasks=tuple(tasks), letters=tuple(letters), sessions=tuple(sessions), rejected=tuple(self.rejected),
            fired=frozenset(self.fired), wake=as_of.wake,
        )

    def closed_at(self, task_id: str) -> datetime | None:
        """When a task was done or withdrawn (a superseded one: when its window passed)."""
        task = self.tasks.get(task_id)
        return None if task is None else task.done_at or task.cancelled_at or task.superseded_at

    @staticmethod
    def window_outcome(task: _Task, as_of: AsOf, latest: dict[str, tuple[datetime, bool]]) -> None:
        """The unmet-window flag describes the latest window that has been settled (done, or
        passed undone): a later window met clears it, a later one missed raises it."""
        assert task.due is not None and task.step.window.unmet_flag is not None
        if task.done_at is not None:
            missed = task.done_at > task.due
        elif as_of.after(task.due):
            missed = True
        else:
            return  # still open inside its window: says nothing yet
        flag = task.step.window.unmet_flag
        known = latest.get(flag)
        if known is None or (task.due, missed) > known:
            latest[flag] = (task.due, missed)

    def held(self, task: _Task, status: str, holds: set[str]) -> tuple[str, ...]:
        """Holds open now that stop what this task's booking was for."""
        booked = self.bookings.get(task.trigger)
        if not booked or status not in _OPEN:
            return ()
        return tuple(sorted(h for h in booked if h in holds))

    def escalations(self, as_of: AsOf, planned: list[PlannedTask]) -> list[PlannedTask]:
        """Overdue escalation steps, created when a task passes due + `after` undone."""
        out = []
        for task in self.tasks.values():
            overdue = task.step.overdue
            if overdue is None or overdue.task is None or task.due is None or not task.is_open:
                continue
            at = task.due + overdue.after
            if as_of.at_or_before(at):
                continue
            marker = _Marker(task.trigger, at)
            step = self.p.steps[overdue.task]
            key = f"overdue:{task.id}"
            task_id = output_id("t", self.p.id, self.patient.ref, step.name, key)
            due = cal.resolve_due(self.p.clinic, step.window.due, at, step.window.basis) if step.window.due else None
            escalation = _Task(task_id, step, key, marker.id, at, at, due, step.priority, f"step:{task.step.name}:overdue")
            out.append(PlannedTask(
                id=task_id, step=step.name, title=step.title, role=step.role, priority=str(step.priority),
                earliest=at.astimezone(self.zone), due=due.astimezone(self.zone) if due else None,
                status=_status(escalation, as_of), trigger=task.trigger, out_of_window=False,
                source=escalation.source,
                reason=task.reason, reason_at=task.reason_at.astimezone(self.zone) if task.reason_at else None,
            ))
        return out


def _series(fold: _Fold, event: EventLike) -> dict[str, object]:
    visit = fold.visit
    series = visit.stage.series if visit else None
    return {
        "completed": visit.completed if visit else 0,
        "missed": visit.missed if visit else 0,
        "scheduled": visit.scheduled if visit else 0,
        "complete": bool(series and visit and visit.completed >= series.sessions),
    }


# The condition context, one builder per name (the names model/context.py declares).
_ENTRIES = {
    "event": lambda f, e: {"id": e.id, "type": e.type, "at": e.at, "data": e.data},
    "params": lambda f, e: f.p.parameters,
    "flags": lambda f, e: {name: name in f.flags for name in f.p.flags},
    "holds": lambda f, e: sorted(f.holds()),
    "stage": lambda f, e: f.visit.stage.name if f.visit else f.p.start,
    "status": lambda f, e: str(f.status),
    "phq9": lambda f, e: f.phq9,
    "series": _series,
    "sessions": lambda f, e: {"completed": f.completed_total, "missed": f.missed_total,
                              "consecutive_missed": f.consecutive_missed,
                              "consecutive_attended": f.consecutive_attended},
    "screening": lambda f, e: f.screening,
    "facts": lambda f, e: {name: name in f.facts for name in f.p.facts},
    "task": lambda f, e: {"step": _named_step(f, e)},
}


def _named_step(fold: _Fold, event: EventLike) -> str:
    task = fold.tasks.get(event.data.get("task")) if event.type in _COMPLETIONS else None  # type: ignore[arg-type]
    return task.step.name if task is not None else ""


class _Context(dict):
    """The context of one condition evaluation, each entry built when first read.

    A condition reads one or two names; building all ten (sorting holds, a dict of every
    flag) cost more than evaluating it. Entries reflect the fold's state at the time of
    the evaluation, which does not change while a condition is evaluated.
    """

    __slots__ = ("fold", "event")

    def __init__(self, fold: _Fold, event: EventLike) -> None:
        super().__init__()
        self.fold, self.event = fold, event

    def __missing__(self, key: str) -> object:
        value = self[key] = _ENTRIES[key](self.fold, self.event)
        return value

    def materialise(self) -> dict[str, object]:
        return {key: self[key] for key in _ENTRIES}


@dataclass(frozen=True)
class _Marker:
    """A point in time that acts as a trigger for time-driven work (no event behind it)."""

    id: str
    at: datetime
    type: str = "recurring"
    data: Mapping[str, object] = field(default_factory=dict)
    line: int = 0


@dataclass(frozen=True)
class _Aliased:
    """An event whose task reference was resolved to today's id (see `_Fold.aliased`)."""

    id: str
    patient: str
    type: str
    at: datetime
    data: Mapping[str, object]
    line: int


def _key(event: EventLike, field_name: str) -> str:
    return f"{field_name}:{event.data.get(field_name)}"


def _status(task: _Task, as_of: Moment) -> str:
    if task.cancelled_at is not None:
        return "cancelled"
    if task.superseded_at is not None and task.done_at is None and as_of.after(task.superseded_at):
        return "cancelled"
    if task.done_at is not None:
        return "done"
    if task.due is not None and as_of.after(task.due):
        return "overdue"
    return "open"


def _hours(delta: timedelta) -> str:
    hours = delta.total_seconds() / 3600
    return f"{hours:g} h"


def _in_time_order(event: EventLike) -> tuple[datetime, str]:
    return event.at.astimezone(UTC), event.id


def plan(compiled: c.CompiledPathway, patient: PatientLike, events: Iterable[EventLike],
         as_of: datetime, *, aliases: IdAliases | None = None) -> PatientPlan:
    """The patient's plan as of `as_of`, from the full event history. `aliases`: what
    else a task id named by an event may have been (other versions' ids, renamed steps);
    ids hashed with the version planned under are always recognised."""
    now = AsOf(as_of)  # every comparison with the as-of goes through it: it knows the wake
    # An event dated after the as-of is not known yet: the plan changes once it is.
    known = sorted((e for e in events if now.at_or_after(e.at)), key=_in_time_order)
    fold = _Fold(compiled, patient, aliases)
    fold.run(known, now)
    return fold.result(now)
