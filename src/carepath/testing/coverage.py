"""Which parts of a pathway no scenario exercised: steps, letters, rules, transitions, the
reactions of holds (a dose or a booking while the hold is open) and the escalation tiers
(each reached by some unacknowledged or overdue work)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from carepath.compile.compiled import CompiledPathway
from carepath.loading import InvalidPathway, load_pathway
from carepath.testing.scenarios import Outcome


@dataclass
class Coverage:
    pathway: str
    unexercised: dict[str, list[str]] = field(default_factory=dict)
    total: int = 0
    exercised: int = 0

    @property
    def percent(self) -> float:
        return 100.0 * self.exercised / self.total if self.total else 100.0


def coverage(compiled: CompiledPathway, outcomes: list[Outcome]) -> Coverage:
    steps, letters, fired, tiers = set(), set(), set(), set()
    for outcome in outcomes:
        for result in outcome.plans:
            steps.update(t.step for t in result.tasks)
            tiers.update(t.escalation.tier for t in result.tasks if t.escalation is not None)
            letters.update(letter.letter for letter in result.letters)
            fired.update(result.fired)
    wanted = {
        "steps": sorted(compiled.steps),
        "letters": sorted(compiled.letters),
        "rules": sorted(r.id for r in compiled.rules),
        "transitions": sorted(
            f"{name} -> {t.to} (#{k + 1})" for name, stage in compiled.stages.items()
            for k, t in enumerate(stage.transitions)
        ),
        "hold reactions": sorted(
            f"{name} {kind}" for name, hold in compiled.holds.items()
            for kind, actions in (("breach", hold.on_breach), ("booking", hold.on_booking)) if actions
        ),
        "escalation tiers": list(compiled.escalation.tiers) if compiled.escalation is not None else [],
    }
    seen = {
        "steps": steps,
        "letters": letters,
        "rules": {f.removeprefix("rule:") for f in fired if f.startswith("rule:")},
        "transitions": {
            f"{name} -> {t.to} (#{k + 1})" for name, stage in compiled.stages.items()
            for k, t in enumerate(stage.transitions) if f"stage:{name}:transition:{k}" in fired
        },
        "hold reactions": {f.removeprefix("hold:").replace(":", " ") for f in fired if f.startswith("hold:")},
        "escalation tiers": tiers,
    }
    result = Coverage(compiled.id)
    for kind, names in wanted.items():
        missing = [n for n in names if n not in seen[kind]]
        if missing:
            result.unexercised[kind] = missing
        result.total += len(names)
        result.exercised += len(names) - len(missing)
    return result


def coverage_by_pathway(outcomes: Sequence[Outcome]) -> Iterator[tuple[CompiledPathway, int, Coverage]]:
    """Per pathway the scenarios ran against (in path order): the pathway, how many
    scenarios, and what they left unexercised. A pathway that does not validate is left
    out: its scenarios already failed saying why."""
    by_pathway: dict[Path, list[Outcome]] = {}
    for outcome in outcomes:
        if outcome.pathway_file is not None:
            by_pathway.setdefault(outcome.pathway_file, []).append(outcome)
    for pathway_file, group in sorted(by_pathway.items()):
        try:
            compiled = load_pathway(pathway_file)
        except InvalidPathway:
            continue
        yield compiled, len(group), coverage(compiled, group)


def scenario_files(paths: list[str]) -> list[Path]:
    found: list[Path] = []
    for raw in paths:
        p = Path(raw)
        found.extend(sorted(p.rglob("*.scenario.yaml")) if p.is_dir() else [p])
    return found
