"""What the engine returns: frozen plan objects with their JSON form (the plan contract)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True, slots=True)
class Acknowledgement:
    """A `task_acknowledged`: who saw and owned the task, and when (the first one counts)."""

    by: str
    at: datetime


@dataclass(frozen=True, slots=True)
class EscalationState:
    """The tier a patient's unacknowledged or overdue urgent work has reached (engine/escalation.py)."""

    tier: str
    since: datetime               # when that tier was reached (clinic zone)
    next_at: datetime | None      # when the next escalation is due with no new event; None: none is

    def as_json(self) -> dict[str, object]:
        return {"tier": self.tier, "since": self.since.isoformat(),
                "next_at": self.next_at.isoformat() if self.next_at else None}


@dataclass(frozen=True, slots=True)
class PlannedTask:
    id: str
    step: str
    title: str
    role: str
    priority: str
    earliest: datetime
    due: datetime | None
    status: str             # open | done | overdue | cancelled
    trigger: str            # the event id that created (or last re-anchored) the task
    out_of_window: bool
    source: str             # the rule/stage/transition that produced it (provenance)
    completed_at: datetime | None = None
    # Why, in clinical words: what the triggering event recorded ("PHQ-9 item 9 answered 2")
    # and when (clinic zone); None for time-driven work with no event behind it.
    reason: str | None = None
    reason_at: datetime | None = None
    held: tuple[str, ...] = ()  # holds open now that stop what this task's booking is for (e.g. dosing)
    acknowledged_by: str | None = None    # the staff ref of the first task_acknowledged naming it
    acknowledged_at: datetime | None = None
    escalation: EscalationState | None = None  # urgent or safety work only; None until a tier is reached

    def as_json(self, pathway_version: str) -> dict[str, object]:
        return {
            "id": self.id, "step": self.step, "title": self.title, "role": self.role, "priority": self.priority,
            "earliest": self.earliest.isoformat(), "due": self.due.isoformat() if self.due else None,
            "status": self.status, "trigger": self.trigger, "out_of_window": self.out_of_window,
            "source": self.source, "pathway_version": pathway_version,
            "completed_at": self.completed_at.isoformat() if self.completed_at else None,
            "reason": self.reason, "reason_at": self.reason_at.isoformat() if self.reason_at else None,
            "held": list(self.held),
            "acknowledged_by": self.acknowledged_by,
            "acknowledged_at": self.acknowledged_at.isoformat() if self.acknowledged_at else None,
            "escalation": self.escalation.as_json() if self.escalation else None,
        }


@dataclass(frozen=True, slots=True)
class PlannedLetter:
    id: str
    letter: str
    template: str
    send_at: datetime
    trigger: str
    source: str
    session: str | None = None
    expires_at: datetime | None = None  # set by engine/letter_lifecycle.py, like status
    status: str = "scheduled"           # scheduled | due | expired | withdrawn (as of the plan's instant)

    def as_json(self, pathway_version: str) -> dict[str, object]:
        return {
            "id": self.id, "letter": self.letter, "template": self.template, "send_at": self.send_at.isoformat(),
            "trigger": self.trigger, "source": self.source, "pathway_version": pathway_version,
            "session": self.session,
            "expires_at": self.expires_at.isoformat() if self.expires_at else None, "status": self.status,
        }


@dataclass(frozen=True, slots=True)
class PlannedSession:
    id: str
    status: str             # scheduled | completed | missed | cancelled
    start: datetime | None  # booked start (clinic zone)
    completed_at: datetime | None

    def as_json(self) -> dict[str, object]:
        return {"id": self.id, "status": self.status, "start": self.start.isoformat() if self.start else None,
                "completed_at": self.completed_at.isoformat() if self.completed_at else None}


@dataclass(frozen=True, slots=True)
class EngineRejection:
    """An event the engine refused (e.g. a booking inside the minimum gap)."""

    line: int
    id: str
    reason: str

    def as_json(self) -> dict[str, object]:
        return {"line": self.line, "id": self.id, "reason": self.reason}


@dataclass(frozen=True, slots=True)
class PatientPlan:
    patient: str
    stage: str
    status: str
    flags: tuple[str, ...]
    holds: tuple[str, ...]
    tasks: tuple[PlannedTask, ...]
    letters: tuple[PlannedLetter, ...]
    sessions: tuple[PlannedSession, ...] = ()
    rejected: tuple[EngineRejection, ...] = field(default=())
    fired: frozenset[str] = frozenset()  # rules and transitions that acted (scenario coverage)
    # The earliest instant from which this plan may read differently with no new event (a
    # window closing, a letter falling due or expiring, recurring work opening, an event
    # dated ahead of the as-of becoming known); None when only a new event can change it.
    # Not part of the plan contract: the sweep's wake index (re-plan only who may change).
    wake: datetime | None = None

    def as_json(self, pathway_version: str) -> dict[str, object]:
        return {
            "patient": self.patient, "stage": self.stage, "status": self.status,
            "flags": list(self.flags), "holds": list(self.holds),
            "tasks": [t.as_json(pathway_version) for t in self.tasks],
            "letters": [l.as_json(pathway_version) for l in self.letters],
            "sessions": [s.as_json() for s in self.sessions],
        }
