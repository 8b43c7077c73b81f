"""A patient's page: one pathway's whole episode in clinical words, from the ledger's
stored outputs and event store: the timeline of events, PHQ-9 totals as a chart (item 9
marked), blood pressures, sessions, every task and letter with its status and what
closed it, holds and flags with why; and what the signed-in user may do on each open
task (a step's actions belong to its role, or an administrator)."""

from __future__ import annotations

from datetime import datetime, timedelta

from carepath.compile.compiled import CompiledPathway, Step
from carepath.engine.why import describe
from carepath.orchestrator.event_store import EventStore
from carepath.orchestrator.spec import RunSpec
from carepath.records.fields import compile_event_types
from carepath.serve.access import ADMIN
from carepath.sinks.base import OutputKind
from carepath.sinks.documents import task_record
from carepath.sinks.outbox import outbox_record
from carepath.sinks.worklist_text import provenance_text, role_label

ACKNOWLEDGED = "task_acknowledged"


def step_decisions(compiled: CompiledPathway, step: str) -> tuple[str, ...]:
    """The decisions the pathway names for a step (the options a recurring entry chooses
    its interval by); empty when the step names none."""
    found: list[str] = []
    for stage in compiled.stages.values():
        for recurring in stage.recurring:
            if recurring.decision_of == step:
                found.extend(name for name, _ in recurring.choices if name not in found)
    return tuple(found)


def can_complete(step: Step | None) -> bool:
    return step is not None and "task_completed" in step.done_by


def may_act(role: str, task_role: str) -> bool:
    return role == ADMIN or role == task_role


def span(delta: timedelta) -> str:
    minutes = max(0, int(delta.total_seconds() // 60))
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h" if hours and days < 7 else f"{days} d"
    return f"{hours} h" if hours else f"{mins} min"


def affordances(compiled: CompiledPathway, step: Step | None, task_role: str, user_role: str,
             acknowledged_by: object) -> dict[str, object]:
    allowed = may_act(user_role, task_role)
    decisions = step_decisions(compiled, step.name) if step else ()
    return {"may_act": allowed, "can_complete": allowed and can_complete(step),
            "can_decide": allowed, "decisions": list(decisions),
            "can_acknowledge": allowed and ACKNOWLEDGED in compiled.event_fields and not acknowledged_by}


def episode(compiled: CompiledPathway, ref: str, outputs: list, engine, now: datetime, user_role: str,  # noqa: ANN001
            actors: dict[str, str], meanings: dict[str, str]) -> dict[str, object]:
    """One pathway's episode of a patient: `outputs` their current outputs in the ledger
    (with letters' first sends), their events read from the ledger's event store (`engine`),
    `actors` event id → the staff member whose action recorded it (from the audit),
    `meanings` each flag's meaning."""
    zone = compiled.clinic.zone
    store = EventStore(engine, compiled.id)
    ids = sorted({i for i, _ in store.shared([ref])})
    found, rejected = store.events_of([ref], ids, compile_event_types(compiled.event_fields), {ref})
    events = sorted(found.get(ref, []), key=lambda e: (e.at, e.id))
    plan = next((dict(o.body) for o, _ in outputs if o.kind is OutputKind.PATIENT), {})
    tasks = [task_record(ref, o.body) for o, _ in outputs if o.kind is OutputKind.TASK]
    letters = [outbox_record(ref, o.body, sent) for o, sent in outputs if o.kind is OutputKind.LETTER]
    by_task = {}
    for e in events:
        if e.type in ("task_completed", "decision_recorded", ACKNOWLEDGED):
            by_task.setdefault(str(e.data.get("task")), []).append(e)
    timeline = [{"at": when(e.at, compiled), "iso": e.at.isoformat(), "type": e.type, "id": e.id,
                 "text": event_text(compiled, e, tasks, actors)} for e in events]
    phq9 = [(e.at, sum(int(i) for i in e.data["items"]), int(e.data["items"][8]))  # type: ignore[index]
            for e in events if e.type == "assessment_recorded" and e.data.get("instrument") == "phq9"]
    vitals = [{"at": when(e.at, compiled), "bp": f"{e.data['systolic']}/{e.data['diastolic']}",
               "phase": str(e.data.get("phase", "")).replace("_", "-")}
              for e in events if e.type == "vitals_recorded"]
    task_views = []
    for t in sorted(tasks, key=lambda t: (str(t["earliest"]), str(t["id"]))):
        step = compiled.steps.get(str(t["step"]))
        open_ = t["status"] in ("open", "overdue")
        ack = t.get("acknowledged_by") or next((str(e.data.get("by")) for e in by_task.get(str(t["id"]), [])
                                                 if e.type == ACKNOWLEDGED), None)
        task_views.append({
            **t, "acknowledged_by": ack, "escalation": escalation_text(t.get("escalation"), compiled), "earliest_text": when(datetime.fromisoformat(str(t["earliest"])), compiled),
            "due_text": when(datetime.fromisoformat(str(t["due"])), compiled) if t.get("due") else "no due time",
            "role_label": role_label(str(t["role"])), "open": open_,
            "closed_by": "" if open_ else closed_by(compiled, t, step, by_task, events, actors),
            "rule": provenance_text(compiled, str(t.get("source", ""))),
            **(affordances(compiled, step, str(t["role"]), user_role, ack)
               if open_ else {})})
    holds = [{"name": h, "why": [str(t["title"]) for t in tasks if t["status"] in ("open", "overdue")
                                  and h in (compiled.steps[str(t["step"])].holds
                                            if str(t["step"]) in compiled.steps else ())]}
             for h in plan.get("holds") or []]
    return {"pathway": {"id": compiled.id, "version": compiled.version, "title": compiled.title},
            "stage": plan.get("stage"), "status": plan.get("status"),
            "flags": [{"name": f, "severity": compiled.flag_severity.get(f, "attention"),
                       "meaning": meanings.get(f, "")}
                      for f in plan.get("flags") or []],
            "holds": holds, "timeline": timeline, "tasks": task_views, "letters": letters,
            "sessions": [{**s, "start_text": when(datetime.fromisoformat(s["start"]), compiled)
                          if s.get("start") else ""} for s in plan.get("sessions") or []],
            "vitals": vitals, "chart": phq9_chart(phq9, zone),
            "phq9": [{"at": when(at, compiled), "total": total, "item9": item9} for at, total, item9 in phq9],
            "rejected": [{"line": r.line, "reason": r.reason} for r in rejected.get(ref, [])]}

def event_text(compiled: CompiledPathway, event, tasks: list[dict],  # noqa: ANN001
                actors: dict[str, str]) -> str:
    if event.type in ("task_completed", "decision_recorded", ACKNOWLEDGED):
        task = next((t for t in tasks if t["id"] == event.data.get("task")), None)
        what = str(task["title"]) if task else f"task {event.data.get('task')}"
        who = event.data.get("by") or actors.get(event.id)
        by = f" by {who}" if who else ""
        if event.type == "task_completed":
            return f"Done: {what}{by}"
        if event.type == "decision_recorded":
            return f"Decision {str(event.data.get('decision')).replace('_', ' ')!r}: {what}{by}"
        return f"Acknowledged: {what}{by}"
    declared = compiled.event_fields.get(event.type)
    return describe(event.type, event.data, compiled.clinic.zone, declared,
                    compiled.notes.get(f"event:{event.type}"))

def closed_by(compiled: CompiledPathway, task: dict, step: Step | None, by_task: dict,
               events: list, actors: dict[str, str]) -> str:
    if task["status"] == "done":
        named = [e for e in by_task.get(str(task["id"]), []) if e.type != ACKNOWLEDGED]
        if named:
            return f"{event_text(compiled, named[-1], [task], actors)} ({when(named[-1].at, compiled)})"
        done_at = task.get("completed_at")
        for e in events:
            if done_at and e.at == datetime.fromisoformat(str(done_at)) and step and e.type in step.done_by:
                return f"{event_text(compiled, e, [task], actors)} ({when(e.at, compiled)})"
        return "done"
    why = [t.replace("_", " ") for t in sorted(step.cancelled_by)] if step else []
    return "withdrawn" + (f" (this step is withdrawn by: {', '.join(why)}; or by a stage change)" if why else
                          " (by a stage change, discharge or a newer plan)")

def escalation_text(value: object, compiled: CompiledPathway) -> str:
    """"escalated to <tier> since <when>" for an urgent task that climbed its ladder, else ""."""
    if not isinstance(value, dict) or not value.get("tier"):
        return ""
    since = value.get("since")
    since_text = f" since {when(datetime.fromisoformat(str(since)), compiled)}" if since else ""
    return f"escalated to {str(value['tier']).replace('_', ' ')}{since_text}"


def flag_meanings(spec: RunSpec) -> dict[str, str]:
    """Each flag's meaning in the pathway's words (the patient page says why it is raised)."""
    from carepath.check.runner import check_file

    checked = check_file(spec.pathway, display=str(spec.pathway), text=spec.source)
    if checked.pathway is None:
        return {}
    return {name: flag if isinstance(flag, str) else flag.meaning for name, flag in checked.pathway.flags.items()}


def when(moment: datetime, compiled: CompiledPathway) -> str:
    local = moment.astimezone(compiled.clinic.zone)
    return f"{local:%a} {local.day} {local:%b %Y %H:%M} {local.tzname()}"


def phq9_chart(points: list[tuple[datetime, int, int]], zone) -> dict[str, object]:  # noqa: ANN001
    """A small SVG line chart of PHQ-9 totals (0-27) over time; a point whose item 9 was
    answered above 0 is marked. Coordinates only: the template draws it."""
    width, height, pad = 480, 160, 24
    if not points:
        return {"points": [], "width": width, "height": height}
    first, last = points[0][0], points[-1][0]
    seconds = max((last - first).total_seconds(), 1.0)
    out = []
    for at, total, item9 in points:
        x = pad + (width - 2 * pad) * ((at - first).total_seconds() / seconds if len(points) > 1 else 0.5)
        y = height - pad - (height - 2 * pad) * total / 27
        out.append({"x": round(x, 1), "y": round(y, 1), "total": total, "item9": item9,
                    "label": f"{at.astimezone(zone):%d %b}: total {total}" + (f", item 9 = {item9}" if item9 else "")})
    return {"points": out, "width": width, "height": height, "pad": pad,
            "path": " ".join(f"{p['x']},{p['y']}" for p in out),
            "grid": [{"y": round(height - pad - (height - 2 * pad) * v / 27, 1), "v": v} for v in (0, 5, 10, 15, 20, 27)]}
