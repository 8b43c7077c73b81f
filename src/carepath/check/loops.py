"""The constructs that close the loops: holds kept by a status, steps that gate a hold or
stand only while it is in force, decisions a step takes, in-session timing, letters sent
once per value, and a stage's silence (lost to follow-up)."""

from __future__ import annotations

from carepath.check.context import CheckContext
from carepath.check.references import suggest
from carepath.codes import Code
from carepath.model.pathway import OutsideHours


def check_loops(ctx: CheckContext) -> None:
    p = ctx.pathway
    for name, hold in p.holds.items():
        for j, step_name in enumerate(hold.withdraws):
            step = p.steps.get(step_name)
            if step is None:
                ctx.report(("holds", name, "withdraws", j), Code.UNKNOWN_STEP, f"unknown step {step_name!r}",
                           suggest(step_name, p.steps))
            elif step.safety:
                ctx.report(("holds", name, "withdraws", j), Code.WITHDRAWS_SAFETY_STEP,
                           f"step {step_name!r} is safety-critical: a status change never withdraws it",
                           "remove it from 'withdraws' (or drop 'safety: true' if it is routine work)")
        if hold.withdraws and not hold.while_status:
            ctx.report(("holds", name, "withdraws"), Code.MISSING_FIELD,
                       f"hold {name!r} withdraws work but names no status in while_status: it never would",
                       "add while_status: [blocked] (the statuses that keep the hold)", key=True)

    for name, step in p.steps.items():
        for key in ("gates", "while_held"):
            hold = getattr(step, key)
            if hold is not None and hold not in p.holds:
                ctx.report(("steps", name, key), Code.UNKNOWN_HOLD, f"unknown hold {hold!r}", suggest(hold, p.holds))
        if step.gates is not None and step.per == "event":
            ctx.report(("steps", name, "gates"), Code.GATE_WITHOUT_KEY,
                       f"step {name!r} gates hold {step.gates!r} but has no per: data.<field>: a breaching event "
                       "cannot be matched to its task", "add per: data.session (the occurrence it gates)")
        if step.decisions and "decision_recorded" not in step.done_by:
            ctx.report(("steps", name, "decisions"), Code.DECISIONS_NOT_CLOSING,
                       f"step {name!r} lists decisions but a decision_recorded does not close it",
                       "add decision_recorded to its done_by", key=True)
        outside = step.window.due_outside_hours
        if step.in_session and outside is not None and outside == OutsideHours.NEXT_OPENING:
            ctx.report(("steps", name, "window", "due_outside_hours"), Code.CONFLICTING_TIMING,
                       f"step {name!r} is in_session (it keeps the session's clock) but moves its due to the "
                       "next opening", "remove due_outside_hours, or in_session if it is office work")
        if step.window.opens_at is not None and step.window.opens != "0h":
            ctx.report(("steps", name, "window", "opens_at"), Code.CONFLICTING_TIMING,
                       f"step {name!r} sets both opens_at and opens: the window opens once",
                       "keep one of them")

    for name, letter in p.letters.items():
        if letter.per != "event" and not letter.per.startswith("data."):
            ctx.report(("letters", name, "per"), Code.INVALID_VALUE,
                       f"letter {name!r}: per {letter.per!r} must be event or data.<field>")

    for name, stage in p.stages.items():
        silence = stage.silence
        if silence is None:
            continue
        if silence.task not in p.steps:
            ctx.report(("stages", name, "silence", "task"), Code.UNKNOWN_STEP, f"unknown step {silence.task!r}",
                       suggest(silence.task, p.steps))
        for j, event_type in enumerate(silence.broken_by):
            if event_type not in ctx.event_types:
                ctx.report(("stages", name, "silence", "broken_by", j), Code.UNKNOWN_EVENT,
                           f"unknown event type {event_type!r}", suggest(event_type, ctx.event_types))
