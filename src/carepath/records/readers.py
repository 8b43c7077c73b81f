"""Readers for the patients and events files (JSON Lines, one object per line).

Both files are JSON Lines. Each bad line becomes one `Rejection` (its 1-based line
number, the id when readable, and a reason saying what to fix); every other line is
still returned. Only a file that cannot be opened or read raises (`RecordsFileError`).

Choices made here, beyond the contract's wording:

- **Unknown keys are rejected in both files.** A misspelt `timezon` would otherwise
  silently give the patient the clinic's zone and send letters at the wrong hour; a
  misspelt `dta` would silently drop an event's data. The reason names the key when
  it is written like a field name (lower_snake_case).
- **Null means absent for optional fields** (`timezone`, `email`, optional data fields);
  for a required field it is reported as missing. An event without `data` is read as
  `"data": {}`, so a type with no required fields (`enrolled`) may omit it.
- **Duplicates compare parsed values, not text.** A later line with the same id and the
  same patient, type, instant-and-offset and data (after the rules above) is an exact
  duplicate and is skipped silently; same id with anything different is rejected and
  the earlier line is kept. A rejected line does not claim its id.
- **Lists in data become tuples** so that `Event.data` is read-only all the way down.
- **Reasons never echo free text.** They may name the event id, the patient ref, field
  names, numbers and timestamps; never a value that could be a name or an address
  (a shifted column can put a family name into any field). Unknown event types get a
  "did you mean" from the known types instead of an echo.
- **Text hygiene:** a line that is not valid UTF-8, holds an unpaired `\\u` surrogate
  escape, uses `NaN`/`Infinity`, gives a key twice in one object, or is longer than
  `MAX_LINE_BYTES` is rejected. Names and e-mail addresses with control characters or
  line breaks are rejected (in a letter they would add lines or print NUL/BEL); so is a
  `timezone` that means the host's own setting (`localtime`). An `email` must be exactly
  one plain ASCII address (no display name, no second address: `fields.mailbox_problem`);
  names are capped at `fields.MAX_NAME_CHARS` characters, ids and refs at
  `fields.MAX_REF_CHARS`. Instants must lie in the
  years 1900-2999 (see `fields.EARLIEST_YEAR`). A UTF-8
  byte-order mark at the start of the file is ignored. Blank lines are skipped.
- Ids and patient refs must be non-empty text without leading or trailing spaces (a
  stray space would otherwise surface later as a confusing "unknown patient").
- Numbers in typed data must lie within +/-(2**53 - 1); see `fields.MAX_SAFE_INTEGER`.

Speed (millions of event lines per run): orjson parses when installed (it comes with
prefect) and the stdlib `json` words every rejection, so both accept the same lines; an
ordinary line takes a fast path and only a doubtful one is re-checked in full to word
its reason; the cyclic garbage collector is paused while the lists are built.
"""

from __future__ import annotations

import difflib
import gc
import json
import os
import stat
from collections.abc import Container, Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from types import MappingProxyType
from typing import BinaryIO
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from carepath.model.pathway import DataField
from carepath.records.fields import EARLIEST_YEAR as _EARLIEST_YEAR
from carepath.records.fields import (
    EXAMPLE_TIME,
    MAX_NAME_CHARS,
    MAX_REF_CHARS,
    TypeSpec,
    check_data,
    compile_event_types,
    control_character,
    host_dependent_zone,
    json_kind,
    mailbox_problem,
    parse_time,
    shown_key,
)
from carepath.records.fields import LATEST_YEAR as _LATEST_YEAR
from carepath.records.types import Event, Patient, RecordsFileError, Rejection, new_event

MAX_LINE_BYTES = 1024 * 1024

_BOM = b"\xef\xbb\xbf"
_EVENT_KEYS = frozenset({"id", "patient", "type", "at", "data"})
_PATIENT_KEYS = frozenset({"patient", "given_name", "family_name", "timezone", "email"})


class _NonFinite(ValueError):
    pass


def _refuse_constant(name: str) -> object:
    raise _NonFinite(name)


class _DuplicateKey(ValueError):
    pass


def _refuse_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
    # Both parsers would keep the last of two equal keys: `"items":[3,...],"items":[0,...]`
    # would silently drop an item-9 answer. A line that says two things is rejected.
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return obj


# One decoder for every line: `json.loads(text, **kwargs)` would build a new one each call.
_decode = json.JSONDecoder(parse_constant=_refuse_constant, object_pairs_hook=_refuse_duplicates).decode


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


def _open(path: str | Path) -> BinaryIO:
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


def _parse_line_stdlib(number: int, raw: bytes) -> object:
    """The parsed JSON of one line, `None` for a blank line, or a `Rejection`.

    This is the reference behaviour; `_parse_line_fast` only shortcuts lines that both
    parsers read identically.
    """
    if len(raw) > MAX_LINE_BYTES:
        return Rejection(number, None, f"line is longer than {MAX_LINE_BYTES} bytes (one record per line)")
    if number == 1 and raw.startswith(_BOM):
        raw = raw[len(_BOM):]
    try:
        text = raw.decode()
    except UnicodeDecodeError as exc:
        return Rejection(
            number, None, f"line is not valid UTF-8 text (bad byte at column {exc.start + 1}): save the file as UTF-8"
        )
    try:
        obj = _decode(text)
    except _NonFinite as exc:
        return Rejection(number, None, f"{exc} is not allowed in JSON: write a number or leave the field out")
    except _DuplicateKey as exc:
        return Rejection(number, None, f"line gives the field {shown_key(str(exc))} twice: keep one (which one is "
                                       "meant cannot be told)")
    except json.JSONDecodeError as exc:
        if not text.strip():
            return None
        return Rejection(
            number, None, f"line is not valid JSON ({exc.msg} at column {exc.colno}): each line must be one JSON object"
        )
    except (ValueError, RecursionError) as exc:  # e.g. an integer with thousands of digits, or deep nesting
        reason = "nested too deeply" if isinstance(exc, RecursionError) else "holds a number too long to read"
        return Rejection(number, None, f"line is not usable JSON ({reason})")
    if "\\u" in text and not _encodable(obj):
        return Rejection(number, _id_of(obj), r"line holds an unpaired \u surrogate escape (\ud800-\udfff): fix the text")
    if type(obj) is not dict:
        return Rejection(number, None, f"each line must be one JSON object {{...}}, but this line is {json_kind(obj)}")
    return obj


def _parse_line_fast(number: int, raw: bytes) -> object:
    """orjson for the ordinary line; anything it refuses or that is not an object goes
    to the reference parser, which words the rejection.

    orjson is stricter than `json` (no NaN, no lone surrogates, UTF-8 checked, no BOM),
    keeps the last of duplicate keys (the reference rejects them; counting ':' finds them), and differs
    only in reading integers
    beyond 64 bits as floats; typed data fields accept integers only within
    +/-(2**53 - 1), so both parsers accept and reject the same lines.
    """
    if len(raw) <= MAX_LINE_BYTES:
        try:
            obj = _orjson_loads(raw)
        except Exception:  # noqa: BLE001 - orjson.JSONDecodeError and friends: reword below
            pass
        else:
            # orjson keeps the last of repeated keys; a repeat shows as more ':' in the line
            # than in the object written back (one per key, plus those inside text: exact
            # when no escape can hide a ':').
            if type(obj) is dict and raw.count(b":") == _orjson_dumps(obj).count(b":") and b"\\u" not in raw:
                return obj
    return _parse_line_stdlib(number, raw)


try:  # orjson comes with prefect (a dependency); it halves the time spent parsing JSON.
    from orjson import dumps as _orjson_dumps
    from orjson import loads as _orjson_loads
except ImportError:  # pragma: no cover - exercised by forcing the stdlib parser in tests
    _parse_line = _parse_line_stdlib
else:
    _parse_line = _parse_line_fast


def _encodable(value: object) -> bool:
    """False if any string holds a lone surrogate (valid JSON, but not writable as UTF-8)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode()
            except UnicodeEncodeError:
                return False
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
    return True


def _id_of(obj: object, key: str = "id") -> str | None:
    if type(obj) is dict:
        value = obj.get(key)
        if type(value) is str and value and _encodable(value):
            return value
    return None


def _quote(value: str) -> str:
    """An id or ref for a reason: quoted, escaped (no forged log lines), length-capped."""
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 82 else text[:79] + '..."'


def _ref_problem(value: object, what: str) -> str | None:
    if value is None:
        return f"'{what}' is missing"
    if type(value) is not str:
        return f"'{what}' must be text (got {json_kind(value)})"
    if not value:
        return f"'{what}' is empty"
    if value != value.strip():
        return f"'{what}' has spaces before or after it: remove them"
    if not value.isprintable():
        # Ids and refs reach file names, CSV cells, Prefect run names: one line, no controls.
        return f"'{what}' holds a control character, line break or unusual space: use plain text"
    if len(value) > MAX_REF_CHARS:
        return f"'{what}' is longer than {MAX_REF_CHARS} characters ({len(value)}): use a shorter reference"
    return None


def _unknown_keys(obj: dict[str, object], allowed: frozenset[str], kind: str) -> str:
    unknown = [key for key in obj if key not in allowed]
    listed = ", ".join(shown_key(key) for key in unknown)
    plural = "fields" if len(unknown) > 1 else "field"
    return f"unknown {plural} {listed} ({kind} lines take: {', '.join(sorted(allowed))})"


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
    with _open(path) as handle, gc_paused():
        try:
            offset = 0
            for number, raw in enumerate(handle, start=1):
                start, offset = offset, offset + len(raw)
                obj = _parse_line(number, raw)
                if obj is None:
                    continue
                if type(obj) is Rejection:
                    rejected.append(obj)
                    continue
                found = _patient(obj, default_timezone, zones)  # type: ignore[arg-type]
                if type(found) is str:
                    rejected.append(Rejection(number, _id_of(obj, "patient"), found))
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
                        f"patient {_quote(found.ref)} already appears on line {lines[found.ref]} with a different "
                        f"{', '.join(differs)}: keep one line per patient (the earlier line is used)",
                    ))
        except OSError as exc:
            raise RecordsFileError(path, f"could not be read ({exc.strerror or exc})") from None
    return patients, rejected


def read_patient_at(path: str | Path, ref: str, line: tuple[int, int, int], *, default_timezone: str) -> Patient | None:
    """The patient on one line of the patients file (as `read_patients` recorded it in
    `where`); None when that line no longer holds a valid line of that patient."""
    number, offset, length = line
    with _open(path) as handle:
        try:
            handle.seek(offset)
            raw = handle.read(length)
        except OSError as exc:
            raise RecordsFileError(path, f"could not be read ({exc.strerror or exc})") from None
    obj = _parse_line(number, raw)
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
    if (problem := _ref_problem(ref, "patient")) is not None:
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
        problems.append(_unknown_keys(obj, _PATIENT_KEYS, "patient"))
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
    too large for that, `records.stream` reaches the same verdicts in bounded memory.
    The file is opened on the first `next()`; a `RecordsFileError` is raised from there.
    """
    specs = compile_event_types(event_types)
    with _open(path) as handle:
        try:
            yield from event_verdicts(enumerate(handle, start=1), specs, patients)
        except OSError as exc:
            raise RecordsFileError(path, f"could not be read ({exc.strerror or exc})") from None


def event_verdicts(numbered: Iterable[tuple[int, bytes]], specs: dict[str, TypeSpec],
                   patients: Container[str]) -> Iterator[Event | Rejection]:
    """The reference verdicts of (line number, raw line) pairs in line order: each event
    or rejection; exact duplicates are skipped. A line's verdict depends only on itself,
    the known patients and the earlier lines with the same id, so any subset of a file
    that holds every line sharing an id with its lines gets the verdicts the whole file
    gives them (what the per-patient event store relies on)."""
    known_patients: dict[str, str] = {}   # membership cache that also shares one str per ref
    seen: dict[str, Event] = {}
    parse_line, make_event = _parse_line, _event
    for number, raw in numbered:
        obj = parse_line(number, raw)
        if obj is None:
            continue
        if type(obj) is Rejection:
            yield obj
            continue
        event = make_event(number, obj, specs, patients, known_patients)  # type: ignore[arg-type]
        if type(event) is str:
            yield Rejection(number, _id_of(obj), event)
            salvaged = salvage_answers(number, obj, specs, patients, known_patients)  # type: ignore[arg-type]
            if salvaged is not None:
                yield salvaged
            continue
        earlier = seen.setdefault(event.id, event)  # type: ignore[union-attr]
        if earlier is event:
            yield event  # type: ignore[misc]
        elif (differs := _differences(earlier, event)):  # type: ignore[arg-type]
            yield id_conflict(number, earlier, differs)  # type: ignore[arg-type]
        # else: an exact duplicate of an earlier line, skipped silently


def _event(
    number: int,
    obj: dict[str, object],
    specs: dict[str, TypeSpec],
    patients: Container[str],
    known_patients: dict[str, str],
) -> Event | str:
    """One event, or the reason its line is rejected.

    Hot path for the ordinary line (patient already seen, nothing wrong); anything else
    goes to `_event_checked`, which is the reference and words every problem.
    """
    try:
        event_id = obj["id"]
        type_name = obj["type"]
        patient = obj["patient"]
        at_text = obj["at"]
        data = obj["data"]
    except KeyError:
        pass
    else:
        if (
            type(event_id) is str and type(type_name) is str and type(patient) is str and type(at_text) is str
            and type(data) is dict and event_id and event_id.strip() == event_id and event_id.isprintable()
            and len(event_id) <= _MAX_REF
            and _EVENT_KEYS.issuperset(obj)
        ):
            spec = specs.get(type_name)
            canonical = known_patients.get(patient)
            if spec is not None and canonical is not None:
                try:
                    at = _fromisoformat(at_text)
                except ValueError:
                    at = None
                # Strictly inside the plannable years, so the instant in UTC is too.
                if at is not None and at.tzinfo is not None and _EARLIEST_YEAR < at.year < _LATEST_YEAR:
                    problems: list[str] = []
                    checked = check_data(spec, data, problems)
                    if not problems:
                        return new_event(event_id, canonical, spec.name, at, checked, number)
    return _event_checked(number, obj, specs, patients, known_patients)


_fromisoformat = datetime.fromisoformat
_MAX_REF = MAX_REF_CHARS


def _event_checked(
    number: int,
    obj: dict[str, object],
    specs: dict[str, TypeSpec],
    patients: Container[str],
    known_patients: dict[str, str],
) -> Event | str:
    """One event, or the reason its line is rejected (every problem on the line)."""
    problems: list[str] = []
    event_id = obj.get("id")
    if (problem := _ref_problem(event_id, "id")) is not None:
        problems.append(problem)
    if not _EVENT_KEYS.issuperset(obj):
        problems.append(_unknown_keys(obj, _EVENT_KEYS, "event"))

    at_text = obj.get("at")
    at = None
    if at_text is None:
        problems.append(f"'at' is missing: give the event's date-time with its UTC offset, e.g. {EXAMPLE_TIME}")
    else:
        at = parse_time(at_text, "'at'", problems)

    patient = obj.get("patient")
    canonical = known_patients.get(patient) if type(patient) is str else None  # type: ignore[arg-type]
    if canonical is None:
        if (problem := _ref_problem(patient, "patient")) is not None:
            problems.append(problem)
        elif patient in patients:
            canonical = known_patients[patient] = patient  # type: ignore[index,assignment]
        else:
            problems.append(
                f"patient {_quote(patient)} is not in the patients file "  # type: ignore[arg-type]
                "(or its line there was rejected): "
                "add the patient or correct the ref"
            )

    type_name = obj.get("type")
    spec = specs.get(type_name) if type(type_name) is str else None  # type: ignore[arg-type]
    data: object = obj.get("data")
    if spec is None:
        if (problem := _ref_problem(type_name, "type")) is not None:
            problems.append(problem)
        else:
            problems.append(_unknown_type(type_name, specs))  # type: ignore[arg-type]
    elif data is None:
        data = check_data(spec, {}, problems)
    elif type(data) is not dict:
        problems.append(f"'data' must be a JSON object {{...}} (got {json_kind(data)})")
    else:
        data = check_data(spec, data, problems)  # type: ignore[arg-type]

    if problems:
        return "; ".join(problems)
    return new_event(event_id, canonical, spec.name, at, data, number)  # type: ignore[arg-type,union-attr]


ASSESSMENT_REJECTED = "assessment_rejected"


def salvage_answers(
    number: int,
    obj: dict[str, object],
    specs: dict[str, TypeSpec],
    patients: Container[str],
    known_patients: dict[str, str],
) -> Event | None:
    """The answers of a PHQ-9 line rejected only because its stated total disagrees with
    its items, as a derived `assessment_rejected` event (same id and line).

    The record stays rejected (a stated total must agree with its items), but its items are what the patient answered:
    an item-9 answer above 0 must still reach the pathway: a clerical error never loses a safety answer. A line with any
    other problem gives nothing: its answers cannot be trusted either.
    """
    data = obj.get("data")
    if obj.get("type") != "assessment_recorded" or type(data) is not dict or type(data.get("total")) is not int:
        return None
    stated = data["total"]
    without_total = {**obj, "data": {k: v for k, v in data.items() if k != "total"}}
    event = _event_checked(number, without_total, specs, patients, known_patients)
    if type(event) is str or event.data.get("instrument") != "phq9":  # type: ignore[union-attr]
        return None
    items = tuple(event.data["items"])  # type: ignore[union-attr,arg-type]
    if sum(items) == stated:
        return None
    return new_event(event.id, event.patient, ASSESSMENT_REJECTED, event.at,  # type: ignore[union-attr]
                     MappingProxyType({"instrument": "phq9", "items": items, "item9": items[8],
                                       "stated_total": stated}), number)


def id_conflict(number: int, earlier: Event, differs: list[str]) -> Rejection:
    """The rejection of a line that reuses an accepted event's id with different content."""
    return Rejection(
        number, earlier.id,
        f"event id {_quote(earlier.id)} was already used on line {earlier.line} with a different "
        f"{', '.join(differs)}: give each event its own id (the earlier line is used)",
    )


def _unknown_type(type_name: str, specs: Mapping[str, TypeSpec]) -> str:
    # The value itself is not echoed (a shifted column could put a name here).
    close = difflib.get_close_matches(type_name, list(specs), n=1)
    hint = f"did you mean {close[0]}? " if close else ""
    return f"unknown event type ({hint}known types: {', '.join(sorted(specs))})"


def _differences(earlier: Event, later: Event) -> list[str]:
    differs = []
    if earlier.patient != later.patient:
        differs.append("patient")
    if earlier.type != later.type:
        differs.append("type")
    if earlier.at != later.at or earlier.at.utcoffset() != later.at.utcoffset():
        differs.append("time ('at')")
    if not _same_data(earlier.data, later.data):
        differs.append("data")
    return differs


def _same_data(a: Mapping[str, object], b: Mapping[str, object]) -> bool:
    if a != b:
        return False
    # Equal datetimes may still be written with different offsets: that is different content.
    return all(
        not isinstance(value, datetime) or value.utcoffset() == b[key].utcoffset()  # type: ignore[attr-defined]
        for key, value in a.items()
    )
