"""The fold's state: what one patient's history has made so far, before the as-of is read.

Each concern that changes it is a class of its own, stacked on this one: creating work
(engine/work.py), time-driven work (engine/time_driven.py), the facts events record
(engine/recording.py), which task an event names (engine/task_refs.py), applying an
event (engine/event_application.py) and the plan at the as-of (engine/projection.py);
engine/planner.py folds the events through all of them.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from carepath.compile import compiled as c
from carepath.engine import loops
from carepath.engine.aliases import AliasIndex, IdAliases
from carepath.engine.condition_context import Context
from carepath.engine.result import Acknowledgement, EngineRejection, PlannedLetter
from carepath.engine.work_items import EventLike, PatientLike, Session, Task, Visit
from carepath.model.pathway import PatientStatus


class FoldState:
    """One patient's state while their events are folded."""

    def __init__(self, compiled: c.CompiledPathway, patient: PatientLike, aliases: IdAliases | None = None) -> None:
        self.p = compiled
        self.aliases = aliases
        self.alias_index: AliasIndex | None = None  # built on the first event naming an unknown id
        self.patient = patient
        self.zone = compiled.clinic.zone

        self.patient_zone = ZoneInfo(patient.timezone)
        self.status = PatientStatus.ACTIVE
        self.discharged_at: datetime | None = None  # letters not yet due then are withdrawn
        self.flags: set[str] = set()
        self.tasks: dict[str, Task] = {}
        self.holding: list[Task] = []  # tasks whose step keeps a hold: holds() scans only these
        self.letters: dict[str, PlannedLetter] = {}
        self.sessions: dict[str, Session] = {}
        self.streaks: dict[str, int] = {}
        self.decisions: dict[str, str] = {}  # task id → decision
        self.acks: dict[str, Acknowledgement] = {}  # task id → its first task_acknowledged
        self.phq9: dict[str, object] = {"recorded": False, "total": 0, "item9": 0, "items": [], "band": "none"}
        self.screening: dict[str, object] = {"recorded": False, "trd_trials": 0, "contraindications": [],
                                             "cautions": []}
        self.consecutive_missed = 0
        self.consecutive_attended = 0
        self.facts: set[str] = set()
        self.bookings: dict[str, tuple[str, ...]] = {}  # booking event id → holds it books past
        self.completed_total = 0
        self.missed_total = 0
        self.visit: Visit | None = None
        self.rejected: list[EngineRejection] = []
        self.fired: set[str] = set()
        self.withheld: list[tuple[str, EventLike, str]] = []  # letters a status withheld, to release later
        self.letter_keys: set[tuple[str, str]] = set()  # (letter, value) for letters sent once per value
        self.withdrawn_letters: set[str] = set()  # letter ids an earlier discharge or a status withdrew
        self.paused_letters: set[str] = set()  # of those, the ones a status withholds (back when it ends)
        self.hold_history = loops.HoldHistory() if compiled.tables.tracks_holds else None
        self.tables = compiled.tables
        self.rules_by_type = self.tables.rules_by_type

    def context(self, event: EventLike) -> Context:
        """What conditions may read (model/context.py), each entry built only when read."""
        return Context(self, event)

    def holds(self) -> set[str]:
        held = {h for t in self.holding if t.is_open for h in t.step.holds}
        by_status = self.tables.status_holds.get(self.status)
        return held.union(by_status) if by_status else held

    def session(self, session_id: str) -> Session:
        session = self.sessions.get(session_id)
        if session is None:
            session = self.sessions[session_id] = Session(session_id)
        return session

    def closed_at(self, task_id: str) -> datetime | None:
        """When a task was done or withdrawn (a superseded one: when its window passed)."""
        task = self.tasks.get(task_id)
        return None if task is None else task.done_at or task.cancelled_at or task.superseded_at
