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

import re
from datetime import UTC, datetime

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


class UnknownSince(ValueError):
    """`--since` is neither a sweep stamp nor an ISO instant, or names no sweep this ledger recorded."""


class SinceOverWholeExport(ValueError):
    """`--since` aimed at a folder that holds a whole-cohort export, which it would leave half-replaced."""


# A sweep's stamp (see `stamp_of`): its as-of in UTC and the ledger's generation after it.
STAMP = re.compile(r"\d{8}T\d{6}Z-\d{6,}")


def sweep_as_of(ledger: Ledger, pathway: str) -> datetime | None:
    """The as-of of the pathway's last sweep in this ledger (what an export shows by default)."""
    state = ledger.snapshot_state(pathway, LAST_SWEEP)
    return datetime.fromisoformat(state) if state else None


def remember_sweep(ledger: Ledger, pathway: str, as_of: datetime, run: str) -> None:
    """The sweep's as-of (what an export shows by default), and the sweep itself under its
    stamp, so that `export --since` can name it (also a sweep that changed nothing)."""
    ledger.mark_snapshot(pathway, LAST_SWEEP, as_of.isoformat(), run)
    generation = ledger.generation(pathway)
    ledger.record_sweep(pathway, stamp_of(as_of, generation), _utc_key(as_of), generation, run)


def _utc_key(instant: datetime) -> str:
    """UTC at fixed width, so that text order is time order."""
    return f"{instant.astimezone(UTC):%Y-%m-%dT%H:%M:%S.%f}Z"


def since_generation(ledger: Ledger, pathway: str, since: str) -> int:
    """The ledger generation `--since` stands for: the one after the sweep of that stamp
    (`20260105T090000Z-000042`, a `changes/` folder's name), or after the last sweep whose
    as-of is at or before that ISO instant (with its UTC offset)."""
    if STAMP.fullmatch(since):
        generation = ledger.sweep_generation(pathway, since)
        if generation is None:
            raise UnknownSince(f"--since {since}: this ledger recorded no sweep of {pathway} with that stamp "
                               "(the stamps are the names of the sweeps' changes/ folders)")
        return generation
    try:
        instant = datetime.fromisoformat(since)
    except ValueError:
        instant = None
    if instant is None or instant.tzinfo is None:
        raise UnknownSince(f"--since {since!r} is neither a sweep stamp (like 20260105T090000Z-000042, a changes/ "
                           "folder's name) nor an ISO instant with its UTC offset (like 2026-01-05T09:00:00+00:00)")
    found = ledger.sweep_at(pathway, _utc_key(instant))
    if found is None:
        raise UnknownSince(f"--since {since}: this ledger recorded no sweep of {pathway} at or before that instant")
    return found[1]


def export_since(compiled: CompiledPathway, ledger: Ledger, out: Location, since: str) -> dict[str, int | None]:
    """`export --since`: `fhir/` parts and manifest holding only the resources created or
    changed after the sweep `since` names (a Bulk Data `$export?_since=`), whichever run
    changed them — a later sweep, an event-triggered re-plan, a letter's send. Read by the
    ledger's generation, so its cost grows with what changed. The whole-cohort documents'
    state is left alone: this is not the export that keeps them current."""
    generation = since_generation(ledger, compiled.id, since)
    as_of = sweep_as_of(ledger, compiled.id)
    if as_of is None:  # a recorded sweep always remembers its as-of
        raise NothingToExport(f"the ledger holds no sweep of {compiled.id}: run `carepath run` first")
    storage = storage_for(out)
    if storage.exists(TasksJsonl.name) or FhirParts(out, compiled, as_of).whole_export():
        raise SinceOverWholeExport(
            "--out holds a whole-cohort export (tasks.jsonl or fhir/manifest.json without _since): "
            "give --since its own folder")
    changed = ledger.changed_since(compiled.id, generation)
    ids = set().union(*changed.values()) if changed else set()
    sink = FhirParts(storage, compiled, as_of, only=ids.__contains__, since=since)
    with sink.feed() as feed:
        for group in ledger_groups(ledger.document_rows(compiled.id, FhirParts.kinds, patients=sorted(changed))):
            feed.add(group)
    return {sink.name: sink.written}


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
