"""Task ids an events file may name that are not the ids the planner gives today.

A clinician's `task_completed` / `decision_recorded` / `task_acknowledged` names the id the
worklist showed. Two kinds of such ids outlive the rules that minted them:

- ids from before identity dropped the version (`ids.legacy_output_id`), which hashed the
  pathway version the patient was planned under then;
- ids of a step that a later version renamed or split (a migration file's `steps:` map,
  old step → new steps): the completion of the old step's occurrence closes the new
  step's occurrence with the same key.

Resolution is pure and lazy: it runs only for an id the planner does not know, and
compares it with the ids the patient's current tasks (and the tasks the plan expects)
would have had under those rules, each task hashed once per plan. No clock, no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from carepath.engine.ids import ID_PATTERN, legacy_output_id, output_id

# The events that name one task by id.
NAMES_TASK = frozenset({"task_completed", "decision_recorded", "task_acknowledged"})


@dataclass(frozen=True)
class IdAliases:
    """What else a task id may have been: `versions`, the pathway versions whose
    version-hashed ids are accepted (the version planned under is always accepted);
    `steps`, old step name → the step names that replaced it."""

    versions: tuple[str, ...] = ()
    steps: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def predecessors(self, step: str) -> tuple[str, ...]:
        """The step's own name first, then the old names that map to it."""
        return (step, *sorted(old for old, new in self.steps.items() if step in new and old != step))


class AliasIndex:
    """Every other id of one patient's tasks, built as tasks appear: each task is hashed
    once per accepted version and predecessor name, however many events name old ids."""

    def __init__(self, pathway: str, patient: str, version: str, aliases: IdAliases | None,
                 embedded: Callable[[str], tuple[str, str] | None]) -> None:
        self.pathway, self.patient = pathway, patient
        self.aliases = aliases or IdAliases()
        self.versions = tuple(dict.fromkeys((version, *self.aliases.versions)))
        self.embedded = embedded
        self.index: dict[str, list[str]] = {}
        self.seen: set[str] = set()
        self.legacy: dict[tuple[str, str], str] = {}  # (current id, version) → its version-hashed id

    def legacy_id(self, current: str, version: str, depth: int = 0) -> str:
        memo = (current, version)
        if memo not in self.legacy:
            inner = self.embedded(current)
            if inner is None or depth > 4:
                return current
            step, key = inner
            self.legacy[memo] = legacy_output_id(current[0], self.pathway, version, self.patient, step,
                                                 self.legacy_key(key, version, depth + 1))
        return self.legacy[memo]

    def legacy_key(self, key: str, version: str, depth: int = 0) -> str:
        """The key as it was written when the ids it embeds hashed the version."""
        if not ID_PATTERN.search(key):
            return key
        return ID_PATTERN.sub(lambda m: self.legacy_id(m.group(0), version, depth), key)

    def resolve(self, target: str, occurrences: Iterable[tuple[str, str, str]]) -> list[str]:
        """The current ids (of `occurrences`: (id, step, key)) that `target` names, in order."""
        for current, step, key in occurrences:
            if current in self.seen:
                continue
            self.seen.add(current)
            prefix = current[0]
            for name in self.aliases.predecessors(step):
                found = {legacy_output_id(prefix, self.pathway, v, self.patient, name, self.legacy_key(key, v))
                         for v in self.versions}
                if name != step:
                    found.add(output_id(prefix, self.pathway, self.patient, name, key))
                for alias in found:
                    self.index.setdefault(alias, []).append(current)
        return list(dict.fromkeys(self.index.get(target, [])))
