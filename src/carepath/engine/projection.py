"""The plan at the as-of: statuses, flags, overdue escalations, letters and escalation tiers.

Every comparison with the as-of goes through the plan's `AsOf` (engine/clock.py), which
is how the plan knows its wake.
"""

from __future__ import annotations

from datetime import UTC, datetime

from carepath.engine import calendar as cal
from carepath.engine import escalation, loops
from carepath.engine.clock import AsOf
from carepath.engine.fold_state import FoldState
from carepath.engine.ids import output_id
from carepath.engine.letter_lifecycle import settle_letters
from carepath.engine.result import PatientPlan, PlannedSession, PlannedTask
from carepath.engine.work_items import (
    OPEN,
    Marker,
    Task,
    status_at,
)
from carepath.model.pathway import Priority

_PRIORITY_RANK = {Priority.ROUTINE: 0, Priority.HIGH: 1, Priority.URGENT: 2}


class Projection(FoldState):
    """The fold's state read at the as-of."""

    def result(self, as_of: AsOf) -> PatientPlan:
        flags = set(self.flags)
        tasks: list[PlannedTask] = []
        holds = self.holds()
        unmet: dict[str, tuple[datetime, bool]] = {}
        history = self.hold_history
        for task in self.tasks.values():
            status = status_at(task, as_of)
            closed_reason = task.closed_reason if status == "cancelled" else None
            if history is not None and loops.released(task, history, as_of):
                status, closed_reason = "cancelled", loops.HOLD_RELEASED
            priority = task.priority
            window = task.step.window
            if window.unmet_flag and task.due is not None and task.cancelled_at is None:
                self.window_outcome(task, as_of, unmet)
            if task.step.flag_while_open and status in OPEN:
                flags.add(task.step.flag_while_open)
            overdue = task.step.overdue
            if overdue is not None and status == "overdue" and task.due is not None \
                    and as_of.after(task.due + overdue.after):
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

    @staticmethod
    def window_outcome(task: Task, as_of: AsOf, latest: dict[str, tuple[datetime, bool]]) -> None:
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

    def held(self, task: Task, status: str, holds: set[str]) -> tuple[str, ...]:
        """Holds open now that stop what this task's booking was for."""
        booked = self.bookings.get(task.trigger)
        if not booked or status not in OPEN:
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
            marker = Marker(task.trigger, at)
            step = self.p.steps[overdue.task]
            key = f"overdue:{task.id}"
            task_id = output_id("t", self.p.id, self.patient.ref, step.name, key)
            due = cal.resolve_due(self.p.clinic, step.window.due, at, step.window.basis) if step.window.due else None
            escalation = Task(task_id, step, key, marker.id, at, at, due, step.priority,
                              f"step:{task.step.name}:overdue")
            out.append(PlannedTask(
                id=task_id, step=step.name, title=step.title, role=step.role, priority=str(step.priority),
                earliest=at.astimezone(self.zone), due=due.astimezone(self.zone) if due else None,
                status=status_at(escalation, as_of), trigger=task.trigger, out_of_window=False,
                source=escalation.source,
                reason=task.reason, reason_at=task.reason_at.astimezone(self.zone) if task.reason_at else None,
            ))
        return out
