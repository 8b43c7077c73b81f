"""What the fold keeps and folds: tasks, sessions, stays in a stage, and the triggers of work.

`Task`, `Session` and `Visit` are the fold's mutable records (engine/fold_state.py);
`Marker` stands for an instant that triggers time-driven work (no event behind it);
`Aliased` is an event whose task reference was resolved to today's id. `status_at` is a
task's status at the as-of, compared through the as-of (engine/clock.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from carepath.compile import compiled as c
from carepath.engine.clock import Moment
from carepath.model.pathway import Priority

# Events that name one task (an acknowledgement names one too, and is refused the same way).
COMPLETIONS = frozenset({"task_completed", "decision_recorded", "task_acknowledged"})
OPEN = frozenset({"open", "overdue"})


class EventLike(Protocol):
    """An event as the engine reads it (records.Event, or a Marker or Aliased of the fold's)."""

    @property
    def id(self) -> str: ...
    @property
    def patient(self) -> str: ...
    @property
    def type(self) -> str: ...
    @property
    def at(self) -> datetime: ...
    @property
    def data(self) -> Mapping[str, object]: ...
    @property
    def line(self) -> int: ...


class PatientLike(Protocol):
    @property
    def ref(self) -> str: ...
    @property
    def timezone(self) -> str: ...


@dataclass
class Task:
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
class Session:
    id: str
    status: str = "scheduled"
    start: datetime | None = None
    completed_at: datetime | None = None
    scheduled_by: str | None = None
    bookings: dict[str, datetime] = field(default_factory=dict)  # booking event id → the start it booked


@dataclass
class Visit:
    """One stay in a stage: when it began and what recurring work it has produced."""

    stage: c.Stage
    entered_at: datetime
    trigger: str
    occurrences: dict[str, int] = field(default_factory=dict)  # recurring step → occurrences produced
    first_dose: str | None = None  # the event that anchored the stage's calendar series
    # recurring step → (occurrences, when the next one opens), for fixed intervals only:
    # most events come long before the next occurrence, and this answers in one comparison.
    upcoming: dict[str, tuple[int, datetime]] = field(default_factory=dict)
    next_opens: datetime | None = None  # the earliest of those, when every recurring step has a fixed interval
    completed: int = 0
    missed: int = 0
    scheduled: int = 0
    # recurring step → what its next interval runs from (the latest occurrence's anchor, or
    # the completion that counted for it), for work anchored on the actual completion
    since: dict[str, datetime] = field(default_factory=dict)
    contact: tuple[datetime, str] | None = None  # the latest event that broke the stage's silence
    silent: bool = False                         # a silence's outreach is raised and not yet broken
    silences: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class Marker:
    """A point in time that acts as a trigger for time-driven work (no event behind it)."""

    id: str
    at: datetime
    type: str = "recurring"
    data: Mapping[str, object] = field(default_factory=dict)
    line: int = 0
    patient: str = ""  # the fold's own patient: a marker is never routed


@dataclass(frozen=True)
class Aliased:
    """An event whose task reference was resolved to today's id (see `Fold.aliased`)."""

    id: str
    patient: str
    type: str
    at: datetime
    data: Mapping[str, object]
    line: int


def key_of(event: EventLike, field_name: str) -> str:
    return f"{field_name}:{event.data.get(field_name)}"


def status_at(task: Task, as_of: Moment) -> str:
    if task.cancelled_at is not None:
        return "cancelled"
    if task.superseded_at is not None and task.done_at is None and as_of.after(task.superseded_at):
        return "cancelled"
    if task.done_at is not None:
        return "done"
    if task.due is not None and as_of.after(task.due):
        return "overdue"
    return "open"


def in_time_order(event: EventLike) -> tuple[datetime, str]:
    return event.at.astimezone(UTC), event.id
