"""The worklist's banding and ordering rules: which band open work falls in (safety →
overdue → today → upcoming → no due time), its place within the band, and which patients
need attention. Shared by `worklist.html`, its stored per-patient rows
(`carepath.sinks.worklist_rows`), the live board of `carepath serve` and the Prefect
artifact of top rows, so that they all band and order work the same way.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

from carepath.compile.compiled import Step
from carepath.sinks.documents import PRIORITY_RANK

ACTIONABLE = ("overdue", "open")
# Patients listed by name-free ref under "Patients needing attention"; the others (active
# or discharged, no flag that needs attention, no hold) are only counted.
ATTENTION_STATUSES = frozenset({"pending_eligibility", "blocked"})
# Done and cancelled work only grows; the page lists the most recent and counts the rest
# (tasks.csv and tasks.jsonl hold them all).
CLOSED_SHOWN = 200


@dataclass(frozen=True, slots=True)
class BandSpec:
    key: str
    label: str
    note: str


BANDS = (
    BandSpec("safety", "Safety-critical", "safety work the pathway marks critical, or urgent work that holds dosing; "
             "grouped by patient, unacknowledged work first, the most recently raised first"),
    BandSpec("overdue", "Overdue", "past their due time; most overdue first"),
    BandSpec("today", "Due today", "by due time"),
    BandSpec("upcoming", "Upcoming", "due within the horizon, by due time"),
    BandSpec("no-due", "Open, no due time", "by when they opened"),
)
BAND_INDEX = {b.key: i for i, b in enumerate(BANDS)}


def needs_attention(status: str, flags: Iterable[str], holds: Iterable[str], severity: Mapping[str, str]) -> bool:
    """Blocked, awaiting eligibility, on hold, or with a flag the pathway says needs
    attention (a flag it does not declare, from a pinned older version, counts too); good
    news such as remission does not."""
    return (status in ATTENTION_STATUSES or any(True for _ in holds)
            or any(severity.get(flag, "attention") == "attention" for flag in flags))


def safety_critical(step: Step | None, priority: str) -> bool:
    """Work that goes to the very top: a step the pathway marks `safety: true`, or urgent
    work that holds something (dosing) while it is open, e.g. a suicide-risk assessment."""
    if step is None:
        return False
    return step.safety or (priority == "urgent" and bool(step.holds))


def band_of(status: str, safety: bool, due: datetime | None, earliest: datetime, as_of: datetime,
            today: date, horizon_end: datetime, zone: ZoneInfo) -> str | None:
    """The band of an open or overdue task, or None when it lies beyond the horizon."""
    if safety and (status == "overdue" or earliest <= as_of):
        return "safety"
    if status == "overdue":
        return "overdue"
    if due is None:
        return "no-due" if earliest <= horizon_end else None
    if due.astimezone(zone).date() <= today:
        return "today"
    return "upcoming" if due <= horizon_end else None


def sort_key(band: str, due: datetime | None, earliest: datetime, priority: str, patient: str,
             task_id: str) -> tuple[object, ...]:
    """Within a band: by due time (the oldest deadline first), then urgency."""
    return (BAND_INDEX[band], due is None, due or earliest, PRIORITY_RANK.get(priority, len(PRIORITY_RANK)),
            earliest, patient, task_id)


def safety_sort_keys(patient: str, items: Iterable[tuple[str, bool, datetime]]) -> dict[str, tuple[object, ...]]:
    """Each of one patient's safety-band tasks (id, acknowledged, raised) → its key in the
    band. Unseen danger is seen first: a patient's tasks stay together (nine breach reviews
    are one group, not nine rows above another patient's new assessment); patients with
    unacknowledged work come first, the one whose unacknowledged work was raised most
    recently first; within a patient, unacknowledged before acknowledged, newest first."""
    items = list(items)
    unseen = [raised for _, acknowledged, raised in items if not acknowledged]
    group = (0 if unseen else 1, -max(unseen or [raised for _, _, raised in items]).timestamp(), patient)
    return {task_id: (BAND_INDEX["safety"], *group, 1 if acknowledged else 0, -raised.timestamp(), task_id)
            for task_id, acknowledged, raised in items}
