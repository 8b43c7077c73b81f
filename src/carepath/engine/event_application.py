"""Applying one event: completions, holds, the rules (in file order), then the stage's transitions."""

from __future__ import annotations

from collections.abc import Iterable

from carepath.compile import compiled as c
from carepath.compile.conditions import ConditionError
from carepath.engine import loops
from carepath.engine.aliases import NAMES_TASK
from carepath.engine.clock import Moment
from carepath.engine.recording import Recording
from carepath.engine.result import EngineRejection
from carepath.engine.task_refs import TaskReferences
from carepath.engine.work_items import (
    COMPLETIONS,
    EventLike,
    Visit,
    key_of,
)
from carepath.model.pathway import PatientStatus


class EventApplication(Recording, TaskReferences):
    """One event through the pathway: what it closes, the holds it breaks, the rules and transitions it fires."""

    def apply(self, event: EventLike) -> None:
        if self.visit is None:
            self.enter(self.p.start, event)
        elif event.type == "enrolled" and self.status is PatientStatus.DISCHARGED:
            loops.new_episode(self, event)
        if event.type in NAMES_TASK:
            event = self.aliased(event)
        if event.type == "session_scheduled" and not self.accept_booking(event):
            return
        if event.type in COMPLETIONS and (not self.names_real_task(event) or loops.refuses_completion(self, event)):
            return
        breached = self.breached_holds(event) if event.type in self.tables.breaches_by_type else ()
        if event.type in self.tables.gates_by_type:
            breached = loops.gated_breaches(self, event, breached)
        loops.contact(self, event)
        if event.type in self.tables.bookings_by_type:
            self.booking(event)
        if event.type in self.tables.dose_types:
            self.dose_anchored(event)
        self.record(event)
        self.close_tasks(event)
        for hold in breached:
            self.act(hold.on_breach, event, f"hold:{hold.name}:breach")
        # Rules still run after discharge: a positive PHQ-9 item 9 must be assessed in any stage.
        stage_before = self.visit.stage.name if self.visit else None
        ctx: dict[str, object] | None = None
        for rule in self.rules_by_type.get(event.type, ()):
            if rule.stages is not None and (self.visit is None or self.visit.stage.name not in rule.stages):
                continue
            if rule.when is not None:
                ctx = self.context(event)
                matched = self.decide(rule.when, ctx, event)
            else:
                matched = True
            if rule.consecutive is None:
                if matched:
                    self.act(rule.then, event, f"rule:{rule.id}")
                continue
            streak = self.streaks.get(rule.id, 0) + 1 if matched else 0
            self.streaks[rule.id] = streak
            if matched:
                actions = rule.then if streak >= rule.consecutive else rule.until_confirmed
                self.act(actions, event, f"rule:{rule.id}")
        for rule_id in self.tables.resets_by_type.get(event.type, ()):
            self.streaks[rule_id] = 0
        if self.visit is not None and self.visit.stage.name == stage_before:
            for k, transition in enumerate(self.visit.stage.transitions):
                if transition.on is not None and event.type not in transition.on:
                    continue
                if transition.when is not None and not self.decide(transition.when, self.context(event), event):
                    continue
                self.act(transition.then, event, f"stage:{stage_before}:transition:{k}")
                self.enter(transition.to, event)
                break

    def decide(self, condition, ctx: dict[str, object], event: EventLike) -> bool:
        try:
            return condition(ctx)
        except ConditionError as exc:
            # A condition that cannot be decided is reported, never taken as false silently.
            self.rejected.append(EngineRejection(event.line, event.id, f"not evaluated: {exc}"))
            return False

    def close_tasks(self, event: EventLike) -> None:
        """Completion and withdrawal of open tasks by this event."""
        target = event.data.get("task") if event.type in ("task_completed", "decision_recorded") else None
        if isinstance(target, str):
            # Only the named task can be closed: look it up instead of scanning them all. A
            # decision always settles its task; ticking a task off counts only where the step
            # allows it (a step done_by decision_recorded waits for the decision).
            task = self.tasks.get(target)
            if task is not None and task.is_open and task.id == target and (
                    event.type == "decision_recorded" or event.type in task.step.done_by):
                task.done_at = event.at
            return
        if event.type not in self.tables.closing_types:
            return  # no step is done or cancelled by this kind of event
        for task in self.tasks.values():
            if not task.is_open:
                continue
            step = task.step
            if event.type not in step.done_by and event.type not in step.cancelled_by:
                continue  # the common case, decided before the time and key comparisons
            if event.at < task.created_at or event.id == task.trigger:
                continue
            key_matches = step.key_field is None or key_of(event, step.key_field) == task.key
            if event.type in step.done_by and key_matches:
                task.done_at = event.at
            elif event.type in step.cancelled_by and key_matches:
                task.cancelled_at = event.at

    def enter(self, stage_name: str, event: EventLike) -> None:
        stage = self.p.stages[stage_name]
        for rule in self.p.rules:
            # A run of matches only counts within stages where the rule applies.
            if rule.stages is not None and stage_name not in rule.stages:
                self.streaks[rule.id] = 0
        if self.visit is not None:
            # Recurring work belongs to its stay: leaving the stage withdraws what is still
            # open, including the occurrence earlier plans showed ahead.
            self.materialise_recurring(Moment(event.at), include_next=True)
            left = (f"stage:{self.visit.stage.name}:recurring", f"stage:{self.visit.stage.name}:series")
            for task in self.tasks.values():
                if task.is_open and task.source in left and not task.step.safety:
                    task.cancelled_at = event.at
        self.visit = Visit(stage, event.at, event.id)
        self.act(stage.on_enter, event, f"stage:{stage_name}:on_enter")

    def act(self, actions: Iterable[c.Action], event: EventLike, source: str) -> None:
        self.fired.add(source)
        for action in actions:
            if isinstance(action, c.Task):
                self.create_task(action.step, event, source, action.due)
            elif isinstance(action, c.SendLetter):
                self.create_letter(action.letter, event, source)
            elif isinstance(action, c.SetFlag):
                self.flags.add(action.flag)
            elif isinstance(action, c.ClearFlag):
                self.flags.discard(action.flag)
            elif isinstance(action, c.SetStatus):
                if action.status is PatientStatus.DISCHARGED and self.status is not PatientStatus.DISCHARGED:
                    self.discharge(event.at)  # however the pathway discharges, the same work ends
                before, self.status = self.status, action.status
                loops.status_changed(self, before, event)
            elif isinstance(action, c.Goto):
                self.enter(action.stage, event)
            elif isinstance(action, c.Complete):
                for task in self.tasks.values():
                    if task.step.name == action.step and task.is_open:
                        task.done_at = event.at
            elif isinstance(action, c.Remember):
                self.facts.add(action.fact)
            elif isinstance(action, c.Forget):
                self.facts.discard(action.fact)

    def breached_holds(self, event: EventLike) -> tuple[c.Hold, ...]:
        """Holds this event breaks: open when it happens (before it closes anything)."""
        open_holds = self.holds()
        return tuple(h for h in self.tables.breaches_by_type[event.type] if h.name in open_holds)

    def booking(self, event: EventLike) -> None:
        """A booking is never refused for a hold (the clinic's calendar is not ours); its tasks
        show the holds while they are open, and a hold open now gets its booking reaction."""
        holds = self.tables.bookings_by_type[event.type]
        self.bookings[event.id] = tuple(h.name for h in holds)
        open_holds = self.holds()
        for hold in holds:
            if hold.name in open_holds:
                self.act(hold.on_booking, event, f"hold:{hold.name}:booking")
