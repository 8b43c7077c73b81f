"""What changed between two versions of a pathway, in clinical terms.

Compared on what the engine will do, not on text: every aspect is a `Fact` whose
`key` is the compiled value (a window as a timedelta, an action list as typed actions)
and whose `text` is what the author wrote. Re-wording `48h` as `2d`, re-ordering keys
or editing comments is no change; moving a window by an hour is. Descriptions and
parameter notes are documentation, not behaviour, and are not compared. The vocabulary
(`Change`, `Fact`, `Section`...) and the comparison of facts are in `changes.py`; here,
what the facts of each part of a pathway are.
"""

from __future__ import annotations

from collections.abc import Hashable
from pathlib import Path

from carepath.check.references import parameter_uses
from carepath.compile import compiled as c
from carepath.model import pathway as m
from carepath.model.durations import SyntaxProblem, parse_offset
from carepath.review.changes import (  # noqa: F401 - Fact, Subject... re-exported: diff's vocabulary
    NONE,
    Change,
    Fact,
    Facts,
    Kind,
    PathwayDiff,
    Section,
    Subject,
    actions_fact,
    compare,
    condition_fact,
    events_fact,
    keyed,
    names_fact,
    order_change,
    plain,
)
from carepath.review.load import Reviewed
from carepath.review.words import (
    actions_text,
    basis_text,
    closed_policy_text,
    delta_text,
    due_text,
    events_text,
    offset_text,
    relative,
    step_anchor,
)


def diff_pathways(old: Reviewed, new: Reviewed) -> PathwayDiff:
    changes: list[Change] = []
    for part in (_pathway, _escalation, _clinic, _parameters, _stages, _steps, _letters, _rules, _holds,
                 _vocabulary):
        changes.extend(part(old, new))
    return PathwayDiff(old, new, tuple(changes))


# --- the parts of a pathway -------------------------------------------------------------


def _pathway(old: Reviewed, new: Reviewed) -> list[Change]:
    def facts(r: Reviewed) -> Facts:
        gap = r.model.sessions.min_gap
        return {
            "id": plain(r.compiled.id, code=True),
            "version": plain(r.compiled.version),
            "title": plain(r.compiled.title),
            "start stage": plain(r.compiled.start, code=True),
            "minimum gap between sessions": Fact(r.compiled.min_session_gap,
                                                 offset_text(r.model, gap) if gap else "none"),
        }

    return compare(Section.PATHWAY, Subject("Pathway"), facts(old), facts(new))


def _escalation(old: Reviewed, new: Reviewed) -> list[Change]:
    """Who is told of unacknowledged urgent work, and after how long (compared by value)."""
    def facts(r: Reviewed) -> Facts:
        raw, compiled = r.model.escalation, r.compiled.escalation
        if raw is None or compiled is None:
            return {"tiers": NONE}
        return {
            "tiers": Fact(compiled.tiers, " → ".join(compiled.tiers)),
            "delay in opening hours": Fact(compiled.delay_in_hours, offset_text(r.model, raw.delay_in_hours)),
            "delay out of hours": Fact(compiled.delay_out_of_hours, offset_text(r.model, raw.delay_out_of_hours)),
            "overdue safety work escalates again every": Fact(compiled.repeat, offset_text(r.model, raw.repeat)),
        }

    return compare(Section.PATHWAY, Subject("Escalation"), facts(old), facts(new))


_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def _clinic(old: Reviewed, new: Reviewed) -> list[Change]:
    def facts(r: Reviewed) -> Facts:
        cal = r.compiled.clinic
        out = {
            "name": plain(cal.name), "phone": plain(cal.phone), "crisis line": plain(cal.crisis_line),
            "time zone": plain(str(cal.zone)),
        }
        for day, spans in zip(_DAYS, cal.hours):
            out[f"{day} hours"] = Fact(spans, ", ".join(f"{a:%H:%M}-{b:%H:%M}" for a, b in spans) or "closed")
        out["closed dates"] = Fact(cal.closed_dates, ", ".join(sorted(map(str, cal.closed_dates))) or "none")
        return out

    return compare(Section.CLINIC, Subject("Clinic"), facts(old), facts(new))


def _param_key(value: object) -> Hashable:
    # bool is an int in Python: True must not equal 1, nor 2 equal 2.0 in a signed-off value.
    # A duration is compared by length, so '48h' rewritten as '2d' is no change.
    if isinstance(value, str):
        try:
            return ("duration", parse_offset(value))
        except SyntaxProblem:
            pass
    return (type(value).__name__, tuple(value) if isinstance(value, list) else value)


def _param_text(value: object) -> str:
    if isinstance(value, list):
        return ", ".join(map(str, value))
    return str(value).lower() if isinstance(value, bool) else str(value)


def _used_by(r: Reviewed, name: str) -> str:
    """Where a parameter is read, so a reviewer sees what a changed threshold moves."""
    return ", ".join(parameter_uses(r.model, Path(r.compiled.template_dir)).get(name, []))


def _parameters(old: Reviewed, new: Reviewed) -> list[Change]:
    def subject(name: str, p: object) -> Subject:
        assert isinstance(p, m.Parameter)
        return Subject(f"Parameter {{}} [{p.source.value}]", (name,))

    def facts(name: str, p: object, r: Reviewed) -> Facts:
        assert isinstance(p, m.Parameter)
        used = _used_by(r, name)
        return {"value": Fact(_param_key(p.value), _param_text(p.value), code=True,
                              note=f"used by {used}" if used else "not used"),
                "source": plain(p.source.value)}
    def summary(name: str, p: object, r: Reviewed) -> str:
        assert isinstance(p, m.Parameter)
        return f"{_param_text(p.value)} [{p.source.value}]"

    # The source tag is part of the subject, so a re-tagged parameter reads under its new tag.
    return keyed(Section.PARAMETERS, old.model.parameters, new.model.parameters, subject, facts, summary, old, new)


def _step_facts(name: str, step: object, r: Reviewed) -> Facts:
    assert isinstance(step, c.Step)
    ms = r.model.steps[name]
    anchor = step_anchor(r.model, r.compiled, name)
    opens, opens_anchor = relative(r.model, ms.window.opens, anchor)
    due, due_anchor = due_text(r.model, ms.window.due, anchor)
    w = step.window
    if w.opens_at_opening:
        opens, opens_anchor = f"at the clinic's opening on the day of {anchor}", ""
    overdue = "none"
    if step.overdue is not None:
        o = step.overdue
        what = [f"flag {o.flag}" if o.flag else "", f"task {o.task}" if o.task else "",
                f"priority {o.priority.value}" if o.priority else ""]
        overdue = f"{delta_text(o.after)} after due: {', '.join(x for x in what if x) or 'nothing'}"
    return {
        "title": plain(step.title),
        "role": plain(step.role, code=True),
        "priority": plain(step.priority.value),
        "one task per": Fact(step.key_field, "triggering event" if step.key_field is None
                             else f"data.{step.key_field}", code=step.key_field is not None),
        "window measured from": Fact(step.anchor_field, anchor),
        "window opens": Fact(w.opens, opens, opens_anchor),
        "window due": Fact(w.due, due, due_anchor),
        "window basis": Fact(w.basis, basis_text(w.basis)),
        "clinic-closed policy": Fact(w.when_clinic_closed, closed_policy_text(w.when_clinic_closed)),
        "window-conflict step": plain(w.conflict_step, w.conflict_step or "none"),
        "unmet-window flag": plain(w.unmet_flag, w.unmet_flag or "none"),
        "completed by": names_fact(step.done_by),
        "withdrawn by": names_fact(step.cancelled_by),
        "holds while open": names_fact(step.holds),
        "overdue escalation": Fact(step.overdue, overdue),
        "safety-critical (kept through discharge)": plain(step.safety, "yes" if step.safety else "no"),
        "flag while open": plain(step.flag_while_open, step.flag_while_open or "none"),
        "window opens at the clinic's opening": plain(w.opens_at_opening, "yes" if w.opens_at_opening else "no"),
        "in session (keeps the session's clock after hours)": plain(step.in_session,
                                                                      "yes" if step.in_session else "no"),
        "decisions it takes": names_fact(step.decisions),
        "gates hold (a dose while open is a breach)": plain(step.gates, step.gates or "none"),
        "stands only while hold is in force": plain(step.while_held, step.while_held or "none"),
    }


def _steps(old: Reviewed, new: Reviewed) -> list[Change]:
    def subject(name: str, step: object) -> Subject:
        assert isinstance(step, c.Step)
        return Subject(step.title.replace("{", "{{").replace("}", "}}") + " ({})", (name,))

    def summary(name: str, step: object, r: Reviewed) -> str:
        f = _step_facts(name, step, r)
        return (f"{step.role}, {f['priority'].text}; opens {f['window opens'].phrase}; "  # type: ignore[attr-defined]
                f"due {f['window due'].phrase}")

    return keyed(Section.STEPS, old.compiled.steps, new.compiled.steps, subject, _step_facts, summary, old, new)


def _letters(old: Reviewed, new: Reviewed) -> list[Change]:
    def facts(name: str, letter: object, r: Reviewed) -> Facts:
        assert isinstance(letter, c.Letter)
        anchor = f"the event's data.{letter.anchor_field}" if letter.anchor_field else "the triggering event"
        send, send_anchor = relative(r.model, r.model.letters[name].send, anchor)
        own = r.model.letters[name].expires
        expiry = own if own is not None else r.model.letter_expiry
        lasts, _ = relative(r.model, str(expiry), "its send time")
        booked = " (a booking's letter also at the session's start)" if letter.anchor_field else ""
        return {"template": plain(letter.template, code=True),
                "sent": Fact((letter.send, letter.anchor_field), send, send_anchor),
                "withheld while": Fact(letter.withheld_while,
                                       ", ".join(sorted(x.value for x in letter.withheld_while)) or "never"),
                "expires": Fact((letter.expires or r.compiled.letter_expiry, letter.anchor_field),
                                f"{lasts} after its send time{booked}"),
                "one letter per": Fact(letter.key_field, "triggering event" if letter.key_field is None
                                       else f"data.{letter.key_field}", code=letter.key_field is not None)}

    def summary(name: str, letter: object, r: Reviewed) -> str:
        f = facts(name, letter, r)
        return f"template {f['template'].text}, sent {f['sent'].phrase}"

    return keyed(Section.LETTERS, old.compiled.letters, new.compiled.letters,
                  lambda name, _: Subject("Letter {}", (name,)), facts, summary, old, new)


def _rule_facts(name: str, rule: object, r: Reviewed) -> Facts:
    assert isinstance(rule, c.Rule)
    return {
        "triggered by": events_fact(rule.on),
        "applies in": Fact(rule.stages, "all stages" if rule.stages is None else ", ".join(sorted(rule.stages))),
        "condition": condition_fact(rule.when),
        "matches needed in a row": plain(rule.consecutive, str(rule.consecutive or 1)),
        "run reset by": names_fact(rule.reset_by),
        "actions until confirmed": actions_fact(rule.until_confirmed),
        "actions": actions_fact(rule.then),
    }


def _rules(old: Reviewed, new: Reviewed) -> list[Change]:
    def summary(name: str, rule: object, r: Reviewed) -> str:
        assert isinstance(rule, c.Rule)
        when = "" if rule.when is None else f" when {' '.join(rule.when.source.split())}"
        return f"on {events_text(rule.on)}{when}: {actions_text(rule.then)}"
    o = {rule.id: rule for rule in old.compiled.rules}
    n = {rule.id: rule for rule in new.compiled.rules}
    changes = keyed(Section.RULES, o, n, lambda name, _: Subject("Rule {}", (name,)), _rule_facts, summary,
                     old, new)
    # Rules run in file order, and a later rule sees what an earlier one did.
    return changes + order_change(Section.RULES, Subject("Rules"), "evaluation order", list(o), list(n))


def _recurring_text(r: Reviewed, stage: str, rec: c.Recurring) -> str:
    raw = next(x for x in r.model.stages[stage].recurring if x.step == rec.step)
    if isinstance(raw.every, m.Choice):
        options = ", ".join(f"{k}: {offset_text(r.model, v)}" for k, v in raw.every.options.items())
        every = f"every {offset_text(r.model, raw.every.default)} (as {raw.every.decision_of} decides: {options})"
    else:
        every = f"every {offset_text(r.model, raw.every)}"
    text = f"{every}, first {offset_text(r.model, raw.starting)} after entering the stage"
    if raw.early_tolerance is not None:
        text += (f"; from the actual completion, which counts up to {offset_text(r.model, raw.early_tolerance)} "
                 "before the window opens")
    return text


def _stage_facts(name: str, stage: object, r: Reviewed) -> Facts:
    assert isinstance(stage, c.Stage)
    series = "none"
    if stage.series is not None:
        blocks = "; ".join(f"weeks {b.first_week}-{b.last_week}: {b.per_week} a week" for b in stage.series.calendar)
        series = f"{stage.series.sessions} sessions" + (f" ({blocks})" if blocks else "") + \
            (f", step {stage.series.step} per slot" if stage.series.step else "")
    out = {"on entry": actions_fact(stage.on_enter), "series": Fact(stage.series, series)}
    if stage.silence is not None:
        out["lost to follow-up"] = Fact(stage.silence, f"{stage.silence.task} after {delta_text(stage.silence.after)} "
                                        f"without {events_text(stage.silence.broken_by)}")
    for rec in stage.recurring:
        out[f"recurring {rec.step}"] = Fact(rec, _recurring_text(r, name, rec))
    return out


def _transitions(stage: c.Stage) -> dict[str, tuple[int, c.Transition]]:
    """Transitions keyed by target and rank among those to the same target ('maintenance#1')."""
    seen: dict[str, int] = {}
    out = {}
    for k, t in enumerate(stage.transitions):
        seen[t.to] = seen.get(t.to, 0) + 1
        out[f"{t.to}#{seen[t.to]}"] = (k, t)
    return out


def _transition_subject(stage: str, key: str) -> Subject:
    to, rank = key.split("#")
    return Subject("Transition {} → {}" + (f" (#{rank})" if rank != "1" else ""), (stage, to))


def _transition_facts(_: str, item: object, r: Reviewed) -> Facts:
    t = item[1]  # type: ignore[index]
    return {"triggered by": events_fact(t.on), "condition": condition_fact(t.when), "actions": actions_fact(t.then)}


def _transition_summary(_: str, item: object, r: Reviewed) -> str:
    t = item[1]  # type: ignore[index]
    when = "" if t.when is None else f" when {' '.join(t.when.source.split())}"
    return f"on {events_text(t.on)}{when}" + (f": {actions_text(t.then)}" if t.then else "")


def _stages(old: Reviewed, new: Reviewed) -> list[Change]:
    def summary(name: str, stage: object, r: Reviewed) -> str:
        f = _stage_facts(name, stage, r)
        return "; ".join(f"{k}: {v.text}" for k, v in f.items() if v.text not in ("none", "nothing")) or "empty"
    o, n = old.compiled.stages, new.compiled.stages
    changes = keyed(Section.STAGES, o, n, lambda name, _: Subject("Stage {}", (name,)), _stage_facts, summary,
                     old, new)
    for name in n:
        if name not in o:
            continue
        to, tn = _transitions(o[name]), _transitions(n[name])
        changes += keyed(Section.STAGES, to, tn, lambda key, _, s=name: _transition_subject(s, key),
                          _transition_facts, _transition_summary, old, new)
        # The first transition whose event and condition match wins.
        changes += order_change(Section.STAGES, Subject("Transitions from {}", (name,)), "order (first match wins)",
                          list(to), list(tn))
    return changes


def _holds(old: Reviewed, new: Reviewed) -> list[Change]:
    def facts(_: str, hold: object, r: Reviewed) -> Facts:
        assert isinstance(hold, c.Hold)
        return {"breached by": names_fact(hold.breached_by), "on breach": actions_fact(hold.on_breach),
                "booked by": names_fact(hold.booked_by), "on booking": actions_fact(hold.on_booking),
                "in force while status": names_fact(tuple(x.value for x in hold.while_status)),
                "withdrawn by that status": names_fact(hold.withdraws)}
    def summary(name: str, hold: object, r: Reviewed) -> str:
        assert isinstance(hold, c.Hold)
        return f"breached by {events_text(hold.breached_by)}: {actions_text(hold.on_breach)}"
    return keyed(Section.RULES, old.compiled.holds, new.compiled.holds,
                  lambda name, _: Subject("Hold {}", (name,)), facts, summary, old, new)


def _vocabulary(old: Reviewed, new: Reviewed) -> list[Change]:
    def meaning(_: str, text: object, r: Reviewed) -> Facts:
        return {"meaning": plain(str(text))}
    def fields(_: str, event: object, r: Reviewed) -> Facts:
        assert isinstance(event, m.EventType)
        data = tuple((k, v.type.value, v.optional, v.one_of) for k, v in event.data.items())
        text = ", ".join(f"{k}: {t}" + (" (optional)" if opt else "") + (f" one of {', '.join(one)}" if one else "")
                         for k, t, opt, one in data) or "no data"
        return {"data": Fact(frozenset(data), text)}
    def said(_: str, text: object, r: Reviewed) -> str:
        return str(text)

    def described(name: str, event: object, r: Reviewed) -> str:
        return fields(name, event, r)["data"].text

    def flag(_: str, value: object, r: Reviewed) -> Facts:
        assert isinstance(value, m.Flag)
        return {"meaning": plain(value.meaning), "severity": plain(str(value.severity))}
    def flag_said(_: str, value: object, r: Reviewed) -> str:
        assert isinstance(value, m.Flag)
        return f"{value.meaning} (severity {value.severity})"

    o, n = old.model, new.model
    return (keyed(Section.VOCABULARY, o.flags, n.flags, lambda k, _: Subject("Flag {}", (k,)), flag, flag_said,
                     old, new)
            + keyed(Section.VOCABULARY, o.roles, n.roles, lambda k, _: Subject("Role {}", (k,)), meaning, said,
                     old, new)
            + keyed(Section.VOCABULARY, o.events, n.events, lambda k, _: Subject("Event type {}", (k,)), fields,
                     described, old, new)
            + keyed(Section.VOCABULARY, o.facts, n.facts, lambda k, _: Subject("Fact {}", (k,)), meaning, said,
                     old, new))

