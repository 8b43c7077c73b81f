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
would have had under those rules. No clock, no I/O.
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


def resolve(target: str, occurrences: Iterable[tuple[str, str, str]], pathway: str, patient: str, version: str,
            aliases: IdAliases | None, embedded: Callable[[str], tuple[str, str] | None]) -> list[str]:
    """The current ids (of `occurrences`: (id, step, key)) that `target` names, in order;
    [] when none. `embedded(id)` gives the (step, key) of a task whose id appears inside
    another's key, so a legacy key can be rebuilt with the legacy id it embedded."""
    aliases = aliases or IdAliases()
    versions = tuple(dict.fromkeys((version, *aliases.versions)))
    found: list[str] = []
    legacy_keys: dict[tuple[str, str], str] = {}

    def legacy_key(key: str, v: str, depth: int = 0) -> str:
        if depth > 4 or not ID_PATTERN.search(key):
            return key

        def swap(match) -> str:  # noqa: ANN001 - a regex match
            inner = embedded(match.group(0))
            if inner is None:
                return match.group(0)
            memo = (match.group(0), v)
            if memo not in legacy_keys:
                step, inner_key = inner
                legacy_keys[memo] = legacy_output_id(match.group(0)[0], pathway, v, patient, step,
                                                     legacy_key(inner_key, v, depth + 1))
            return legacy_keys[memo]

        return ID_PATTERN.sub(swap, key)

    for current, step, key in occurrences:
        prefix = current[0]
        for name in aliases.predecessors(step):
            if name != step and output_id(prefix, pathway, patient, name, key) == target:
                found.append(current)
                break
            if any(legacy_output_id(prefix, pathway, v, patient, name, legacy_key(key, v)) == target
                   for v in versions):
                found.append(current)
                break
    return found
