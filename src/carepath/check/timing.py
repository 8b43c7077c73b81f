"""Time: clinic zone and hours, window bounds and order, durations held in parameters."""

from __future__ import annotations

from datetime import date, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from carepath.check.context import CheckContext
from carepath.codes import Code
from carepath.model.durations import SyntaxProblem, parse_span
from carepath.model.params import ParamProblem, resolve_clock, resolve_count, resolve_enum, resolve_offset
from carepath.model.pathway import Basis, BusinessDue, Choice, ClockDue, ClosedPolicy, Offset, OutsideHours
from carepath.records.fields import host_dependent_zone
from carepath.source.loader import KeyPath


def valid_zone(name: str) -> bool:
    if not name or name.startswith(("/", ".")) or ".." in name or host_dependent_zone(name):
        return False
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def check_timing(ctx: CheckContext) -> None:
    _clinic(ctx)
    _windows(ctx)
    _offsets_elsewhere(ctx)


def _clinic(ctx: CheckContext) -> None:
    clinic = ctx.pathway.clinic
    if not valid_zone(clinic.timezone):
        ctx.report(("clinic", "timezone"), Code.INVALID_TIMEZONE,
                   f"{clinic.timezone!r} is not an IANA time zone", "e.g. America/New_York, Europe/Berlin")
    for day, spec in clinic.hours.items():
        path: KeyPath = ("clinic", "hours", str(day))
        spans = spec if isinstance(spec, list) else [spec]
        if spans == ["closed"]:
            continue
        if not spans:
            ctx.report(path, Code.INVALID_HOURS, f"{day}: no opening spans", "write 'closed' for a closed day")
            continue
        parsed = []
        for k, text in enumerate(spans):
            here = (*path, k) if isinstance(spec, list) else path
            try:
                parsed.append(parse_span(text))
            except SyntaxProblem as exc:
                ctx.report(here, Code.INVALID_HOURS, f"{day}: {exc}", "write 'HH:MM-HH:MM' or 'closed'")
        parsed.sort()
        for (_, end), (start, _) in zip(parsed, parsed[1:]):
            if start < end:
                ctx.report(path, Code.INVALID_HOURS, f"{day}: opening spans overlap")
    if not any(spec not in ("closed", []) for spec in clinic.hours.values()):
        ctx.report(("clinic", "hours"), Code.INVALID_HOURS, "the clinic is never open",
                   "give at least one weekday opening hours")
    for k, text in enumerate(clinic.closed_dates):
        try:
            date.fromisoformat(text)
        except ValueError:
            ctx.report(("clinic", "closed_dates", k), Code.INVALID_HOURS, f"{text!r} is not a date like 2026-12-25")


def _resolve(ctx: CheckContext, raw: str, path: KeyPath) -> timedelta | None:
    try:
        return resolve_offset(ctx.pathway, raw)
    except ParamProblem as exc:
        if not exc.unknown:
            ctx.report(path, Code.NEGATIVE_DURATION if exc.negative else Code.PARAMETER_KIND, str(exc))
        return None


def _due(ctx: CheckContext, due: object, path: KeyPath) -> timedelta | None:
    p = ctx.pathway
    if isinstance(due, ClockDue):
        try:
            resolve_clock(p, due.at)
        except ParamProblem as exc:
            if not exc.unknown:
                ctx.report((*path, "at"), Code.PARAMETER_KIND, str(exc))
        _count(ctx, due.days_later, (*path, "days_later"))
        return None
    if isinstance(due, BusinessDue):
        _count(ctx, due.business_days, (*path, "business_days"))
        return None
    return _resolve(ctx, due, path) if isinstance(due, str) else None


def _count(ctx: CheckContext, raw: int | str, path: KeyPath) -> None:
    try:
        resolve_count(ctx.pathway, raw)
    except ParamProblem as exc:
        if not exc.unknown:
            ctx.report(path, Code.NEGATIVE_DURATION if exc.negative else Code.PARAMETER_KIND, str(exc))


def _windows(ctx: CheckContext) -> None:
    p = ctx.pathway
    for name, step in p.steps.items():
        base: KeyPath = ("steps", name, "window")
        window = step.window
        opens = _resolve(ctx, window.opens, (*base, "opens"))
        due = _due(ctx, window.due, (*base, "due")) if window.due is not None else None
        if opens is not None and due is not None and opens > due:
            ctx.report((*base, "due"), Code.WINDOW_ORDER,
                       f"step {name!r}: the window opens {window.opens} but is due {window.due}, before it opens",
                       "due must be at or after opens")
        elif due is not None and due < timedelta(0) and step.anchor == "at":
            ctx.report((*base, "due"), Code.WINDOW_ORDER,
                       f"step {name!r} is due before the event that creates it happened")
        for key, enum in (("basis", Basis), ("when_clinic_closed", ClosedPolicy),
                          ("due_outside_hours", OutsideHours)):
            raw = getattr(window, key)
            if raw is None:
                continue
            try:
                resolve_enum(p, raw, enum)
            except ParamProblem as exc:
                if not exc.unknown:
                    ctx.report((*base, key), Code.PARAMETER_KIND, str(exc))
        if window.when_clinic_closed is not None and window.conflict_step is None:
            try:
                policy = resolve_enum(p, window.when_clinic_closed, ClosedPolicy)
            except ParamProblem:
                policy = None
            if policy is ClosedPolicy.ESCALATE:
                ctx.report((*base, "when_clinic_closed"), Code.MISSING_FIELD,
                           f"step {name!r} escalates closed-clinic windows but names no 'conflict_step'")
        if step.overdue is not None:
            _resolve(ctx, step.overdue.after, ("steps", name, "overdue", "after"))
    for i, rule in enumerate(p.rules):
        for path, actions in ((("rules", i, "then"), rule.then), (("rules", i, "until_confirmed"), rule.until_confirmed)):
            for j, action in enumerate(actions):
                due = getattr(action, "due", None)
                if due is not None:
                    _due(ctx, due, (*path, j, "due"))


def _offsets_elsewhere(ctx: CheckContext) -> None:
    p = ctx.pathway
    if p.sessions.min_gap is not None:
        gap = _resolve(ctx, p.sessions.min_gap, ("sessions", "min_gap"))
        if gap is not None and gap < timedelta(0):
            ctx.report(("sessions", "min_gap"), Code.NEGATIVE_DURATION, "the minimum gap cannot be negative")
    for name, letter in p.letters.items():
        send = _resolve(ctx, letter.send, ("letters", name, "send"))
        if send is not None and send < timedelta(0) and letter.anchor == "at":
            ctx.report(("letters", name, "send"), Code.WINDOW_ORDER,
                       f"letter {name!r} would be sent before the event that calls for it",
                       "anchor it at a future time in the event's data (anchor: data.<field>) or send it after")
        _expiry(ctx, letter.expires, ("letters", name, "expires"))
    _expiry(ctx, p.letter_expiry, ("letter_expiry",))
    for name, stage in p.stages.items():
        for k, recurring in enumerate(stage.recurring):
            base = ("stages", name, "recurring", k)
            _resolve(ctx, recurring.starting, (*base, "starting"))
            every = recurring.every
            values = [(every, (*base, "every"))] if not isinstance(every, Choice) else [
                (every.default, (*base, "every", "default")),
                *((v, (*base, "every", "options", o)) for o, v in every.options.items()),
            ]
            for raw, path in values:
                interval = _resolve(ctx, Offset(raw), path)
                if interval is not None and interval <= timedelta(0):
                    ctx.report(path, Code.NEGATIVE_DURATION, "a recurring interval must be longer than zero")


def _expiry(ctx: CheckContext, raw: str | None, path: KeyPath) -> None:
    """A letter that expires at or before its send time could never go out."""
    if raw is None:
        return
    expiry = _resolve(ctx, raw, path)
    if expiry is not None and expiry <= timedelta(0):
        ctx.report(path, Code.NEGATIVE_DURATION, f"a letter expiry must be longer than zero, got {raw!r}",
                   "give how long after its send time the letter may still go out, e.g. '7d'")
