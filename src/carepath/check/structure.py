"""Whole-pathway structure: reachability, unbounded waits, duplicate names, series."""

from __future__ import annotations

from carepath.check.context import CheckContext, action_sites
from carepath.codes import Code
from carepath.model.events import CORE_EVENTS
from carepath.model.params import ParamProblem, resolve_count
from carepath.model.pathway import GotoAction, TaskAction


def check_structure(ctx: CheckContext) -> None:
    _duplicates(ctx)
    _reachability(ctx)
    _waits(ctx)
    _calendar_windows(ctx)
    _counts(ctx)


def _duplicates(ctx: CheckContext) -> None:
    seen: dict[str, int] = {}
    for i, rule in enumerate(ctx.pathway.rules):
        if rule.id in seen:
            ctx.report(("rules", i, "id"), Code.DUPLICATE_NAME,
                       f"rule id {rule.id!r} is already used by rule #{seen[rule.id] + 1}", "give each rule its own id")
        else:
            seen[rule.id] = i
    for name in ctx.pathway.events:
        if name in CORE_EVENTS:
            ctx.report(("events", name), Code.DUPLICATE_NAME,
                       f"event type {name!r} is a core event type and cannot be redefined",
                       "choose another name for a pathway-specific event", key=True)


def _reachability(ctx: CheckContext) -> None:
    p = ctx.pathway
    edges: dict[str, set[str]] = {name: set() for name in p.stages}
    for name, stage in p.stages.items():
        for transition in stage.transitions:
            edges[name].add(transition.to)
        for action in stage.on_enter:
            if isinstance(action, GotoAction):
                edges[name].add(action.goto)
    for site in action_sites(p):
        if site.path[0] != "rules":
            continue
        rule = p.rules[site.path[1]]
        sources = rule.stages if rule.stages is not None else list(p.stages)
        for action in site.actions:
            if isinstance(action, GotoAction):
                for source in sources:
                    edges.setdefault(source, set()).add(action.goto)
    reached: set[str] = set()
    todo = [p.start] if p.start in p.stages else []
    while todo:
        stage = todo.pop()
        if stage in reached:
            continue
        reached.add(stage)
        todo.extend(s for s in edges.get(stage, ()) if s in p.stages)
    if p.start not in p.stages:
        return  # reported as an unknown stage
    for name in p.stages:
        if name not in reached:
            ctx.report(("stages", name), Code.UNREACHABLE_STAGE,
                       f"stage {name!r} cannot be reached from {p.start!r}",
                       "add a transition or a rule with 'goto: " + name + "'", key=True)


def _waits(ctx: CheckContext) -> None:
    # A calendar slot is bounded by its days; the same step created any other way is not.
    bounded_by_calendar = _calendar_steps(ctx) - _steps_used_outside_calendars(ctx)
    for name, step in ctx.pathway.steps.items():
        if step.window.due is None and step.overdue is None and name not in bounded_by_calendar:
            ctx.report(("steps", name, "window"), Code.UNBOUNDED_WAIT,
                       f"step {name!r} has no due time and no overdue escalation; its task could wait forever",
                       "add 'due:' to the window or an 'overdue:' escalation")


def _calendar_steps(ctx: CheckContext) -> set[str]:
    return {stage.series.step for stage in ctx.pathway.stages.values()
            if stage.series and stage.series.calendar and stage.series.step}


def _steps_used_outside_calendars(ctx: CheckContext) -> set[str]:
    p = ctx.pathway
    used = {a.task for site in action_sites(p) for a in site.actions if isinstance(a, TaskAction)}
    used |= {r.step for stage in p.stages.values() for r in stage.recurring}
    for step in p.steps.values():
        used |= {n for n in (step.window.conflict_step, step.overdue.task if step.overdue else None) if n}
    return used


def _calendar_windows(ctx: CheckContext) -> None:
    """Slot windows are the calendar's days; times set on the step itself would be silently ignored."""
    for name in sorted(_calendar_steps(ctx)):
        step = ctx.pathway.steps.get(name)
        if step is None:
            continue  # reported as an unknown step
        for key in ("opens", "due"):
            if key in step.window.model_fields_set:
                ctx.report(("steps", name, "window", key), Code.CALENDAR_STEP_WINDOW,
                           f"step {name!r} fills a calendar series, whose slots set its window; "
                           f"'{key}' here would be ignored",
                           "remove it, or give the slot work to another step created by a rule", key=True)


def _counts(ctx: CheckContext) -> None:
    p = ctx.pathway

    def count(raw: int | str, path: tuple, minimum: int, maximum: int | None = None) -> None:
        try:
            value = resolve_count(p, raw)
        except ParamProblem as exc:
            if not exc.unknown:
                ctx.report(path, Code.NEGATIVE_DURATION if exc.negative else Code.PARAMETER_KIND, str(exc))
            return
        if value < minimum:
            ctx.report(path, Code.INVALID_VALUE, f"must be at least {minimum}, got {value}")
        elif maximum is not None and value > maximum:
            ctx.report(path, Code.INVALID_VALUE, f"must be at most {maximum}, got {value}",
                       "a calendar slot is at least one day of its week")

    for i, rule in enumerate(p.rules):
        if rule.consecutive is not None:
            count(rule.consecutive, ("rules", i, "consecutive"), 1)
        elif rule.until_confirmed:
            ctx.report(("rules", i, "until_confirmed"), Code.INVALID_VALUE,
                       "'until_confirmed' needs 'consecutive' (how many matches confirm)")
    for name, stage in p.stages.items():
        series = stage.series
        if series is None:
            continue
        base = ("stages", name, "series")
        if series.sessions is None and not series.calendar:
            ctx.report(base, Code.MISSING_FIELD, "a series needs 'sessions' (a count) or a 'calendar'")
        if series.sessions is not None:
            count(series.sessions, (*base, "sessions"), 1)
        if series.calendar and not series.step:
            ctx.report(base, Code.MISSING_FIELD, "a series with a calendar needs 'step' (the task for each slot)")
        previous_end = 0
        for k, block in enumerate(series.calendar or []):
            first, last = block.weeks
            if first < 1 or last < first:
                ctx.report((*base, "calendar", k, "weeks"), Code.INVALID_VALUE,
                           f"weeks {first}-{last}: write [first, last] with 1 <= first <= last")
            elif first != previous_end + 1:
                ctx.report((*base, "calendar", k, "weeks"), Code.INVALID_VALUE,
                           f"weeks {first}-{last} do not follow week {previous_end}; blocks must be consecutive")
            previous_end = max(previous_end, last)
            count(block.per_week, (*base, "calendar", k, "per_week"), 1, 7)
