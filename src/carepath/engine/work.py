"""Creating work: a task or a letter for an event, its window, its due and the clinic's hours."""

from __future__ import annotations

from datetime import UTC, datetime

from carepath.compile import compiled as c
from carepath.engine import calendar as cal
from carepath.engine import loops, why
from carepath.engine.fold_state import FoldState
from carepath.engine.ids import output_id
from carepath.engine.result import PlannedLetter
from carepath.engine.slots import calendar_slots
from carepath.engine.work_items import (
    EventLike,
    Marker,
    Task,
    key_of,
)
from carepath.model.pathway import ClosedPolicy


class Work(FoldState):
    """Tasks and letters created for an event (or a time-driven marker)."""

    def anchor(self, field_name: str | None, event: EventLike) -> datetime:
        if field_name is None:
            return event.at
        value = event.data.get(field_name)
        return value if isinstance(value, datetime) else event.at

    def create_task(self, step_name: str, event: EventLike, source: str, due_override: c.DueSpec | None = None,
                    *, key: str | None = None, anchor: datetime | None = None) -> Task:
        step = self.p.steps[step_name]
        if key is None:
            key = key_of(event, step.key_field) if step.key_field else f"event:{event.id}"
        task_id = output_id("t", self.p.id, self.patient.ref, step_name, key)
        start = anchor if anchor is not None else self.anchor(step.anchor_field, event)
        window = step.window
        earliest = (cal.day_opening(self.p.clinic, start) if window.opens_at_opening
                    else cal.shift(start, window.opens, window.basis, self.zone))
        if anchor is None and step.anchor_field is not None and earliest < event.at:
            # Measured from a booked start, a window may "open" before the booking itself:
            # the work exists only from the event that calls for it.
            earliest = event.at
        due = self.due(window.due, start, window) if window.due else None
        if due_override is not None:
            tighter = self.due(due_override, start, window)
            due = tighter if due is None or tighter < due else due
        existing = self.tasks.get(task_id)
        if existing is not None:
            if existing.trigger == event.id:
                # Several rules on one event for one occurrence: the earliest due wins.
                if due is not None and (existing.due is None or due < existing.due):
                    existing.due = due
                return existing
            if existing.done_at is not None:
                return existing
            # Otherwise the occurrence moves to its new anchor (a corrected completion
            # time, or a cancelled session that happened after all).
        task = Task(task_id, step, key, event.id, event.at if anchor is None else earliest, earliest, due,
                     step.priority, source)
        if not isinstance(event, Marker):
            task.reason, task.reason_at = why.describe(
                event.type, event.data, self.zone, self.p.event_fields.get(event.type),
                self.p.notes.get(f"event:{event.type}")), event.at
        self.tasks[task_id] = task
        if self.tables.withdrawn_while:
            loops.withdrawn_at_birth(self, task)
        if step.holds:
            if existing is not None and existing in self.holding:
                self.holding.remove(existing)
            self.holding.append(task)
        if window.when_clinic_closed is not None and due is not None:
            self.apply_clinic_policy(task, event, source)
        return task

    def due(self, spec: c.DueSpec, start: datetime, window: c.Window) -> datetime:
        due = cal.resolve_due(self.p.clinic, spec, start, window.basis)
        if not isinstance(spec, c.OffsetDue) and due < start:
            # "Before closing today" after closing time, or 23:59 already past: due at once.
            return start.astimezone(self.zone)
        return cal.within_hours(self.p.clinic, due) if window.move_outside_hours else due

    def apply_clinic_policy(self, task: Task, event: EventLike, source: str) -> None:
        window = task.step.window
        assert task.due is not None
        if cal.has_open_hours(self.p.clinic, task.earliest, task.due):
            return
        if window.when_clinic_closed is ClosedPolicy.NEXT_OPEN_SLOT:
            opens, closes = cal.next_opening(self.p.clinic, task.due)
            task.earliest, task.due, task.out_of_window = opens, closes, True
        elif window.conflict_step is not None:
            conflict = self.create_task(window.conflict_step, event, f"{source}:window_conflict",
                                        key=f"conflict:{task.id}", anchor=event.at)
            # Once the window has passed, the unmet-window flag says what the conflict said.
            conflict.superseded_at = task.due
            if conflict.due is not None and conflict.due > task.due:
                # No clinic time is left before the window passes (e.g. a Friday-evening
                # session): the conflict needs attention at once, not after the weekend.
                conflict.due = event.at.astimezone(self.zone)

    def create_letter(self, letter_name: str, event: EventLike, source: str, *,
                      release_at: datetime | None = None) -> None:
        letter = self.p.letters[letter_name]
        if self.status in letter.withheld_while:
            # e.g. no session instructions to a patient who must not be dosed; kept to be
            # released if the status ends (engine/loops.py)
            self.withheld.append((letter_name, event, source))
            return
        letter_id = output_id("l", self.p.id, self.patient.ref, letter_name, f"event:{event.id}")
        if letter_id in self.letters:
            return
        if letter.key_field is not None:
            # One letter per value (one session recorded twice under two ids: one reminder).
            per = (letter_name, str(event.data.get(letter.key_field)))
            if per in self.letter_keys:
                return
            self.letter_keys.add(per)
        at_utc = event.at.astimezone(UTC)
        anchor = self.anchor(letter.anchor_field, event)
        planned = (at_utc if anchor is event.at else anchor.astimezone(UTC)) + letter.send
        # A letter cannot go out before the event that calls for it was recorded (or, for a
        # withheld letter, before it was released).
        send_at = max(planned, at_utc, release_at.astimezone(UTC) if release_at else at_utc
                      ).astimezone(self.patient_zone)
        if release_at is not None and letter.anchor_field is None and \
                release_at >= planned + (letter.expires or self.p.letter_expiry):
            return  # released after it would have expired: it is never sent
        session = event.data.get("session")
        self.letters[letter_id] = PlannedLetter(letter_id, letter_name, letter.template, send_at, event.id, source,
                                                str(session) if session is not None else None)

    def fill_calendar(self, event: EventLike) -> None:
        """The nth dose of a calendar series fills slot n; the first dose lays out every slot."""
        visit = self.visit
        series = visit.stage.series if visit else None
        if visit is None or series is None or not series.calendar or series.step is None:
            return
        source = f"stage:{visit.stage.name}:series"
        if visit.completed == 1:
            for slot in calendar_slots(series.calendar, event.at, self.zone):
                task = self.create_task(series.step, event, source, anchor=slot.opens,
                                        key=f"{visit.stage.name}:{event.id}:slot:{slot.number}")
                task.earliest, task.due, task.created_at = slot.opens, slot.closes, event.at
            visit.first_dose = event.id
        slot_id = output_id("t", self.p.id, self.patient.ref, series.step,
                            f"{visit.stage.name}:{visit.first_dose}:slot:{visit.completed}")
        filled = self.tasks.get(slot_id)
        if filled is not None and filled.is_open:
            filled.done_at = event.at
