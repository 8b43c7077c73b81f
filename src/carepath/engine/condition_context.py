"""What a condition may read (the names model/context.py declares), built from the fold's state."""

from __future__ import annotations

from typing import TYPE_CHECKING

from carepath.engine.work_items import COMPLETIONS, EventLike

if TYPE_CHECKING:
    from carepath.engine.fold_state import FoldState as Fold


def _series(fold: Fold, event: EventLike) -> dict[str, object]:
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


def _named_step(fold: Fold, event: EventLike) -> str:
    target = event.data.get("task") if event.type in COMPLETIONS else None
    task = fold.tasks.get(target) if isinstance(target, str) else None
    return task.step.name if task is not None else ""


class Context(dict):
    """The context of one condition evaluation, each entry built when first read.

    A condition reads one or two names; building all ten (sorting holds, a dict of every
    flag) cost more than evaluating it. Entries reflect the fold's state at the time of
    the evaluation, which does not change while a condition is evaluated.
    """

    __slots__ = ("fold", "event")

    def __init__(self, fold: Fold, event: EventLike) -> None:
        super().__init__()
        self.fold, self.event = fold, event

    def __missing__(self, key: str) -> object:
        value = self[key] = _ENTRIES[key](self.fold, self.event)
        return value

    def materialise(self) -> dict[str, object]:
        return {key: self[key] for key in _ENTRIES}
