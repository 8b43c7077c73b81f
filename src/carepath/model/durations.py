"""The small textual languages inside a pathway: durations, offsets, clock times.

Kept as strings in the model (so a pathway round-trips exactly) and parsed here, once,
by the check and compile layers.
"""

from __future__ import annotations

import re
from datetime import time, timedelta

PARAM_REF = re.compile(r"^\$([a-z][a-z0-9_]*)$", re.ASCII)
_OFFSET = re.compile(r"^(?P<sign>-)?\s*(?P<n>\d+)\s*(?P<unit>[a-z]+)(?:\s+(?P<side>before|after))?$", re.ASCII)
_UNITS = {
    "m": timedelta(minutes=1), "min": timedelta(minutes=1), "minute": timedelta(minutes=1),
    "minutes": timedelta(minutes=1),
    "h": timedelta(hours=1), "hour": timedelta(hours=1), "hours": timedelta(hours=1),
    "d": timedelta(days=1), "day": timedelta(days=1), "days": timedelta(days=1),
    "w": timedelta(weeks=1), "week": timedelta(weeks=1), "weeks": timedelta(weeks=1),
}
MAX_DURATION = timedelta(days=36525)  # 100 years
_CLOCK = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$", re.ASCII)
_SPAN = re.compile(r"^\s*(\d\d:\d\d)\s*-\s*(\d\d:\d\d)\s*$", re.ASCII)


class SyntaxProblem(ValueError):
    """A malformed duration/offset/time; `negative` marks the '-' case for its own code."""

    def __init__(self, message: str, *, negative: bool = False) -> None:
        super().__init__(message)
        self.negative = negative


def param_name(text: object) -> str | None:
    """`$name` → `name`; anything else → None."""
    if isinstance(text, str) and (m := PARAM_REF.match(text.strip())):
        return m.group(1)
    return None


def referenced_name(raw: object) -> str | None:
    """The parameter an offset refers to, including the `$name before` form."""
    if not isinstance(raw, str):
        return None
    text = raw.strip()
    for word in (" before", " after"):
        if text.endswith(word):
            text = text[: -len(word)].rstrip()
    return param_name(text)


def parse_offset(text: str) -> timedelta:
    """'24h', '40 minutes after', '1h before' → signed timedelta (before = negative)."""
    m = _OFFSET.match(text.strip().lower())
    if not m or m.group("unit") not in _UNITS:
        raise SyntaxProblem(
            f"{text!r} is not a duration; write a number and a unit, e.g. '24h', '40m', '2d', '1w'"
        )
    if m.group("sign"):
        raise SyntaxProblem(f"{text!r} is negative; write '{text.strip()[1:].strip()} before' instead",
                            negative=True)
    digits = m.group("n")
    if len(digits) > 9 or (value := int(digits) * _UNITS[m.group("unit")]) > MAX_DURATION:
        # Plans add durations to instants: beyond this they would overflow the calendar.
        raise SyntaxProblem(f"{text!r} is longer than {MAX_DURATION.days // 365} years; no clinical window is")
    return -value if m.group("side") == "before" else value


def parse_duration(text: str) -> timedelta:
    """A length of time: an offset that may not say before/after."""
    value = parse_offset(text)
    if "before" in text or "after" in text:
        raise SyntaxProblem(f"{text!r} is a length of time; drop 'before'/'after'")
    return value


def parse_clock(text: str) -> time:
    m = _CLOCK.match(text.strip())
    if not m:
        raise SyntaxProblem(f"{text!r} is not a clock time; write HH:MM in 24-hour form, e.g. '18:00'")
    return time(int(m.group(1)), int(m.group(2)))


def parse_span(text: str) -> tuple[time, time]:
    """'08:00-18:00' → (08:00, 18:00); opening must precede closing."""
    m = _SPAN.match(text)
    if not m:
        raise SyntaxProblem(f"{text!r} is not an opening span; write 'HH:MM-HH:MM', e.g. '08:00-18:00'")
    start, end = parse_clock(m.group(1)), parse_clock(m.group(2))
    if start >= end:
        raise SyntaxProblem(f"{text!r} closes before it opens")
    return start, end


def format_offset(delta: timedelta) -> str:
    """Inverse of parse_offset for display: the largest whole unit."""
    seconds = int(abs(delta).total_seconds())
    side = " before" if delta < timedelta(0) else ""
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0 and seconds:
            return f"{seconds // size}{unit}{side}"
    return "0h"
