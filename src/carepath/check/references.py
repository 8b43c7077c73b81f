"""Every name a pathway uses must be defined: stages, steps, letters, flags, roles,
event types, data fields, parameters, template files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel

from carepath.check.context import CheckContext, action_sites
from carepath.codes import Code
from carepath.diagnostics import Severity
from carepath.model.durations import referenced_name
from carepath.model.pathway import (
    CompleteAction,
    FieldType,
    FlagAction,
    GotoAction,
    LetterAction,
    Pathway,
    TaskAction,
    UnflagAction,
)
from carepath.source.loader import KeyPath


def suggest(name: str, known: set[str] | dict) -> str:
    """A "did you mean" for an unknown name, or the names that are defined."""
    import difflib

    close = difflib.get_close_matches(name, list(known), n=1)
    if close:
        return f"did you mean {close[0]!r}?"
    return "defined: " + ", ".join(sorted(known)) if known else "none are defined"


def check_references(ctx: CheckContext) -> None:
    p = ctx.pathway
    stages, steps, letters, flags = p.stages, p.steps, p.letters, p.flags

    def need(kind: str, name: str, known: Any, path: KeyPath, code: Code) -> bool:
        if name in known:
            return True
        ctx.report(path, code, f"unknown {kind} {name!r}", suggest(name, known))
        return False

    def need_events(names: list[str] | None, path: KeyPath) -> None:
        for j, name in enumerate(names or []):
            need("event type", name, ctx.event_types, (*path, j), Code.UNKNOWN_EVENT)

    need("stage", p.start, stages, ("start",), Code.UNKNOWN_STAGE)

    for site in action_sites(p):
        for j, action in enumerate(site.actions):
            here = (*site.path, j)
            if isinstance(action, TaskAction):
                if need("step", action.task, steps, (*here, "task"), Code.UNKNOWN_STEP):
                    _anchor(ctx, steps[action.task].anchor, steps[action.task].per, site.triggers,
                            (*here, "task"), f"step {action.task!r}")
            elif isinstance(action, CompleteAction):
                need("step", action.complete, steps, (*here, "complete"), Code.UNKNOWN_STEP)
            elif isinstance(action, LetterAction):
                if need("letter", action.letter, letters, (*here, "letter"), Code.UNKNOWN_LETTER):
                    _anchor(ctx, letters[action.letter].anchor, "event", site.triggers,
                            (*here, "letter"), f"letter {action.letter!r}")
            elif isinstance(action, (FlagAction, UnflagAction)):
                name = action.flag if isinstance(action, FlagAction) else action.unflag
                key = "flag" if isinstance(action, FlagAction) else "unflag"
                need("flag", name, flags, (*here, key), Code.UNKNOWN_FLAG)
            elif isinstance(action, GotoAction):
                need("stage", action.goto, stages, (*here, "goto"), Code.UNKNOWN_STAGE)

    for i, rule in enumerate(p.rules):
        need_events(rule.on, ("rules", i, "on"))
        need_events(rule.reset_by, ("rules", i, "reset_by"))
        for j, stage in enumerate(rule.stages or []):
            need("stage", stage, stages, ("rules", i, "stages", j), Code.UNKNOWN_STAGE)

    for name, stage in stages.items():
        base = ("stages", name)
        for k, transition in enumerate(stage.transitions):
            need("stage", transition.to, stages, (*base, "transitions", k, "to"), Code.UNKNOWN_STAGE)
            need_events(transition.on, (*base, "transitions", k, "on"))
        if stage.series and stage.series.step:
            need("step", stage.series.step, steps, (*base, "series", "step"), Code.UNKNOWN_STEP)
        for k, recurring in enumerate(stage.recurring):
            here = (*base, "recurring", k)
            if need("step", recurring.step, steps, (*here, "step"), Code.UNKNOWN_STEP):
                _anchor(ctx, steps[recurring.step].anchor, steps[recurring.step].per, None,
                        (*here, "step"), f"step {recurring.step!r}")
            every = recurring.every
            if isinstance(every, BaseModel):
                need("step", every.decision_of, steps, (*here, "every", "decision_of"), Code.UNKNOWN_STEP)

    for name, step in steps.items():
        base = ("steps", name)
        need("role", step.role, p.roles, (*base, "role"), Code.UNKNOWN_ROLE)
        need_events(step.done_by, (*base, "done_by"))
        need_events(step.cancelled_by, (*base, "cancelled_by"))
        window = step.window
        if window.conflict_step:
            need("step", window.conflict_step, steps, (*base, "window", "conflict_step"), Code.UNKNOWN_STEP)
        if window.unmet_flag:
            need("flag", window.unmet_flag, flags, (*base, "window", "unmet_flag"), Code.UNKNOWN_FLAG)
        if step.overdue:
            if step.overdue.flag:
                need("flag", step.overdue.flag, flags, (*base, "overdue", "flag"), Code.UNKNOWN_FLAG)
            if step.overdue.task:
                need("step", step.overdue.task, steps, (*base, "overdue", "task"), Code.UNKNOWN_STEP)

    for name, letter in letters.items():
        template = ctx.base_dir / p.templates / f"{letter.template}.md.j2"
        if not template.is_file():
            ctx.report(("letters", name, "template"), Code.UNKNOWN_TEMPLATE,
                       f"template {letter.template!r} not found (looked for {template.name} in {p.templates})",
                       "create the template file or fix the name")

    _parameters(ctx)


def _anchor(ctx: CheckContext, anchor: str, per: str, triggers: list[str] | None,
            path: KeyPath, what: str) -> None:
    """`data.<field>` anchors and keys must exist in every event type that triggers them."""
    for spec, label, needs_time in ((anchor, "anchor", True), (per, "per", False)):
        if spec in ("at", "event"):
            continue
        if not spec.startswith("data."):
            ctx.report(path, Code.INVALID_VALUE,
                       f"{what}: {label} {spec!r} must be {'at' if needs_time else 'event'} or data.<field>")
            continue
        field_name = spec.removeprefix("data.")
        if triggers is None:
            ctx.report(path, Code.UNKNOWN_DATA_FIELD,
                       f"{what} uses {label} {spec!r}, but here it is triggered by entering a stage, not by an event",
                       "create it from a rule whose 'on' names the event")
            continue
        for event_type in triggers:
            fields = ctx.event_fields(event_type)
            if fields is None:
                continue  # reported as an unknown event elsewhere
            found = fields.get(field_name)
            if found is None:
                ctx.report(path, Code.UNKNOWN_DATA_FIELD,
                           f"{what} uses {label} {spec!r}, but {event_type!r} events have no field {field_name!r}",
                           suggest(field_name, fields))
            elif needs_time and found.type is not FieldType.DATETIME:
                ctx.report(path, Code.UNKNOWN_DATA_FIELD,
                           f"{what} is anchored at {spec!r}, which is not a date-time in {event_type!r} events")


def parameter_uses(pathway: Pathway, template_dir: Path) -> dict[str, list[str]]:
    """Where each parameter is read, in review terms ("step integration_psychotherapy",
    "letter welcome (template)"): `$name` values, `params.name` in conditions, and
    `params.name` in letter templates. The one answer for both `validate` (an unused
    parameter) and `diff` (what a changed value moves)."""
    uses: dict[str, list[str]] = {}

    def add(name: str, where: str) -> None:
        places = uses.setdefault(name, [])
        if where not in places:
            places.append(where)

    def walk(value: object, where: str) -> None:
        if isinstance(value, str):
            if (name := referenced_name(value)) is not None:
                add(name, where)
            for name in sorted(_params_in_expression(value)):
                add(name, where)
        elif isinstance(value, dict):
            for v in value.values():
                walk(v, where)
        elif isinstance(value, (list, tuple)):
            for v in value:
                walk(v, where)

    data = pathway.model_dump()
    for key, value in data.items():
        if key == "parameters":
            continue
        if key == "sessions":
            walk(value, "session booking")
        elif key == "rules":
            for rule in value:
                walk(rule, f"rule {rule['id']}")
        elif key in ("stages", "steps", "letters") and isinstance(value, dict):
            for name, item in value.items():
                walk(item, f"{key[:-1]} {name}")
        else:
            walk(value, key)
    for name, letter in pathway.letters.items():
        template = template_dir / f"{letter.template}.md.j2"
        if template.is_file():
            for param in sorted(_params_in_expression(template.read_text(encoding="utf-8", errors="replace"))):
                add(param, f"letter {name} (template)")
    return uses


def _parameters(ctx: CheckContext) -> None:
    """Unknown `$name` references anywhere in the file, and parameters nobody uses."""

    def walk(value: object, path: KeyPath) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                if path == () and k == "parameters":
                    continue
                walk(v, (*path, k))
        elif isinstance(value, list):
            for i, v in enumerate(value):
                walk(v, (*path, i))
        elif isinstance(value, str):
            name = referenced_name(value)
            if name is not None and name not in ctx.pathway.parameters:
                ctx.report(path, Code.UNKNOWN_PARAMETER, f"unknown parameter '${name}'",
                           suggest(name, ctx.pathway.parameters))

    walk(ctx.source.data, ())
    used = parameter_uses(ctx.pathway, ctx.base_dir / ctx.pathway.templates)
    for name in ctx.pathway.parameters:
        if name not in used:
            ctx.report(("parameters", name), Code.UNUSED_PARAMETER, f"parameter {name!r} is not used",
                       "remove it, or reference it as $" + name, key=True, severity=Severity.WARNING)


def _params_in_expression(text: str) -> set[str]:
    import re

    return set(re.findall(r"\bparams\.([a-z][a-z0-9_]*)", text))
