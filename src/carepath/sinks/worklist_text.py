"""The worklist's words: what made a task in the pathway's own words, clinic-time phrases
("Tue 3 Mar 10:00 – Wed 4 Mar 10:00 EST", "for 3 d 4 h"), why a due time falls outside
opening hours, and role labels. Used by `worklist.html` and by `carepath serve`'s pages.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from sys import intern
from zoneinfo import ZoneInfo

from carepath.compile.compiled import ClinicCalendar, CompiledPathway
from carepath.engine import calendar as clinic_calendar
from carepath.sinks.documents import instant


class Words:
    """The pathway's own words for provenance, and clinic-time phrases, cached: a cohort
    repeats the same few sources and days."""

    def __init__(self, compiled: CompiledPathway, as_of: datetime) -> None:
        self.compiled = compiled
        self.as_of = as_of
        self._rules: dict[str, str] = {}
        self._hours: dict[datetime, str] = {}

    def when(self, moment: datetime) -> str:
        local = moment.astimezone(self.compiled.clinic.zone)
        year = "" if local.year == self.as_of.year else f" {local.year}"
        return f"{local:%a} {local.day} {local:%b}{year}, {local:%H:%M}"

    def rule(self, source: str) -> str:
        text = self._rules.get(source)
        if text is None:
            text = self._rules[source] = intern(provenance_text(self.compiled, source))
        return text

    def escalation(self, value: object, owner: str) -> str:
        """"Medical director since Tue 7 Apr, 09:30; next Tue 7 Apr, 23:59", or "" when none."""
        if value is None:
            return ""
        if not isinstance(value, Mapping):
            raise ValueError(f"{owner}: escalation must be an object")
        since, following = instant(value, "since", owner), instant(value, "next_at", owner)
        text = f"{role_label(str(value.get('tier')))} since {self.when(since) if since else '?'}"
        return text + (f"; next {self.when(following)}" if following is not None else "")

    def off_hours(self, due: datetime) -> str:
        text = self._hours.get(due)
        if text is None:
            text = self._hours[due] = outside_hours(self.compiled.clinic, due)
        return text


def provenance_text(compiled: CompiledPathway, source: str) -> str:
    """What made a task, in the pathway's words: "rule:phq9_item9" → that rule's
    description; the name itself when the pathway describes it nowhere."""
    kind, _, rest = source.partition(":")
    name, _, extra = rest.partition(":")
    note = compiled.notes.get(f"{kind}:{name}")
    if kind == "step" and extra == "overdue":
        step = compiled.steps.get(name)
        return f"Escalation: {step.title if step else name} passed its due time undone"
    if extra == "window_conflict":
        head = note.rstrip(".") + ". " if note else ""
        return head + "Its window holds no open clinic hours."
    if kind == "stage":
        what = {"recurring": "Recurring work", "on_enter": "On entering"}.get(extra.split(":")[0], "Stage")
        label = name.replace("_", " ")
        return f"{what} in {label}" + (f": {note}" if note else "")
    return note or f"{kind.capitalize()}: {name.replace('_', ' ')}"


def outside_hours(cal: ClinicCalendar, due: datetime) -> str:
    """Why `due` falls outside opening hours ("clinic closed on Sunday"), or ""."""
    local = due.astimezone(cal.zone)
    day = local.date()
    spans = clinic_calendar.open_spans(cal, day)
    if not spans:
        return f"clinic closed on {local:%A}" + (" (closed date)" if day in cal.closed_dates else "")
    if any(start <= local.time() <= end for start, end in spans):
        return ""
    return f"outside opening hours ({', '.join(f'{a:%H:%M}-{b:%H:%M}' for a, b in spans)})"


def span(delta: timedelta) -> str:
    """A duration for a glance: "3 d 4 h", "5 h", "20 min"."""
    minutes = max(0, int(delta.total_seconds() // 60))
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    if days >= 7:
        return f"{days} d"
    if days:
        return f"{days} d {hours} h" if hours else f"{days} d"
    if hours:
        return f"{hours} h"
    return f"{mins} min"


def role_label(role: str) -> str:
    return role.replace("_", " ").capitalize()


def short_moment(moment: datetime) -> str:
    return f"{moment:%a} {moment.day} {moment:%b %H:%M}"


def long_moment(moment: datetime) -> str:
    return f"{moment:%a} {moment.day} {moment:%b %Y %H:%M} {moment.tzname()}"


def window_text(earliest: datetime, due: datetime | None, zone: ZoneInfo) -> str:
    """The window in clinic time with its zone: "Tue 3 Mar 10:00 – Wed 4 Mar 10:00 EST"."""
    return " ".join(window_parts(earliest, due, zone))


def window_parts(earliest: datetime, due: datetime | None, zone: ZoneInfo) -> tuple[str, ...]:
    """The window as the pieces a narrow column may wrap between (never inside a date).
    A same-day window names the day once; one across a DST change names both zones, since
    a single abbreviation would misstate one end by an hour."""
    start = earliest.astimezone(zone)
    if due is None:
        return f"from {short_moment(start)} {start.tzname()}", "(no due time)"
    end = due.astimezone(zone)
    if start.tzname() != end.tzname():
        return f"{short_moment(start)} {start.tzname()} –", f"{short_moment(end)} {end.tzname()}"
    last = f"{end:%H:%M}" if start.date() == end.date() else short_moment(end)
    return f"{short_moment(start)} –", f"{last} {end.tzname()}"

