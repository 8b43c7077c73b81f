"""What each patient contributes to `worklist.html`, stored when the patient is re-planned,
so that a sweep or an event-triggered run builds the page from small indexed rows instead
of decoding every stored output of the cohort (the worklist is bounded; its input is too).

Per patient (`worklist_patients`): the care plan's version, stage, status, flags and
holds (for "Patients needing attention"), whether those alone need attention, and counts
(outputs the page accounts for, open work, done and cancelled work). Per task
(`worklist_tasks`): every open or overdue task with what decides its band and its place in
it (role, priority, safety, due, its clinic-local day, earliest, acknowledged), and the
patient's most recently closed tasks, only as many as the page lists. Bands depend on the
as-of (a task due tomorrow is today's work tomorrow), so they are decided in the query,
not stored; the page's counts are SQL aggregates over these rows, and only the rows the
page lists have their bodies read from the ledger.

The rows are derived from the outputs under the pathway's current rules (which steps are
safety-critical, which flags need attention, the clinic's zone, the caps): they are
marked complete for one rules digest, and rebuilt in one pass over the ledger when that
digest changes or they were never built (a ledger from before revision 0007).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson
from sqlalchemy import (
    Connection,
    and_,
    case,
    func,
    literal,
    null,
    or_,
    select,
)

from carepath.compile.compiled import CompiledPathway
from carepath.sinks.base import Output, OutputKind
from carepath.sinks.documents import PRIORITY_RANK, PatientOutputs, instant
from carepath.sinks.ledger.dialect import serialize_writers
from carepath.sinks.ledger.schema import outputs_table, worklist_patients_table, worklist_tasks_table
from carepath.sinks.worklist_bands import ACTIONABLE, CLOSED_SHOWN, needs_attention, safety_critical, safety_sort_keys

READY = "worklist-rows"  # the document-state row naming the rules digest the rows are complete for
_BATCH = 500

patients_table = worklist_patients_table
tasks_table = worklist_tasks_table

def utc(moment: datetime) -> str:
    """UTC, microseconds always written: equal-width text that sorts as the instants do
    (formatted by hand: `strftime` was most of the cost of a patient's rows)."""
    u = moment.astimezone(UTC)
    return (f"{u.year:04d}-{u.month:02d}-{u.day:02d}T{u.hour:02d}:{u.minute:02d}:{u.second:02d}."
            f"{u.microsecond:06d}+00:00")


def closed_limit(compiled: CompiledPathway) -> int:
    return min(CLOSED_SHOWN, compiled.worklist.rows)


def contribution(compiled: CompiledPathway, group: PatientOutputs) -> tuple[dict[str, object] | None,
                                                                           list[dict[str, object]]]:
    """One patient's rows from their current outputs: (patient row or None without a care
    plan, task rows). `compiled`: the pathway's current rules, whatever version the
    patient is pinned to (the page ranks every patient's work by them)."""
    ref, zone = group.patient, compiled.clinic.zone
    open_rows: list[dict[str, object]] = []
    closed: list[tuple[str, str, dict[str, object]]] = []
    statuses: Counter[str] = Counter()
    for output in group.tasks:
        task, owner = output.body, f"task {output.id}"
        status = str(task["status"])
        statuses[status] += 1
        earliest = instant(task, "earliest", owner)
        if earliest is None:
            raise ValueError(f"{owner} has no earliest time")
        due = instant(task, "due", owner)
        priority, role, step = str(task["priority"]), str(task["role"]), str(task["step"])
        row = {"task": output.id, "patient": ref, "status": status,
               "safety": int(safety_critical(compiled.steps.get(step), priority)), "role": role,
               "priority": priority, "rank": PRIORITY_RANK.get(priority, len(PRIORITY_RANK)),
               "due": utc(due) if due else None,
               "due_day": due.astimezone(zone).date().isoformat() if due else None,
               "earliest": utc(earliest), "acknowledged": int(task.get("acknowledged_at") is not None),
               "closed_at": None, "open": 1}
        if status in ACTIONABLE:
            open_rows.append(row)
        else:
            at = utc(instant(task, "completed_at", owner) or due or earliest)
            closed.append((at, output.id, {**row, "open": 0, "closed_at": at}))
    # The page lists the most recently closed of the cohort: no patient adds more than that.
    closed.sort(key=lambda c: (c[0], c[1]), reverse=True)
    rows = open_rows + [row for _, _, row in closed[:closed_limit(compiled)]]
    if not group.plans:
        return None, rows
    body = group.plans[-1].body
    view = {"stage": body.get("stage", ""), "status": body.get("status", ""), "flags": body.get("flags") or [],
            "holds": body.get("holds") or []}
    flags = [str(f) for f in view["flags"]] if isinstance(view["flags"], list) else []
    holds = [str(h) for h in view["holds"]] if isinstance(view["holds"], list) else []
    version = body.get("pathway_version")
    closed_total = sum(n for status, n in statuses.items() if status not in ACTIONABLE)
    patient: dict[str, object] = {
        "patient": ref, "version": str(version) if version else None, "view": orjson.dumps(view).decode(),
        "attention": int(needs_attention(str(view["status"]), flags, holds, compiled.flag_severity)),
        "shown": len(group.plans) + len(group.tasks), "open": len(open_rows), "done": statuses["done"],
        "cancelled": statuses["cancelled"], "closed": closed_total}
    return patient, rows


def groups_of(outputs: Iterable[Output]) -> Iterator[PatientOutputs]:
    """The outputs of one re-plan (patients in any order) as one group per patient."""
    groups: dict[str, PatientOutputs] = {}
    for output in outputs:
        if output.kind in (OutputKind.PATIENT, OutputKind.TASK):
            groups.setdefault(output.patient, PatientOutputs(output.patient)).add(output)
    yield from groups.values()


@dataclass(frozen=True)
class Listed:
    """A task the page lists, with its body read from the ledger."""

    output: Output
    band: str
    safety: bool
    key: tuple[object, ...] | None  # the safety band's (it depends on the patient's other safety work)


@dataclass(frozen=True)
class WorklistInput:
    """Everything `Worklist.write_from` shows, for one as-of."""

    versions: Counter
    attention: list[tuple[str, dict[str, object], int, bool]]  # (ref, stored view, open tasks, has safety work)
    attention_total: int
    settled: int
    bands: dict[str, list[Listed]]    # band → the rows it lists (unordered)
    band_totals: Counter
    role_totals: Counter
    beyond: Counter                   # role → open work due beyond the horizon
    by_role: Counter                  # (role, priority) → open tasks
    overdue: int
    closed: list[Output]              # the most recently closed tasks the page lists
    closed_counts: Counter            # status → closed tasks
    shown: int                        # care-plan and task outputs


class WorklistRows:
    """The stored contributions of one pathway in one ledger."""

    def __init__(self, engine, pathway: str) -> None:  # noqa: ANN001 - the ledger's SQLAlchemy Engine
        self.engine, self.pathway = engine, pathway

    def replace(self, conn: Connection, compiled: CompiledPathway, groups: Iterable[PatientOutputs]) -> None:
        """These patients' rows, replaced by those of their current outputs (in the caller's transaction)."""
        patients: list[dict[str, object]] = []
        tasks: list[dict[str, object]] = []
        refs: list[str] = []
        for group in groups:
            refs.append(group.patient)
            patient, rows = contribution(compiled, group)
            if patient is not None:
                patients.append({"pathway": self.pathway, **patient})
            tasks.extend({"pathway": self.pathway, **row} for row in rows)
        for start in range(0, len(refs), _BATCH):
            chunk = refs[start:start + _BATCH]
            for table in (patients_table, tasks_table):
                conn.execute(table.delete().where(table.c.pathway == self.pathway, table.c.patient.in_(chunk)))
        for table, rows in ((patients_table, patients), (tasks_table, tasks)):
            for start in range(0, len(rows), _BATCH):
                conn.execute(table.insert(), rows[start:start + _BATCH])

    def record(self, compiled: CompiledPathway, outputs: Iterable[Output]) -> None:
        """After a re-plan recorded these patients' complete current outputs. Under the
        writers' lock: two hosts re-planning one patient at once would each delete nothing,
        then insert the same rows."""
        with self.engine.begin() as conn:
            serialize_writers(conn, f"worklist:{self.pathway}")
            self.replace(conn, compiled, groups_of(outputs))

    def rebuild(self, compiled: CompiledPathway, groups: Iterable[PatientOutputs]) -> None:
        """Every patient's rows anew, from one pass over the ledger's current outputs."""
        with self.engine.begin() as conn:
            serialize_writers(conn, f"worklist:{self.pathway}")
            for table in (patients_table, tasks_table):
                conn.execute(table.delete().where(table.c.pathway == self.pathway))
            batch: list[PatientOutputs] = []
            for group in groups:
                batch.append(group)
                if len(batch) >= _BATCH:
                    self.replace(conn, compiled, batch)
                    batch = []
            self.replace(conn, compiled, batch)

    def read(self, compiled: CompiledPathway, as_of: datetime) -> WorklistInput:
        """What the page shows as of `as_of`: counts by SQL aggregates, the listed rows'
        bodies read by id."""
        zone = compiled.clinic.zone
        local = as_of.astimezone(zone)
        now, horizon = utc(local), utc(local + compiled.worklist.horizon)
        today = local.date().isoformat()
        limit = compiled.worklist.rows
        t, p = tasks_table.c, patients_table.c
        safety_now = and_(t.safety == 1, or_(t.status == "overdue", t.earliest <= now))
        band = case(
            (safety_now, literal("safety")),
            (t.status == "overdue", literal("overdue")),
            (t.due.is_(None), case((t.earliest <= horizon, literal("no-due")), else_=null())),
            (t.due_day <= today, literal("today")),
            (t.due <= horizon, literal("upcoming")),
            else_=null()).label("band")
        mine = and_(t.pathway == self.pathway, t.open == 1)
        with self.engine.connect() as conn:
            text_order = _bytewise(conn)
            band_totals: Counter[str] = Counter()
            role_totals: Counter[str] = Counter()
            beyond: Counter[str] = Counter()
            by_role: Counter[tuple[str, str]] = Counter()
            overdue = 0
            # One scan of the open rows (a covering index) for every count the page shows.
            # Grouped over a subquery's column: PostgreSQL does not see two renderings of the
            # band's expression (each with its own parameters) as the same.
            banded = select(band, t.role, t.priority, t.status).where(mine).subquery()
            b = banded.c
            for key, role, priority, status, n in conn.execute(
                    select(b.band, b.role, b.priority, b.status, func.count())
                    .group_by(b.band, b.role, b.priority, b.status)):
                if key is None:
                    beyond[role] += n
                else:
                    band_totals[key] += n
                    role_totals[role] += n
                by_role[(role, priority)] += n
                overdue += n if status == "overdue" else 0

            # The safety band is grouped by patient: every candidate is read (open safety work is rare).
            safety_rows = list(conn.execute(select(t.task, t.patient, t.acknowledged, t.earliest)
                                            .where(mine, safety_now)))
            listed: dict[str, list[tuple[str, bool, tuple[object, ...] | None]]] = {}  # band → (task, safety, key)
            listed["safety"] = _top_safety(safety_rows, limit)
            for key in ("overdue", "today", "upcoming", "no-due"):
                if not band_totals[key]:
                    continue
                # In the band's order (sinks.worklist.sort_key); the bands with a due time walk
                # the (open, due) index and stop after `limit` rows.
                if key == "no-due":
                    where, first = and_(mine, t.due.is_(None), band == key), t.earliest
                else:
                    where = and_(mine, t.due.is_not(None), band == key)
                    first = t.due
                    if key == "upcoming":  # due after today ends: after now (a hint the index can use)
                        where = and_(where, t.due > now)
                query = (select(t.task, t.safety).where(where)
                         .order_by(first, t.rank, t.earliest, text_order(t.patient), text_order(t.task))
                         .limit(limit))
                listed[key] = [(task, bool(safety), None) for task, safety in conn.execute(query)]
            closed_ids = list(conn.execute(
                select(t.task).where(t.pathway == self.pathway, t.open == 0)
                .order_by(t.closed_at.desc(), text_order(t.task).desc()).limit(closed_limit(compiled))).scalars())

            # Patients: those whose care plan alone needs attention, and those with safety work now.
            with_safety = {patient for _, patient, _, _ in safety_rows}
            versions: Counter[str] = Counter()
            shown = patients_total = 0
            closed_counts: Counter[str] = Counter()
            for version, n, outputs, done, cancelled, closed in conn.execute(
                    select(p.version, func.count(), func.sum(p.shown), func.sum(p.done), func.sum(p.cancelled),
                           func.sum(p.closed)).where(p.pathway == self.pathway).group_by(p.version)):
                versions[version or compiled.version] += n
                patients_total += n
                shown += int(outputs or 0)
                closed_counts["done"] += int(done or 0)
                closed_counts["cancelled"] += int(cancelled or 0)
                closed_counts["other"] += int((closed or 0) - (done or 0) - (cancelled or 0))
            flagged = conn.execute(select(func.count()).where(p.pathway == self.pathway, p.attention == 1)
                                   .select_from(patients_table)).scalar_one()
            extra: set[str] = set()
            for chunk in _chunks(sorted(with_safety)):
                extra.update(conn.execute(select(p.patient).where(p.pathway == self.pathway, p.attention == 0,
                                                                  p.patient.in_(chunk))).scalars())
            leading = list(conn.execute(select(p.patient).where(p.pathway == self.pathway, p.attention == 1)
                                        .order_by(text_order(p.patient)).limit(limit)).scalars())
            refs = sorted(set(leading) | extra)[:limit]
            views: dict[str, tuple[dict[str, object], int]] = {}
            for chunk in _chunks(refs):
                for ref, view, open_ in conn.execute(select(p.patient, p.view, p.open).where(
                        p.pathway == self.pathway, p.patient.in_(chunk))):
                    views[ref] = (orjson.loads(view), open_)

            wanted = {task for rows in listed.values() for task, _, _ in rows} | set(closed_ids)
            bodies = _outputs(conn, self.pathway, sorted(wanted))
        attention_total = flagged + len(extra)
        return WorklistInput(
            versions=versions,
            attention=[(ref, views[ref][0], views[ref][1], ref in with_safety) for ref in refs],
            attention_total=attention_total, settled=patients_total - attention_total,
            bands={key: [Listed(bodies[task], key, safety, order) for task, safety, order in rows]
                   for key, rows in listed.items()},
            band_totals=band_totals, role_totals=role_totals, beyond=beyond, by_role=by_role, overdue=overdue,
            closed=[bodies[task] for task in closed_ids], closed_counts=closed_counts, shown=shown)


def _top_safety(rows: Sequence, limit: int) -> list[tuple[str, bool, tuple[object, ...] | None]]:
    """The safety band's first `limit` tasks in its order (sinks.worklist.safety_sort_keys)."""

    by_patient: dict[str, list[tuple[str, bool, datetime]]] = {}
    for task, patient, acknowledged, earliest in rows:
        by_patient.setdefault(patient, []).append((task, bool(acknowledged), datetime.fromisoformat(earliest)))
    keyed: list[tuple[tuple[object, ...], str]] = []
    for patient, items in by_patient.items():
        keys = safety_sort_keys(patient, items)
        keyed.extend((keys[task], task) for task, _, _ in items)
    keyed.sort(key=lambda k: k[0])
    return [(task, True, key) for key, task in keyed[:limit]]


def _outputs(conn: Connection, pathway: str, ids: list[str]) -> dict[str, Output]:
    o = outputs_table.c
    found: dict[str, Output] = {}
    for chunk in _chunks(ids):
        for r in conn.execute(select(o.id, o.kind, o.patient, o.body, o.digest).where(
                o.pathway == pathway, o.id.in_(chunk))):
            found[r.id] = Output(r.id, OutputKind(r.kind), r.patient, orjson.loads(r.body), r.digest)
    return found


def _bytewise(conn: Connection):  # noqa: ANN202 - a column → ordered-by-code-point expression
    """Text ordered as Python orders str (by code point): SQLite's default; PostgreSQL's
    default collation follows the locale, so "C" there."""
    if conn.dialect.name == "postgresql":
        return lambda column: column.collate("C")
    return lambda column: column


def _chunks(items: list) -> Iterator[list]:
    for start in range(0, len(items), _BATCH):
        yield items[start:start + _BATCH]

