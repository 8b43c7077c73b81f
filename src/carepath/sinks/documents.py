"""What the document sinks (task lists, worklist, FHIR bundle) share: the task fields in
contract order, strict parsing of the instants in output bodies, and one patient's outputs
as a pass over the ledger hands them to every sink at once.

Bodies may come back from the ledger's store rather than straight from the engine, so
nothing here relies on a body's key order or on its types being Python objects.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Protocol, runtime_checkable

import orjson

from carepath.sinks.base import Output, OutputKind

# The plan contract's task object (`carepath plan`'s JSON), in the order
# `PlannedTask.as_json` writes it; tests hold the two together.
TASK_FIELDS: tuple[str, ...] = (
    "id", "step", "title", "role", "priority", "earliest", "due", "status", "trigger",
    "out_of_window", "source", "pathway_version", "completed_at", "reason", "reason_at", "held",
    "closed_reason", "acknowledged_by", "acknowledged_at", "escalation",
)
# Added to the contract later: a body recorded before them reads as null there.
LATER_FIELDS = frozenset({"reason", "reason_at", "held", "closed_reason", "acknowledged_by", "acknowledged_at",
                          "escalation"})
TIME_FIELDS = frozenset({"earliest", "due", "completed_at", "reason_at", "acknowledged_at"})

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


def iso_text(value: object, moment: datetime) -> str:
    """`moment.isoformat()`, where `moment` was read from `value`: the text itself when it
    already has that form (as every instant the engine writes has), which saves formatting
    the offset again (slow in CPython) for each of a cohort's instants."""
    if type(value) is str and _isoformat_shaped(value):
        return value
    return moment.isoformat()


def _isoformat_shaped(text: str) -> bool:
    """Whether a text that `datetime.fromisoformat` read as an aware instant is exactly
    what `isoformat()` writes for it: "YYYY-MM-DDTHH:MM:SS±HH:MM", or with six digits of
    non-zero microseconds; the parser already checked every digit."""
    size = len(text)
    if size == 25:
        sign = 19
    elif size == 32 and text[19] == "." and text[20:26] != "000000":
        sign = 26
    else:
        return False
    return (text[4] == "-" and text[7] == "-" and text[10] == "T" and text[13] == ":" and text[16] == ":"
            and text[sign + 3] == ":" and (text[sign] == "+" or (text[sign] == "-" and text[sign + 1:] != "00:00")))


def task_record(patient: str, body: Mapping[str, object]) -> dict[str, object]:
    """The task object plus its patient, keys in contract order (unknown keys after, sorted)
    so that the same task gives the same bytes however its body was stored."""
    if tuple(body) == TASK_FIELDS:
        # As the engine writes a task (and the ledger stores it): already in contract order.
        return {"patient": patient, **body}
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


class Instants:
    """`instant` for one document pass, remembered by the text it was read from: each
    patient's tasks and letters share times (a session's slot, its deadline), so about
    half of a cohort's instants were read before. Bounded: forgotten wholesale when full,
    so the pass never holds the cohort."""

    LIMIT = 1 << 16

    def __init__(self) -> None:
        self._seen: dict[str, datetime] = {}

    def __call__(self, body: Mapping[str, object], key: str, owner: str) -> datetime | None:
        value = body.get(key)
        if value is None:
            return None
        if type(value) is str:
            seen = self._seen.get(value)
            if seen is not None:
                return seen
            try:
                seen = datetime.fromisoformat(value)
            except ValueError:
                seen = None
            if seen is not None and seen.utcoffset() is not None:
                if len(self._seen) >= self.LIMIT:
                    self._seen.clear()
                self._seen[value] = seen
                return seen
        return instant(body, key, owner)  # not an aware instant's text: refused as `instant` refuses it


class DocumentFeed(Protocol):
    """What a document's `feed()` yields for one pass: each patient's outputs in turn."""

    def add(self, group: PatientOutputs) -> None: ...


@runtime_checkable
class DocumentSink(Protocol):
    """A cohort-wide document written from one pass over the ledger among others:
    `feed()` opens it (a context manager yielding a `DocumentFeed`), and it replaces the
    document when the block ends without an error; `written` then counts what it shows."""

    name: str
    kinds: frozenset[OutputKind]
    written: int

    def feed(self) -> AbstractContextManager[DocumentFeed]: ...


class PatientOutputs:
    """One patient's current outputs as the document sinks take them in one pass: the
    care-plan summary (normally one), tasks and letters, each kind in id order, and the
    first send time of each letter a channel sent ("" when sent before send times were
    recorded)."""

    __slots__ = ("patient", "plans", "tasks", "letters", "sent", "_records")

    def __init__(self, patient: str) -> None:
        self.patient = patient
        self.plans: list[Output] = []
        self.tasks: list[Output] = []
        self.letters: list[Output] = []
        self.sent: dict[str, str] = {}
        self._records: list[dict[str, object]] | None = None

    def records(self) -> list[dict[str, object]]:
        """The task records (`task_record`) of `tasks`, built once for every sink of the pass."""
        if self._records is None:
            self._records = [task_record(self.patient, o.body) for o in self.tasks]
        return self._records

    def add(self, output: Output) -> None:
        kind = output.kind
        if kind is OutputKind.TASK:
            self.tasks.append(output)
        elif kind is OutputKind.LETTER:
            self.letters.append(output)
        elif kind is OutputKind.PATIENT:
            self.plans.append(output)
        else:
            raise ValueError(f"output {output.id} has a kind the documents do not know: {output.kind}")


def patient_groups(outputs: Iterable[Output]) -> Iterator[PatientOutputs]:
    """Consecutive outputs of one patient at a time, each kind sorted by id; patients must
    ascend (the ledger's order), so a pass needs one patient in memory at a time."""
    block: PatientOutputs | None = None
    for output in outputs:
        if block is None or output.patient != block.patient:
            if block is not None:
                if output.patient < block.patient:
                    raise ValueError(f"outputs must come grouped by patient in ref order: {output.patient} "
                                     f"after {block.patient}")
                yield _sorted(block)
            block = PatientOutputs(output.patient)
        block.add(output)
    if block is not None:
        yield _sorted(block)


def _sorted(block: PatientOutputs) -> PatientOutputs:
    for members in (block.plans, block.tasks, block.letters):
        members.sort(key=_by_id)
    return block


def _by_id(output: Output) -> str:
    return output.id


_KINDS = {kind.value: kind for kind in OutputKind}


def ledger_groups(rows: Iterable[tuple[str, str, str, str | bytes, str, str | None]]) -> Iterator[PatientOutputs]:
    """`patient_groups` of the ledger's document rows (`Ledger.document_rows`: id, kind,
    patient, stored body, digest, first send time; in patient order), each body decoded
    once for every sink of the pass. Ids are sorted here, not by the database, whose
    collation (PostgreSQL's follows the locale) may order text otherwise than Python."""
    block: PatientOutputs | None = None
    loads, kinds = orjson.loads, _KINDS
    for output_id, kind, patient, body, digest, sent_at in rows:
        if block is None or patient != block.patient:
            if block is not None:
                yield _sorted(block)
            block = PatientOutputs(patient)
        block.add(Output(output_id, kinds[kind], patient, loads(body), digest))
        if sent_at is not None:
            block.sent[output_id] = sent_at
    if block is not None:
        yield _sorted(block)


def document_state(generation: int | str, version: str, as_of: datetime, shows_as_of: bool = True) -> str:
    """What a document was written from, as the ledger's snapshots record it: the pathway's
    generation, and for a document that shows the as-of (and the pathway version, so a bump
    that moves no patient still changes its header) those too. A document whose state is
    unchanged and still present is not rewritten."""
    return f"{generation}|{as_of.isoformat()}|{version}" if shows_as_of else str(generation)


def write_stale(ledger, pathway: str, version: str, sinks: Iterable[DocumentSink],  # noqa: ANN001 - a Ledger
                as_of: datetime, run: str) -> dict[str, int | None]:
    """Rewrite the stale ones of these documents in one pass over the ledger's current
    outputs (one query, each body decoded once), each replaced when the pass is done and
    none when it fails; None for those left as they were."""
    from contextlib import ExitStack

    generation = ledger.generation(pathway)
    written: dict[str, int | None] = {}
    stale: list[tuple[DocumentSink, str]] = []
    for sink in sinks:
        state = document_state(generation, version, as_of, getattr(sink, "shows_as_of", True))
        present = sink.present() if hasattr(sink, "present") else sink.storage.exists(sink.name)  # type: ignore[attr-defined]
        written[sink.name] = None
        if ledger.snapshot_state(pathway, sink.name) != state or not present:
            stale.append((sink, state))
    if not stale:
        return written
    kinds = frozenset().union(*(sink.kinds for sink, _ in stale))
    with ExitStack() as documents:
        feeds = [documents.enter_context(sink.feed()) for sink, _ in stale]
        for group in ledger_groups(ledger.document_rows(pathway, kinds)):
            for feed in feeds:
                feed.add(group)
    for sink, state in stale:
        written[sink.name] = sink.written
        ledger.mark_snapshot(pathway, sink.name, state, run)
    return written
