"""What every sink receives and the one Protocol sinks implement.

An `Output` is one thing a run emits for one patient — a task, a letter, or the
patient's care-plan summary — in the JSON form `carepath plan` prints. The outbox
ledger (`carepath.sinks.ledger`) records each output under its deterministic id with a
digest of its body; sinks are handed outputs only through the ledger, which is what makes
emission exactly-once.

Two kinds of sink:
- the letter channels (files, email, print) are handed the due letters the delivery queue
  holds (carepath.orchestrator.delivery), each claimed in the ledger before it is sent;
- the documents (tasks.jsonl, tasks.csv, worklist.html, FHIR) get every current output and
  rewrite their whole document atomically, only when something changed since they were
  last written, or their file is missing.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import BinaryIO, Protocol, runtime_checkable

import orjson

from carepath.engine.result import PatientPlan


class OutputKind(StrEnum):
    PATIENT = "patient"  # stage, status, flags, holds, sessions: the care-plan summary
    TASK = "task"
    LETTER = "letter"


def _canonical(body: Mapping[str, object]) -> bytes:
    return orjson.dumps(body, option=orjson.OPT_SORT_KEYS)


@dataclass(frozen=True, slots=True)
class Output:
    """One emitted output. `body` is the plan contract's JSON object for it; for a
    `PATIENT` output it is the patient object without its tasks and letters."""

    id: str
    kind: OutputKind
    patient: str  # the pseudonymous ref; never a name
    body: Mapping[str, object]
    digest: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if not self.digest:
            object.__setattr__(self, "digest", hashlib.sha256(_canonical(self.body)).hexdigest()[:32])


def outputs_of(plan: PatientPlan, pathway_version: str) -> list[Output]:
    """A patient's plan as outputs: the care-plan summary first, then tasks, then letters."""
    body = plan.as_json(pathway_version)
    tasks = body.pop("tasks")
    letters = body.pop("letters")
    body["pathway_version"] = pathway_version
    outputs = [Output(f"careplan-{plan.patient}", OutputKind.PATIENT, plan.patient, body)]
    outputs += [Output(t["id"], OutputKind.TASK, plan.patient, t) for t in tasks]
    outputs += [Output(l["id"], OutputKind.LETTER, plan.patient, l) for l in letters]
    return outputs


@runtime_checkable
class Sink(Protocol):
    """A destination for outputs. Errors must propagate (never swallowed): the ledger
    records a send or a document's state only after `write` returned, so a failed write
    is retried whole."""

    name: str           # stable; the ledger records sends and document states under it
    kinds: frozenset[OutputKind]  # the outputs it wants; the ledger filters

    def write(self, outputs: Iterable[Output]) -> int:
        """Write `outputs` (a document: every current one; a letter channel: the letters
        to send, in (patient, kind, id) order); return how many were written."""
        ...


PRIVATE = 0o600
"""Every file carepath writes holds patient data (refs with clinical plans, letters with
names): owner-only unless a caller says otherwise."""


@contextmanager
def atomic_writer(path: Path, mode: int = PRIVATE, *, durable: bool = True) -> Iterator[BinaryIO]:
    """A handle whose content replaces `path` in one step when the block ends without an
    error: a reader (or a run killed midway) sees the old file or the new one, never half
    of one. Large documents are streamed through it rather than built in memory.
    `durable=False` skips the fsync; the caller then syncs a whole batch at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb", buffering=1024 * 1024) as handle:
            yield handle
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def write_atomic(path: Path, data: bytes, mode: int = PRIVATE, *, durable: bool = True) -> None:
    with atomic_writer(path, mode, durable=durable) as handle:
        handle.write(data)
