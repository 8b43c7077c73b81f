"""Checking an event's `data` against its declared fields, and PHQ-9 answers.

Event types are compiled once into `TypeSpec`s so that the per-line work is a handful of
`type(...) is ...` tests. Problems are appended to a list as plain sentences that say
what to fix; a value the user wrote is never echoed unless it cannot identify anyone
(numbers, timestamps), because rejections end up in logs.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType

from carepath.model.pathway import DataField, FieldType

_TEXT, _INTEGER, _NUMBER, _BOOLEAN, _DATETIME, _TEXT_LIST, _INTEGER_LIST = (
    FieldType.TEXT, FieldType.INTEGER, FieldType.NUMBER, FieldType.BOOLEAN,
    FieldType.DATETIME, FieldType.TEXT_LIST, FieldType.INTEGER_LIST,
)

EXPECTED = {
    _TEXT: "text",
    _INTEGER: "a whole number",
    _NUMBER: "a number",
    _BOOLEAN: "true or false",
    _DATETIME: "a date-time with a UTC offset, e.g. 2026-03-02T10:00:00-05:00",
    _TEXT_LIST: "a list of text values",
    _INTEGER_LIST: "a list of whole numbers",
}

EXAMPLE_TIME = "2026-03-02T10:00:00-05:00"
_TIMESTAMP_CHARS = re.compile(r"[0-9T:.,+\- Z]{1,40}")
_KEY_CHARS = re.compile(r"[a-z][a-z0-9_]{0,39}")  # schema-style names only: "Ada" is not echoed

EMPTY_DATA: Mapping[str, object] = MappingProxyType({})

MAX_SAFE_INTEGER = 2**53 - 1
"""Numbers in data must lie within +/- this (JavaScript's safe range): beyond it JSON
readers disagree (some read a float), and no clinical value comes near it."""

EARLIEST_YEAR, LATEST_YEAR = 1900, 2999
"""Instants must fall in these years (in their own offset and in UTC). Planning adds
windows of days to years to an instant; near datetime's limits (years 1 and 9999) that
overflows, and no clinical record or plan lies outside this range."""

PHQ9_ITEMS = 9
PHQ9_MAX_ITEM = 3


# Zone names that mean "whatever this host is set to" (or no zone at all), not a place:
# the same file would then plan differently on another machine.
_HOST_ZONES = frozenset({"localtime", "posixrules", "Factory"})


def host_dependent_zone(name: str) -> bool:
    return name in _HOST_ZONES or name.startswith(("posix/", "right/"))


# Characters that would break a name out of its line in a letter or a CSV cell: C0/C1
# controls (NUL, BEL, line breaks, tab, ESC...), DEL, and Unicode line/paragraph separators.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def control_character(text: str) -> int | None:
    """1-based position of the first control character or line break in `text`, or None."""
    found = _CONTROL.search(text)
    return found.start() + 1 if found else None


MAX_NAME_CHARS = 100
"""A given or family name longer than this is refused: a letter's greeting, a PDF line
and a worklist cell hold one name, and a name of a million characters would stop every
patient's documents (no registered name comes near 100 characters)."""

MAX_REF_CHARS = 128
"""Patient refs and event ids longer than this are refused: a ref becomes a file name
(`patients/<xx>/<ref>.json`), a CSV cell and part of a Prefect task name, and file
systems refuse names over 255 bytes."""

MAX_EMAIL_CHARS = 254
"""The longest address SMTP carries (RFC 5321: 64 for the part before @, 254 in all)."""

# One mailbox, written plainly: a dot-atom local part, '@', a domain of ASCII labels.
# Display names ("Ada <ada@x>"), several addresses ("a@x, b@y"), quoted local parts,
# comments and IP-literal domains are refused: a letter goes to exactly one person.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_MAILBOX = re.compile(rf"{_ATEXT}(?:\.{_ATEXT})*@{_LABEL}(?:\.{_LABEL})+")


def mailbox_problem(address: str) -> str | None:
    """Why `address` is not exactly one plain e-mail address, or None.

    The reason names the kind of problem, never the address (it identifies a patient).
    """
    if not address.isascii():
        at = next(i for i, c in enumerate(address, start=1) if not c.isascii())
        return (f"'email' holds a non-ASCII character at character {at}: carepath sends to plain ASCII addresses "
                "only (write an international domain in its xn-- form)")
    if len(address) > MAX_EMAIL_CHARS:
        return f"'email' is longer than {MAX_EMAIL_CHARS} characters, the most an address can be"
    if "," in address or ";" in address or address.count("@") > 1:
        return "'email' holds more than one address (a comma, semicolon or second @): give exactly one"
    if "<" in address or ">" in address or '"' in address or "(" in address:
        return "'email' holds a display name, quotes or a comment: give only the address, like name@example.org"
    if any(c.isspace() for c in address):
        return "'email' holds a space: give only the address, like name@example.org"
    if _MAILBOX.fullmatch(address) is None or len(address.partition("@")[0]) > 64:
        return "'email' is not an e-mail address like name@example.org (one @, a domain with a dot)"
    return None


def json_kind(value: object) -> str:
    """What the user wrote, as a JSON type: safe to show, unlike the value itself."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__  # pragma: no cover - json gives no other types


def shown_time(value: str) -> str:
    """A timestamp as written, if it is made only of timestamp characters."""
    return f" (got {value})" if _TIMESTAMP_CHARS.fullmatch(value) else ""


def shown_key(key: str) -> str:
    """A JSON key, quoted, if it is written like a field name (lower_snake_case).

    Keys are schema rather than data, but a hand-built line can still use a name as a
    key; anything not written like a field name is not echoed.
    """
    return f"'{key}'" if _KEY_CHARS.fullmatch(key) else "an unrecognised field"


def parse_time(value: object, what: str, problems: list[str]) -> datetime | None:
    """An aware datetime from ISO text, or None after appending a problem."""
    if type(value) is not str:
        problems.append(f"{what} must be {EXPECTED[_DATETIME]} (got {json_kind(value)})")
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        problems.append(f"{what} is not a valid date-time{shown_time(value)}: write it like {EXAMPLE_TIME}")
        return None
    if parsed.tzinfo is None:
        problems.append(
            f"{what} has no UTC offset{shown_time(value)}: add one, e.g. {EXAMPLE_TIME} "
            "(or Z for UTC), so the instant is not ambiguous"
        )
        return None
    if (problem := time_range_problem(parsed)) is not None:
        problems.append(f"{what} {problem}")
        return None
    return parsed


def time_range_problem(value: datetime) -> str | None:
    """Why an aware instant cannot be planned, or None (see EARLIEST_YEAR/LATEST_YEAR)."""
    try:
        utc_year = (value - value.utcoffset()).year  # type: ignore[operator]
    except OverflowError:
        utc_year = 0
    if EARLIEST_YEAR <= value.year <= LATEST_YEAR and EARLIEST_YEAR <= utc_year <= LATEST_YEAR:
        return None
    return f"is out of range (got year {value.year}): instants must lie between {EARLIEST_YEAR} and {LATEST_YEAR}"


@dataclass(frozen=True, slots=True)
class TypeSpec:
    """One event type, compiled for checking."""

    name: str
    fields: tuple[tuple[str, FieldType, bool, dict[str, str] | None], ...]  # allowed: value -> shared str
    names: frozenset[str]
    phq9: bool          # assessment_recorded: PHQ-9 rules apply when instrument is phq9
    non_negative: tuple[str, ...] = ()  # whole-number fields that count or measure something

    def describe_fields(self) -> str:
        return ", ".join(self.names_in_order()) or "no data fields"

    def names_in_order(self) -> list[str]:
        return [name for name, *_ in self.fields]


# Core fields that count (documented treatment trials) or measure (blood pressure): a
# negative value is a typing error, and `trd_trials: -2` would read as "fewer than 2 trials".
_NON_NEGATIVE = {"screening_recorded": ("trd_trials",), "vitals_recorded": ("systolic", "diastolic")}


def compile_event_types(event_types: Mapping[str, Mapping[str, DataField]]) -> dict[str, TypeSpec]:
    specs: dict[str, TypeSpec] = {}
    for type_name, fields in event_types.items():
        compiled = tuple(
            (name, FieldType(field.type), bool(field.optional),
             {value: value for value in field.one_of} if field.one_of is not None else None)
            for name, field in fields.items()
        )
        specs[type_name] = TypeSpec(
            name=type_name, fields=compiled, names=frozenset(fields),
            phq9=type_name == "assessment_recorded",
            non_negative=tuple(n for n in _NON_NEGATIVE.get(type_name, ()) if n in fields),
        )
    return specs


def check_data(spec: TypeSpec, data: dict[str, object], problems: list[str]) -> Mapping[str, object]:
    """The validated, read-only data of one event; problems are appended to `problems`.

    An optional field given as null counts as absent. Datetime fields become aware
    datetimes; lists become tuples so that the result is read-only all the way down.
    """
    if not spec.fields:
        if data:
            _unknown_fields(spec, data, problems)
        return EMPTY_DATA
    out: dict[str, object] = {}
    for name, kind, optional, allowed in spec.fields:
        value = data.get(name)
        if value is None:
            if not optional:
                problems.append(f"data.{name} is missing ({spec.name} events need it: {EXPECTED[kind]})")
            continue
        if kind is _TEXT:
            if type(value) is not str:
                problems.append(f"data.{name} must be text (got {json_kind(value)})")
                continue
            if allowed is not None:
                # One shared str per allowed value instead of one per event.
                value = allowed.get(value)  # type: ignore[assignment]
                if value is None:
                    problems.append(f"data.{name} must be one of: {', '.join(sorted(allowed))}")
                    continue
        elif kind is _INTEGER:
            if type(value) is not int or not -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
                problems.append(f"data.{name} must be a whole number (got {_number_kind(value)})")
                continue
        elif kind is _INTEGER_LIST:
            if type(value) is not list or not all(
                type(v) is int and -MAX_SAFE_INTEGER <= v <= MAX_SAFE_INTEGER for v in value
            ):
                problems.append(f"data.{name} must be a list of whole numbers ({_list_problem(value, int)})")
                continue
            value = tuple(value)
        elif kind is _TEXT_LIST:
            if type(value) is not list or not all(type(v) is str for v in value):
                problems.append(f"data.{name} must be a list of text values ({_list_problem(value, str)})")
                continue
            if allowed is not None and not allowed.keys() >= set(value):
                problems.append(f"each entry of data.{name} must be one of: {', '.join(sorted(allowed))}")
                continue
            value = tuple(value)
        elif kind is _DATETIME:
            value = parse_time(value, f"data.{name}", problems)
            if value is None:
                continue
        elif kind is _NUMBER:
            if type(value) not in (int, float) or not (
                -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER  # type: ignore[operator]
            ):
                problems.append(f"data.{name} must be a number (got {_number_kind(value)})")
                continue
        elif kind is _BOOLEAN:
            if type(value) is not bool:
                problems.append(f"data.{name} must be true or false (got {json_kind(value)})")
                continue
        out[name] = value
    if not spec.names.issuperset(data):
        _unknown_fields(spec, data, problems)
    for name in spec.non_negative:
        value = out.get(name)
        if type(value) is int and value < 0:
            problems.append(f"data.{name} must not be negative (got {value})")
    if spec.phq9 and out.get("instrument") == "phq9":
        check_phq9(out, problems)
    return MappingProxyType(out)


def check_phq9(out: Mapping[str, object], problems: list[str]) -> None:
    """PHQ-9: exactly 9 items, each a whole number 0..3; a stated total must agree.

    `out` holds the fields that passed their type check; a field that failed it has
    already been reported and is not checked again here.
    """
    items = out.get("items")
    if not isinstance(items, tuple):
        return
    if len(items) != PHQ9_ITEMS:
        problems.append(f"a PHQ-9 needs exactly {PHQ9_ITEMS} item scores, but data.items has {len(items)}")
        return
    bad = [(i, v) for i, v in enumerate(items, start=1) if not 0 <= v <= PHQ9_MAX_ITEM]  # type: ignore[operator]
    if bad:
        listed = ", ".join(f"item {i} is {v}" for i, v in bad)
        problems.append(f"each PHQ-9 item must be a whole number from 0 to {PHQ9_MAX_ITEM} ({listed})")
        return
    total = out.get("total")
    if type(total) is int:
        summed = sum(items)  # type: ignore[arg-type]
        if total != summed:
            problems.append(
                f"the PHQ-9 total is {total} but the items add up to {summed}: "
                "correct the total or the items, or leave the total out"
            )


def _number_kind(value: object) -> str:
    if type(value) in (int, float) and not -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:  # type: ignore[operator]
        return "a number too large to be a real value"
    if type(value) is float:
        return "a number with a decimal point"
    return json_kind(value)


def _list_problem(value: object, want: type) -> str:
    if type(value) is not list:
        return f"got {json_kind(value)}"
    for position, element in enumerate(value, start=1):
        if type(element) is not want or (want is int and not -MAX_SAFE_INTEGER <= element <= MAX_SAFE_INTEGER):
            return f"entry {position} is {json_kind(element) if want is str else _number_kind(element)}"
    return "got a list"  # pragma: no cover - only called when an entry is wrong


def _unknown_fields(spec: TypeSpec, data: Mapping[str, object], problems: list[str]) -> None:
    unknown = [key for key in data if key not in spec.names]
    listed = ", ".join(shown_key(key) for key in unknown)
    plural = "fields" if len(unknown) > 1 else "field"
    problems.append(
        f"data has an unknown {plural} {listed} ({spec.name} events take: {spec.describe_fields()})"
    )


# --- wording shared by the patients and events lines ----------------------------


def quote(value: str) -> str:
    """An id or ref for a reason: quoted, escaped (no forged log lines), length-capped."""
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 82 else text[:79] + '..."'


def ref_problem(value: object, what: str) -> str | None:
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


def unknown_keys(obj: dict[str, object], allowed: frozenset[str], kind: str) -> str:
    unknown = [key for key in obj if key not in allowed]
    listed = ", ".join(shown_key(key) for key in unknown)
    plural = "fields" if len(unknown) > 1 else "field"
    return f"unknown {plural} {listed} ({kind} lines take: {', '.join(sorted(allowed))})"

