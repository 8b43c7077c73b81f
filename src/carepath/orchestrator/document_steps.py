"""The steps that write documents from the ledger: the sweep's worklist
(`write-worklist`), its change feed (`write-changes`), the whole-cohort export
(`export-documents`), one patient's record after an event (`write-patient-record`), and
the clean-up of what a killed run left half-written."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from carepath.compile.compiled import CompiledPathway
from carepath.orchestrator.spec import RunSpec
from carepath.sinks.base import Sink
from carepath.sinks.ledger import Ledger

FAILED_SHOWN = 100  # letters not delivered that the worklist lists; the rest are counted


def document_sinks(compiled: CompiledPathway, out: Path | str, as_of: datetime,
                   failed_letters: tuple[int, list[tuple[str, str, str]]] = (0, [])) -> list[Sink]:
    """What a sweep keeps current besides the outbox and `rejected.jsonl`: the worklist.
    The whole-cohort documents are the export's (carepath.orchestrator.export)."""
    from carepath.sinks.worklist import Worklist

    return [Worklist(out, compiled, as_of, failed_letters=failed_letters)]


def write_documents(spec: RunSpec, ledger: Ledger) -> dict[str, int | None]:
    """Rewrite the sweep's documents (the worklist) when stale; None for those left as
    they were. The worklist is built from the stored per-patient rows
    (`carepath.sinks.worklist_rows`), so its cost follows what it lists, not the cohort;
    they are rebuilt in one pass over the ledger first when the rules changed since they
    were complete (or a ledger from before them)."""
    from carepath.sinks.documents import document_state, ledger_groups
    from carepath.sinks.storage import storage_for
    from carepath.sinks.worklist import Worklist
    from carepath.sinks.worklist_rows import READY, WorklistRows

    compiled, as_of = spec.compiled, spec.as_of
    out = storage_for(spec.documents)
    failed = ledger.failed_letters(compiled.id, limit=FAILED_SHOWN)
    failed_total = ledger.queued(compiled.id).get("failed", 0) if len(failed) == FAILED_SHOWN else len(failed)
    worklist = Worklist(out, compiled, as_of, failed_letters=(failed_total, failed))
    state = document_state(ledger.generation(compiled.id), compiled.version, as_of)
    if ledger.snapshot_state(compiled.id, worklist.name) == state and worklist.storage.exists(worklist.name):
        return {worklist.name: None}
    rows = WorklistRows(ledger.engine, compiled.id)
    if ledger.snapshot_state(compiled.id, READY) != spec.digest:
        rows.rebuild(compiled, ledger_groups(ledger.document_rows(compiled.id, worklist.kinds)))
        ledger.mark_snapshot(compiled.id, READY, spec.digest, spec.run)
    written = worklist.write_from(rows.read(compiled, as_of))
    ledger.mark_snapshot(compiled.id, worklist.name, state, spec.run)
    return {worklist.name: written}


def write_changes(spec: RunSpec, ledger: Ledger) -> str | None:
    """The sweep's change feed (see carepath.orchestrator.export.write_changes), and the
    sweep's as-of remembered for the exports."""
    from carepath.orchestrator.export import remember_sweep
    from carepath.orchestrator.export import write_changes as write
    from carepath.sinks.storage import storage_for

    folder = write(spec.compiled, ledger, storage_for(spec.documents), spec.as_of, spec.run)
    remember_sweep(ledger, spec.compiled.id, spec.as_of, spec.run)
    return folder


def export_step(spec: RunSpec, ledger: Ledger, bundle: bool = False) -> dict[str, int | None]:
    """`carepath run --export`: the export's documents after the sweep, same as-of."""
    from carepath.orchestrator.export import export_documents
    from carepath.sinks.storage import storage_for

    return export_documents(spec.compiled, ledger, storage_for(spec.documents), spec.as_of, bundle=bundle,
                            run=spec.run)


def write_patient_record(spec: RunSpec, ledger: Ledger, patient: str) -> str:
    """After an event-triggered re-plan: that patient's record (`patients/<xx>/<ref>.json`)
    instead of the cohort-wide documents, whose rewrite costs time in proportion to the
    cohort. The ledger's generation moved, so the next sweep rebuilds those documents."""
    from carepath.sinks.patient_record import patient_record
    from carepath.sinks.patient_record import write_patient_record as write
    from carepath.sinks.storage import storage_for

    compiled = spec.compiled
    outputs = ledger.patient_outputs(compiled.id, patient)
    record = patient_record(compiled.id, compiled.version, patient, outputs, spec.as_of)
    return write(storage_for(spec.documents), record)


def clear_leftovers(out: Path, documents: str | Path | None = None) -> int:
    """Remove half-written files a killed run left behind (`write_atomic`'s temporaries).
    Called when a sweep starts: what they were to hold is rewritten by this run."""
    count = 0
    for folder, pattern in ((out, ".*.tmp"), (out / "letters", "**/.*.tmp"), (out / "fhir", ".*.tmp"),
                            (out / "patients", "**/.*.tmp")):
        for tmp in folder.glob(pattern) if folder.is_dir() else ():
            tmp.unlink(missing_ok=True)
            count += 1
    from carepath.sinks.storage import FsspecStorage, documents_location, storage_for

    store = storage_for(documents if documents is not None else documents_location(out))
    if isinstance(store, FsspecStorage):  # the sweep's own documents on a shared store
        count += store.clear_temporaries(("", "fhir"))
    return count
