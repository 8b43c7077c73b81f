"""Calendar series: the slots a week-by-week schedule gives, counted from the first dose.

A label schedule ("twice weekly in weeks 1-4, weekly in weeks 5-8") speaks of calendar
weeks, not of elapsed hours, so slots are whole clinic-local days: week k is the seven
local days starting k-1 weeks after the day of the first dose, and its days are shared
out among its sessions in order (two per week: days 1-3 and days 4-7; one: all seven).
A slot's window runs from local midnight of its first day to local midnight after its
last, so a DST change inside a week moves no window boundary off midnight. The check
layer keeps `per_week` within 1..7, so every slot has at least one day.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from carepath.compile.compiled import CalendarBlock
from carepath.engine.calendar import localize

_DAYS_PER_WEEK = 7
_MIDNIGHT = time(0, 0)


@dataclass(frozen=True)
class Slot:
    number: int       # 1-based, in calendar order: the nth dose fills slot n
    week: int
    opens: datetime   # local midnight starting the slot's first day
    closes: datetime  # local midnight after its last day


def calendar_slots(blocks: tuple[CalendarBlock, ...], first_dose: datetime, zone: ZoneInfo) -> Iterator[Slot]:
    day_one = first_dose.astimezone(zone).date()
    number = 0
    for block in blocks:
        for week in range(block.first_week, block.last_week + 1):
            week_start = day_one + timedelta(days=_DAYS_PER_WEEK * (week - 1))
            for j in range(block.per_week):
                # Integer division shares the days out without fractions: 2 a week → 3 + 4 days.
                first = week_start + timedelta(days=j * _DAYS_PER_WEEK // block.per_week)
                after = week_start + timedelta(days=(j + 1) * _DAYS_PER_WEEK // block.per_week)
                number += 1
                yield Slot(number, week, localize(first, _MIDNIGHT, zone), localize(after, _MIDNIGHT, zone))
