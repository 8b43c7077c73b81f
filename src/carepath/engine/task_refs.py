"""Which task an event names: one this patient has (or a plan shows), by today's id or an old one."""

from __future__ import annotations

from carepath.engine.aliases import AliasIndex
from carepath.engine.fold_state import FoldState
from carepath.engine.ids import output_id
from carepath.engine.result import EngineRejection
from carepath.engine.work_items import (
    Aliased,
    EventLike,
)


class TaskReferences(FoldState):
    """A completion must name a real task; an old id (engine/aliases.py) is read as today's."""

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
        return Aliased(event.id, event.patient, event.type, event.at, {**event.data, "task": found[0]}, event.line)
