"""Durable timers instead of polling: which patients need a re-plan of their own before
the next scheduled sweep, and when.

A plan knows when it next reads differently with no new event (`PatientPlan.wake`: an
escalation falling due, an urgent deadline, a letter's send time). The hourly sweep meets
such instants up to an hour late; a patient whose wake comes before the next sweep gets
one re-plan at that instant (the runtime schedules a run of the patient deployment). Each
timer is named by (pathway, patient, instant), so scheduling it twice makes one run; a
timer whose patient was re-planned first (an event came) finds nothing new and changes
nothing. No Prefect here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from carepath.orchestrator.wake_index import instant


@dataclass(frozen=True, order=True)
class Timer:
    at: datetime
    patient: str

    def key(self, pathway: str) -> str:
        """The same for the same patient and instant, whichever run asks for it."""
        return f"carepath-timer|{pathway}|{self.patient}|{instant(self.at)}"


def next_sweep(as_of: datetime, zone: ZoneInfo) -> datetime:
    """The next hourly sweep after `as_of`: the next full hour of the clinic's zone."""
    local = as_of.astimezone(zone)
    return (local.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)).astimezone(zone)


def horizon(as_of: datetime, zone: ZoneInfo) -> datetime:
    """Timers are asked for up to the sweep after the next one: the next sweep re-plans only
    the patients whose wake has come by then, so a wake just after it would otherwise wait
    for the sweep after (the timers of every patient in the wake index are asked for by
    each sweep; their idempotency keys make asking twice one run)."""
    return next_sweep(as_of, zone) + timedelta(hours=1)


def timers_before(wakes: Iterable[tuple[str, datetime]], as_of: datetime, until: datetime) -> list[Timer]:
    """One timer per patient whose wake falls after `as_of` and before `until` (`horizon`),
    earliest first."""
    return sorted(Timer(wake, ref) for ref, wake in wakes if as_of < wake < until)
