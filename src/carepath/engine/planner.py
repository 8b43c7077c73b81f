"""The planner: fold a patient's events, in time order, through the compiled pathway.

plan(compiled, patient, events, as_of) is a pure function (the plan is recomputed from history and time): no clock
reads, no I/O; the same inputs give the same plan, whatever order the events came in.
Only events at or before `as_of` are known; recurring work and overdue status are
evaluated at `as_of`, through one `AsOf` (engine/clock.py) that makes the plan's wake.

The fold is split by concern: its state (fold_state.py), creating work (work.py),
time-driven work (time_driven.py), the facts events record (recording.py), which task an
event names (task_refs.py), applying an event (event_application.py) and the plan at the
as-of (projection.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from carepath.compile import compiled as c
from carepath.engine import loops
from carepath.engine.aliases import IdAliases
from carepath.engine.clock import AsOf, Moment
from carepath.engine.event_application import EventApplication
from carepath.engine.projection import Projection
from carepath.engine.result import PatientPlan
from carepath.engine.work_items import EventLike, PatientLike, in_time_order

__all__ = ["EventLike", "Fold", "PatientLike", "in_time_order", "plan"]


class Fold(EventApplication, Projection):
    """One patient's events folded in time order; `result` reads the plan at the as-of."""

    def run(self, events: list[EventLike], as_of: Moment) -> None:
        for event in events:
            visit = self.visit
            # Most events come in stages without recurring work, or long before the next
            # occurrence opens: then materialising would change nothing (see `Visit.next_opens`).
            if visit is not None and visit.stage.recurring \
                    and (visit.next_opens is None or visit.next_opens <= event.at):
                self.materialise_recurring(Moment(event.at))
            if visit is not None and visit.stage.silence is not None:
                loops.silence_check(self, Moment(event.at))
            self.apply(event)
            if self.hold_history is not None:
                self.hold_history.note(event.at, self.holds())
        self.materialise_recurring(as_of, include_next=True)
        loops.silence_check(self, as_of)


def plan(compiled: c.CompiledPathway, patient: PatientLike, events: Iterable[EventLike],
         as_of: datetime, *, aliases: IdAliases | None = None) -> PatientPlan:
    """The patient's plan as of `as_of`, from the full event history. `aliases`: what
    else a task id named by an event may have been (other versions' ids, renamed steps);
    ids hashed with the version planned under are always recognised."""
    now = AsOf(as_of)  # every comparison with the as-of goes through it: it knows the wake
    # An event dated after the as-of is not known yet: the plan changes once it is.
    known = sorted((e for e in events if now.at_or_after(e.at)), key=in_time_order)
    fold = Fold(compiled, patient, aliases)
    fold.run(known, now)
    return fold.result(now)
