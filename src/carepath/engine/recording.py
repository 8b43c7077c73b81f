"""The facts an event records before any rule sees it: sessions, PHQ-9, screening, decisions, discharge."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import cast

from carepath.engine.clock import Moment
from carepath.engine.result import Acknowledgement, EngineRejection
from carepath.engine.time_driven import TimeDriven
from carepath.engine.work_items import (
    EventLike,
)
from carepath.model.pathway import PatientStatus


class Recording(TimeDriven):
    """What events record for conditions to read, and the bookings refused for the minimum gap."""

    def accept_booking(self, event: EventLike) -> bool:
        gap = self.p.min_session_gap
        start = event.data.get("start")
        session_id = str(event.data.get("session"))
        if gap is None or not isinstance(start, datetime):
            return True
        for other in self.sessions.values():
            if other.id == session_id or other.status in ("cancelled", "missed"):
                continue
            when = other.completed_at if other.status == "completed" else other.start
            if when is None:
                continue
            if start.tzinfo is not when.tzinfo or type(start.tzinfo) is timezone:
                apart = abs(start - when)  # Python subtracts these as instants already
            else:  # one zone on both sides: aware subtraction would give wall-clock time
                apart = abs(start.astimezone(UTC) - when.astimezone(UTC))
            if apart < gap:
                hours = apart.total_seconds() / 3600
                self.rejected.append(EngineRejection(
                    event.line, event.id,
                    f"session {session_id} would start {hours:g} h from session {other.id}; "
                    f"the minimum gap between sessions is {_hours(gap)} — book it later or change the other session",
                ))
                return False
        return True

    def record(self, event: EventLike) -> None:
        """Update the facts conditions read, before any rule sees the event."""
        data, visit = event.data, self.visit
        kind = event.type
        if kind == "session_scheduled":
            session = self.session(str(data["session"]))
            if session.status != "completed":
                if session.status != "scheduled" or session.scheduled_by is None:
                    if visit:
                        visit.scheduled += 1
                session.status = "scheduled"
            session.start = data["start"]  # type: ignore[assignment]
            session.scheduled_by = event.id
            session.bookings[event.id] = data["start"]  # type: ignore[assignment]
        elif kind in ("session_completed", "session_missed", "session_cancelled"):
            session = self.session(str(data["session"]))
            if kind == "session_completed":
                if session.status != "completed" and visit:
                    visit.completed += 1
                    self.fill_calendar(event)
                if session.status != "completed":
                    self.completed_total += 1
                session.status, session.completed_at = "completed", event.at
                self.consecutive_missed = 0
                self.consecutive_attended += 1
            elif kind == "session_missed":
                session.status = "missed"
                self.consecutive_attended = 0
                self.missed_total += 1
                self.consecutive_missed += 1
                if visit:
                    visit.missed += 1
            else:
                session.status = "cancelled"
        elif kind == "assessment_recorded" and data.get("instrument") == "phq9":
            items = list(cast("list[int]", data["items"]))  # the records reader checked: 9 integers 0..3
            total = sum(items)
            # The pathway's bands (`phq9_bands`), read in rising order.
            band = next((name for highest, name in self.p.phq9_bands if total <= highest), "none")
            self.phq9 = {"recorded": True, "total": total, "item9": items[8], "items": items, "band": band}
        elif kind == "screening_recorded":
            self.screening = {"recorded": True, "trd_trials": data.get("trd_trials", 0),
                              "contraindications": list(cast("list[str]", data.get("contraindications") or [])),
                              "cautions": list(cast("list[str]", data.get("cautions") or []))}
        elif kind == "decision_recorded":
            self.decisions[str(data["task"])] = str(data["decision"])
        elif kind == "task_acknowledged":
            self.acks.setdefault(str(data["task"]), Acknowledgement(str(data["by"]), event.at))
        elif kind == "discharged":
            self.discharge(event.at)

    def discharge(self, at: datetime) -> None:
        """Discharge withdraws routine work, never safety work (an open suicide-risk
        assessment, a hold-breach review: any step marked `safety`)."""
        # Planned recurring work that earlier plans showed is withdrawn, not dropped.
        self.materialise_recurring(Moment(at), include_next=True)
        self.status = PatientStatus.DISCHARGED
        self.discharged_at = at
        for task in self.tasks.values():
            if task.is_open and not task.step.safety:
                task.cancelled_at = at


def _hours(delta: timedelta) -> str:
    hours = delta.total_seconds() / 3600
    return f"{hours:g} h"
