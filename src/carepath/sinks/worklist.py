"""`DIR/worklist.html`: the page a clinician works from.

Open and overdue tasks grouped by the clinic-local day they are due ("Overdue" first),
then by role, urgent first, then by due time; done and cancelled work folded away. Every
row says why the task exists (the rule or stage that produced it and the event that
triggered it). Patients appear only by their pseudonymous ref: no names reach this page.

The page is one self-contained file (inline CSS, no scripts, no external requests; its
Content-Security-Policy forbids both, so a regression shows up as a browser error).
"""

from __future__ import annotations

from sys import intern

import heapq
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import cache
from pathlib import Path
from zoneinfo import ZoneInfo

from jinja2 import Environment, PackageLoader, StrictUndefined

from carepath.compile.compiled import CompiledPathway
from carepath.sinks._documents import PRIORITY_RANK, instant, require_aware, task_record
from carepath.sinks.base import Delivery, Output, OutputKind, atomic_writer

ACTIONABLE = ("overdue", "open")
# Patients listed by name-free ref under "Patients needing attention"; the others (active
# or discharged, no flag, no hold) are only counted, so the page stays short for a cohort.
ATTENTION_STATUSES = frozenset({"pending_eligibility", "blocked"})
# Done and cancelled work only grows; the page lists the most recent and counts the rest
# (tasks.csv and tasks.jsonl hold them all).
CLOSED_SHOWN = 200
PRIORITIES = ("urgent", "high", "routine")


@dataclass(frozen=True, slots=True)
class Moment:
    text: str       # "Tue 3 Mar 10:00"
    iso: str        # for <time datetime>


@dataclass(frozen=True, slots=True)  # one per open task of the cohort: kept small
class Row:
    id: str
    patient: str
    step: str
    title: str
    role: str
    priority: str
    status: str
    out_of_window: bool
    source: str
    trigger: str
    window: tuple[str, ...]   # ("Tue 3 Mar 10:00 –", "Wed 4 Mar 10:00 EST")
    earliest_iso: str         # clinic zone; for data- attributes
    due_iso: str              # clinic zone; "" when the task has no due time
    completed: Moment | None
    closed_at: datetime       # completion, else due, else earliest: what "most recent" sorts by
    sort_key: tuple[object, ...]


@dataclass(frozen=True)
class RoleGroup:
    role: str
    label: str
    rows: list[Row]


@dataclass(frozen=True)
class DayGroup:
    key: str        # "overdue", an ISO date, or "no-due"
    label: str
    roles: list[RoleGroup]

    @property
    def count(self) -> int:
        return sum(len(r.rows) for r in self.roles)


class Worklist:
    """`DIR/worklist.html` for one pathway as of one instant."""

    name = "worklist.html"
    delivery = Delivery.SNAPSHOT
    kinds = frozenset({OutputKind.PATIENT, OutputKind.TASK})

    def __init__(self, out_dir: Path, compiled: CompiledPathway, as_of: datetime) -> None:
        self.path = Path(out_dir) / "worklist.html"
        self.compiled = compiled
        self.as_of = require_aware(as_of)

    def write(self, outputs: Iterable[Output]) -> int:
        page, count = self.page(outputs)
        # Streamed as Jinja produces it: at cohort scale the page is tens of megabytes.
        with atomic_writer(self.path) as handle:
            for chunk in _template().generate(page=page):
                handle.write(chunk.encode())
        return count

    def render(self, outputs: Iterable[Output]) -> tuple[str, int]:
        """The page and how many outputs it shows (patients and tasks)."""
        page, count = self.page(outputs)
        return _template().render(page=page), count

    def page(self, outputs: Iterable[Output]) -> tuple[dict[str, object], int]:
        """What the template shows, and how many outputs that is."""
        zone = self.compiled.clinic.zone
        today = self.as_of.astimezone(zone).date()
        attention: dict[str, dict[str, object]] = {}
        settled = 0
        actionable: list[Row] = []
        closed: list[tuple[datetime, str, Row]] = []   # a min-heap of the most recently closed
        closed_counts: Counter[str] = Counter()
        count = 0
        for output in outputs:
            if output.kind == OutputKind.PATIENT:
                view = _patient_view(output.patient, output.body)
                if view["status"] in ATTENTION_STATUSES or view["flags"] or view["holds"]:
                    attention[output.patient] = view
                else:
                    settled += 1
                count += 1
            elif output.kind == OutputKind.TASK:
                row = _row(output, zone)
                if row.status in ACTIONABLE:
                    actionable.append(row)
                else:
                    closed_counts[row.status] += 1
                    item = (row.closed_at, row.id, row)
                    if len(closed) < CLOSED_SHOWN:
                        heapq.heappush(closed, item)
                    else:
                        heapq.heappushpop(closed, item)
                count += 1

        open_by_patient = Counter(r.patient for r in actionable)
        by_role = Counter((r.role, r.priority) for r in actionable)
        roles = sorted({role for role, _ in by_role})
        page = {
            "pathway": {"id": self.compiled.id, "version": self.compiled.version, "title": self.compiled.title},
            "clinic": {"name": self.compiled.clinic.name, "zone": zone.key},
            "as_of": Moment(_long(self.as_of.astimezone(zone)), self.as_of.astimezone(zone).isoformat()),
            "days": _days(actionable, today, zone),
            "summary": {
                "priorities": PRIORITIES,
                "roles": [{"label": role_label(role), "role": role,
                           "counts": [by_role[(role, p)] for p in PRIORITIES],
                           "total": sum(n for (r, _), n in by_role.items() if r == role)} for role in roles],
                "totals": [sum(n for (_, p), n in by_role.items() if p == prio) for prio in PRIORITIES],
                "open": len(actionable),
                "overdue": sum(1 for r in actionable if r.status == "overdue"),
                "done": closed_counts["done"],
                "cancelled": closed_counts["cancelled"],
            },
            "closed": [row for _, _, row in sorted(closed, reverse=True)],
            "closed_total": sum(closed_counts.values()),
            "patients": [{**view, "open": open_by_patient[ref]} for ref, view in sorted(attention.items())],
            "settled_patients": settled,
        }
        return page, count


def role_label(role: str) -> str:
    return role.replace("_", " ").capitalize()


def _short(moment: datetime) -> str:
    return f"{moment:%a} {moment.day} {moment:%b %H:%M}"


def _long(moment: datetime) -> str:
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
        return f"from {_short(start)} {start.tzname()}", "(no due time)"
    end = due.astimezone(zone)
    if start.tzname() != end.tzname():
        return f"{_short(start)} {start.tzname()} –", f"{_short(end)} {end.tzname()}"
    last = f"{end:%H:%M}" if start.date() == end.date() else _short(end)
    return f"{_short(start)} –", f"{last} {end.tzname()}"


def _row(output: Output, zone: ZoneInfo) -> Row:
    task = task_record(output.patient, output.body)
    owner = f"task {output.id}"
    earliest = instant(task, "earliest", owner)
    if earliest is None:
        raise ValueError(f"{owner} has no earliest time")
    due = instant(task, "due", owner)
    completed = instant(task, "completed_at", owner)
    priority = str(task["priority"])
    done_at = completed.astimezone(zone) if completed else None
    return Row(
        # Steps, titles, roles and sources repeat across the cohort: one string each.
        id=output.id, patient=output.patient, step=intern(str(task["step"])), title=intern(str(task["title"])),
        role=intern(str(task["role"])), priority=intern(priority), status=intern(str(task["status"])),
        out_of_window=bool(task["out_of_window"]), source=intern(str(task["source"])), trigger=str(task["trigger"]),
        window=window_parts(earliest, due, zone), earliest_iso=earliest.astimezone(zone).isoformat(),
        due_iso=due.astimezone(zone).isoformat() if due else "",
        completed=Moment(f"{_short(done_at)} {done_at.tzname()}", done_at.isoformat()) if done_at else None,
        closed_at=completed or due or earliest,
        sort_key=(PRIORITY_RANK.get(priority, len(PRIORITY_RANK)), priority,
                  due is None, due or earliest, earliest, output.patient, output.id),
    )


def _day_label(day: date, today: date) -> str:
    name = f"{day:%A} {day.day} {day:%B}"
    if day == today:
        return f"Today, {name}"
    if day == today + timedelta(days=1):
        return f"Tomorrow, {name}"
    return name


def _days(rows: list[Row], today: date, zone: ZoneInfo) -> list[DayGroup]:
    buckets: dict[tuple[int, str], tuple[str, list[Row]]] = {}
    for row in rows:
        if row.status == "overdue":
            key, label = (0, "overdue"), "Overdue"
        elif not row.due_iso:
            key, label = (2, "no-due"), "No due time"
        else:
            day = datetime.fromisoformat(row.due_iso).astimezone(zone).date()
            key, label = (1, day.isoformat()), _day_label(day, today)
        buckets.setdefault(key, (label, []))[1].append(row)
    days = []
    for key in sorted(buckets):
        label, members = buckets[key]
        by_role: dict[str, list[Row]] = {}
        for row in members:
            by_role.setdefault(row.role, []).append(row)
        roles = [RoleGroup(role, role_label(role), sorted(by_role[role], key=lambda r: r.sort_key))
                 for role in sorted(by_role)]
        days.append(DayGroup(key[1], label, roles))
    return days


def _patient_view(ref: str, body: Mapping[str, object]) -> dict[str, object]:
    def names(key: str) -> list[str]:
        value = body.get(key) or []
        if not isinstance(value, list):
            raise ValueError(f"patient {ref}: {key} must be a list")
        return [str(v) for v in value]

    return {"ref": ref, "stage": str(body.get("stage", "")), "status": str(body.get("status", "")),
            "flags": names("flags"), "holds": names("holds")}


@cache
def _template():
    env = Environment(loader=PackageLoader("carepath.sinks", "templates"), autoescape=True,
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                      keep_trailing_newline=True)
    env.filters["role_label"] = role_label
    return env.get_template("worklist.html.j2")
