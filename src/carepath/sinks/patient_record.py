"""`DIR/patients/<xx>/<ref>.json`: one patient's current plan, written by an
event-triggered re-plan instead of the cohort-wide documents.

Rewriting tasks.jsonl, tasks.csv, worklist.html and the FHIR exports costs time in
proportion to the cohort, so an event for one patient must not do it: it writes this
patient's record (cost independent of the cohort's size) and the next sweep rebuilds the
cohort-wide documents from the ledger. The record holds what those documents would show
for the patient: the care-plan summary, the task objects as `tasks.jsonl` writes them and
the letters as `letters.jsonl` lists them (with their outbox status). No names: the
pseudonymous ref only, as everywhere outside the letters. It is the plan as of the
patient's last event run (its `as_of`); sweeps leave it alone, so a task that became
overdue since shows as such in the sweep's documents, not here.

`<xx>` is two hex digits of a hash of the ref, so no folder holds more than a 256th of a
cohort. The file name is the ref, percent-encoded where a character is not safe in one,
with `^` before each capital letter so that refs differing only in case (`P-1`, `p-1`)
get names that differ on a case-insensitive disk too (macOS, Windows, some shares). A
name that would pass `NAME_LIMIT` bytes (a ref of many non-Latin letters, each
percent-encoded to 6-12 characters) is `^^` and the ref's SHA-256 instead, as file systems
refuse names over 255 bytes; no encoded ref starts with `^^`, so names stay unique.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime
from urllib.parse import quote

import orjson

from carepath.sinks.base import Output, OutputKind
from carepath.sinks.documents import require_aware, task_record
from carepath.sinks.outbox import outbox_record
from carepath.sinks.storage import FsspecStorage, LocalStorage

FOLDER = "patients"


NAME_LIMIT = 200
"""Longest file name (bytes, before `.json`) that encodes the ref itself."""


def record_name(patient: str) -> str:
    """The record's name under the output location."""
    digest = hashlib.sha256(patient.encode()).hexdigest()
    name = "".join(f"^{c}" if "A" <= c <= "Z" else quote(c, safe="-_") for c in patient)
    if len(name) > NAME_LIMIT:
        name = f"^^{digest}"
    return f"{FOLDER}/{digest[:2]}/{name}.json"


def patient_record(pathway: str, version: str, patient: str, outputs: Sequence[tuple[Output, str | None]],
                   as_of: datetime) -> dict[str, object]:
    plans = [o for o, _ in outputs if o.kind is OutputKind.PATIENT]
    if len(plans) != 1:
        raise ValueError(f"patient {patient}: expected one care-plan output in the ledger, got {len(plans)}")
    return {
        "patient": patient,
        "pathway": {"id": pathway, "version": version},
        "as_of": require_aware(as_of).isoformat(),
        "plan": dict(plans[0].body),
        "tasks": [task_record(patient, o.body) for o, _ in outputs if o.kind is OutputKind.TASK],
        "letters": [outbox_record(patient, o.body, sent_at) for o, sent_at in outputs
                    if o.kind is OutputKind.LETTER],
    }


def write_patient_record(storage: LocalStorage | FsspecStorage, record: dict[str, object]) -> str:
    """Replace the patient's record atomically; returns its name."""
    name = record_name(str(record["patient"]))
    with storage.writer(name) as handle:
        handle.write(orjson.dumps(record, option=orjson.OPT_INDENT_2) + b"\n")
    return name
