"""Time-driven work: recurring occurrences that open as time passes, and work anchored on the dose.

`materialise_recurring(until)` compares through a `Moment` (an event's instant while
the fold runs) or the plan's `AsOf` (at the end, when the next occurrence ahead is
planned too), so the wake knows when the next one opens.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from carepath.compile import compiled as c
from carepath.engine import calendar as cal
from carepath.engine import loops
from carepath.engine.clock import Moment
from carepath.engine.work import Work
from carepath.engine.work_items import (
    EventLike,
    Marker,
    Visit,
)
from carepath.model.pathway import PatientStatus


class TimeDriven(Work):
    """Recurring work: occurrences opened by an instant, and intervals run from the actual dose."""

    def materialise_recurring(self, until: Moment, *, include_next: bool = False) -> None:
        """Recurring tasks whose windows have opened by `until` (and, at as_of, the next one ahead)."""
        visit = self.visit
        if visit is None or self.status is PatientStatus.DISCHARGED:
            return
        if not include_next and visit.next_opens is not None and until.before(visit.next_opens):
            return  # nothing opens before `until`: the loop below would change nothing
        for recurring in visit.stage.recurring:
            fixed = recurring.decision_of is None
            if fixed and not include_next:
                known = visit.upcoming.get(recurring.step)
                if known is not None and until.before(known[1]) \
                        and known[0] == visit.occurrences.get(recurring.step, 0):
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
                task = self.create_task(recurring.step, Marker(visit.trigger, anchor),
                                        f"stage:{visit.stage.name}:recurring",
                                        key=f"{visit.stage.name}:{visit.trigger}:{n + 1}", anchor=anchor)
                task.created_at = opens
                if visit.silent and not task.step.safety:
                    loops.supersede(task, opens)  # the silence's outreach stands for it
                if ahead:
                    break  # the plan gains the following occurrence once this one opens
        if not include_next and visit.stage.recurring and len(visit.upcoming) == len(visit.stage.recurring):
            visit.next_opens = min(opens for _, opens in visit.upcoming.values())

    def interval(self, recurring: c.Recurring) -> timedelta:
        if recurring.decision_of is None:
            return recurring.every
        chosen = [self.decisions[t.id] for t in self.tasks.values()
                  if t.step.name == recurring.decision_of and t.id in self.decisions]
        options = dict(recurring.choices)
        return options.get(chosen[-1], recurring.every) if chosen else recurring.every

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
                task = self.create_task(recurring.step, Marker(visit.trigger, anchor), source,
                                        key=f"{visit.stage.name}:{visit.trigger}:{n + 1}", anchor=anchor)
                task.created_at = event.at  # close_tasks completes it with this event
            visit.since[recurring.step] = event.at
            visit.upcoming.pop(recurring.step, None)
            visit.next_opens = None

    @staticmethod
    def next_anchor(visit: Visit, recurring: c.Recurring, every: timedelta) -> datetime:
        """The next occurrence of work anchored on the actual completion: one interval (as
        chosen now) after the latest occurrence or the completion that counted for it."""
        since = visit.since.get(recurring.step)
        return visit.entered_at + recurring.starting if since is None else since + every
