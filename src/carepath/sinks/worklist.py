"""`DIR/worklist.html`: the page a clinician works from.

Open work in bands, most important first: safety-critical work (a step the pathway marks
`safety`, or urgent work that holds dosing) with how long it has been open, then overdue,
due today, upcoming within the pathway's `worklist.horizon`, and open work with no due
time. The safety band is grouped by patient, unacknowledged work and the most recently
raised first (a row says who acknowledged it and the escalation tier it reached); the
other bands go by due time. Work due beyond the horizon and rows beyond a band's
`worklist.rows` are counted, not listed, so the page stays the same size however large the
cohort. A role selector filters the rows and keeps that order. Every row says why the task
exists in clinical words (what the triggering event recorded and when, and the pathway's
own description of the rule), with the ids in a tooltip. Done and cancelled work is folded
away. Patients appear only by their pseudonymous ref: no names reach this page.

The page is one self-contained file (inline CSS, no scripts, no external requests; its
Content-Security-Policy forbids both, so a regression shows up as a browser error). The
role selector is radio buttons and CSS `:has()`, which needs no script.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Generator, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import cache
from sys import intern
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from jinja2 import Environment, PackageLoader, StrictUndefined

from carepath.compile.compiled import ClinicCalendar, CompiledPathway, Step
from carepath.engine import calendar as clinic_calendar
from carepath.sinks.base import Output, OutputKind
from carepath.sinks.documents import PRIORITY_RANK, Instants, PatientOutputs, instant, require_aware, task_record
from carepath.sinks.storage import Location, storage_for

if TYPE_CHECKING:
    from carepath.sinks.worklist_rows import WorklistInput

ACTIONABLE = ("overdue", "open")
# Patients listed by name-free ref under "Patients needing attention"; the others (active
# or discharged, no flag that needs attention, no hold) are only counted.
ATTENTION_STATUSES = frozenset({"pending_eligibility", "blocked"})
# Done and cancelled work only grows; the page lists the most recent and counts the rest
# (tasks.csv and tasks.jsonl hold them all).
CLOSED_SHOWN = 200
PRIORITIES = ("urgent", "high", "routine")


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
_BAND_INDEX = {b.key: i for i, b in enumerate(BANDS)}


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
    return (_BAND_INDEX[band], due is None, due or earliest, PRIORITY_RANK.get(priority, len(PRIORITY_RANK)),
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
    return {task_id: (_BAND_INDEX["safety"], *group, 1 if acknowledged else 0, -raised.timestamp(), task_id)
            for task_id, acknowledged, raised in items}


@dataclass(frozen=True, slots=True)
class Moment:
    text: str       # "Tue 3 Mar 10:00"
    iso: str        # for <time datetime>


@dataclass(frozen=True, slots=True)  # one per listed task: kept small
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
    reason: str               # "PHQ-9 item 9 answered 2 (total 14) on Tue 10 Nov 2025, 21:14"
    rule: str                 # the pathway's own words for the rule or stage that made it
    version: str              # the pathway version it was planned under
    age: str                  # "for 3 d 4 h": how long open (since it opened) or overdue (since due)
    safety: bool
    off_hours: str            # why the due time is outside opening hours, "" when it is not
    acknowledged: str         # "staff-3, Tue 7 Apr, 09:10"; "" when nobody has acknowledged it
    escalation: str           # "Medical director since Tue 7 Apr, 09:30; next Tue 7 Apr, 23:59"; "" when none
    closed_by: str = ""       # one patient's page: what withdrew or superseded a cancelled task


@dataclass(frozen=True)
class Band:
    key: str
    label: str
    note: str
    rows: list[Row]
    total: int                # rows listed + rows counted only

    @property
    def count(self) -> int:
        return self.total

    @property
    def hidden(self) -> int:
        return self.total - len(self.rows)


class _Worst:
    """Reverses the order so that heapq's min-heap keeps the N smallest keys."""

    __slots__ = ("key",)

    def __init__(self, key: tuple[object, ...]) -> None:
        self.key = key

    def __lt__(self, other: _Worst) -> bool:
        return other.key < self.key


class Worklist:
    """`DIR/worklist.html` for one pathway as of one instant."""

    name = "worklist.html"
    kinds = frozenset({OutputKind.PATIENT, OutputKind.TASK})

    def __init__(self, out_dir: Location, compiled: CompiledPathway, as_of: datetime, *,
                 patient: str | None = None, closures: Mapping[str, str] | None = None,
                 failed_letters: tuple[int, list[tuple[str, str, str]]] = (0, [])) -> None:
        """`patient`: one patient's whole plan instead (every task, no horizon, no caps), with
        its letters; `closures`: what closed each withdrawn task or letter (engine/closure.py).
        `failed_letters`: how many letters could not be delivered, and the first of them
        as (patient ref, letter id, reason free of patient data)."""
        self.failed_letters = failed_letters
        self.storage = storage_for(out_dir)
        self.path = self.storage.local_path(self.name)
        self.compiled = compiled
        self.as_of = require_aware(as_of)
        self.patient = patient
        self.closures = closures or {}
        self.written = 0

    def write(self, outputs: Iterable[Output]) -> int:
        page, count = self.page(outputs)
        self._write_page(page)
        return count

    def _write_page(self, page: dict[str, object]) -> None:
        # Streamed as Jinja produces it.
        with self.storage.writer(self.name) as handle:
            for chunk in _template().generate(page=page):
                handle.write(chunk.encode())

    @contextmanager
    def feed(self) -> Iterator[_RankingFeed]:
        """Rank one pass's outputs (`add` one patient's at a time); the page is written when
        the block ends without an error (its size does not depend on the cohort's)."""
        ranking = self._ranking()
        next(ranking)
        yield _RankingFeed(ranking)
        try:
            ranking.send(None)
        except StopIteration as done:
            page, self.written = done.value
        self._write_page(page)

    def render(self, outputs: Iterable[Output]) -> tuple[str, int]:
        """The page and how many outputs it shows (patients and tasks)."""
        page, count = self.page(outputs)
        return _template().render(page=page), count

    def page(self, outputs: Iterable[Output]) -> tuple[dict[str, object], int]:
        """What the template shows, and how many outputs that is."""
        ranking = self._ranking()
        next(ranking)
        for output in outputs:
            ranking.send(output)
        try:
            ranking.send(None)
        except StopIteration as done:
            return done.value
        raise AssertionError("the ranking ends when it is sent None")

    def _ranking(self) -> Generator[None, Output | None, tuple[dict[str, object], int]]:
        """Sent the outputs one at a time (so that one pass over the ledger can feed every
        document at once), then None; returns the page and how many outputs it shows."""
        compiled = self.compiled
        zone = compiled.clinic.zone
        as_of = self.as_of.astimezone(zone)
        today = as_of.date()
        horizon_end = as_of + compiled.worklist.horizon
        limit = compiled.worklist.rows
        closed_limit = min(CLOSED_SHOWN, limit)
        if self.patient is not None:
            horizon_end, limit, closed_limit = as_of + timedelta(days=36500), 1 << 62, 1 << 62
        words = _Words(compiled, as_of)
        attention: list[tuple[str, dict[str, object]]] = []
        attention_total = settled = 0
        heaps: dict[str, list[tuple[_Worst, Row]]] = {b.key: [] for b in BANDS}
        band_totals: Counter[str] = Counter()
        role_totals: Counter[str] = Counter()
        beyond: Counter[str] = Counter()    # role → open work due beyond the horizon
        by_role: Counter[tuple[str, str]] = Counter()
        open_by_patient: Counter[str] = Counter()
        overdue = 0
        closed: list[tuple[datetime, str, Row]] = []   # a min-heap of the most recently closed
        closed_counts: Counter[str] = Counter()
        count = 0
        versions: Counter[str] = Counter()  # pathway version → patients planned under it (pins)
        instant = Instants()
        # Outputs come patient by patient (care plan, then tasks): a patient's view and its
        # safety-band rows wait until its last task, since both depend on all of them.
        current: str | None = None
        pending: dict[str, object] | None = None
        letters: list[dict[str, object]] = []  # one patient's page only
        safety_items: list[tuple[Output, Mapping[str, object], datetime, bool]] = []

        def settle_patient() -> None:
            nonlocal attention_total, settled, pending
            if pending is not None:
                view, ref = pending, str(pending["ref"])
                if safety_items:
                    # Open safety work is the patient's summary: no good news shown beside it.
                    view = {**view, "needs_attention": True,
                            "flags": [(name, level) for name, level in view["flags"] if level != "good"]}  # type: ignore[attr-defined]
                if view["needs_attention"]:
                    attention_total += 1
                    item = (ref, view)
                    # The first `limit` refs in order; the rest are counted.
                    if len(attention) < limit:
                        heapq.heappush(attention, (_Worst((ref,)), item))  # type: ignore[arg-type]
                    elif ref < attention[0][0].key[0]:  # type: ignore[index]
                        heapq.heapreplace(attention, (_Worst((ref,)), item))  # type: ignore[arg-type]
                else:
                    settled += 1
                pending = None
            if safety_items:
                keys = safety_sort_keys(safety_items[0][0].patient,
                                        [(o.id, acknowledged, raised) for o, _, raised, acknowledged in safety_items])
                heap = heaps["safety"]
                for item_output, body, _, _ in safety_items:
                    key = keys[item_output.id]
                    if len(heap) >= limit and not key < heap[0][0].key:
                        continue
                    row = self._row(item_output, body, zone, words, "safety", key, safety=True)
                    if len(heap) < limit:
                        heapq.heappush(heap, (_Worst(key), row))
                    else:
                        heapq.heapreplace(heap, (_Worst(key), row))
                safety_items.clear()

        while (output := (yield)) is not None:
            if self.patient is not None and output.kind == OutputKind.LETTER and output.patient == self.patient:
                letters.append(self._letter(output))
                continue
            if output.kind not in self.kinds or (self.patient is not None and output.patient != self.patient):
                continue
            count += 1
            if output.patient != current:
                settle_patient()
                current = output.patient
            if output.kind == OutputKind.PATIENT:
                versions[str(output.body.get("pathway_version") or compiled.version)] += 1
                pending = _patient_view(output.patient, output.body, compiled.flag_severity)
                continue
            # Read straight from the body (most tasks are only counted); a listed row's
            # body is checked whole by task_record when its row is built.
            task = output.body
            status = str(task["status"])
            owner = f"task {output.id}"
            if status not in ACTIONABLE:
                closed_counts[status] += 1
                # Most closed work is older than what the page lists: decide before building a row.
                closed_at = (instant(task, "completed_at", owner) or instant(task, "due", owner)
                             or instant(task, "earliest", owner))
                if len(closed) >= closed_limit and (closed_at, output.id) <= closed[0][:2]:
                    continue
                row = self._row(output, task, zone, words, "closed", None)
                item = (row.closed_at, row.id, row)
                if len(closed) < closed_limit:
                    heapq.heappush(closed, item)
                else:
                    heapq.heappushpop(closed, item)
                continue
            earliest = instant(task, "earliest", owner)
            if earliest is None:
                raise ValueError(f"{owner} has no earliest time")
            due = instant(task, "due", owner)
            priority, role = str(task["priority"]), str(task["role"])
            by_role[(role, priority)] += 1
            open_by_patient[output.patient] += 1
            overdue += status == "overdue"
            safety = safety_critical(compiled.steps.get(str(task["step"])), priority)
            band = band_of(status, safety, due, earliest, as_of, today, horizon_end, zone)
            if band is None:
                beyond[role] += 1
                continue
            band_totals[band] += 1
            role_totals[role] += 1
            if band == "safety":
                safety_items.append((output, task, earliest, task.get("acknowledged_at") is not None))
                continue
            key = sort_key(band, due, earliest, priority, output.patient, output.id)
            heap = heaps[band]
            if len(heap) >= limit and not key < heap[0][0].key:
                continue
            row = self._row(output, task, zone, words, band, key, safety=safety)
            if len(heap) < limit:
                heapq.heappush(heap, (_Worst(key), row))
            else:
                heapq.heapreplace(heap, (_Worst(key), row))
        settle_patient()

        bands = {b.key: [r for _, r in heaps[b.key]] for b in BANDS}
        patients: list[dict[str, object]] = [{**view, "open": open_by_patient[ref]}
                                             for ref, view in sorted(item for _, item in attention)]
        page = self._assemble(as_of, horizon_end, bands, band_totals, role_totals, beyond, by_role, overdue,
                              closed_counts, [row for _, _, row in sorted(closed, reverse=True)], versions,
                              patients, attention_total, settled, letters)
        return page, count

    def _assemble(self, as_of: datetime, horizon_end: datetime, rows: Mapping[str, list[Row]],
                  band_totals: Counter[str], role_totals: Counter[str], beyond: Counter[str],
                  by_role: Counter[tuple[str, str]], overdue: int, closed_counts: Counter[str], closed: list[Row],
                  versions: Counter[str], patients: list[dict[str, object]], attention_total: int, settled: int,
                  letters: list[dict[str, object]]) -> dict[str, object]:
        """What the template shows, from the ranking's tallies (a pass over the outputs, or
        the stored per-patient rows: `write_from`)."""
        compiled = self.compiled
        zone = compiled.clinic.zone
        bands = [Band(b.key, b.label, b.note, sorted(rows.get(b.key, ()), key=lambda r: r.sort_key),
                      band_totals[b.key]) for b in BANDS if band_totals[b.key]]
        roles = sorted({role for role, _ in by_role})
        shown = sum(band_totals.values())
        return {
            "patient": self.patient,
            "pathway": {"id": compiled.id, "version": compiled.version, "title": compiled.title,
                        # The versions in force, this one first: patients stay on the version they
                        # enrolled under until a migration moves them.
                        "versions": [{"version": v, "patients": n} for v, n in sorted(
                            versions.items(), key=lambda vn: (vn[0] != compiled.version, vn[0]))],
                        "older": sum(n for v, n in versions.items() if v != compiled.version)},
            "clinic": {"name": compiled.clinic.name, "zone": zone.key},
            "as_of": Moment(_long(as_of), as_of.isoformat()),
            "horizon": _span(compiled.worklist.horizon),
            "horizon_end": Moment(_long(horizon_end), horizon_end.isoformat()),
            "bands": bands,
            "filter": [{"role": role, "label": role_label(role), "count": role_totals[role]}
                       for role in sorted(role_totals)],
            "shown": shown,
            "beyond": {"total": sum(beyond.values()),
                       "roles": [{"label": role_label(r), "count": n} for r, n in sorted(beyond.items())]},
            "summary": {
                "priorities": PRIORITIES,
                "roles": [{"label": role_label(role), "role": role,
                           "counts": [by_role[(role, p)] for p in PRIORITIES],
                           "total": sum(n for (r, _), n in by_role.items() if r == role)} for role in roles],
                "totals": [sum(n for (_, p), n in by_role.items() if p == prio) for prio in PRIORITIES],
                "open": sum(by_role.values()),
                "overdue": overdue,
                "done": closed_counts["done"],
                "cancelled": closed_counts["cancelled"],
            },
            "closed": closed,
            "closed_total": sum(closed_counts.values()),
            "patients": patients,
            "patients_total": attention_total,
            "settled_patients": settled,
            "steps": [{"name": s.name, "title": s.title, "role": role_label(s.role), "priority": str(s.priority),
                       "note": compiled.notes.get(f"step:{s.name}", ""),
                       "safety": safety_critical(s, str(s.priority))}
                      for s in compiled.steps.values()],
            "severities": compiled.flag_severity,
            "letters": sorted(letters, key=lambda letter: (str(letter["send_iso"]), str(letter["id"]))),
            "failed_letters": {"total": self.failed_letters[0],
                               "rows": [{"patient": ref, "letter": letter_id, "reason": reason}
                                        for ref, letter_id, reason in self.failed_letters[1]]},
        }

    def write_from(self, stored: WorklistInput) -> int:
        """Write the page from the stored per-patient rows (`carepath.sinks.worklist_rows`):
        the same bytes as a pass over every output, reading only what the page lists."""
        compiled = self.compiled
        zone = compiled.clinic.zone
        as_of = self.as_of.astimezone(zone)
        horizon_end = as_of + compiled.worklist.horizon
        words = _Words(compiled, as_of)
        rows: dict[str, list[Row]] = {}
        for key, listed in stored.bands.items():
            built = rows[key] = []
            if key == "safety":
                built.extend(self._row(item.output, item.output.body, zone, words, key, item.key, safety=True)
                             for item in listed)
                continue
            for item in listed:
                body, owner = item.output.body, f"task {item.output.id}"
                earliest = instant(body, "earliest", owner)
                if earliest is None:
                    raise ValueError(f"{owner} has no earliest time")
                k = sort_key(key, instant(body, "due", owner), earliest, str(body["priority"]), item.output.patient,
                             item.output.id)
                built.append(self._row(item.output, body, zone, words, key, k, safety=item.safety))
        closed = sorted((self._row(o, o.body, zone, words, "closed", None) for o in stored.closed),
                        key=lambda r: (r.closed_at, r.id), reverse=True)
        severity = compiled.flag_severity
        patients = []
        for ref, view, open_count, has_safety in stored.attention:
            shown = _patient_view(ref, view, severity)
            if has_safety:  # open safety work is the patient's summary: no good news beside it
                shown = {**shown, "needs_attention": True,
                         "flags": [(name, level) for name, level in shown["flags"] if level != "good"]}  # type: ignore[attr-defined]
            patients.append({**shown, "open": open_count})
        page = self._assemble(as_of, horizon_end, rows, stored.band_totals, stored.role_totals, stored.beyond,
                              stored.by_role, stored.overdue, stored.closed_counts, closed, stored.versions,
                              patients, stored.attention_total, stored.settled, [])
        self._write_page(page)
        self.written = stored.shown
        return stored.shown

    def _row(self, output: Output, body: Mapping[str, object], zone: ZoneInfo, words: _Words, band: str,
             key: tuple[object, ...] | None, *, safety: bool = False) -> Row:
        task = task_record(output.patient, body)
        owner = f"task {output.id}"
        earliest = instant(task, "earliest", owner)
        if earliest is None:
            raise ValueError(f"{owner} has no earliest time")
        due = instant(task, "due", owner)
        completed = instant(task, "completed_at", owner)
        reason_at = instant(task, "reason_at", owner)
        priority, status, source = str(task["priority"]), str(task["status"]), str(task["source"])
        done_at = completed.astimezone(zone) if completed else None
        as_of = words.as_of
        if safety and earliest <= as_of:
            # Safety work says how long the patient has waited, overdue or not.
            age = f"open for {_span(as_of - earliest)}"
        elif status == "overdue" and due is not None:
            age = f"for {_span(as_of - due)}"
        elif earliest <= as_of and status == "open":
            age = f"for {_span(as_of - earliest)}"
        else:
            age = ""
        acknowledged_at = instant(task, "acknowledged_at", owner)
        acknowledged = (f"{task.get('acknowledged_by')}, {words.when(acknowledged_at)}"
                        if acknowledged_at is not None else "")
        escalation = words.escalation(task.get("escalation"), owner) if status in ACTIONABLE else ""
        reason = str(task.get("reason") or "")
        if reason and reason_at is not None:
            reason = f"{reason} on {words.when(reason_at)}"
        elif not reason:
            reason = f"opened {words.when(earliest)}"
        return Row(
            # Steps, titles, roles and sources repeat across the cohort: one string each.
            id=output.id, patient=output.patient, step=intern(str(task["step"])), title=intern(str(task["title"])),
            role=intern(str(task["role"])), priority=intern(priority), status=intern(status),
            out_of_window=bool(task["out_of_window"]), source=intern(source), trigger=str(task["trigger"]),
            window=window_parts(earliest, due, zone), earliest_iso=earliest.astimezone(zone).isoformat(),
            due_iso=due.astimezone(zone).isoformat() if due else "",
            completed=Moment(f"{_short(done_at)} {done_at.tzname()}", done_at.isoformat()) if done_at else None,
            closed_at=completed or due or earliest,
            sort_key=key or (),
            reason=reason, rule=words.rule(source), version=intern(str(task.get("pathway_version") or "")),
            age=age, safety=safety,
            off_hours=words.off_hours(due) if due is not None and status in ACTIONABLE else "",
            acknowledged=acknowledged, escalation=escalation, closed_by=self.closures.get(output.id, ""),
        )

    def _letter(self, output: Output) -> dict[str, object]:
        """One letter of the patient's page: which, when (in clinic time, as the whole page),
        its status and what withdrew it. No names: the letter's text is not shown."""
        body, owner, zone = output.body, f"letter {output.id}", self.compiled.clinic.zone
        send_at, expires_at = instant(body, "send_at", owner), instant(body, "expires_at", owner)
        if send_at is None:
            raise ValueError(f"{owner} has no send time")
        return {"id": output.id, "letter": str(body.get("letter")), "template": str(body.get("template")),
                "send": _long(send_at.astimezone(zone)), "send_iso": send_at.isoformat(),
                "expires": _long(expires_at.astimezone(zone)) if expires_at is not None else "",
                "status": str(body.get("status")), "trigger": str(body.get("trigger")),
                "closed_by": self.closures.get(output.id, "")}


class _RankingFeed:
    def __init__(self, ranking: Generator[None, Output | None, tuple[dict[str, object], int]]) -> None:
        self.send = ranking.send

    def add(self, group: PatientOutputs) -> None:
        send = self.send
        for output in group.plans:
            send(output)
        for output in group.tasks:
            send(output)


class _Words:
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


def _span(delta: timedelta) -> str:
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


def _patient_view(ref: str, body: Mapping[str, object], severity: Mapping[str, str]) -> dict[str, object]:
    def names(key: str) -> list[str]:
        value = body.get(key) or []
        if not isinstance(value, list):
            raise ValueError(f"patient {ref}: {key} must be a list")
        return [str(v) for v in value]

    # A flag the pathway does not declare (a pinned older version's) needs attention.
    flags = [(name, severity.get(name, "attention")) for name in names("flags")]
    status, holds = str(body.get("status", "")), names("holds")
    return {"ref": ref, "stage": str(body.get("stage", "")), "status": status, "flags": flags,
            "needs_attention": needs_attention(status, [name for name, _ in flags], holds, severity), "holds": holds}


@cache
def _template():
    env = Environment(loader=PackageLoader("carepath.sinks", "templates"), autoescape=True,
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                      keep_trailing_newline=True)
    env.filters["role_label"] = role_label
    return env.get_template("worklist.html.j2")
