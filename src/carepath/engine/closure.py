"""What closed each withdrawn piece of work: for one patient's page, not for every sweep.

A plan says a task is `cancelled` and a letter `withdrawn`; a clinician reading one
patient's history also needs to know what closed it (a cancelled session, a discharge, a
stage left, a window that passed, a session booked again). Planning does not keep that
for every patient (a sweep never shows it), so this folds the one patient's history once
more and reads it off the fold: the event that came at the instant the task was withdrawn.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from carepath.compile import compiled as c
from carepath.engine import planner
from carepath.engine.clock import AsOf
from carepath.engine.letter_lifecycle import WITHDRAWN


def closures(compiled: c.CompiledPathway, patient: planner.PatientLike, events: Iterable[planner.EventLike],
             as_of: datetime) -> dict[str, str]:
    """Task or letter id → what closed it, in words, for every task cancelled (withdrawn or
    superseded) and every letter withdrawn as of `as_of`."""
    now = AsOf(as_of)
    known = sorted((e for e in events if now.at_or_after(e.at)), key=planner.in_time_order)
    fold = planner.Fold(compiled, patient)
    fold.run(known, now)
    result = fold.result(now)
    zone = compiled.clinic.zone
    by_instant: dict[datetime, list[planner.EventLike]] = {}
    for event in known:
        by_instant.setdefault(event.at, []).append(event)

    def when(moment: datetime) -> str:
        local = moment.astimezone(zone)
        return f"{local:%a} {local.day} {local:%b %Y}, {local:%H:%M} {local.tzname()}"

    def described(event: planner.EventLike) -> str:
        session = event.data.get("session")
        about = f" (session {session})" if session is not None else ""
        return f"{event.type.replace('_', ' ')}{about}, event {event.id}, {when(event.at)}"

    out: dict[str, str] = {}
    for task in fold.tasks.values():
        if task.done_at is not None:
            continue
        if task.cancelled_at is not None:
            candidates = by_instant.get(task.cancelled_at, [])
            # The event that withdraws this step's work, else the discharge, else what came then.
            event = (next((e for e in candidates if e.type in task.step.cancelled_by), None)
                     or next((e for e in candidates if e.type == "discharged"), None)
                     or (candidates[-1] if candidates else None))
            left = (task.source.split(":")[1] if task.source.startswith("stage:") and event is not None
                    and event.type not in task.step.cancelled_by and event.type != "discharged" else None)
            if left is not None:
                # Recurring work belongs to its stage: the event moved the patient on.
                out[task.id] = f"withdrawn when the patient left stage {left} on {described(event)}"
            else:
                out[task.id] = (f"withdrawn by {described(event)}" if event is not None
                                else f"withdrawn {when(task.cancelled_at)}")
        elif task.superseded_at is not None and now.after(task.superseded_at):
            out[task.id] = f"superseded: the window it was about passed {when(task.superseded_at)}"
    for letter in result.letters:
        if letter.status != WITHDRAWN:
            continue
        session = fold.sessions.get(letter.session) if letter.session is not None else None
        # The letter's own session first: it was withdrawn then, before any later discharge.
        if session is not None and session.status == "cancelled":
            cancel = next((e for e in reversed(known) if e.type == "session_cancelled"
                           and str(e.data.get("session")) == session.id), None)
            out[letter.id] = (f"withdrawn by {described(cancel)}" if cancel is not None
                              else f"withdrawn: session {session.id} was cancelled")
        elif session is not None and session.scheduled_by is not None and session.scheduled_by != letter.trigger:
            booking = next((e for e in known if e.id == session.scheduled_by), None)
            out[letter.id] = (f"withdrawn: session {session.id} was booked again, event {session.scheduled_by}"
                              + (f", {when(booking.at)}" if booking is not None else ""))
        elif fold.discharged_at is not None:
            discharge = next((e for e in by_instant.get(fold.discharged_at, []) if e.type == "discharged"), None)
            out[letter.id] = (f"withdrawn by {described(discharge)}" if discharge is not None
                              else f"withdrawn by the discharge, {when(fold.discharged_at)}")
    return out
