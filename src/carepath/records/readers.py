"""Reading the patients and events files (JSON Lines, one object per line).

Each bad line becomes one `Rejection` (its 1-based line number, the id when readable,
and a reason saying what to fix); every other line is still returned. Only a file that
cannot be opened or read raises (`RecordsFileError`). An event line is judged by
`records.judge`, the one place the events contract is decided (its notes list the
choices); this module reads files and judges the patients file's lines.

Choices made for patient lines, beyond the contract's wording:

- **Unknown keys are rejected.** A misspelt `timezon` would otherwise silently give the
  patient the clinic's zone and send letters at the wrong hour.
- **Null means absent** for `timezone` and `email`.
- Names and e-mail addresses with control characters or line breaks are rejected (in a
  letter they would add lines or print NUL/BEL); so is a `timezone` that means the
  host's own setting (`localtime`). An `email` must be exactly one plain ASCII address
  (no display name, no second address: `fields.mailbox_problem`); names are capped at
  `fields.MAX_NAME_CHARS` characters, refs at `fields.MAX_REF_CHARS`. A ref must be
  non-empty text without leading or trailing spaces (a stray space would otherwise
  surface later as a confusing "unknown patient").
- A later line of the same patient with the same content is skipped; with different
  content it is rejected and the earlier line is kept.

The cyclic garbage collector is paused while the lists are built (`gc_paused`).
"""

from __future__ import annotations

import gc
import os
import stat
from collections.abc import Container, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import BinaryIO
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from carepath.model.pathway import DataField
from carepath.records import judge
from carepath.records.fields import (
    MAX_NAME_CHARS,
    compile_event_types,
    control_character,
    host_dependent_zone,
    json_kind,
    mailbox_problem,
    quote,
    ref_problem,
    unknown_keys,
)
from carepath.records.judge import MAX_LINE_BYTES, event_verdicts, id_of
from carepath.records.types import Event, Patient, RecordsFileError, Rejection

__all__ = ["MAX_LINE_BYTES", "gc_paused", "iter_event_lines", "not_regular", "open_records", "read_events",
           "read_patient_at", "read_patients"]

_PATIENT_KEYS = frozenset({"patient", "given_name", "family_name", "timezone", "email"})


# --- lines -------------------------------------------------------------------------


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while building millions of acyclic records.

    Every few hundred allocations the collector re-walks the young objects, and the
    whole heap from time to time: measured here, 40% of read_events' time. Nothing the
    readers build has a reference cycle, so pausing it frees nothing late.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def not_regular(path: str | Path) -> str | None:
    """Why `path` is not a file to read records from (a FIFO, a device, a socket), or None.

    Checked before opening: opening a FIFO waits for a writer, and /dev/zero never ends.
    A missing or unreadable path is left to `open`, which words it.
    """
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    kind = "a pipe (FIFO)" if stat.S_ISFIFO(mode) else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) \
        else "not a regular file"
    return f"is {kind}, not a file: give a JSON Lines file (it is read twice, and must end)"


def open_records(path: str | Path) -> BinaryIO:
    if (problem := not_regular(path)) is not None:
        raise RecordsFileError(path, problem)
    try:
        return open(path, "rb")  # noqa: SIM115 - closed by the caller's `with`
    except FileNotFoundError:
        raise RecordsFileError(path, "file not found") from None
    except IsADirectoryError:
        raise RecordsFileError(path, "is a directory; expected a JSON Lines file") from None
    except PermissionError:
        raise RecordsFileError(path, "permission denied") from None
    except OSError as exc:
        raise RecordsFileError(path, f"cannot be opened ({exc.strerror or exc})") from None



# --- patients ----------------------------------------------------------------------


def read_patients(path: str | Path, *, default_timezone: str,
                  where: dict[str, tuple[int, int, int]] | None = None) -> tuple[dict[str, Patient], list[Rejection]]:
    """Patients by ref, in file order, and the rejected lines.

    `default_timezone` (the clinic's zone) is given to patients whose line has none; it
    must itself be a valid IANA name (the pathway check guarantees this), else ValueError.
    `where`, when given, receives each patient's line as (line number, offset, length), so
    that `read_patient_at` can read that patient alone later.
    """
    if not _valid_zone(default_timezone):
        raise ValueError(f"default_timezone {default_timezone!r} is not a known IANA time zone")
    patients: dict[str, Patient] = {}
    lines: dict[str, int] = {}
    rejected: list[Rejection] = []
    zones: dict[str, bool] = {default_timezone: True}
    with open_records(path) as handle, gc_paused():
        try:
            offset = 0
            for number, raw in enumerate(handle, start=1):
                start, offset = offset, offset + len(raw)
                obj = judge.parse_line(number, raw)
                if obj is None:
                    continue
                if type(obj) is Rejection:
                    rejected.append(replace(obj, file="patients"))
                    continue
                found = _patient(obj, default_timezone, zones)  # type: ignore[arg-type]
                if type(found) is str:
                    rejected.append(Rejection(number, id_of(obj, "patient"), found, "patients"))
                    continue
                assert isinstance(found, Patient)
                earlier = patients.get(found.ref)
                if earlier is None:
                    patients[found.ref] = found
                    lines[found.ref] = number
                    if where is not None:
                        where[found.ref] = (number, start, len(raw))
                elif earlier != found:
                    differs = [name for name in ("given_name", "family_name", "timezone", "email")
                               if getattr(earlier, name) != getattr(found, name)]
                    rejected.append(Rejection(
                        number, found.ref,
                        f"patient {quote(found.ref)} already appears on line {lines[found.ref]} with a different "
                        f"{', '.join(differs)}: keep one line per patient (the earlier line is used)", "patients",
                    ))
        except OSError as exc:
            raise RecordsFileError(path, f"could not be read ({exc.strerror or exc})") from None
    return patients, rejected


def read_patient_at(path: str | Path, ref: str, line: tuple[int, int, int], *, default_timezone: str) -> Patient | None:
    """The patient on one line of the patients file (as `read_patients` recorded it in
    `where`); None when that line no longer holds a valid line of that patient."""
    number, offset, length = line
    with open_records(path) as handle:
        try:
            handle.seek(offset)
            raw = handle.read(length)
        except OSError as exc:
            raise RecordsFileError(path, f"could not be read ({exc.strerror or exc})") from None
    obj = judge.parse_line(number, raw)
    if type(obj) is not dict:
        return None
    found = _patient(obj, default_timezone, {default_timezone: True})  # type: ignore[arg-type]
    return found if isinstance(found, Patient) and found.ref == ref else None


def _valid_zone(name: str) -> bool:
    if host_dependent_zone(name):
        return False
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: e.g. a directory name like "America"
        return False
    return True


def _patient(obj: dict[str, object], default_timezone: str, zones: dict[str, bool]) -> Patient | str:
    problems: list[str] = []
    ref = obj.get("patient")
    if (problem := ref_problem(ref, "patient")) is not None:
        problems.append(problem)
    names = []
    for key in ("given_name", "family_name"):
        value = obj.get(key)
        if value is None:
            problems.append(f"'{key}' is missing")
        elif type(value) is not str:
            problems.append(f"'{key}' must be text (got {json_kind(value)})")
        elif (at := control_character(value)) is not None:
            # A line break would add lines (bullets, a subject) to a letter; NUL or BEL would be printed.
            problems.append(f"'{key}' holds a control character or line break at character {at}: "
                            "a name is one line of printable text")
        elif len(value) > MAX_NAME_CHARS:
            problems.append(f"'{key}' is longer than {MAX_NAME_CHARS} characters ({len(value)}): "
                            "a letter holds a name of at most that length")
        names.append(value)
    if all(type(v) is str and not v.strip() for v in names):
        problems.append("'given_name' and 'family_name' are both empty: give at least one")
    zone = obj.get("timezone")
    if zone is None:
        zone = default_timezone
    elif type(zone) is not str:
        problems.append(f"'timezone' must be text, an IANA name such as America/New_York (got {json_kind(zone)})")
    else:
        known = zones.get(zone)
        if known is None:
            known = zones[zone] = _valid_zone(zone)
        if not known and host_dependent_zone(zone):
            problems.append(
                "'timezone' names this computer's own setting, not a place: use an IANA name such as "
                "America/New_York, or leave it out for the clinic's zone"
            )
        elif not known:
            problems.append(
                "'timezone' is not a known IANA time zone name: use one such as America/New_York or "
                "Europe/London, or leave it out for the clinic's zone"
            )
    email = obj.get("email")
    if email is not None and type(email) is not str:
        problems.append(f"'email' must be text (got {json_kind(email)})")
    elif email is not None and (at := control_character(email)) is not None:
        problems.append(f"'email' holds a control character or line break at character {at}")
    elif email is not None and (problem := mailbox_problem(email)) is not None:
        problems.append(problem)
    if not _PATIENT_KEYS.issuperset(obj):
        problems.append(unknown_keys(obj, _PATIENT_KEYS, "patient"))
    if problems:
        return "; ".join(problems)
    return Patient(ref=ref, given_name=names[0], family_name=names[1],  # type: ignore[arg-type]
                   timezone=zone, email=email)  # type: ignore[arg-type]


# --- events ------------------------------------------------------------------------


def read_events(
    path: str | Path,
    *,
    event_types: Mapping[str, Mapping[str, DataField]],
    patients: Container[str],
) -> tuple[list[Event], list[Rejection]]:
    """Valid events in file order, and the rejected lines (see the module notes)."""
    events: list[Event] = []
    rejected: list[Rejection] = []
    add_event, add_rejection = events.append, rejected.append
    with gc_paused():
        for item in iter_event_lines(path, event_types=event_types, patients=patients):
            if type(item) is Event:
                add_event(item)
            else:
                add_rejection(item)  # type: ignore[arg-type]
    return events, rejected


def iter_event_lines(
    path: str | Path,
    *,
    event_types: Mapping[str, Mapping[str, DataField]],
    patients: Container[str],
) -> Iterator[Event | Rejection]:
    """Each event or rejection in file order, streamed; exact duplicates are skipped.

    Memory is one dict entry per accepted event id (for duplicate detection); for files
    too large for that, `orchestrator.event_store` reaches the same verdicts by patient.
    The file is opened on the first `next()`; a `RecordsFileError` is raised from there.
    """
    specs = compile_event_types(event_types)
    with open_records(path) as handle:
        try:
            yield from event_verdicts(enumerate(handle, start=1), specs, patients)
        except OSError as exc:
            raise RecordsFileError(path, f"could not be read ({exc.strerror or exc})") from None


