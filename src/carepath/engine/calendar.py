"""Clinic-time arithmetic: DST-safe local times, opening hours, business days.

Python trap this module exists for: adding a timedelta to an aware datetime in a
ZoneInfo zone adds *wall-clock* time. Elapsed arithmetic is therefore done in UTC, and
wall-clock arithmetic is done explicitly on local fields, then re-localised so that a
non-existent local time (the spring-forward gap) moves forward, never lands in the gap.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta, timezone
from functools import lru_cache
from zoneinfo import ZoneInfo

from carepath.compile.compiled import BusinessDue, ClinicCalendar, ClockDue, DueSpec, OffsetDue
from carepath.model.pathway import Basis

_MAX_SCAN_DAYS = 366


@lru_cache(maxsize=65536)  # pure; planning asks for the same few clinic days again and again
def localize(day: date, clock: time, zone: ZoneInfo) -> datetime:
    """The instant a local clock shows `clock` on `day`; in a DST gap, the first valid instant after."""
    naive = datetime.combine(day, clock)
    candidate = naive.replace(tzinfo=zone, fold=0)
    round_trip = candidate.astimezone(UTC).astimezone(zone)
    # In a spring-forward gap the round trip lands after the gap (02:30 EST is 03:30 EDT):
    # exactly the forward move we want. Elsewhere it is the candidate itself.
    return round_trip if round_trip.replace(tzinfo=None) != naive else candidate


def shift(anchor: datetime, delta: timedelta, basis: Basis, zone: ZoneInfo) -> datetime:
    """anchor + delta, in `zone`: true elapsed time, or the same wall-clock time later."""
    if basis is Basis.ELAPSED:
        if type(anchor.tzinfo) is timezone:
            # A fixed offset (every time read from a file): adding is already elapsed time,
            # and the result is the same instant, converted the same way, one call sooner.
            return (anchor + delta).astimezone(zone)
        return (anchor.astimezone(UTC) + delta).astimezone(zone)
    local = anchor.astimezone(zone).replace(tzinfo=None) + delta
    return localize(local.date(), local.time(), zone)


def open_spans(cal: ClinicCalendar, day: date) -> tuple[tuple[time, time], ...]:
    if day in cal.closed_dates:
        return ()
    return cal.hours[day.weekday()]


def is_open_day(cal: ClinicCalendar, day: date) -> bool:
    return bool(open_spans(cal, day))


def closing_time(cal: ClinicCalendar, day: date) -> datetime:
    return localize(day, open_spans(cal, day)[-1][1], cal.zone)


def business_due(cal: ClinicCalendar, anchor: datetime, days: int) -> datetime:
    """Closing time of the Nth open day after the anchor's local day.

    0 means the next closing at or after the anchor: that day's if the clinic is still
    open, otherwise the next open day's.
    """
    local = anchor.astimezone(cal.zone)
    day = local.date()
    if days == 0:
        for _ in range(_MAX_SCAN_DAYS):
            if is_open_day(cal, day) and closing_time(cal, day) > local:
                return closing_time(cal, day)
            day += timedelta(days=1)
        raise ValueError("the clinic has no opening hours within a year")
    remaining = days
    for _ in range(_MAX_SCAN_DAYS):
        day += timedelta(days=1)
        if is_open_day(cal, day):
            remaining -= 1
            if remaining == 0:
                return closing_time(cal, day)
    raise ValueError("the clinic has no opening hours within a year")


def resolve_due(cal: ClinicCalendar, spec: DueSpec, anchor: datetime, basis: Basis) -> datetime:
    if isinstance(spec, OffsetDue):
        return shift(anchor, spec.delta, basis, cal.zone)
    if isinstance(spec, ClockDue):
        day = anchor.astimezone(cal.zone).date() + timedelta(days=spec.days_later)
        return localize(day, spec.at, cal.zone)
    assert isinstance(spec, BusinessDue)
    return business_due(cal, anchor, spec.business_days)


def within_hours(cal: ClinicCalendar, due: datetime) -> datetime:
    """`due` when the clinic is open then (or closes at that instant), else the closing time
    of its next opening: a deadline never lands on a closed day or in the night."""
    local = due.astimezone(cal.zone)
    day = local.date()
    for open_at, close_at in open_spans(cal, day):
        if localize(day, open_at, cal.zone) <= local <= localize(day, close_at, cal.zone):
            return due
    return next_opening(cal, due)[1]


def has_open_hours(cal: ClinicCalendar, start: datetime, end: datetime) -> bool:
    """Whether [start, end] overlaps any opening span."""
    day = start.astimezone(cal.zone).date()
    last = end.astimezone(cal.zone).date()
    while day <= last:
        for open_at, close_at in open_spans(cal, day):
            if localize(day, open_at, cal.zone) < end and localize(day, close_at, cal.zone) > start:
                return True
        day += timedelta(days=1)
    return False


def next_opening(cal: ClinicCalendar, after: datetime) -> tuple[datetime, datetime]:
    """The next opening span (open, close) that is still open at or after `after`."""
    local = after.astimezone(cal.zone)
    day = local.date()
    for _ in range(_MAX_SCAN_DAYS):
        for open_at, close_at in open_spans(cal, day):
            opens, closes = localize(day, open_at, cal.zone), localize(day, close_at, cal.zone)
            if closes > local:
                return max(opens, local), closes
        day += timedelta(days=1)
    raise ValueError("the clinic has no opening hours within a year")


def day_opening(cal: ClinicCalendar, anchor: datetime) -> datetime:
    """The clinic's first opening time on the anchor's clinic-local day (local midnight when
    it is closed that day), never after the anchor itself."""
    day = anchor.astimezone(cal.zone).date()
    spans = open_spans(cal, day)
    opening = localize(day, spans[0][0] if spans else time(0, 0), cal.zone)
    return min(opening, anchor.astimezone(cal.zone))
