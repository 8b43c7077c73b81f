"""A pathway definition as a FHIR R4 Bundle: one PlanDefinition and an ActivityDefinition
per step (kind Task) and per letter (kind CommunicationRequest).

Plain dicts, no FHIR library at run time (tests validate the output with
`fhir.resources`). The PlanDefinition has one action group per stage (on-entry work,
the session series, recurring work, transitions) and one group of cross-cutting rules.
A rule or transition is an action with a `trigger` (a named event, the event type)
and an applicability `condition` holding the carepath expression; the work it creates
is nested inside it, and each task's window is a `relatedAction` to that parent with
an `offsetRange` (integration psychotherapy: 24-48 h after the session_completed
trigger). Windows FHIR cannot express (business days, a clock time, a time in the
event's data) are stated in words in `textEquivalent`.
"""

from __future__ import annotations

import hashlib
import re
from datetime import timedelta
from typing import Any

from carepath.compile import compiled as c
from carepath.model.pathway import Priority
from carepath.review.load import Reviewed
from carepath.review.words import action_text, basis_text, closed_policy_text, delta_text, due_text, phrase, step_anchor

DEFAULT_BASE_URL = "http://example.org/fhir"
CONDITION_LANGUAGE = "text/x-carepath-condition"  # a sandboxed Jinja2 expression over carepath's context
_PLAN_TYPE = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/plan-definition-type",
                          "code": "clinical-protocol", "display": "Clinical Protocol"}]}
# FHIR's request priorities run routine < urgent < asap < stat; carepath's `urgent`
# (e.g. a same-day suicide-risk assessment) sits above FHIR's `urgent`.
_PRIORITY = {Priority.ROUTINE: "routine", Priority.HIGH: "urgent", Priority.URGENT: "asap"}
_UCUM = (("wk", 604800), ("d", 86400), ("h", 3600), ("min", 60))


def fhir_id(text: str) -> str:
    """A valid FHIR id ([A-Za-z0-9-.]{1,64}); long names keep a hash so they stay distinct."""
    cleaned = re.sub(r"[^A-Za-z0-9.-]", "-", text)
    if len(cleaned) <= 64:
        return cleaned
    return f"{cleaned[:55]}-{hashlib.sha1(text.encode()).hexdigest()[:8]}"


def _stage_id(stage: str) -> str:
    return fhir_id(f"stage-{stage}")


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in re.split(r"[-_]", name) if part)


def _unit(*deltas: timedelta) -> tuple[str, int]:
    """The largest UCUM unit that expresses every value whole, preferring hours under 3 days."""
    seconds = [abs(int(d.total_seconds())) for d in deltas]
    for code, size in _UCUM:
        if all(s % size == 0 for s in seconds) and (code not in ("wk", "d") or max(seconds) >= 3 * 86400):
            return code, size
    return "s", 1


def _quantity(delta: timedelta, unit: tuple[str, int]) -> dict[str, Any]:
    code, size = unit
    value = int(delta.total_seconds()) // size
    return {"value": value, "unit": code, "system": "http://unitsofmeasure.org", "code": code}


def _duration(delta: timedelta) -> dict[str, Any]:
    return _quantity(delta, _unit(delta))


class _Builder:
    def __init__(self, reviewed: Reviewed, base_url: str) -> None:
        self.r = reviewed
        self.p = reviewed.compiled
        self.base = base_url.rstrip("/")

    # --- canonical urls ---------------------------------------------------------------

    def _url(self, kind: str, rid: str) -> str:
        return f"{self.base}/{kind}/{rid}"

    def _step_id(self, step: str) -> str:
        return fhir_id(f"{self.p.id}-{step}")

    def _letter_id(self, letter: str) -> str:
        return fhir_id(f"{self.p.id}-letter-{letter}")

    def _canonical(self, kind: str, rid: str) -> str:
        return f"{self._url(kind, rid)}|{self.p.version}"

    # --- actions --------------------------------------------------------------------

    def _condition(self, condition: c.Condition | None) -> list[dict[str, Any]]:
        if condition is None:
            return []
        return [{"kind": "applicability", "expression": {
            "language": CONDITION_LANGUAGE, "expression": " ".join(condition.source.split()),
            "description": "carepath condition: a sandboxed expression over the event, PHQ-9, flags and params",
        }}]

    def _triggers(self, events: frozenset[str] | None) -> list[dict[str, Any]]:
        return [{"type": "named-event", "name": e} for e in sorted(events or ())]

    def _task(self, action: c.Task, parent: str, index: int) -> dict[str, Any]:
        step = self.p.steps[action.step]
        model_step = self.r.model.steps[action.step]
        anchor = step_anchor(self.r.model, self.p, action.step)
        opens = phrase(self.r.model, model_step.window.opens, anchor)
        due = " ".join(due_text(self.r.model, model_step.window.due, anchor)).strip()
        text = f"{step.title}: opens {opens}; due {due}"
        if action.due is not None:
            text += f" (this occurrence: due {action_text(action).split('(due ', 1)[1].rstrip(')')} if earlier)"
        out: dict[str, Any] = {
            "id": fhir_id(f"{parent}.{index}"), "title": step.title, "textEquivalent": text,
            "priority": _PRIORITY[step.priority],
            "participant": [{"type": "practitioner", "role": {"text": step.role}}],
            "definitionCanonical": self._canonical("ActivityDefinition", self._step_id(action.step)),
        }
        related = self._window(step, action, parent)
        if related:
            out["relatedAction"] = [related]
        return out

    def _window(self, step: c.Step, action: c.Task, parent: str) -> dict[str, Any] | None:
        """The window as an offset from the parent (the trigger), when FHIR can say it exactly."""
        w = step.window
        if step.anchor_field is not None or w.opens < timedelta(0):
            return None  # measured from a time in the event's data, or opening before it: words only
        due = w.due.delta if isinstance(w.due, c.OffsetDue) else None
        if isinstance(action.due, c.OffsetDue):
            due = action.due.delta if due is None else min(due, action.due.delta)  # earliest wins
        elif action.due is not None or (w.due is not None and due is None):
            due = None  # a calendar deadline: no upper bound FHIR can express
            if w.opens == timedelta(0):
                return None
        related: dict[str, Any] = {"actionId": parent, "relationship": "after-start"}
        if due is None:
            related["offsetDuration"] = _duration(w.opens)
        else:
            unit = _unit(w.opens, due)
            related["offsetRange"] = {"low": _quantity(w.opens, unit), "high": _quantity(due, unit)}
        return related

    def _letter(self, action: c.SendLetter, parent: str, index: int) -> dict[str, Any]:
        letter = self.p.letters[action.letter]
        anchor = f"the event's data.{letter.anchor_field}" if letter.anchor_field else "the triggering event"
        send = phrase(self.r.model, self.r.model.letters[action.letter].send, anchor)
        out: dict[str, Any] = {
            "id": fhir_id(f"{parent}.{index}"), "title": f"Letter: {action.letter}",
            "textEquivalent": f"Send the {action.letter} letter {send}",
            "definitionCanonical": self._canonical("ActivityDefinition", self._letter_id(action.letter)),
        }
        if letter.anchor_field is None and letter.send != timedelta(0):
            before = letter.send < timedelta(0)
            out["relatedAction"] = [{"actionId": parent, "relationship": "before-start" if before else "after-start",
                                     "offsetDuration": _duration(abs(letter.send))}]
        return out

    def _actions(self, actions: tuple[c.Action, ...], parent: str) -> list[dict[str, Any]]:
        out = []
        for k, a in enumerate(actions, start=1):
            if isinstance(a, c.Task):
                out.append(self._task(a, parent, k))
            elif isinstance(a, c.SendLetter):
                out.append(self._letter(a, parent, k))
            else:
                item: dict[str, Any] = {"id": fhir_id(f"{parent}.{k}"), "title": action_text(a).capitalize(),
                                        "textEquivalent": action_text(a).capitalize()}
                if isinstance(a, c.Goto):
                    item["relatedAction"] = [{"actionId": _stage_id(a.stage), "relationship": "before-start"}]
                out.append(item)
        return out

    def _transition(self, stage: c.Stage, k: int, t: c.Transition) -> dict[str, Any]:
        aid = fhir_id(f"{_stage_id(stage.name)}.to-{k + 1}")
        out: dict[str, Any] = {
            "id": aid, "title": f"Move to stage {t.to}",
            "description": "Transitions are tried in order; the first whose event and condition match wins.",
            "relatedAction": [{"actionId": _stage_id(t.to), "relationship": "before-start"}],
        }
        if t.on is not None:
            out["trigger"] = self._triggers(t.on)
        out["condition"] = self._condition(t.when)
        if t.then:
            out["action"] = self._actions(t.then, aid)
        return {k: v for k, v in out.items() if v}

    def _stage(self, stage: c.Stage) -> dict[str, Any]:
        sid = _stage_id(stage.name)
        model = self.r.model.stages[stage.name]
        children: list[dict[str, Any]] = []
        if stage.on_enter:
            enter = fhir_id(f"{sid}.on-enter")
            children.append({"id": enter, "title": f"On entering {stage.name}",
                             "action": self._actions(stage.on_enter, enter)})
        if stage.series is not None:
            series: dict[str, Any] = {"id": fhir_id(f"{sid}.series"), "title": f"Series of {stage.series.sessions} sessions",
                                      "timingTiming": {"repeat": {"count": stage.series.sessions}}}
            if stage.series.step:
                series["definitionCanonical"] = self._canonical("ActivityDefinition", self._step_id(stage.series.step))
            children.append(series)
        for rec in stage.recurring:
            unit = _unit(rec.every)
            every = int(rec.every.total_seconds()) // unit[1]
            item = {"id": fhir_id(f"{sid}.every-{rec.step}"), "title": self.p.steps[rec.step].title,
                    "timingTiming": {"repeat": {"frequency": 1, "period": every, "periodUnit": unit[0]}},
                    "definitionCanonical": self._canonical("ActivityDefinition", self._step_id(rec.step)),
                    "relatedAction": [{"actionId": sid, "relationship": "after-start",
                                       "offsetDuration": _duration(rec.starting)}]}
            notes = []
            if rec.decision_of:
                notes.append(f"Interval chosen by the {rec.decision_of} decision")
            if rec.early_tolerance is not None:
                notes.append(f"Runs from the actual completion; one up to {delta_text(rec.early_tolerance)} before "
                             "the window opens counts")
            if notes:
                item["textEquivalent"] = ". ".join(notes)
            children.append(item)
        children += [self._transition(stage, k, t) for k, t in enumerate(stage.transitions)]
        out: dict[str, Any] = {"id": sid, "title": f"Stage: {stage.name}", "groupingBehavior": "logical-group"}
        if model.description:
            out["description"] = model.description
        if children:
            out["action"] = children
        return out

    def _rule(self, rule: c.Rule) -> dict[str, Any]:
        rid = fhir_id(f"rule-{rule.id}")
        model = next(x for x in self.r.model.rules if x.id == rule.id)
        notes = []
        if rule.stages is not None:
            notes.append(f"Only in stages: {', '.join(sorted(rule.stages))}.")
        if rule.consecutive is not None:
            reset = f", a run broken by {' or '.join(sorted(rule.reset_by))}" if rule.reset_by else ""
            notes.append(f"Acts when {rule.consecutive} matching events come in a row{reset}.")
        out: dict[str, Any] = {"id": rid, "title": f"Rule: {rule.id}", "description": model.description,
                               "textEquivalent": " ".join(notes), "trigger": self._triggers(rule.on),
                               "condition": self._condition(rule.when)}
        children = self._actions(rule.then, rid)
        if rule.until_confirmed:
            until = fhir_id(f"{rid}.until-confirmed")
            children.insert(0, {"id": until, "title": "Until the run is long enough",
                                "action": self._actions(rule.until_confirmed, until)})
        out["action"] = children
        return {k: v for k, v in out.items() if v}

    def _hold(self, hold: c.Hold) -> list[dict[str, Any]]:
        out = []
        for kind, events, actions in (("breach", hold.breached_by, hold.on_breach),
                                      ("booking", hold.booked_by, hold.on_booking)):
            if not events:
                continue
            hid = fhir_id(f"hold-{hold.name}-{kind}")
            item: dict[str, Any] = {"id": hid, "title": f"Hold {hold.name}: {kind} while it is open",
                                    "trigger": self._triggers(events),
                                    "textEquivalent": f"Acts when this event comes while a {hold.name} hold is open."}
            if actions:
                item["action"] = self._actions(actions, hid)
            out.append(item)
        return out

    # --- resources -------------------------------------------------------------------

    def plan_definition(self) -> dict[str, Any]:
        pid = fhir_id(self.p.id)
        actions = [self._stage(s) for s in self.p.stages.values()]
        # A hold's reactions are cross-cutting rules too: they act in any stage when their
        # event comes while the hold is open, so they close the rules group.
        holds = [a for h in self.p.holds.values() for a in self._hold(h)]
        if self.p.rules or holds:
            actions.append({"id": "rules", "title": "Cross-cutting rules",
                            "description": "React to events in any stage unless a rule says otherwise; "
                                           "a hold's reactions act when their event comes while it is open.",
                            "action": [self._rule(r) for r in self.p.rules] + holds})
        out = {
            "resourceType": "PlanDefinition", "id": pid, "url": self._url("PlanDefinition", pid),
            "version": self.p.version, "name": _camel(self.p.id), "title": self.p.title, "type": _PLAN_TYPE,
            # Shipped pathways are examples until a clinic's clinicians sign them off.
            "status": "draft",
            "description": " ".join((self.r.model.description or self.p.title).split()),
            "action": actions,
        }
        return out

    def step_definition(self, name: str) -> dict[str, Any]:
        step, model = self.p.steps[name], self.r.model.steps[name]
        anchor = step_anchor(self.r.model, self.p, name)
        usage = (f"Opens {phrase(self.r.model, model.window.opens, anchor)}; due "
                 f"{' '.join(due_text(self.r.model, model.window.due, anchor)).strip()}; "
                 f"measured in {basis_text(step.window.basis)}")
        if step.window.when_clinic_closed is not None:
            usage += f"; if the clinic is closed throughout: {closed_policy_text(step.window.when_clinic_closed)}"
        if step.holds:
            usage += f"; holds {', '.join(step.holds)} while open"
        if step.safety:
            usage += "; safety-critical: discharge or another status change never withdraws it"
        if step.flag_while_open:
            usage += f"; flags the patient {step.flag_while_open} while open"
        policy = self.p.escalation
        if policy is not None and c.escalates(step):
            usage += (f"; unacknowledged, escalates to {' then '.join(policy.tiers)}, each after "
                      f"{delta_text(policy.delay_in_hours)} (raised in opening hours) or "
                      f"{delta_text(policy.delay_out_of_hours)} (otherwise)")
            if step.safety:
                usage += f"; open past its due, escalates again every {delta_text(policy.repeat)}"
        rid = self._step_id(name)
        out = {
            "resourceType": "ActivityDefinition", "id": rid, "url": self._url("ActivityDefinition", rid),
            "version": self.p.version, "name": _camel(name), "title": step.title, "status": "draft",
            "description": model.description or step.title, "usage": usage + ".", "kind": "Task",
            "priority": _PRIORITY[step.priority],
            "participant": [{"type": "practitioner",
                             "role": {"text": f"{step.role}: {self.r.model.roles.get(step.role, '')}".strip(": ")}}],
        }
        return out

    def letter_definition(self, name: str) -> dict[str, Any]:
        letter, model = self.p.letters[name], self.r.model.letters[name]
        anchor = f"the event's data.{letter.anchor_field}" if letter.anchor_field else "the triggering event"
        rid = self._letter_id(name)
        return {
            "resourceType": "ActivityDefinition", "id": rid, "url": self._url("ActivityDefinition", rid),
            "version": self.p.version, "name": _camel(f"letter_{name}"), "title": f"Letter: {name}",
            "status": "draft", "description": model.description or f"Patient letter from template {letter.template}",
            "usage": f"Sent {phrase(self.r.model, model.send, anchor)}, in the patient's time zone.",
            "kind": "CommunicationRequest",
        }


def plan_definition_bundle(reviewed: Reviewed, base_url: str = DEFAULT_BASE_URL) -> dict[str, Any]:
    """The Bundle (type collection): the PlanDefinition first, then its ActivityDefinitions."""
    b = _Builder(reviewed, base_url)
    resources = [b.plan_definition(), *(b.step_definition(s) for s in b.p.steps),
                 *(b.letter_definition(name) for name in b.p.letters)]
    return {
        "resourceType": "Bundle", "id": fhir_id(f"{b.p.id}-{b.p.version}"), "type": "collection",
        "entry": [{"fullUrl": b._url(r["resourceType"], r["id"]), "resource": r} for r in resources],
    }
