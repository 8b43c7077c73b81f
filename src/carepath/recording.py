"""Recording one new event: checked exactly as the events reader would check its line,
then appended to the events file. What `carepath emit` does before telling Prefect.

The events file stays the record of what happened; Prefect only hears that patient
<ref> has a new event <id> (refs and ids, never data).
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import orjson

from carepath.compile.compiled import CompiledPathway
from carepath.records import Event, iter_event_lines, read_patients


class NotRecorded(Exception):
    """The event was refused; the message says why and what to fix (no names)."""


@dataclass(frozen=True)
class Recorded:
    event: Event
    appended: bool  # False: an exact duplicate of an event already in the file (not appended again)


def record_event(compiled: CompiledPathway, patients_path: str | Path, events_path: str | Path, line: str, *,
                 known: dict | None = None, earlier: Callable[[Event], tuple | None] | None = None) -> Recorded:
    """Append `line` (one JSON object) to the events file if it is a valid, new event; an
    exact duplicate of a recorded event is not appended.

    A caller that already knows the patient (`known`: their record by ref) and can look an
    event id up in an index (`earlier`: the earlier event under the id as (patient, type,
    at, offset, data), else None) spares reading the whole patients and events files, so
    recording costs the same in a large cohort (`carepath serve` does both)."""
    text = line.strip()
    if "\n" in text:
        raise NotRecorded("give exactly one event: one JSON object on one line")
    patients = known if known is not None else read_patients(patients_path,
                                                             default_timezone=compiled.clinic.zone.key)[0]
    event = _checked(compiled, patients, text)
    path = Path(events_path)
    with path.open("ab+") as handle:
        # Emitters on one host may race; the lock keeps each line whole and the id check
        # honest. (Across hosts, record events through one writer.)
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            before = earlier(event) if earlier is not None else _same_id(compiled, patients, path, event)
            if before is not None:
                if before == (event.patient, event.type, event.at, event.at.utcoffset(), dict(event.data)):
                    return Recorded(event, appended=False)  # emitting again only re-announces it
                raise NotRecorded(f"event id {event.id!r} is already used in {path} for a different event: "
                                  "give each event its own id")
            handle.seek(0, os.SEEK_END)
            if handle.tell() > 0:
                handle.seek(-1, os.SEEK_END)
                if handle.read(1) != b"\n":
                    handle.write(b"\n")
            handle.write(text.encode() + b"\n")
            handle.flush()
            os.fsync(handle.fileno())
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
    return Recorded(event, appended=True)


def _checked(compiled: CompiledPathway, patients: dict, text: str) -> Event:
    # The reader is the one definition of a valid line: run it on this line alone.
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as tmp:
        tmp.write(text + "\n")
    try:
        items = list(iter_event_lines(tmp.name, event_types=compiled.event_fields, patients=patients))
    finally:
        os.unlink(tmp.name)
    if not items:
        raise NotRecorded("the event is empty")
    item = items[0]
    if type(item) is not Event:
        raise NotRecorded(item.reason)  # type: ignore[union-attr]
    return item


def _same_id(compiled: CompiledPathway, patients: dict, path: Path, event: Event) -> tuple | None:
    needle = orjson.dumps(event.id)
    with path.open("rb") as handle:
        for raw in handle:
            if needle not in raw and b"\\u" not in raw:  # cheap pre-filter, unless an escape could hide the id
                continue
            try:
                obj = orjson.loads(raw)
            except orjson.JSONDecodeError:
                continue
            if isinstance(obj, dict) and obj.get("id") == event.id:
                try:
                    found = _checked(compiled, patients, raw.decode().strip())
                except NotRecorded:
                    continue  # a rejected line does not claim its id
                return found.patient, found.type, found.at, found.at.utcoffset(), dict(found.data)
    return None
