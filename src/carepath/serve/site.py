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
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

import orjson
from sqlalchemy import select

from carepath.orchestrator import sequence
from carepath.orchestrator.emission import archive_pathway
from carepath.orchestrator.event_store import EventStore, lines_table
from carepath.orchestrator.patients_index import PatientsIndex
from carepath.orchestrator.spec import RunSpec
from carepath.orchestrator.wake_index import WakeIndex
from carepath.recording import NotRecorded, record_event
from carepath.records import Patient
from carepath.runtime.smtp_block import smtp_for_run
from carepath.serve.access import ADMIN
from carepath.serve.board import Board, Entry
from carepath.serve.episode import (
    ACKNOWLEDGED,
    affordances,
    can_complete,
    episode,
    escalation_text,
    flag_meanings,
    may_act,
    span,
    step_decisions,
    when,
)
from carepath.sinks.base import Output, OutputKind
from carepath.sinks.email import SMTP_BLOCK_ENV
from carepath.sinks.ledger import Ledger
from carepath.sinks.worklist_bands import BANDS
from carepath.sinks.worklist_text import provenance_text, role_label, window_parts

Clock = Callable[[], datetime]
log = logging.getLogger("carepath.serve")
ACTIONS = ("acknowledge", "complete", "decide")
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
            if os.environ.get(SMTP_BLOCK_ENV):  # the block is read where Prefect may be imported
                spec = replace(spec, smtp=smtp_for_run(spec.compiled))
            if spec.compiled.id in self.specs:
                raise ValueError(f"pathway id {spec.compiled.id!r} is given twice")
            self.specs[spec.compiled.id] = spec
        self.meanings = {pid: flag_meanings(spec) for pid, spec in self.specs.items()}
        self.ledger = Ledger(ledger_url)
        for spec in self.specs.values():
            # Refused now (VersionReused) rather than on the first action's re-plan: the rules
            # served must be the rules this version was run under.
            archive_pathway(spec, self.ledger)
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
        return {"bands": bands, "beyond": beyond, "patients": patients, "now": when(now, first),
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
            reason = f"{reason} on {when(datetime.fromisoformat(str(reason_at)), compiled)}"
        if entry.safety and entry.earliest <= now:
            age = f"open for {span(now - entry.earliest)}"
        elif entry.due is not None and entry.due < now:
            age = f"overdue by {span(now - entry.due)}"
        else:
            age = ""
        return {"id": entry.id, "patient": entry.patient, "pathway": compiled.id, "title": str(body["title"]),
                "step": entry.step, "role": role_label(entry.role), "priority": entry.priority,
                "status": entry.status, "window": " ".join(window_parts(entry.earliest, entry.due, zone)),
                "reason": reason, "rule": provenance_text(compiled, str(body.get("source", ""))), "age": age,
                "safety": entry.safety, "acknowledged_by": entry.acknowledged_by,
                "held": list(body.get("held") or []),  # type: ignore[arg-type]
                "escalation": escalation_text(body.get("escalation"), compiled),
                **affordances(compiled, step, entry.role, user_role, entry.acknowledged_by)}

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
            views.append(episode(compiled, ref, outputs, self.ledger.engine, now, user_role, actors or {},
                                 self.meanings.get(pid, {})))
        if not views:
            return None
        return {"ref": ref, "episodes": views, "now": when(now, next(iter(self.specs.values())).compiled),
                "name": f"{record.given_name} {record.family_name}" if record else None,
                "email": record.email if record else None,
                "timezone": record.timezone if record else None}

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


def _first(items: Iterable, n: int) -> list:
    out = []
    for item in items:
        if len(out) >= n:
            break
        out.append(item)
    return out


