"""Judging one line of the events file: an `Event`, a `Rejection`, or nothing (blank).

The one place the events contract is decided. The reference reader (`readers`), the
event store (`orchestrator.event_store`) and so `carepath plan` and every sweep reach
their verdicts through these functions, so a line is never judged two ways.

A line's verdict depends only on the line, the known patients and the earlier lines with
the same id (`event_verdicts`): any subset of a file that holds every line sharing an id
with its lines gets the verdicts the whole file gives them.

Choices made here, beyond the contract's wording:

- **Unknown keys are rejected.** A misspelt `dta` would otherwise silently drop an
  event's data. The reason names the key when it is written like a field name.
- **Null means absent for optional data fields**; for a required field it is reported
  as missing. An event without `data` is read as `"data": {}`, so a type with no
  required fields (`enrolled`) may omit it.
- **Duplicates compare parsed values, not text.** A later line with the same id and the
  same patient, type, instant-and-offset and data is an exact duplicate and is skipped
  silently; same id with anything different is rejected and the earlier line is kept.
  A rejected line does not claim its id.
- **Lists in data become tuples** so that `Event.data` is read-only all the way down.
- **Reasons never echo free text** (a shifted column can put a family name into any
  field): they may name the event id, the patient ref, field names, numbers and
  timestamps. Unknown event types get a "did you mean" from the known types instead.
- **Text hygiene** (`parse_line`, also used for the patients file): a line that is not
  valid UTF-8, holds an unpaired `\\u` surrogate escape, uses `NaN`/`Infinity`, gives a
  key twice in one object, or is longer than `MAX_LINE_BYTES` is rejected. A UTF-8
  byte-order mark at the start of the file is ignored; blank lines are skipped.
- Ids and patient refs must be non-empty text without leading or trailing spaces, at
  most `fields.MAX_REF_CHARS` characters; instants must lie in the years 1900-2999;
  numbers in typed data within +/-(2**53 - 1) (`fields.MAX_SAFE_INTEGER`).
- A PHQ-9 rejected only because its stated total disagrees with its items still hands
  its answers on, as a derived `assessment_rejected` event (`salvage_answers`).

Speed (millions of lines per run): orjson parses when installed (it comes with prefect)
and the stdlib `json` words every rejection, so both accept the same lines; an ordinary
line takes a fast path and only a doubtful one is re-checked in full to word its reason.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Container, Iterable, Iterator, Mapping
from datetime import datetime
from types import MappingProxyType

from carepath.records.fields import EARLIEST_YEAR as _EARLIEST_YEAR
from carepath.records.fields import (
    EXAMPLE_TIME,
    MAX_REF_CHARS,
    TypeSpec,
    check_data,
    json_kind,
    parse_time,
    quote,
    ref_problem,
    shown_key,
    unknown_keys,
)
from carepath.records.fields import LATEST_YEAR as _LATEST_YEAR
from carepath.records.types import Event, Rejection, new_event

MAX_LINE_BYTES = 1024 * 1024

_BOM = b"\xef\xbb\xbf"
EVENT_KEYS = frozenset({"id", "patient", "type", "at", "data"})


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


def parse_line_reference(number: int, raw: bytes) -> object:
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
        return Rejection(number, id_of(obj),
                         r"line holds an unpaired \u surrogate escape (\ud800-\udfff): fix the text")
    if type(obj) is not dict:
        return Rejection(number, None, f"each line must be one JSON object {{...}}, but this line is {json_kind(obj)}")
    return obj


def _parse_line_fast(number: int, raw: bytes) -> object:
    """orjson for the ordinary line; anything it refuses or that is not an object goes
    to the reference parser, which words the rejection.

    orjson is stricter than `json` (no NaN, no lone surrogates, UTF-8 checked, no BOM),
    keeps the last of duplicate keys (the reference rejects them; counting ':' finds
    them), and differs only in reading integers beyond 64 bits as floats; typed data
    fields accept integers only within +/-(2**53 - 1), so both parsers accept and reject
    the same lines.
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
    return parse_line_reference(number, raw)


# `parse_line(number, raw)`: a line's JSON object, None for a blank line, or its Rejection.
try:  # orjson comes with prefect (a dependency); it halves the time spent parsing JSON.
    from orjson import dumps as _orjson_dumps
    from orjson import loads as _orjson_loads
except ImportError:  # pragma: no cover - exercised by forcing the stdlib parser in tests
    parse_line = parse_line_reference
else:
    parse_line = _parse_line_fast


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


def id_of(obj: object, key: str = "id") -> str | None:
    """The id (or, with `key`, another ref) a parsed line gives, for its rejection; None
    when it gives none that can be shown."""
    if type(obj) is dict:
        value = obj.get(key)
        if type(value) is str and value and _encodable(value):
            return value
    return None


# --- events ------------------------------------------------------------------------


def event_verdicts(numbered: Iterable[tuple[int, bytes]], specs: dict[str, TypeSpec],
                   patients: Container[str]) -> Iterator[Event | Rejection]:
    """The reference verdicts of (line number, raw line) pairs in line order: each event
    or rejection; exact duplicates are skipped. A line's verdict depends only on itself,
    the known patients and the earlier lines with the same id, so any subset of a file
    that holds every line sharing an id with its lines gets the verdicts the whole file
    gives them (what the per-patient event store relies on)."""
    known_patients: dict[str, str] = {}   # membership cache that also shares one str per ref
    seen: dict[str, Event] = {}
    parse, make_event = parse_line, judge_event
    for number, raw in numbered:
        obj = parse(number, raw)
        if obj is None:
            continue
        if type(obj) is Rejection:
            yield obj
            continue
        event = make_event(number, obj, specs, patients, known_patients)  # type: ignore[arg-type]
        if isinstance(event, str):
            yield Rejection(number, id_of(obj), event)
            salvaged = salvage_answers(number, obj, specs, patients, known_patients)  # type: ignore[arg-type]
            if salvaged is not None:
                yield salvaged
            continue
        earlier = seen.setdefault(event.id, event)
        if earlier is event:
            yield event
        elif (differs := differences(earlier, event)):
            yield id_conflict(number, earlier, differs)
        # else: an exact duplicate of an earlier line, skipped silently


def judge_event(
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
            and EVENT_KEYS.issuperset(obj)
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
    if (problem := ref_problem(event_id, "id")) is not None:
        problems.append(problem)
    if not EVENT_KEYS.issuperset(obj):
        problems.append(unknown_keys(obj, EVENT_KEYS, "event"))

    at_text = obj.get("at")
    at = None
    if at_text is None:
        problems.append(f"'at' is missing: give the event's date-time with its UTC offset, e.g. {EXAMPLE_TIME}")
    else:
        at = parse_time(at_text, "'at'", problems)

    patient = obj.get("patient")
    canonical = known_patients.get(patient) if type(patient) is str else None
    if canonical is None:
        if (problem := ref_problem(patient, "patient")) is not None:
            problems.append(problem)
        elif patient in patients:
            canonical = known_patients[patient] = patient  # type: ignore[index,assignment]
        else:
            problems.append(
                f"patient {quote(patient)} is not in the patients file "  # type: ignore[arg-type]
                "(or its line there was rejected): "
                "add the patient or correct the ref"
            )

    type_name = obj.get("type")
    spec = specs.get(type_name) if type(type_name) is str else None
    data: object = obj.get("data")
    if spec is None:
        if (problem := ref_problem(type_name, "type")) is not None:
            problems.append(problem)
        else:
            problems.append(_unknown_type(type_name, specs))  # type: ignore[arg-type]
    elif data is None:
        data = check_data(spec, {}, problems)
    elif type(data) is not dict:
        problems.append(f"'data' must be a JSON object {{...}} (got {json_kind(data)})")
    else:
        data = check_data(spec, data, problems)

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
        f"event id {quote(earlier.id)} was already used on line {earlier.line} with a different "
        f"{', '.join(differs)}: give each event its own id (the earlier line is used)",
    )


def _unknown_type(type_name: str, specs: Mapping[str, TypeSpec]) -> str:
    # The value itself is not echoed (a shifted column could put a name here).
    close = difflib.get_close_matches(type_name, list(specs), n=1)
    hint = f"did you mean {close[0]}? " if close else ""
    return f"unknown event type ({hint}known types: {', '.join(sorted(specs))})"


def differences(earlier: Event, later: Event) -> list[str]:
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
