"""Model → CompiledPathway. Runs only on a pathway the check layer passed."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from zoneinfo import ZoneInfo

from carepath.compile import compiled as c
from carepath.compile.conditions import Condition
from carepath.model import pathway as m
from carepath.model.durations import parse_span
from carepath.model.events import CORE_EVENTS
from carepath.model.params import resolve_clock, resolve_count, resolve_enum, resolve_offset

# Countries whose letters go on US Letter paper; everywhere else uses A4.
_LETTER_COUNTRIES = frozenset({"US", "CA", "MX", "PH", "PR"})


def paper_for_zone(zone: str) -> str:
    """'letter' when the IANA zone belongs to a US Letter country (the tz database's
    zone.tab maps zones to countries), otherwise 'a4'."""
    for line in _zone_table():
        fields = line.split("\t")
        if len(fields) >= 3 and not line.startswith("#") and fields[2] == zone:
            return "letter" if fields[0] in _LETTER_COUNTRIES else "a4"
    return "a4"


def _zone_table() -> list[str]:
    from importlib import resources

    try:
        return resources.files("tzdata").joinpath("zoneinfo", "zone.tab").read_text(encoding="utf-8").splitlines()
    except (ModuleNotFoundError, FileNotFoundError):
        try:
            return Path("/usr/share/zoneinfo/zone.tab").read_text(encoding="utf-8").splitlines()
        except OSError:
            return []

_WEEKDAYS = tuple(m.Weekday)


def compile_pathway(pathway: m.Pathway, base_dir: Path) -> c.CompiledPathway:
    p = pathway

    def offset(raw: str):
        return resolve_offset(p, raw)

    def due(raw) -> c.DueSpec | None:
        if raw is None:
            return None
        if isinstance(raw, m.ClockDue):
            return c.ClockDue(resolve_clock(p, raw.at), resolve_count(p, raw.days_later))
        if isinstance(raw, m.BusinessDue):
            return c.BusinessDue(resolve_count(p, raw.business_days))
        return c.OffsetDue(offset(raw))

    def action(a) -> c.Action:
        if isinstance(a, m.TaskAction):
            return c.Task(a.task, due(a.due))
        if isinstance(a, m.LetterAction):
            return c.SendLetter(a.letter)
        if isinstance(a, m.FlagAction):
            return c.SetFlag(a.flag)
        if isinstance(a, m.UnflagAction):
            return c.ClearFlag(a.unflag)
        if isinstance(a, m.GotoAction):
            return c.Goto(a.goto)
        if isinstance(a, m.StatusAction):
            return c.SetStatus(a.status)
        if isinstance(a, m.RememberAction):
            return c.Remember(a.remember)
        if isinstance(a, m.ForgetAction):
            return c.Forget(a.forget)
        return c.Complete(a.complete)

    def actions(items) -> tuple[c.Action, ...]:
        return tuple(action(a) for a in items)

    def field_of(spec: str, default: str) -> str | None:
        return None if spec == default else spec.removeprefix("data.")

    hours = []
    for day in _WEEKDAYS:
        spec = p.clinic.hours.get(day, "closed")
        spans = spec if isinstance(spec, list) else [spec]
        hours.append(tuple(sorted(parse_span(s) for s in spans if s != "closed")))
    clinic = c.ClinicCalendar(
        name=p.clinic.name, phone=p.clinic.phone, crisis_line=p.clinic.crisis_line,
        zone=ZoneInfo(p.clinic.timezone), hours=tuple(hours),
        closed_dates=frozenset(date.fromisoformat(d) for d in p.clinic.closed_dates),
        paper=p.clinic.paper or paper_for_zone(p.clinic.timezone),
    )

    steps = {}
    for name, s in p.steps.items():
        w = s.window
        steps[name] = c.Step(
            name=name, title=s.title, role=s.role, priority=s.priority,
            anchor_field=field_of(s.anchor, "at"), key_field=field_of(s.per, "event"),
            window=c.Window(
                opens=offset(w.opens), due=due(w.due), basis=resolve_enum(p, w.basis, m.Basis),
                when_clinic_closed=(resolve_enum(p, w.when_clinic_closed, m.ClosedPolicy)
                                    if w.when_clinic_closed is not None else None),
                conflict_step=w.conflict_step, unmet_flag=w.unmet_flag,
                move_outside_hours=_moves_outside_hours(p, s),
                opens_at_opening=w.opens_at == "clinic_opening",
            ),
            done_by=frozenset(s.done_by), cancelled_by=frozenset(s.cancelled_by), holds=tuple(s.holds),
            overdue=(c.Overdue(offset(s.overdue.after), s.overdue.flag, s.overdue.task, s.overdue.priority)
                     if s.overdue else None),
            safety=s.safety, flag_while_open=s.flag_while_open,
            decisions=tuple(s.decisions), gates=s.gates, while_held=s.while_held, in_session=s.in_session,
        )

    stages = {}
    for name, st in p.stages.items():
        series = None
        if st.series is not None:
            blocks = tuple(c.CalendarBlock(b.weeks[0], b.weeks[1], resolve_count(p, b.per_week))
                           for b in st.series.calendar or [])
            count = (resolve_count(p, st.series.sessions) if st.series.sessions is not None
                     else sum((b.last_week - b.first_week + 1) * b.per_week for b in blocks))
            series = c.Series(count, blocks, st.series.step)
        recurring = []
        for r in st.recurring:
            tolerance = offset(r.early_tolerance) if r.early_tolerance is not None else None
            if isinstance(r.every, m.Choice):
                recurring.append(c.Recurring(r.step, offset(r.every.default),
                                             tuple((k, offset(v)) for k, v in r.every.options.items()),
                                             r.every.decision_of, offset(r.starting), tolerance))
            else:
                recurring.append(c.Recurring(r.step, offset(r.every), (), None, offset(r.starting), tolerance))
        transitions = tuple(
            c.Transition(t.to, frozenset(t.on) if t.on is not None else None,
                         Condition.compile(t.when, f"stages.{name}.transitions[{k}].when") if t.when else None,
                         actions(t.then))
            for k, t in enumerate(st.transitions)
        )
        silence = (c.Silence(offset(st.silence.after), frozenset(st.silence.broken_by), st.silence.task)
                   if st.silence is not None else None)
        stages[name] = c.Stage(name, actions(st.on_enter), series, tuple(recurring), transitions, silence)

    rules = tuple(
        c.Rule(
            id=r.id, on=frozenset(r.on), stages=frozenset(r.stages) if r.stages is not None else None,
            when=Condition.compile(r.when, f"rules[{i}].when ({r.id})") if r.when else None,
            consecutive=resolve_count(p, r.consecutive) if r.consecutive is not None else None,
            reset_by=frozenset(r.reset_by), until_confirmed=actions(r.until_confirmed), then=actions(r.then),
        )
        for i, r in enumerate(p.rules)
    )
    letters = {
        name: c.Letter(name, l.template, field_of(l.anchor, "at"), offset(l.send), frozenset(l.withheld_while),
                       offset(l.expires) if l.expires is not None else None, field_of(l.per, "event"))
        for name, l in p.letters.items()
    }
    return c.CompiledPathway(
        id=p.id, version=p.version, title=p.title, clinic=clinic,
        template_dir=str((base_dir / p.templates).resolve()),
        parameters={k: v.value for k, v in p.parameters.items()},
        flags=tuple(p.flags), event_fields={**CORE_EVENTS, **{k: dict(v.data) for k, v in p.events.items()}},
        min_session_gap=offset(p.sessions.min_gap) if p.sessions.min_gap else None,
        start=p.start, stages=stages, steps=steps, letters=letters, rules=rules,
        flag_severity={name: str(f.severity) for name, f in p.flags.items()},
        notes=_notes(p),
        worklist=c.WorklistView(offset(p.worklist.horizon), p.worklist.rows),
        holds={name: c.Hold(name, frozenset(h.breached_by), actions(h.on_breach), frozenset(h.booked_by),
                            actions(h.on_booking), frozenset(h.while_status), frozenset(h.withdraws))
               for name, h in p.holds.items()},
        facts=tuple(p.facts),
        letter_expiry=offset(p.letter_expiry), letter_channel=p.letter_channel,
        phq9_bands=tuple((highest, name) for name, highest in p.phq9_bands.items()),
        escalation=c.Escalation(tuple(p.escalation.tiers), offset(p.escalation.delay_in_hours),
                                offset(p.escalation.delay_out_of_hours), offset(p.escalation.repeat))
        if p.escalation is not None else None,
    )


def _moves_outside_hours(p: m.Pathway, s: m.Step) -> bool:
    """Whether a due time outside opening hours moves to the next opening's close. Unless
    the step says, urgent work keeps its deadline (someone is on call), as does a clock-time
    due (it names its hour: "23:59 the same day") and a window whose closed-clinic case has
    its own policy (`when_clinic_closed`); routine and high-priority work falls due while the
    clinic is open."""
    w = s.window
    if s.in_session:
        return False  # done in the session: the session's clock is the deadline, after hours too
    if w.due_outside_hours is not None:
        return resolve_enum(p, w.due_outside_hours, m.OutsideHours) is m.OutsideHours.NEXT_OPENING
    if s.priority is m.Priority.URGENT or isinstance(w.due, m.ClockDue) or w.when_clinic_closed is not None:
        return False
    return True


def _notes(p: m.Pathway) -> dict[str, str]:
    """The pathway's own descriptions, keyed as task provenance names them."""
    notes = {f"rule:{r.id}": r.description for r in p.rules if r.description}
    notes |= {f"stage:{name}": st.description for name, st in p.stages.items() if st.description}
    notes |= {f"step:{name}": s.description for name, s in p.steps.items() if s.description}
    notes |= {f"event:{name}": e.description for name, e in p.events.items() if e.description}
    return notes
