"""The whole-cohort documents, from the ledger, without re-planning; and a sweep's change feed.

A sweep keeps current only what people act on before the next sweep (the worklist, the
outbox, `rejected.jsonl`) and the change feed: `changes/<sweep-stamp>/` holds, as FHIR
Bulk Data NDJSON with a manifest, the resources that sweep created or changed — what a
Bulk Data `$export?_since=` would return. The whole-cohort documents cost time in
proportion to the cohort, so they are an export, on their own schedule (`carepath
export`, the export deployment, or `carepath run --export` after the sweep):
`tasks.jsonl`, `tasks.csv`, `letters.jsonl`, FHIR NDJSON in parts listed in
`fhir/manifest.json`, and `fhir/bundle.json` only when asked, refused above what a FHIR
server accepts in one transaction. An export reads the ledger only: the same ledger gives
the same bytes, whether its outputs came from incremental sweeps or a full re-plan.
"""

from __future__ import annotations

from datetime import datetime

from carepath.compile.compiled import CompiledPathway
from carepath.sinks.base import OutputKind
from carepath.sinks.documents import ledger_groups, write_stale
from carepath.sinks.fhir import FhirBundle
from carepath.sinks.fhir_ndjson import FhirParts
from carepath.sinks.ledger import Ledger
from carepath.sinks.outbox import LettersJsonl
from carepath.sinks.storage import Location, storage_for
from carepath.sinks.tabular import TasksCsv, TasksJsonl

# Resources a FHIR server takes in one transaction bundle: HAPI's and most vendors' default
# limits sit around here; larger cohorts are loaded from the NDJSON parts.
BUNDLE_MAX = 10_000
LAST_SWEEP = "last-sweep"  # the document-state row holding the as-of of the pathway's last sweep


class BundleTooLarge(ValueError):
    """`--bundle` asked for a cohort larger than a FHIR server takes in one transaction."""


class NothingToExport(LookupError):
    """The ledger holds no sweep of this pathway."""


def sweep_as_of(ledger: Ledger, pathway: str) -> datetime | None:
    """The as-of of the pathway's last sweep in this ledger (what an export shows by default)."""
    state = ledger.snapshot_state(pathway, LAST_SWEEP)
    return datetime.fromisoformat(state) if state else None


def remember_sweep(ledger: Ledger, pathway: str, as_of: datetime, run: str) -> None:
    ledger.mark_snapshot(pathway, LAST_SWEEP, as_of.isoformat(), run)


def export_documents(compiled: CompiledPathway, ledger: Ledger, out: Location, as_of: datetime | None = None, *,
                     bundle: bool = False, run: str = "export") -> dict[str, int | None]:
    """Write the export's documents that are stale, in one pass over the ledger; how many
    records each holds (None: it was current, and left untouched). A document is stale
    when the pathway's outputs or sends changed since it was written (the ledger's
    generation), or, for those that show it, the as-of; or when it is missing."""
    as_of = as_of or sweep_as_of(ledger, compiled.id)
    if as_of is None:
        raise NothingToExport(f"the ledger holds no sweep of {compiled.id}: run `carepath run` first")
    storage = storage_for(out)
    sinks: list = [TasksJsonl(storage), TasksCsv(storage, compiled), LettersJsonl(storage),
                   FhirParts(storage, compiled, as_of)]
    if bundle:
        resources = sum(ledger.counts(compiled.id).values())
        if resources > BUNDLE_MAX:
            raise BundleTooLarge(
                f"fhir/bundle.json would hold {resources:,} resources, more than the {BUNDLE_MAX:,} a FHIR server "
                "takes in one transaction: load the NDJSON parts listed in fhir/manifest.json instead "
                "(leave out --bundle)")
        sinks.append(FhirBundle(storage, compiled, as_of))
    return write_stale(ledger, compiled.id, compiled.version, sinks, as_of, run)


def stamp_of(as_of: datetime, generation: int) -> str:
    """A sweep's folder name: its as-of (UTC, sortable) and the ledger's generation after it,
    so two sweeps at one as-of that both changed something get two folders."""
    from datetime import UTC

    return f"{as_of.astimezone(UTC):%Y%m%dT%H%M%SZ}-{generation:06d}"


def write_changes(compiled: CompiledPathway, ledger: Ledger, out: Location, as_of: datetime,
                  run: str) -> str | None:
    """`changes/<sweep-stamp>/{CarePlan,Task,CommunicationRequest}.0001.ndjson` and its
    manifest: the resources this run created or changed (a patient's CarePlan, tasks and
    letters as their resources, only those whose output changed); None when it changed
    nothing. Its cost grows with what changed, not with the cohort."""
    changed = ledger.changed_in(compiled.id, run)
    if not changed:
        return None
    ids = set().union(*changed.values())
    folder = f"changes/{stamp_of(as_of, ledger.generation(compiled.id))}"
    sink = FhirParts(storage_for(out), compiled, as_of, folder=folder, only=ids.__contains__)
    kinds = frozenset({OutputKind.PATIENT, OutputKind.TASK, OutputKind.LETTER})
    with sink.feed() as feed:
        for group in ledger_groups(ledger.document_rows(compiled.id, kinds, patients=sorted(changed))):
            feed.add(group)
    return folder
