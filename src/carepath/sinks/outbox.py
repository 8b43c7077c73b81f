"""`letters.jsonl`: every letter the ledger knows, with its outbox status, one line each.

No names: the letter id, the patient's pseudonymous ref, the template, its send time and
expiry, and its status — `sent` (with `sent_at`) once a channel sent it, otherwise the
plan's status: `scheduled` (send time ahead), `expired` or `withdrawn` (never to be sent).
A `due` letter that is not sent is one its channel could not deliver (a mail server that
kept failing, a recipient refused); later runs try it again until it expires.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import BinaryIO

import orjson

from carepath.sinks.base import OutputKind
from carepath.sinks.documents import PatientOutputs
from carepath.sinks.storage import Location, storage_for

FIELDS = ("id", "patient", "template", "send_at", "expires_at", "status", "sent_at")


def outbox_record(patient: str, body: Mapping[str, object], sent_at: str | None) -> dict[str, object]:
    record: dict[str, object] = {
        "id": body["id"], "patient": patient, "template": body["template"], "send_at": body["send_at"],
        "expires_at": body.get("expires_at"), "status": "sent" if sent_at is not None else body.get("status"),
    }
    if sent_at:  # empty for letters written before the outbox existed: sent, time unknown
        record["sent_at"] = sent_at
    return record


class LettersJsonl:
    """A snapshot document, rewritten atomically when the ledger changed."""

    name = "letters.jsonl"
    shows_as_of = False  # its content follows the outputs and sends only
    kinds = frozenset({OutputKind.LETTER})

    def __init__(self, out_dir: Location) -> None:
        self.storage = storage_for(out_dir)
        self.path = self.storage.local_path(self.name)
        self.counts: Counter = Counter()

    @property
    def written(self) -> int:
        """How many letters the last write listed."""
        return sum(self.counts.values())

    def write(self, rows: Iterable[tuple[str, Mapping[str, object], str | None]]) -> int:
        with self.feed() as feed:
            for patient, body, sent_at in rows:
                feed.line(outbox_record(patient, body, sent_at))
        return sum(self.counts.values())

    @contextmanager
    def feed(self) -> Iterator[_OutboxFeed]:
        """The file open for one pass over the ledger (`add` one patient's outputs at a
        time); it replaces the old one when the block ends without an error."""
        self.counts = Counter()
        with self.storage.writer(self.name) as handle:
            yield _OutboxFeed(handle, self.counts)


class _OutboxFeed:
    def __init__(self, handle: BinaryIO, counts: Counter) -> None:
        self.handle, self.counts = handle, counts

    def add(self, group: PatientOutputs) -> None:
        if group.letters:
            sent, patient = group.sent, group.patient
            lines = []
            for output in group.letters:
                record = outbox_record(patient, output.body, sent.get(output.id))
                self.counts[record["status"]] += 1
                lines.append(orjson.dumps(record))
            self.handle.write(b"\n".join(lines) + b"\n")

    def line(self, record: dict[str, object]) -> None:
        self.counts[record["status"]] += 1
        self.handle.write(orjson.dumps(record) + b"\n")
