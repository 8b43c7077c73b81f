"""What `carepath serve` shows and does, free of the web and of Prefect.

`Site` holds the pathways (compiled once), the ledger and one `Board` per pathway. Pages
read the ledger's stored outputs (the worklist through the board, a patient's page
straight from the ledger and the event store); an action is one event line checked and
appended exactly as `carepath emit` does (`carepath.recording`), then the patient
re-planned at once through the orchestrator's one-patient sequence, in this process (no
sweep, no Prefect), and the board updated from what was recorded.

Actions are serialized in this process: the events file is the one writer's record.
"""

from __future__ import annotations

import heapq
import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path

import orjson
from sqlalchemy import select

from carepath.compile.compiled import CompiledPathway, Step
from carepath.engine.why import describe
from carepath.orchestrator import sequence
from carepath.orchestrator.event_store import EventStore, lines_table
from carepath.orchestrator.wake_index import WakeIndex
from carepath.orchestrator.patients_index import PatientsIndex
from carepath.orchestrator.spec import RunSpec
from carepath.records import Patient
from carepath.records.fields import compile_event_types
from carepath.recording import NotRecorded, record_event
from carepath.serve.access import ADMIN
from carepath.serve.board import BAND_KEYS, Board, Entry
from carepath.sinks._documents import task_record
from carepath.sinks.base import Output, OutputKind
from carepath.sinks.ledger import Ledger
from carepath.sinks.outbox import outbox_record
from carepath.sinks.worklist import BANDS, provenance_text, role_label, window_parts

Clock = Callable[[], datetime]
log = logging.getLogger("carepath.serve")
ACTIONS = ("acknowledge", "complete", "decide")
ACKNOWLEDGED = "task_acknowledged"
MAX_NOTE = 2000
MAX_DECISION = 64


class Refused(Exception):
    """An action that cannot be taken; the message says why, for the clinician."""


@dataclass(frozen=True)
class Done:
    event_id: str
    event_type: str
    pathway: str
    message: str


def step_decisions(compiled: CompiledPathway, step: str) -> tuple[str, ...]:
    """The decisions the pathway names for a step (the options a recurring entry chooses
    its interval by); empty when the step names none."""
    found: list[str] = []
    for stage in compiled.stages.values():
        for recurring in stage.recurring:
            if recurring.decision_of == step:
                found.extend(name for name, _ in recurring.choices if name not in found)
    return tuple(found)


def can_complete(step: Step | None) -> bool:
    return step is not None and "task_completed" in step.done_by


def may_act(role: str, task_role: str) -> bool:
    return role == ADMIN or role == task_role


def _span(delta: timedelta) -> str:
    minutes = max(0, int(delta.total_seconds() // 60))
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h" if hours and days < 7 else f"{days} d"
    return f"{hours} h" if hours else f"{mins} min"


class Site:
    def __init__(self, pathways: Sequence[str | Path], ledger_url: str, patients: str | Path, events: str | Path,
                 out: str | Path, clock: Clock, *, rows: int = 50, pdf: bool = True) -> None:
        now = clock()
        self.clock = clock
        self.patients, self.events = Path(patients), Path(events)
        self.rows = rows
        self.specs: dict[str, RunSpec] = {}
        for path in pathways:
            spec = RunSpec.resolve(path, out, now, "serve", ledger_url=ledger_url, pdf=pdf)
            if spec.compiled.id in self.specs:
                raise ValueError(f"pathway id {spec.compiled.id!r} is given twice")
            self.specs[spec.compiled.id] = spec
        self.meanings = {pid: _flag_meanings(spec) for pid, spec in self.specs.items()}
        self.ledger = Ledger(ledger_url)
        self.boards = {pid: Board(spec.compiled) for pid, spec in self.specs.items()}
        self._generations: dict[str, int] = {}
        self._lock = threading.RLock()
        self._rebuilding: dict[str, set[str]] = {}  # pathway → patients acted on while its board is rebuilt
        for pid, board in self.boards.items():
            board.acks = self._acknowledgements(pid)
        self.sync(now)

    def close(self) -> None:
        self.ledger.close()

    @property
    def roles(self) -> frozenset[str]:
        return frozenset({s.role for spec in self.specs.values() for s in spec.compiled.steps.values()} | {ADMIN})

    # -- keeping the boards current -----------------------------------------------------

    def sync(self, now: datetime) -> None:
        """Move each board's clock; when another process changed its pathway's outputs (a
        sweep), rebuild it in the background (seconds at 20,000 patients) and keep serving
        the current one meanwhile. The first load is waited for."""
        with self._lock:
            for pid, board in self.boards.items():
                generation = self.ledger.generation(pid)
                if board.as_of is None:
                    board.load(self._open_work(pid), now)
                    self._generations[pid] = generation
                    continue
                if self._generations.get(pid) != generation and pid not in self._rebuilding:
                    self._rebuilding[pid] = set()
                    threading.Thread(target=self._rebuild, args=(pid, generation), daemon=True,
                                     name=f"carepath-board-{pid}").start()
                board.advance(now)

    def _rebuild(self, pid: str, generation: int) -> None:
        fresh = Board(self.specs[pid].compiled)
        fresh.acks = dict(self.boards[pid].acks)
        try:
            fresh.load(self._open_work(pid), self.clock())
        except Exception:  # the current board stays; the next request tries again
            log.exception("rebuilding the worklist of %s failed", pid)
            with self._lock:
                self._rebuilding.pop(pid, None)
            return
        with self._lock:
            # Patients acted on while it was built are read again; then it replaces the old one.
            for ref in self._rebuilding.pop(pid, set()):
                fresh.replace_patient(ref, [o for o, _ in self.ledger.patient_outputs(pid, ref)])
            fresh.acks.update(self.boards[pid].acks)
            fresh.advance(self.clock())
            self.boards[pid] = fresh
            self._generations[pid] = max(self._generations.get(pid, 0), generation)

    def wait_for_rebuilds(self, timeout: float = 120.0) -> None:
        """Until no board is being rebuilt (tests, benches)."""
        deadline = time.monotonic() + timeout
        while self._rebuilding and time.monotonic() < deadline:
            time.sleep(0.02)

    def _open_work(self, pid: str) -> Iterator[Output]:
        """The care-plan summaries and open tasks of a pathway, from the ledger as stored:
        done and cancelled tasks (most of them, and only growing) are passed over before
        their bodies are decoded."""
        closed = (b'"status":"done"', b'"status":"cancelled"')
        for row in self.ledger.document_rows(pid, [OutputKind.PATIENT, OutputKind.TASK]):
            ident, kind, patient, body, digest, _ = row
            raw = body.encode()
            if kind == OutputKind.TASK.value and any(c in raw for c in closed):
                continue
            yield Output(ident, OutputKind(kind), patient, orjson.loads(raw), digest)

    def _acknowledgements(self, pid: str) -> dict[str, str]:
        """Who acknowledged which task, from the acknowledgement lines in the ledger's
        event store (ingested first, as a re-plan would)."""
        store = EventStore(self.ledger.engine, pid)
        store.ingest(self.events, on_new=WakeIndex(self.ledger.engine, pid).mark_dirty)
        found: dict[str, str] = {}
        c = lines_table.c
        query = select(c.raw).where(c.pathway == pid, c.raw.like(b'%"task_acknowledged"%')).order_by(c.line)
        with self.ledger.engine.connect() as conn:
            for (raw,) in conn.execute(query):
                try:
                    obj = orjson.loads(raw)
                    data = obj["data"]
                    if obj.get("type") == ACKNOWLEDGED and isinstance(data, dict):
                        found.setdefault(str(data["task"]), str(data["by"]))
                except (orjson.JSONDecodeError, KeyError, TypeError):
                    continue  # the reader rejects it: it acknowledged nothing
        return found

    # -- the worklist -------------------------------------------------------------------

    def worklist(self, role: str | None, mine: str | None, user_role: str) -> dict[str, object]:
        now = self.clock()
        self.sync(now)
        bands = []
        with self._lock:
            for spec in BANDS:
                streams = [((e.key, e) for e in board.rows(spec.key, role=role, mine=mine))
                           for board in self.boards.values()]
                entries = [e for _, e in _first(heapq.merge(*streams, key=lambda pair: pair[0]), self.rows)]
                total = sum(b.total(spec.key, role, mine) for b in self.boards.values())
                if total:
                    bands.append({"key": spec.key, "label": spec.label, "note": spec.note, "total": total,
                                  "rows": [self._row(e, now, user_role) for e in entries]})
            beyond = sum(b.beyond_total(role) for b in self.boards.values())
            patients = sum(len(b.plans) for b in self.boards.values())
        first = next(iter(self.specs.values())).compiled
        return {"bands": bands, "beyond": beyond, "patients": patients, "now": _when(now, first),
                "roles": sorted(r for r in self.roles if r != ADMIN), "role": role, "mine": mine is not None,
                "pathways": [{"id": s.compiled.id, "version": s.compiled.version, "title": s.compiled.title}
                             for s in self.specs.values()]}

    def _row(self, entry: Entry, now: datetime, user_role: str) -> dict[str, object]:
        board = next(b for b in self.boards.values() if entry.id in b.entries)
        compiled = board.compiled
        zone = compiled.clinic.zone
        body = entry.body
        step = compiled.steps.get(entry.step)
        reason = str(body.get("reason") or "")
        reason_at = body.get("reason_at")
        if reason and reason_at:
            reason = f"{reason} on {_when(datetime.fromisoformat(str(reason_at)), compiled)}"
        if entry.safety and entry.earliest <= now:
            age = f"open for {_span(now - entry.earliest)}"
        elif entry.due is not None and entry.due < now:
            age = f"overdue by {_span(now - entry.due)}"
        else:
            age = ""
        return {"id": entry.id, "patient": entry.patient, "pathway": compiled.id, "title": str(body["title"]),
                "step": entry.step, "role": role_label(entry.role), "priority": entry.priority,
                "status": entry.status, "window": " ".join(window_parts(entry.earliest, entry.due, zone)),
                "reason": reason, "rule": provenance_text(compiled, str(body.get("source", ""))), "age": age,
                "safety": entry.safety, "acknowledged_by": entry.acknowledged_by,
                "held": list(body.get("held") or []),  # type: ignore[arg-type]
                "escalation": _escalation(body.get("escalation"), compiled),
                **self._affordances(compiled, step, entry.role, user_role, entry.acknowledged_by)}

    def _affordances(self, compiled: CompiledPathway, step: Step | None, task_role: str, user_role: str,
                     acknowledged_by: object) -> dict[str, object]:
        allowed = may_act(user_role, task_role)
        decisions = step_decisions(compiled, step.name) if step else ()
        return {"may_act": allowed, "can_complete": allowed and can_complete(step),
                "can_decide": allowed, "decisions": list(decisions),
                "can_acknowledge": allowed and ACKNOWLEDGED in compiled.event_fields and not acknowledged_by}

    # -- one patient --------------------------------------------------------------------

    def patient(self, ref: str, user_role: str, actors: dict[str, str] | None = None) -> dict[str, object] | None:
        """Everything about one patient's episode, or None when no pathway knows them."""
        now = self.clock()
        views = []
        record: Patient | None = None
        for pid, spec in self.specs.items():
            outputs = self.ledger.patient_outputs(pid, ref)
            if not outputs:
                continue
            compiled = spec.compiled
            record = record or PatientsIndex(self.ledger.engine, pid).one(self.patients, ref, compiled.clinic.zone.key)
            views.append(self._episode(compiled, ref, outputs, now, user_role, actors or {}))
        if not views:
            return None
        return {"ref": ref, "episodes": views, "now": _when(now, next(iter(self.specs.values())).compiled),
                "name": f"{record.given_name} {record.family_name}" if record else None,
                "email": record.email if record else None,
                "timezone": record.timezone if record else None}

    def _episode(self, compiled: CompiledPathway, ref: str, outputs: list, now: datetime,
                 user_role: str, actors: dict[str, str]) -> dict[str, object]:
        """`actors`: event id → the staff member whose action recorded it (from the audit)."""
        zone = compiled.clinic.zone
        store = EventStore(self.ledger.engine, compiled.id)
        ids = sorted({i for i, _ in store.shared([ref])})
        found, rejected = store.events_of([ref], ids, compile_event_types(compiled.event_fields), {ref})
        events = sorted(found.get(ref, []), key=lambda e: (e.at, e.id))
        plan = next((dict(o.body) for o, _ in outputs if o.kind is OutputKind.PATIENT), {})
        tasks = [task_record(ref, o.body) for o, _ in outputs if o.kind is OutputKind.TASK]
        letters = [outbox_record(ref, o.body, sent) for o, sent in outputs if o.kind is OutputKind.LETTER]
        by_task = {}
        for e in events:
            if e.type in ("task_completed", "decision_recorded", ACKNOWLEDGED):
                by_task.setdefault(str(e.data.get("task")), []).append(e)
        timeline = [{"at": _when(e.at, compiled), "iso": e.at.isoformat(), "type": e.type, "id": e.id,
                     "text": self._event_text(compiled, e, tasks, actors)} for e in events]
        phq9 = [(e.at, sum(int(i) for i in e.data["items"]), int(e.data["items"][8]))  # type: ignore[index]
                for e in events if e.type == "assessment_recorded" and e.data.get("instrument") == "phq9"]
        vitals = [{"at": _when(e.at, compiled), "bp": f"{e.data['systolic']}/{e.data['diastolic']}",
                   "phase": str(e.data.get("phase", "")).replace("_", "-")}
                  for e in events if e.type == "vitals_recorded"]
        task_views = []
        for t in sorted(tasks, key=lambda t: (str(t["earliest"]), str(t["id"]))):
            step = compiled.steps.get(str(t["step"]))
            open_ = t["status"] in ("open", "overdue")
            ack = t.get("acknowledged_by") or next((str(e.data.get("by")) for e in by_task.get(str(t["id"]), [])
                                                     if e.type == ACKNOWLEDGED), None)
            task_views.append({
                **t, "acknowledged_by": ack, "escalation": _escalation(t.get("escalation"), compiled), "earliest_text": _when(datetime.fromisoformat(str(t["earliest"])), compiled),
                "due_text": _when(datetime.fromisoformat(str(t["due"])), compiled) if t.get("due") else "no due time",
                "role_label": role_label(str(t["role"])), "open": open_,
                "closed_by": "" if open_ else self._closed_by(compiled, t, step, by_task, events, actors),
                "rule": provenance_text(compiled, str(t.get("source", ""))),
                **(self._affordances(compiled, step, str(t["role"]), user_role, ack)
                   if open_ else {})})
        holds = [{"name": h, "why": [str(t["title"]) for t in tasks if t["status"] in ("open", "overdue")
                                      and h in (compiled.steps[str(t["step"])].holds
                                                if str(t["step"]) in compiled.steps else ())]}
                 for h in plan.get("holds") or []]
        return {"pathway": {"id": compiled.id, "version": compiled.version, "title": compiled.title},
                "stage": plan.get("stage"), "status": plan.get("status"),
                "flags": [{"name": f, "severity": compiled.flag_severity.get(f, "attention"),
                           "meaning": self.meanings.get(compiled.id, {}).get(f, "")}
                          for f in plan.get("flags") or []],
                "holds": holds, "timeline": timeline, "tasks": task_views, "letters": letters,
                "sessions": [{**s, "start_text": _when(datetime.fromisoformat(s["start"]), compiled)
                              if s.get("start") else ""} for s in plan.get("sessions") or []],
                "vitals": vitals, "chart": phq9_chart(phq9, zone),
                "phq9": [{"at": _when(at, compiled), "total": total, "item9": item9} for at, total, item9 in phq9],
                "rejected": [{"line": r.line, "reason": r.reason} for r in rejected.get(ref, [])]}

    def _event_text(self, compiled: CompiledPathway, event, tasks: list[dict],  # noqa: ANN001
                    actors: dict[str, str]) -> str:
        if event.type in ("task_completed", "decision_recorded", ACKNOWLEDGED):
            task = next((t for t in tasks if t["id"] == event.data.get("task")), None)
            what = str(task["title"]) if task else f"task {event.data.get('task')}"
            who = event.data.get("by") or actors.get(event.id)
            by = f" by {who}" if who else ""
            if event.type == "task_completed":
                return f"Done: {what}{by}"
            if event.type == "decision_recorded":
                return f"Decision {str(event.data.get('decision')).replace('_', ' ')!r}: {what}{by}"
            return f"Acknowledged: {what}{by}"
        declared = compiled.event_fields.get(event.type)
        return describe(event.type, event.data, compiled.clinic.zone, declared,
                        compiled.notes.get(f"event:{event.type}"))

    def _closed_by(self, compiled: CompiledPathway, task: dict, step: Step | None, by_task: dict,
                   events: list, actors: dict[str, str]) -> str:
        if task["status"] == "done":
            named = [e for e in by_task.get(str(task["id"]), []) if e.type != ACKNOWLEDGED]
            if named:
                return f"{self._event_text(compiled, named[-1], [task], actors)} ({_when(named[-1].at, compiled)})"
            done_at = task.get("completed_at")
            for e in events:
                if done_at and e.at == datetime.fromisoformat(str(done_at)) and step and e.type in step.done_by:
                    return f"{self._event_text(compiled, e, [task], actors)} ({_when(e.at, compiled)})"
            return "done"
        why = [t.replace("_", " ") for t in sorted(step.cancelled_by)] if step else []
        return "withdrawn" + (f" (this step is withdrawn by: {', '.join(why)}; or by a stage change)" if why else
                              " (by a stage change, discharge or a newer plan)")

    # -- acting -------------------------------------------------------------------------

    def act(self, user: str, user_role: str, action: str, ref: str, task_id: str, *, decision: str = "",
            note: str = "") -> Done:
        """Record the action as an event and re-plan the patient; Refused with the reason."""
        if action not in ACTIONS:
            raise Refused("unknown action")
        if len(note) > MAX_NOTE:
            raise Refused(f"a note may be at most {MAX_NOTE} characters")
        with self._lock:
            pid, task = self._task_of(ref, task_id)
            spec = self.specs[pid]
            compiled = spec.compiled
            step = compiled.steps.get(str(task["step"]))
            if task["status"] not in ("open", "overdue"):
                raise Refused(f"“{task['title']}” is already {'done' if task['status'] == 'done' else 'closed'}: "
                              "nothing to record")
            if not may_act(user_role, str(task["role"])):
                raise Refused(f"“{task['title']}” is for the {role_label(str(task['role'])).lower()} role; "
                              f"you are signed in as {role_label(user_role).lower()}")
            data: dict[str, object] = {"task": task_id}
            if action == "complete":
                if not can_complete(step):
                    raise Refused(f"“{task['title']}” is settled by recording a decision, not by marking it done")
                kind = "task_completed"
            elif action == "decide":
                decision = decision.strip()
                options = step_decisions(compiled, str(task["step"]))
                if options and decision not in options:
                    raise Refused(f"choose one of the decisions this step names: {', '.join(options)}")
                if not decision or len(decision) > MAX_DECISION or not all(c.isalnum() or c in "_-" for c in decision):
                    raise Refused("a decision is a short code: letters, digits, '_' or '-' "
                                  f"(at most {MAX_DECISION} characters)")
                kind, data["decision"] = "decision_recorded", decision
            else:
                if ACKNOWLEDGED not in compiled.event_fields:
                    raise Refused("this version of carepath cannot record acknowledgements yet")
                if task.get("acknowledged_by") or self.boards[pid].acks.get(task_id):
                    who = task.get("acknowledged_by") or self.boards[pid].acks[task_id]
                    raise Refused(f"“{task['title']}” was already acknowledged by {who}")
                kind, data["by"] = ACKNOWLEDGED, user
            now = self.clock()
            at = now.astimezone(compiled.clinic.zone)
            event_id = f"web-{at:%Y%m%dT%H%M%S}-{secrets.token_hex(4)}"
            line = orjson.dumps({"id": event_id, "patient": ref, "type": kind, "at": at.isoformat(),
                                 "data": data}).decode()
            try:
                record_event(compiled, self.patients, self.events, line, **self._recording_aids(pid, ref))
            except NotRecorded as exc:
                raise Refused(f"the event was not recorded: {exc}") from None
            if kind == ACKNOWLEDGED:
                self.boards[pid].acks.setdefault(task_id, user)
            self._replan(pid, ref, now)
        verb = {"complete": "marked done", "decide": f"decision {decision!r} recorded",
                "acknowledge": "acknowledged"}[action]
        return Done(event_id, kind, pid, f"“{task['title']}” {verb}; the plan below is re-planned from it")

    def _recording_aids(self, pid: str, ref: str) -> dict[str, object]:
        """The patient's record and an id lookup in the ledger's event store (the file
        ingested first), so recording reads neither whole file (see `record_event`)."""
        compiled = self.specs[pid].compiled
        patient = PatientsIndex(self.ledger.engine, pid).one(self.patients, ref, compiled.clinic.zone.key)
        if patient is None:
            raise Refused(f"patient {ref} is not in the patients file (or their line is rejected)")
        store = EventStore(self.ledger.engine, pid)
        store.ingest(self.events, on_new=WakeIndex(self.ledger.engine, pid).mark_dirty)

        def earlier(event) -> tuple | None:  # noqa: ANN001
            # Ids made here are fresh; any stored line under one is a clash, never a repeat.
            return ("used",) if store.lines_of((), [event.id]) else None

        return {"known": {ref: patient}, "earlier": earlier}

    def _task_of(self, ref: str, task_id: str) -> tuple[str, dict]:
        for pid in self.specs:
            for output, _ in self.ledger.patient_outputs(pid, ref):
                if output.kind is OutputKind.TASK and output.id == task_id:
                    return pid, dict(output.body)
        if any(task_id in board.entries for board in self.boards.values()):
            raise Refused("that task belongs to another patient: open it from that patient's row")
        raise Refused("no such task for this patient (it may have been re-planned away): reload the page")

    def _replan(self, pid: str, ref: str, now: datetime) -> None:
        spec = replace(self.specs[pid], as_of=now, run=f"serve-{now:%Y%m%dT%H%M%S}-{secrets.token_hex(3)}")
        for other, other_spec in self.specs.items():
            # An event may concern the patient's episode under every pathway the site serves.
            if other == pid or self.ledger.patient_outputs(other, ref):
                sequence.replan_patient(spec if other == pid else replace(other_spec, as_of=now, run=spec.run),
                                        self.patients, self.events, ref)
                board = self.boards[other]
                board.as_of = now
                board.replace_patient(ref, [o for o, _ in self.ledger.patient_outputs(other, ref)])
                if other in self._rebuilding:
                    self._rebuilding[other].add(ref)
                else:
                    self._generations[other] = self.ledger.generation(other)


def _escalation(value: object, compiled: CompiledPathway) -> str:
    """"escalated to <tier> since <when>" for an urgent task that climbed its ladder, else ""."""
    if not isinstance(value, dict) or not value.get("tier"):
        return ""
    since = value.get("since")
    when = f" since {_when(datetime.fromisoformat(str(since)), compiled)}" if since else ""
    return f"escalated to {str(value['tier']).replace('_', ' ')}{when}"


def _flag_meanings(spec: RunSpec) -> dict[str, str]:
    """Each flag's meaning in the pathway's words (the patient page says why it is raised)."""
    from carepath.check.runner import check_file

    checked = check_file(spec.pathway, display=str(spec.pathway), text=spec.source)
    if checked.pathway is None:
        return {}
    return {name: flag if isinstance(flag, str) else flag.meaning for name, flag in checked.pathway.flags.items()}


def _first(items: Iterable, n: int) -> list:
    out = []
    for item in items:
        if len(out) >= n:
            break
        out.append(item)
    return out


def _when(moment: datetime, compiled: CompiledPathway) -> str:
    local = moment.astimezone(compiled.clinic.zone)
    return f"{local:%a} {local.day} {local:%b %Y %H:%M} {local.tzname()}"


def phq9_chart(points: list[tuple[datetime, int, int]], zone) -> dict[str, object]:  # noqa: ANN001
    """A small SVG line chart of PHQ-9 totals (0-27) over time; a point whose item 9 was
    answered above 0 is marked. Coordinates only: the template draws it."""
    width, height, pad = 480, 160, 24
    if not points:
        return {"points": [], "width": width, "height": height}
    first, last = points[0][0], points[-1][0]
    span = max((last - first).total_seconds(), 1.0)
    out = []
    for at, total, item9 in points:
        x = pad + (width - 2 * pad) * ((at - first).total_seconds() / span if len(points) > 1 else 0.5)
        y = height - pad - (height - 2 * pad) * total / 27
        out.append({"x": round(x, 1), "y": round(y, 1), "total": total, "item9": item9,
                    "label": f"{at.astimezone(zone):%d %b}: total {total}" + (f", item 9 = {item9}" if item9 else "")})
    return {"points": out, "width": width, "height": height, "pad": pad,
            "path": " ".join(f"{p['x']},{p['y']}" for p in out),
            "grid": [{"y": round(height - pad - (height - 2 * pad) * v / 27, 1), "v": v} for v in (0, 5, 10, 15, 20, 27)]}
