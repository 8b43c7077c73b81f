"""Pathway parts in the words a clinician reviewer reads: durations, deadlines, actions.

Durations are shown as the author wrote them (through `$parameter` values), so a
reviewer sees "48 h" where the file says 48h, not a re-derived "2 days".
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from carepath.compile import compiled as c
from carepath.model import pathway as m
from carepath.model.durations import referenced_name
from carepath.model.pathway import Basis, ClosedPolicy

_OFFSET = re.compile(r"^(?P<n>\d+)\s*(?P<unit>[a-z]+)(?:\s+(?P<side>before|after))?$", re.ASCII)
_UNIT_WORDS = {"m": "min", "min": "min", "minute": "min", "minutes": "min",
               "h": "h", "hour": "h", "hours": "h",
               "d": "day", "day": "day", "days": "day", "w": "week", "week": "week", "weeks": "week"}


def param_text(pathway: m.Pathway, raw: object) -> str:
    """A literal, or the value of the `$parameter` it names."""
    name = referenced_name(raw) if isinstance(raw, str) else None
    if name is None or name not in pathway.parameters:
        return str(raw)
    value = pathway.parameters[name].value
    side = raw.strip()[len(name) + 1:].strip() if isinstance(raw, str) else ""
    return f"{value} {side}".strip()


def offset_text(pathway: m.Pathway, raw: str) -> str:
    """'48h' → '48 h'; '$booster_interval' → '4 weeks'; '3d before' → '3 days before'."""
    text = param_text(pathway, raw).strip().lower()
    found = _OFFSET.match(text)
    if not found or found.group("unit") not in _UNIT_WORDS:
        return text
    n, unit = int(found.group("n")), _UNIT_WORDS[found.group("unit")]
    if unit in ("day", "week") and n != 1:
        unit += "s"
    side = f" {found.group('side')}" if found.group("side") == "before" else ""
    return f"{n} {unit}{side}"


def relative(pathway: m.Pathway, raw: str, anchor: str) -> tuple[str, str]:
    """An offset and the anchor it is read against: ('24 h', 'after the session_completed event').

    Kept apart so a change can read "from 48 h to 72 h after the session_completed event".
    """
    text = offset_text(pathway, raw)
    if text.endswith(" before"):
        return text.removesuffix(" before"), f"before {anchor}"
    return text, f"after {anchor}"


def phrase(pathway: m.Pathway, raw: str, anchor: str) -> str:
    """`relative` as one phrase for prose: 'at the triggering event' when the offset is zero."""
    text, side = relative(pathway, raw, anchor)
    return f"at {anchor}" if text.startswith("0 ") else f"{text} {side}"


def due_text(pathway: m.Pathway, raw: object, anchor: str) -> tuple[str, str]:
    """A deadline of any of the three kinds, in words, split as `relative` does."""
    if raw is None:
        return "no deadline", ""
    if isinstance(raw, (m.ClockDue, m.BusinessDue)):
        return _calendar_due(pathway, raw), ""
    return relative(pathway, str(raw), anchor)


def _calendar_due(pathway: m.Pathway, raw: m.ClockDue | m.BusinessDue) -> str:
    if isinstance(raw, m.ClockDue):
        days = int(param_text(pathway, raw.days_later))
        when = "the same clinic day" if days == 0 else f"{days} clinic day{'s' if days != 1 else ''} later"
        return f"{param_text(pathway, raw.at)} (clinic time) {when}"
    days = int(param_text(pathway, raw.business_days))
    if days == 0:
        return "clinic closing time the same business day"
    return f"clinic closing time {_count(days, 'business day')} later"


def basis_text(basis: Basis) -> str:
    return {Basis.ELAPSED: "elapsed hours", Basis.WALL_CLOCK: "wall-clock time"}[basis]


def closed_policy_text(policy: ClosedPolicy | None) -> str:
    if policy is None:
        return "none"
    return {ClosedPolicy.ESCALATE: "escalate (conflict task before the clinic closes)",
            ClosedPolicy.NEXT_OPEN_SLOT: "next open slot (task marked out of window)"}[policy]


def action_text(action: c.Action) -> str:
    if isinstance(action, c.Task):
        due = "" if action.due is None else f" (due {compiled_due_text(action.due)})"
        return f"task {action.step}{due}"
    if isinstance(action, c.SendLetter):
        return f"letter {action.letter}"
    if isinstance(action, c.SetFlag):
        return f"flag {action.flag}"
    if isinstance(action, c.ClearFlag):
        return f"clear flag {action.flag}"
    if isinstance(action, c.Goto):
        return f"go to stage {action.stage}"
    if isinstance(action, c.SetStatus):
        return f"status {action.status.value}"
    if isinstance(action, c.Remember):
        return f"remember {action.fact}"
    if isinstance(action, c.Forget):
        return f"forget {action.fact}"
    return f"complete open {action.step} tasks"


def actions_text(actions: Iterable[c.Action]) -> str:
    return "; ".join(action_text(a) for a in actions) or "nothing"


def compiled_due_text(due: c.DueSpec) -> str:
    """A deadline from the compiled form (actions carry no author text of their own)."""
    if isinstance(due, c.ClockDue):
        later = "the same clinic day" if due.days_later == 0 else f"{_count(due.days_later, 'clinic day')} later"
        return f"{due.at:%H:%M} {later}"
    if isinstance(due, c.BusinessDue):
        return ("closing time the same business day" if due.business_days == 0
                else f"closing time {_count(due.business_days, 'business day')} later")
    return f"{delta_text(due.delta)} after the event"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'s' if n != 1 else ''}"


def delta_text(delta) -> str:
    """A compiled duration in its largest whole unit: 4 weeks, 7 days, 48 h, 90 min."""
    seconds = int(delta.total_seconds())
    side = " before" if seconds < 0 else ""
    seconds = abs(seconds)
    if seconds and seconds % 604800 == 0:
        n, unit = seconds // 604800, "week"
    elif seconds and seconds % 86400 == 0 and seconds >= 3 * 86400:
        n, unit = seconds // 86400, "day"
    elif seconds % 3600 == 0:
        return f"{seconds // 3600} h{side}"
    else:
        return f"{seconds // 60} min{side}"
    return f"{n} {unit}{'s' if n != 1 else ''}{side}"


def events_text(events: Iterable[str] | None) -> str:
    if events is None:
        return "any event"
    return " or ".join(sorted(events)) or "no event"


def step_anchor(pathway: m.Pathway, compiled: c.CompiledPathway, step: str) -> str:
    """What a step's window is measured from, named by what creates the step's tasks."""
    field = compiled.steps[step].anchor_field
    if field is not None:
        return f"the event's data.{field}"
    events: set[str] = set()
    other = False
    for rule in compiled.rules:
        if any(isinstance(a, c.Task) and a.step == step for a in (*rule.then, *rule.until_confirmed)):
            events |= rule.on
    for stage in compiled.stages.values():
        for t in stage.transitions:
            if any(isinstance(a, c.Task) and a.step == step for a in t.then):
                if t.on is None:
                    other = True
                else:
                    events |= t.on
        if any(isinstance(a, c.Task) and a.step == step for a in stage.on_enter):
            other = True
        if any(r.step == step for r in stage.recurring) or (stage.series and stage.series.step == step):
            return "the scheduled occurrence"
    if events and not other:
        return f"the {' or '.join(sorted(events))} event"
    return "the triggering event"
