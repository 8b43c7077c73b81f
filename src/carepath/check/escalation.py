"""The escalation section: whom unacknowledged urgent or safety work reaches, and when.

A step is never done by an acknowledgement (it only stops the escalation). Every tier
must be a declared role (someone the clinic can name), each at most once (a
tier told twice in a row would look like progress and be none), and every delay longer
than zero (a zero delay escalates before anyone could have acknowledged).
"""

from __future__ import annotations

from datetime import timedelta

from carepath.check.context import CheckContext
from carepath.check.references import suggest
from carepath.codes import Code
from carepath.model.params import ParamProblem, resolve_offset


def check_escalation(ctx: CheckContext) -> None:
    p = ctx.pathway
    for name, step in p.steps.items():
        for j, event_type in enumerate(step.done_by):
            if event_type == "task_acknowledged":
                ctx.report(("steps", name, "done_by", j), Code.INVALID_VALUE,
                           f"step {name!r} would be done by task_acknowledged: acknowledging is not doing",
                           "an acknowledgement stops escalation and leaves the task open; "
                           "close the step with task_completed or the event that does the work")
    escalation = p.escalation
    if escalation is None:
        return
    base = ("escalation",)
    seen: dict[str, int] = {}
    for i, tier in enumerate(escalation.tiers):
        if tier not in p.roles:
            ctx.report((*base, "tiers", i), Code.UNKNOWN_ROLE, f"escalation tier {tier!r} is not a declared role",
                       "a tier is a role declared under 'roles:'; " + suggest(tier, p.roles))
        elif tier in seen:
            ctx.report((*base, "tiers", i), Code.DUPLICATE_NAME,
                       f"escalation tier {tier!r} is already tier {seen[tier] + 1}",
                       "name each role once: the next tier must reach someone new")
        else:
            seen[tier] = i
    for key in ("delay_in_hours", "delay_out_of_hours", "repeat"):
        raw = getattr(escalation, key)
        try:
            delay = resolve_offset(p, raw)
        except ParamProblem as exc:
            if not exc.unknown:  # an unknown $name is reported once, by the references check
                ctx.report((*base, key), Code.NEGATIVE_DURATION if exc.negative else Code.PARAMETER_KIND, str(exc))
            continue
        if delay <= timedelta(0):
            ctx.report((*base, key), Code.NEGATIVE_DURATION,
                       f"escalation {key.replace('_', ' ')} must be longer than zero",
                       "give the clinic time to acknowledge, e.g. 15m in hours, 60m out of hours")
