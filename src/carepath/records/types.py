"""The records a pathway is evaluated against: patients, events, and rejected lines.

Plain frozen, slotted dataclasses rather than pydantic models: millions of events are
read per run and each object here is created once per line.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo


class RecordsFileError(Exception):
    """A records file that cannot be read at all (missing, a directory, no permission).

    Bad *content* never raises: it becomes a `Rejection` of the line concerned.
    """

    def __init__(self, path: str | Path, message: str) -> None:
        self.path = str(path)
        self.message = message
        super().__init__(f"{self.path}: {message}")


@dataclass(frozen=True, slots=True)
class Patient:
    ref: str                 # the "patient" field: a pseudonymous ref
    given_name: str
    family_name: str
    timezone: str            # IANA name; the clinic's zone when the file gives none
    email: str | None = None

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)  # validated when read; ZoneInfo caches by name

    def __repr__(self) -> str:
        # Keep names and addresses out of logs and tracebacks: only the ref is shown.
        return f"Patient(ref={self.ref!r}, timezone={self.timezone!r})"


@dataclass(frozen=True, slots=True)
class Event:
    id: str
    patient: str
    type: str
    at: datetime                                            # aware, with the offset as given
    data: Mapping[str, object] = field(hash=False)  # read-only (MappingProxyType); lists become tuples
    line: int                                       # 1-based line number in the events file


@dataclass(frozen=True, slots=True)
class Rejection:
    """A refused input line: the one type every reader, the event store, `carepath plan`,
    `rejected.jsonl` and the run summaries use."""

    line: int                # 1-based line number in its file (0: not a line, e.g. a refused pin)
    id: str | None           # the event id or patient ref, when it could be read
    reason: str              # what is wrong and what to fix; never names or addresses
    file: str = "events"     # "events" | "patients" | "pins"

    def as_json(self) -> dict[str, object]:
        return {"file": self.file, "line": self.line, "id": self.id, "reason": self.reason}


def _slot_setters(cls: type, names: tuple[str, ...]) -> tuple:
    return tuple(cls.__dict__[name].__set__ for name in names)


_EVENT_FIELDS = ("id", "patient", "type", "at", "data", "line")
_set_id, _set_patient, _set_type, _set_at, _set_data, _set_line = _slot_setters(Event, _EVENT_FIELDS)
_new = object.__new__


def new_event(id: str, patient: str, type: str, at: datetime, data: Mapping[str, object], line: int) -> Event:  # noqa: A002
    """`Event(...)` for the reader's hot loop, about twice as fast.

    A frozen dataclass's `__init__` sets each field through `object.__setattr__`, which
    costs ~0.5 µs per event here (a tenth of the per-line budget); setting the slots
    through their descriptors does the same thing directly. Event has no defaults and
    no `__post_init__`, so the result is identical (tests compare the two).
    """
    event = _new(Event)
    _set_id(event, id)
    _set_patient(event, patient)
    _set_type(event, type)
    _set_at(event, at)
    _set_data(event, data)
    _set_line(event, line)
    return event
