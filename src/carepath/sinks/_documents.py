"""What the document sinks (task lists, worklist, FHIR bundle) share: the task fields in
contract order and strict parsing of the instants in output bodies.

Bodies may come back from the ledger's store rather than straight from the engine, so
nothing here relies on a body's key order or on its types being Python objects.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

# The plan contract's task object (`carepath plan`'s JSON), in the order
# `PlannedTask.as_json` writes it; tests hold the two together.
TASK_FIELDS: tuple[str, ...] = (
    "id", "step", "title", "role", "priority", "earliest", "due", "status", "trigger",
    "out_of_window", "source", "pathway_version", "completed_at", "reason", "reason_at", "held",
)
# Added to the contract later: a body recorded before them reads as null there.
LATER_FIELDS = frozenset({"reason", "reason_at", "held"})
TIME_FIELDS = frozenset({"earliest", "due", "completed_at", "reason_at"})

PRIORITY_RANK = {"urgent": 0, "high": 1, "routine": 2}


def require_aware(moment: datetime, what: str = "as_of") -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware (got {moment.isoformat()})")
    return moment


def instant(body: Mapping[str, object], key: str, owner: str) -> datetime | None:
    """The aware instant under `key`, or None when the body holds null there."""
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, datetime):
        return require_aware(value, f"{owner} {key}")
    if not isinstance(value, str):
        raise ValueError(f"{owner}: {key} must be an ISO instant (got {type(value).__name__})")
    return require_aware(datetime.fromisoformat(value), f"{owner} {key}")


def task_record(patient: str, body: Mapping[str, object]) -> dict[str, object]:
    """The task object plus its patient, keys in contract order (unknown keys after, sorted)
    so that the same task gives the same bytes however its body was stored."""
    owner = body.get("patient")
    if owner is not None and owner != patient:
        raise ValueError(f"task {body.get('id')!r} body names patient {owner!r} but belongs to {patient!r}")
    missing = [key for key in TASK_FIELDS if key not in body and key not in LATER_FIELDS]
    if missing:
        raise ValueError(f"task {body.get('id')!r} lacks {', '.join(missing)}")
    record: dict[str, object] = {"patient": patient}
    record.update((key, body.get(key)) for key in TASK_FIELDS)
    record.update((key, body[key]) for key in sorted(body) if key not in record)
    return record
