"""What a run reports of the cohort's open work: each plan summarised (what the wake
index keeps for patients a sweep does not re-plan), and the summaries counted into a
`Workload` (refs and counts only: safe for Prefect's artifacts and the console)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple

from carepath.compile.compiled import CompiledPathway
from carepath.engine.result import PatientPlan
from carepath.records import Rejection

ACTIVE_TASK = ("open", "overdue")
URGENT_SHOWN = 100  # rows of urgent work a summary lists; the rest are counted


class UrgentRow(NamedTuple):
    """One row at the top of the worklist, as the worklist ranks it."""

    sort_key: tuple[object, ...]
    band: str
    patient: str
    step: str
    due: str
    status: str
    opened: str


@dataclass(frozen=True)
class Workload:
    """Counts of one patient group's current plan: what the run summary and the Prefect
    artifacts show (refs and counts only)."""

    patients: int = 0
    open_tasks: Counter = field(default_factory=Counter)       # (role, priority) → open or overdue tasks
    overdue: int = 0
    letters: int = 0
    statuses: Counter = field(default_factory=Counter)         # patient status → patients
    urgent: tuple[UrgentRow, ...] = ()  # the top of the worklist, in its order
    attention: int = 0    # patients the worklist lists as needing attention (good-news flags do not count)
    letter_statuses: Counter = field(default_factory=Counter)  # letter status at as-of → letters

    def __add__(self, other: Workload) -> Workload:
        urgent = tuple(sorted(self.urgent + other.urgent, key=lambda u: u.sort_key)[:URGENT_SHOWN])
        return Workload(self.patients + other.patients, self.open_tasks + other.open_tasks,
                        self.overdue + other.overdue, self.letters + other.letters,
                        self.statuses + other.statuses, urgent, self.attention + other.attention,
                        self.letter_statuses + other.letter_statuses)


def summary_of(p: PatientPlan, rejected: Iterable[Rejection] = ()) -> dict[str, object]:
    """What the run summary needs of one plan (its open work, status, letters) and the
    patient's rejected lines, compact: the wake index keeps it for patients a sweep does
    not re-plan. No names."""
    letters: Counter = Counter(letter.status for letter in p.letters)
    return {
        "status": p.status, "flags": list(p.flags), "holds": list(p.holds), "letters": dict(letters),
        "tasks": [[t.id, t.step, t.role, t.priority, t.status, t.due.isoformat() if t.due else None,
                   t.earliest.isoformat(), t.acknowledged_at is not None] for t in p.tasks if t.status in ACTIVE_TASK],
        "rejected": [[r.file, r.line, r.id, r.reason] for r in rejected],
        "outputs": 1 + len(p.tasks) + len(p.letters),  # the care-plan summary, tasks, letters
    }


def workload(plans: Iterable[PatientPlan], compiled: CompiledPathway, as_of: datetime) -> Workload:
    return workload_of(((p.patient, summary_of(p)) for p in plans), compiled, as_of)


def workload_of(summaries: Iterable[tuple[str, dict]], compiled: CompiledPathway, as_of: datetime) -> Workload:
    """The counts and top rows of the patients' open work as of `as_of` (the worklist's
    bands are the as-of's: a task due tomorrow is `today`'s work tomorrow)."""
    from carepath.sinks.worklist_bands import band_of, needs_attention, safety_critical, safety_sort_keys, sort_key

    open_tasks: Counter = Counter()
    statuses: Counter = Counter()
    urgent: list[UrgentRow] = []
    overdue = letters = patients = attention = 0
    zone = compiled.clinic.zone
    now = as_of.astimezone(zone)
    horizon_end = now + compiled.worklist.horizon
    letter_statuses: Counter = Counter()
    parse = datetime.fromisoformat
    for ref, s in summaries:
        if "status" not in s:
            continue  # refused (pinned to a version that cannot be planned): no plan to count
        patients += 1
        statuses[s["status"]] += 1
        letters += sum(s["letters"].values())
        letter_statuses.update(s["letters"])
        safety_rows: list[tuple[str, bool, datetime, str, str, str, str]] = []
        # A summary stored before acknowledgements has seven fields: read as unacknowledged.
        for task_id, step, role, priority, status, due_text, earliest_text, *acknowledged in s["tasks"]:
            open_tasks[(role, priority)] += 1
            overdue += status == "overdue"
            due, earliest = parse(due_text) if due_text else None, parse(earliest_text)
            # Ranked as the worklist ranks its rows, so the artifact shows the page's top rows.
            safety = safety_critical(compiled.steps.get(step), priority)
            band = band_of(status, safety, due, earliest, now, now.date(), horizon_end, zone)
            if band == "safety":
                safety_rows.append((task_id, bool(acknowledged and acknowledged[0]), earliest, step, due_text or "",
                                    status, earliest_text))
            elif band in ("overdue", "today"):
                urgent.append(UrgentRow(sort_key(band, due, earliest, priority, ref, task_id), band, ref, step,
                                        due_text or "", status, earliest_text))
        if safety_rows:
            keys = safety_sort_keys(ref, [(r[0], r[1], r[2]) for r in safety_rows])
            urgent.extend(UrgentRow(keys[r[0]], "safety", ref, *r[3:]) for r in safety_rows)
        # Open safety work makes a patient one needing attention, as the page lists them.
        attention += bool(safety_rows) or needs_attention(s["status"], tuple(s["flags"]), tuple(s["holds"]),
                                                          compiled.flag_severity)
    urgent.sort(key=lambda u: u.sort_key)
    return Workload(patients, open_tasks, overdue, letters, statuses, tuple(urgent[:URGENT_SHOWN]), attention,
                    letter_statuses)
