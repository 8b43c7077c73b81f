"""Closing the loops: the safety semantics of a status, a gate, a refusal, an episode and a silence.

Each function reads and updates one fold (engine/fold_state.py) at one event or instant;
the planner calls them at fixed points, so these rules stay in one place:

- a status a hold names (`while_status`) keeps the hold in force as an open step does, and
  withdraws the routine work the hold names (`withdraws`) when it begins;
- a step that `gates` a hold makes a breaching event for its own occurrence (the dose of
  its session) a breach while its task is open, whatever else holds;
- a `task_completed` on a step it cannot close is refused with the decisions the step takes;
- letters withheld while a status lasts are released when it ends (not lost);
- `enrolled` after discharge opens a new episode from the start stage;
- a stage's `silence` raises one outreach that supersedes the recurring work left overdue;
- a step that stands `while_held` reads the hold's history at its due (`HoldHistory`).
"""

from __future__ import annotations

from bisect import bisect_right
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from carepath.compile import compiled as c
from carepath.engine.clock import Moment
from carepath.engine.ids import output_id
from carepath.engine.result import EngineRejection
from carepath.engine.work_items import EventLike, Marker, Task
from carepath.model.pathway import PatientStatus

if TYPE_CHECKING:
    from carepath.engine.event_application import EventApplication
    from carepath.engine.fold_state import FoldState
    from carepath.engine.work import Work

SUPERSEDED_BY_SILENCE = "superseded by the lost-to-follow-up outreach"
HOLD_RELEASED = "the hold was released before it fell due"


# --- a status that holds --------------------------------------------------------------------


def status_changed(fold: Work, before: PatientStatus, event: EventLike) -> None:
    """The hold's status withdraws its routine work; leaving a withholding status releases
    the letters it withheld."""
    withdrawn = fold.tables.withdrawn_while.get(fold.status)
    if withdrawn and fold.status is not before:
        for task in fold.tasks.values():
            if task.is_open and task.step.name in withdrawn and not task.step.safety:
                task.cancelled_at, task.closed_reason = event.at, f"withdrawn: the patient is {fold.status}"
    if fold.status is not before:
        if fold.withheld or fold.paused_letters:
            release_letters(fold, event.at)
        pause_letters(fold, event.at)


def pause_letters(fold: FoldState, at: datetime) -> None:
    """Letters not yet sent that the new status withholds (session instructions to a patient
    just blocked) are withdrawn while it lasts, and come back if it ends (`release_letters`)."""
    for letter in fold.letters.values():
        if letter.id in fold.withdrawn_letters or letter.send_at <= at:
            continue
        if fold.status in fold.p.letters[letter.letter].withheld_while:
            fold.withdrawn_letters.add(letter.id)
            fold.paused_letters.add(letter.id)


def withdrawn_at_birth(fold: FoldState, task: Task) -> None:
    """Work the current status withdraws comes withdrawn (the occurrence is counted, not done)."""
    withdrawn = fold.tables.withdrawn_while.get(fold.status)
    if withdrawn and task.step.name in withdrawn and not task.step.safety and task.is_open:
        task.cancelled_at, task.closed_reason = task.created_at, f"withdrawn: the patient is {fold.status}"


# --- the pre-dose gate ----------------------------------------------------------------------


def gated_breaches(fold: FoldState, event: EventLike, already: tuple[c.Hold, ...]) -> tuple[c.Hold, ...]:
    """Holds breached because this event's own gate (e.g. its session's pre-dose check) is
    still open, added to those breached because a hold is in force."""
    names = {h.name for h in already}
    extra = []
    for step in fold.tables.gates_by_type.get(event.type, ()):
        if step.gates in names or step.key_field is None:
            continue
        key = f"{step.key_field}:{event.data.get(step.key_field)}"
        task = fold.tasks.get(output_id("t", fold.p.id, fold.patient.ref, step.name, key))
        if task is not None and task.is_open and task.created_at <= event.at:
            names.add(step.gates)
            extra.append(fold.p.holds[step.gates])
    return (*already, *extra) if extra else already


# --- completions a step cannot take ---------------------------------------------------------


def refuses_completion(fold: FoldState, event: EventLike) -> bool:
    """A task_completed on a step that only a decision (or the work itself) closes is refused
    with its line and the way the step is closed: the clinician must not believe it closed."""
    target = event.data.get("task")
    task = fold.tasks.get(target) if isinstance(target, str) else None
    if task is None or event.type not in ("task_completed",) or "task_completed" in task.step.done_by:
        return False
    step = task.step
    if "decision_recorded" in step.done_by:
        how = ("only a decision_recorded closes it, with one of the decisions " + ", ".join(step.decisions)
               if step.decisions else "only a decision_recorded closes it")
    else:
        how = "it is closed by " + ", ".join(sorted(step.done_by))
    fold.rejected.append(EngineRejection(
        event.line, event.id, f"task_completed cannot close task {task.id} ({step.name}): {how}"))
    return True


# --- withheld letters -----------------------------------------------------------------------


def release_letters(fold: Work, at: datetime) -> None:
    """Letters withheld while a status lasted go out now that it has ended: at their own send
    time if it is still ahead, at once otherwise (the letter lifecycle expires the stale)."""
    for letter_id in sorted(fold.paused_letters):
        if fold.status not in fold.p.letters[fold.letters[letter_id].letter].withheld_while:
            fold.paused_letters.discard(letter_id)
            fold.withdrawn_letters.discard(letter_id)
    keep = []
    for name, event, source in fold.withheld:
        if fold.status in fold.p.letters[name].withheld_while:
            keep.append((name, event, source))
            continue
        fold.create_letter(name, event, source, release_at=at)
    fold.withheld = keep


# --- episodes -------------------------------------------------------------------------------


def new_episode(fold: EventApplication, event: EventLike) -> None:
    """`enrolled` after discharge: the patient returns. Status, stage, flags, facts and runs of
    matches start again from the start stage; the old episode's tasks and letters stay as they
    were (open safety work stays open; letters its discharge withdrew stay withdrawn)."""
    assert fold.discharged_at is not None
    fold.withdrawn_letters.update(lid for lid, letter in fold.letters.items() if letter.send_at > fold.discharged_at)
    fold.discharged_at = None
    fold.flags.clear()
    fold.facts.clear()
    fold.streaks.clear()
    fold.withheld = []
    fold.paused_letters.clear()
    fold.consecutive_missed = fold.consecutive_attended = 0
    fold.screening = {"recorded": False, "trd_trials": 0, "contraindications": [], "cautions": []}
    fold.enter(fold.p.start, event)
    fold.status = PatientStatus.ACTIVE


# --- lost to follow-up ----------------------------------------------------------------------


def contact(fold: FoldState, event: EventLike) -> None:
    """An event that breaks the stage's silence: the patient is in care again, so work planned
    from here on falls due normally."""
    visit = fold.visit
    silence = visit.stage.silence if visit is not None else None
    if silence is None or event.type not in silence.broken_by:
        return
    visit.contact = (event.at, event.id)
    if visit.silent:
        visit.silent = False
        source = f"stage:{visit.stage.name}:recurring"
        for task in fold.tasks.values():
            if task.source == source and task.is_open and task.superseded_at is not None \
                    and task.superseded_at >= event.at:
                task.superseded_at = None


def silence_check(fold: Work, until: Moment) -> None:
    """One outreach per silence once `after` has passed with no breaking event; the stage's
    recurring work already overdue then is superseded by it, and work falling due while the
    silence lasts is superseded at its due instead of piling up as overdue rows."""
    visit = fold.visit
    silence = visit.stage.silence if visit is not None else None
    if silence is None or fold.status is PatientStatus.DISCHARGED:
        return
    since, since_id = visit.contact or (visit.entered_at, visit.trigger)
    at = (since.astimezone(UTC) + silence.after).astimezone(fold.zone)
    if until.before(at):
        return
    key = f"silence:{visit.stage.name}:{since_id}"
    if key in visit.silences:
        return
    visit.silences.add(key)
    task = fold.create_task(silence.task, Marker(since_id, at), f"stage:{visit.stage.name}:silence", key=key,
                            anchor=at)
    task.created_at = at
    visit.silent = True
    source = f"stage:{visit.stage.name}:recurring"
    for other in fold.tasks.values():
        if other.source == source and other.is_open and not other.step.safety:
            supersede(other, at)


def supersede(task: Task, at: datetime) -> None:
    """Overdue at `at`: superseded then; otherwise superseded when it falls due."""
    if task.due is None:
        return
    task.superseded_at = at if task.due < at else task.due
    task.closed_reason = SUPERSEDED_BY_SILENCE


# --- steps that stand only while a hold is in force -----------------------------------------


class HoldHistory:
    """When each set of holds came into force: (instant, holds) in time order."""

    __slots__ = ("times", "states")

    def __init__(self) -> None:
        self.times: list[datetime] = []
        self.states: list[frozenset[str]] = []

    def note(self, at: datetime, holds: set[str]) -> None:
        state = frozenset(holds)
        if (self.states[-1] if self.states else frozenset()) != state:
            self.times.append(at.astimezone(UTC))
            self.states.append(state)

    def at(self, when: datetime) -> frozenset[str]:
        i = bisect_right(self.times, when.astimezone(UTC))
        return self.states[i - 1] if i else frozenset()

    def now(self, as_of: Moment) -> frozenset[str]:
        """The holds in force at the as-of (the latest change is usually the answer)."""
        for i in range(len(self.times) - 1, -1, -1):
            if as_of.at_or_after(self.times[i]):
                return self.states[i]
        return frozenset()


def released(task: Task, history: HoldHistory, as_of: Moment) -> bool:
    """A task standing while its hold is in force, whose hold was released by its due (or by
    now, before its due): it has closed itself; a hold that returns in time reopens it."""
    hold = task.step.while_held
    if hold is None or not task.is_open:
        return False
    if task.due is not None and not as_of.before(task.due):
        return hold not in history.at(task.due)
    return hold not in history.now(as_of)
