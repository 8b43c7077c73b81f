"""Which patients a sweep re-plans, written as shard files for the planning steps.

The events file's new lines are ingested first (the event store), then the wake index
names the patients whose plan may have changed; only they are planned.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from carepath.orchestrator.cohort import Shard, write_patient_shards
from carepath.orchestrator.event_store import EventStore, key
from carepath.orchestrator.patients_index import PatientsIndex
from carepath.orchestrator.spec import RunSpec
from carepath.orchestrator.wake_index import WakeIndex
from carepath.sinks.ledger import Ledger
from carepath.sinks.patient_record import record_name
from carepath.sinks.storage import storage_for


@dataclass(frozen=True)
class Chosen:
    """Counts and shard files (paths; names stay in the files): no patient data."""

    shards: tuple[Shard, ...]
    patients: int             # in the patients file (valid lines)
    ingested: int             # event lines read from the file by this run
    planned: int              # patients to re-plan
    reasons: dict[str, int]   # why they are re-planned, counted
    unterminated: int | None = None  # the events file's last line has no newline yet (its number)
    removed: int = 0          # patients planned before and no longer in the patients file
    restarted: bool = False   # the events file was read anew (replaced, or `full`): its line numbers may differ


def choose(spec: RunSpec, patients_path: str, events_path: str, work: Path, shard_size: int, full: bool,
           ledger: Ledger) -> Chosen:
    compiled = spec.compiled
    patients, bad = PatientsIndex(ledger.engine, compiled.id).read_all(patients_path, compiled.clinic.zone.key)
    store = EventStore(ledger.engine, compiled.id)
    index = WakeIndex(ledger.engine, compiled.id)
    ingested = store.ingest(events_path, on_new=index.mark_dirty, known=patients, reread=full)
    everyone = full or ingested.restarted or spec.migration is not None
    due = index.due(patients, spec.as_of, spec.digest, full=everyone,
                    sharing=lambda refs: {p for _, p in store.shared(refs)})
    # A patients file with every line rejected is the wrong file (the run then fails
    # saying so): it must not empty every document on its way.
    removed = 0 if bad and not patients else retire_removed(spec, ledger, store, index, patients,
                                                            ingested.restarted)
    reasons = dict(due.reasons)
    if not full and everyone:
        why = "migration" if not ingested.restarted else "first run" if ingested.first else "events file replaced"
        reasons = {why: len(due.refs)}
    shared = store.shared(due.refs) if due.refs else []
    keyed = {key(ref): ref for ref in patients}
    others = sorted({keyed[p] for _, p in shared if p in keyed})
    shards = write_patient_shards(work, patients, due.refs, shard_size, others, sorted({i for i, _ in shared}))
    return Chosen(shards, len(patients), ingested.lines, len(due.refs), reasons, ingested.unterminated, removed,
                  ingested.restarted)


def retire_removed(spec: RunSpec, ledger: Ledger, store: EventStore, index: WakeIndex,
                   patients: Mapping[str, object], restarted: bool = False) -> int:
    """A patient planned before whose line has left the patients file (removed, or now
    rejected) leaves every document too, as they leave the run's summary: their outputs
    are retired in the ledger (which moves its generation, so the worklist, task lists and
    FHIR are rewritten without them), their record file is deleted, and their wake row is
    dropped, so that, back in the file, they are planned as new. Their sent letters stay
    recorded as sent. Each part is idempotent: a run killed half-way finishes it next time.
    An events file read anew (`restarted`: replaced, or `--full`) dropped every wake row,
    so the patients are then found from the ledger's current outputs instead."""
    gone = index.absent(patients)
    if restarted:
        gone = sorted(set(gone) | {ref for ref in ledger.current_patients(spec.compiled.id) if ref not in patients})
    if not gone:
        return 0
    ledger.retire_patients(spec.compiled.id, gone, spec.run)
    documents = storage_for(spec.documents)
    for ref in gone:
        documents.remove(record_name(ref))
    keyed = {key(ref) for ref in patients}
    index.drop(gone, dirty=sorted({p for _, p in store.shared(gone)} & keyed))
    return len(gone)
