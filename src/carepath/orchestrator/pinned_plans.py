"""The `archive-pathway-version` step, and plans grouped by the pathway version each
patient is planned under (see carepath.orchestrator.pinning): an older version is
compiled from the source the ledger archived."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path

from carepath.compile.compiled import CompiledPathway
from carepath.engine.result import PatientPlan
from carepath.loading import InvalidInput, load_pathway_text
from carepath.orchestrator.pinning import VersionReused, decide
from carepath.orchestrator.spec import RunSpec
from carepath.records import Rejection
from carepath.sinks.ledger import Ledger
from carepath.sinks.worklist_rows import READY


def archive_pathway(spec: RunSpec, ledger: Ledger) -> None:
    """Archive this pathway version's source in the ledger (so patients pinned to it can
    be planned under it later); VersionReused when the version was run with other rules.
    A ledger new to the pathway has its worklist rows marked complete from the start."""
    compiled = spec.compiled
    known = ledger.remember_version(compiled.id, compiled.version, spec.digest, spec.source.decode())
    if known is not None:
        raise VersionReused(
            f"{spec.pathway}: {compiled.id} version {compiled.version} was run before with different rules "
            f"(archived digest {known}, this file {spec.digest}); patients pinned to "
            f"{compiled.version} must not change rules silently: give the changed pathway a new version "
            "('carepath validate' in the pathway's Git work tree reports this as CP701 before it is deployed)")
    if ledger.generation(compiled.id) == 0:
        # Nothing recorded for this pathway yet: every re-plan from here on stores its
        # patients' worklist rows, so they are complete without the rebuilding pass.
        ledger.mark_snapshot(compiled.id, READY, spec.digest, spec.run)


def archived(ledger: Ledger, pathway: Path, pathway_id: str, version: str) -> CompiledPathway | str:
    """A pinned older version compiled from the ledger's archive, or why it cannot be."""
    source = ledger.archived_source(pathway_id, version)
    if source is None:
        return "its source is not in the ledger's archive"
    try:
        return load_pathway_text(pathway, source.encode(), f"{pathway} (version {version} from the ledger)")
    except InvalidInput as exc:
        first = exc.diagnostics[0]
        return f"it is no longer valid: {first.code} {first.message}"


def pinned_groups(spec: RunSpec, plans: Sequence[PatientPlan], ledger: Ledger,
                  replan: Callable[[CompiledPathway, set[str]], list[PatientPlan]],
                  ) -> tuple[list[tuple[CompiledPathway, list[PatientPlan]]], list[Rejection]]:
    """The plans grouped by the version each patient is planned under (see carepath.orchestrator.pinning)."""
    compiled, run = spec.compiled, spec.run
    refs = [p.patient for p in plans]
    pins = ledger.pins(compiled.id, refs)
    olds = {v: archived(ledger, spec.pathway, compiled.id, v) for v in set(pins.values()) - {compiled.version}}
    decision = decide(compiled.id, compiled.version, refs, pins, spec.migration,
                      {v: (None if isinstance(c, CompiledPathway) else c) for v, c in olds.items()})
    groups = [(compiled, [p for p in plans if p.patient in decision.current])]
    kept: dict[str, set[str]] = defaultdict(set)
    for ref, version in decision.keep.items():
        kept[version].add(ref)
    for version, group in sorted(kept.items()):
        old = olds[version]
        assert isinstance(old, CompiledPathway)
        groups.append((old, replan(old, group)))
    ledger.pin(compiled.id, {ref: compiled.version for ref in decision.enrol | decision.migrate}, run)
    migration = spec.migration
    if decision.migrate and migration is not None:  # later sweeps recognise the ids of renamed steps
        ledger.record_migration(compiled.id, migration.from_version, migration.to_version,
                                {old: list(new) for old, new in migration.steps.items()}, migration.reason, run)
        previous = olds.get(migration.from_version)
        if isinstance(previous, CompiledPathway):  # what the move withdraws stays on record, with why
            ledger.record_withdrawals(compiled.id, withdrawn(
                previous, compiled, migration, replan(previous, decision.migrate),
                [p for p in plans if p.patient in decision.migrate]), run)
    refused = [Rejection(0, ref, why, "pins") for ref, why in sorted(decision.refuse.items())]
    return groups, refused


def withdrawn(old: CompiledPathway, new: CompiledPathway, migration, before: Sequence[PatientPlan],  # noqa: ANN001
              after: Sequence[PatientPlan]) -> list[dict[str, str]]:
    """The open work of `before` (under `old`) that `after` (under `new`) no longer has, as
    `carepath release preview` words it."""
    from carepath.orchestrator.release import compare

    now = {p.patient: p for p in after}
    return [{"task": t.task, "patient": p.patient, "step": t.step, "from_version": old.version,
             "to_version": new.version, "why": t.why}
            for p in before if p.patient in now
            for t in compare(p, now[p.patient], set(new.steps), migration, set()).tasks if t.change == "withdrawn"]
