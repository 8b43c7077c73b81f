"""Which patients a sweep re-plans, written as shard files for the planning steps.

The events file's new lines are ingested first (the event store), then the wake index
names the patients whose plan may have changed; only they are planned.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from carepath.orchestrator.cohort import Shard, write_patient_shards
from carepath.orchestrator.event_store import EventStore, key
from carepath.orchestrator.patients_index import PatientsIndex
from carepath.orchestrator.spec import RunSpec
from carepath.orchestrator.wake_index import WakeIndex
from carepath.sinks.ledger import Ledger


@dataclass(frozen=True)
class Chosen:
    """Counts and shard files (paths; names stay in the files): no patient data."""

    shards: tuple[Shard, ...]
    patients: int             # in the patients file (valid lines)
    ingested: int             # event lines read from the file by this run
    planned: int              # patients to re-plan
    reasons: dict[str, int]   # why they are re-planned, counted
    unterminated: int | None = None  # the events file's last line has no newline yet (its number)


def choose(spec: RunSpec, patients_path: str, events_path: str, work: Path, shard_size: int, full: bool,
           ledger: Ledger) -> Chosen:
    compiled = spec.compiled
    patients, _ = PatientsIndex(ledger.engine, compiled.id).read_all(patients_path, compiled.clinic.zone.key)
    store = EventStore(ledger.engine, compiled.id)
    index = WakeIndex(ledger.engine, compiled.id)
    ingested = store.ingest(events_path, on_new=index.mark_dirty, known=patients, reread=full)
    everyone = full or ingested.restarted or spec.migration is not None
    due = index.due(patients, spec.as_of, spec.digest, full=everyone,
                    sharing=lambda refs: {p for _, p in store.shared(refs)})
    reasons = dict(due.reasons)
    if not full and everyone:
        why = "migration" if not ingested.restarted else "first run" if ingested.first else "events file replaced"
        reasons = {why: len(due.refs)}
    shared = store.shared(due.refs) if due.refs else []
    keyed = {key(ref): ref for ref in patients}
    others = sorted({keyed[p] for _, p in shared if p in keyed})
    shards = write_patient_shards(work, patients, due.refs, shard_size, others, sorted({i for i, _ in shared}))
    return Chosen(shards, len(patients), ingested.lines, len(due.refs), reasons, ingested.unterminated)
