"""The safety constructs: holds and their reactions, remembered facts, flags that must be
able to clear, and recurring work anchored on the completing event."""

from __future__ import annotations

from carepath.check.context import CheckContext, action_sites
from carepath.check.references import suggest
from carepath.codes import Code
from carepath.diagnostics import Severity
from carepath.model.pathway import FlagAction, ForgetAction, RememberAction, UnflagAction

# Events that name one task: they tick a task off, they are not the work itself.
_COMPLETIONS = frozenset({"task_completed", "decision_recorded"})


def check_safety(ctx: CheckContext) -> None:
    p = ctx.pathway
    kept = {h for step in p.steps.values() for h in step.holds}
    for name, hold in p.holds.items():
        if name not in kept and not hold.while_status:
            ctx.report(("holds", name), Code.UNKNOWN_HOLD,
                       f"hold {name!r} is declared, but no step keeps it: its breach and booking reactions never fire",
                       "add it to a step's 'holds:' or fix the name (" + suggest(name, kept) + ")", key=True)
        for key in ("breached_by", "booked_by"):
            for j, event_type in enumerate(getattr(hold, key)):
                if event_type not in ctx.event_types:
                    ctx.report(("holds", name, key, j), Code.UNKNOWN_EVENT, f"unknown event type {event_type!r}",
                               suggest(event_type, ctx.event_types))

    raised: dict[str, tuple] = {}
    cleared: set[str] = set()
    for site in action_sites(p):
        for j, action in enumerate(site.actions):
            here = (*site.path, j)
            if isinstance(action, (RememberAction, ForgetAction)):
                fact, key = ((action.remember, "remember") if isinstance(action, RememberAction)
                             else (action.forget, "forget"))
                if fact not in p.facts:
                    ctx.report((*here, key), Code.UNKNOWN_FACT, f"unknown fact {fact!r}", suggest(fact, p.facts))
            elif isinstance(action, FlagAction):
                raised.setdefault(action.flag, (*here, "flag"))
            elif isinstance(action, UnflagAction):
                cleared.add(action.unflag)
    for flag, path in raised.items():
        if flag not in cleared and flag in p.flags:
            ctx.report(path, Code.FLAG_NEVER_CLEARED,
                       f"flag {flag!r} is raised here but nothing clears it: once set it would show for ever",
                       "add an 'unflag:' action where the condition it describes ends "
                       "(or use a step's flag_while_open, which clears itself)", severity=Severity.WARNING)

    for name, step in p.steps.items():
        if step.flag_while_open and step.flag_while_open not in p.flags:
            ctx.report(("steps", name, "flag_while_open"), Code.UNKNOWN_FLAG,
                       f"unknown flag {step.flag_while_open!r}", suggest(step.flag_while_open, p.flags))

    for stage_name, stage in p.stages.items():
        for k, recurring in enumerate(stage.recurring):
            step = p.steps.get(recurring.step)
            if recurring.early_tolerance is None or step is None:
                continue
            if not set(step.done_by) - _COMPLETIONS:
                ctx.report(("stages", stage_name, "recurring", k, "early_tolerance"), Code.TOLERANCE_WITHOUT_EVENT,
                           f"early_tolerance has no effect: step {recurring.step!r} is completed only by "
                           + ", ".join(step.done_by),
                           "add the event that does the work (e.g. session_completed) to the step's done_by",
                           key=True, severity=Severity.WARNING)
