"""The `report-cohort` step: after a sweep, `rejected.jsonl` and the workload of the
whole cohort, from the stored per-patient summaries (patients not re-planned included)
and the event store."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import orjson

from carepath.orchestrator.event_store import EventStore
from carepath.orchestrator.patients_index import PatientsIndex
from carepath.orchestrator.spec import RunSpec
from carepath.orchestrator.wake_index import WakeIndex
from carepath.orchestrator.workload import Workload, workload_of
from carepath.records import Rejection
from carepath.records.fields import compile_event_types
from carepath.sinks.base import write_atomic
from carepath.sinks.ledger import Ledger


@dataclass(frozen=True)
class CohortReport:
    rejected: int       # input lines refused, the whole cohort's
    workload: Workload  # the whole cohort's open work
    outputs: int = 0    # the cohort's current outputs (a patient not re-planned left theirs unchanged)
    all_rejected: str = ""  # which input file had every line rejected (probably the wrong file), or ""


def report_cohort(spec: RunSpec, patients_path: str | Path, ledger: Ledger) -> CohortReport:
    """After a sweep: `rejected.jsonl` and the workload of every patient, from the wake
    index's rows (patients not re-planned by this sweep included) and the event store."""
    compiled = spec.compiled
    patients, bad_patients = PatientsIndex(ledger.engine, compiled.id).refs(patients_path, compiled.clinic.zone.key)
    index = WakeIndex(ledger.engine, compiled.id)
    store = EventStore(ledger.engine, compiled.id)
    rejected = list(bad_patients)
    rejected += store.unplaced(patients, compile_event_types(compiled.event_fields))
    summaries = []
    for ref, summary in index.summaries(patients):
        rejected.extend(Rejection(line, ref, reason, file)
                        for file, line, ref, reason in cast("list[list]", summary["rejected"]))
        summaries.append((ref, summary))
    write_rejected(spec.out, rejected)
    outputs = sum(int(summary.get("outputs", 0)) for _, summary in summaries)  # type: ignore[call-overload]
    return CohortReport(len(rejected), workload_of(summaries, compiled, spec.as_of), outputs,
                        _all_rejected(len(patients), len(bad_patients),
                                      sum(r.file == "events" for r in rejected), store.line_count()))


def _all_rejected(patients: int, bad_patients: int, bad_events: int, event_lines: int) -> str:
    """Which file had every one of its lines rejected (a run that used nothing of it
    must not end green: it is most often the events file given as --patients)."""
    if patients == 0 and bad_patients:
        return f"every line of the patients file ({bad_patients}) was rejected"
    if event_lines and bad_events >= event_lines:
        return f"every line of the events file ({event_lines}) was rejected"
    return ""


def write_rejected(out: Path, rejected: Iterable[Rejection]) -> Path:
    """`rejected.jsonl`: every input line refused this run, with line and reason (no names)."""
    rows = sorted(rejected, key=lambda r: (r.file != "events", r.file, r.line, r.id or ""))
    path = out / "rejected.jsonl"
    data = b"".join(orjson.dumps(r.as_json()) + b"\n" for r in rows)
    if not path.exists() or path.read_bytes() != data:
        write_atomic(path, data)
    return path
