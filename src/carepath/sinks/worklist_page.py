"""What `worklist.html` shows: a row per listed task (in clinical words), the bands, the
page's data assembled from the ranking's tallies, and the template that renders it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from sys import intern
from zoneinfo import ZoneInfo

from jinja2 import Environment, PackageLoader, StrictUndefined

from carepath.compile.compiled import CompiledPathway
from carepath.sinks.base import Output
from carepath.sinks.documents import instant, task_record
from carepath.sinks.worklist_bands import ACTIONABLE, BANDS, needs_attention, safety_critical
from carepath.sinks.worklist_text import Words, long_moment, role_label, short_moment, span, window_parts

PRIORITIES = ("urgent", "high", "routine")


@dataclass(frozen=True, slots=True)
class Moment:
    text: str       # "Tue 3 Mar 10:00"
    iso: str        # for <time datetime>


@dataclass(frozen=True, slots=True)  # one per listed task: kept small
class Row:
    id: str
    patient: str
    step: str
    title: str
    role: str
    priority: str
    status: str
    out_of_window: bool
    source: str
    trigger: str
    window: tuple[str, ...]   # ("Tue 3 Mar 10:00 –", "Wed 4 Mar 10:00 EST")
    earliest_iso: str         # clinic zone; for data- attributes
    due_iso: str              # clinic zone; "" when the task has no due time
    completed: Moment | None
    closed_at: datetime       # completion, else due, else earliest: what "most recent" sorts by
    sort_key: tuple[object, ...]
    reason: str               # "PHQ-9 item 9 answered 2 (total 14) on Tue 10 Nov 2025, 21:14"
    rule: str                 # the pathway's own words for the rule or stage that made it
    version: str              # the pathway version it was planned under
    age: str                  # "for 3 d 4 h": how long open (since it opened) or overdue (since due)
    safety: bool
    off_hours: str            # why the due time is outside opening hours, "" when it is not
    acknowledged: str         # "staff-3, Tue 7 Apr, 09:10"; "" when nobody has acknowledged it
    escalation: str           # "Medical director since Tue 7 Apr, 09:30; next Tue 7 Apr, 23:59"; "" when none
    closed_by: str = ""       # one patient's page: what withdrew or superseded a cancelled task


@dataclass(frozen=True)
class Band:
    key: str
    label: str
    note: str
    rows: list[Row]
    total: int                # rows listed + rows counted only

    @property
    def count(self) -> int:
        return self.total

    @property
    def hidden(self) -> int:
        return self.total - len(self.rows)


def task_row(output: Output, body: Mapping[str, object], zone: ZoneInfo, words: Words, band: str,
             key: tuple[object, ...] | None, *, safety: bool = False, closed_by: str = "") -> Row:
    """One listed task's row; `closed_by`: what withdrew or superseded it (one patient's page)."""
    task = task_record(output.patient, body)
    owner = f"task {output.id}"
    earliest = instant(task, "earliest", owner)
    if earliest is None:
        raise ValueError(f"{owner} has no earliest time")
    due = instant(task, "due", owner)
    completed = instant(task, "completed_at", owner)
    reason_at = instant(task, "reason_at", owner)
    priority, status, source = str(task["priority"]), str(task["status"]), str(task["source"])
    done_at = completed.astimezone(zone) if completed else None
    as_of = words.as_of
    if safety and earliest <= as_of:
        # Safety work says how long the patient has waited, overdue or not.
        age = f"open for {span(as_of - earliest)}"
    elif status == "overdue" and due is not None:
        age = f"for {span(as_of - due)}"
    elif earliest <= as_of and status == "open":
        age = f"for {span(as_of - earliest)}"
    else:
        age = ""
    acknowledged_at = instant(task, "acknowledged_at", owner)
    acknowledged = (f"{task.get('acknowledged_by')}, {words.when(acknowledged_at)}"
                    if acknowledged_at is not None else "")
    escalation = words.escalation(task.get("escalation"), owner) if status in ACTIONABLE else ""
    reason = str(task.get("reason") or "")
    if reason and reason_at is not None:
        reason = f"{reason} on {words.when(reason_at)}"
    elif not reason:
        reason = f"opened {words.when(earliest)}"
    return Row(
        # Steps, titles, roles and sources repeat across the cohort: one string each.
        id=output.id, patient=output.patient, step=intern(str(task["step"])), title=intern(str(task["title"])),
        role=intern(str(task["role"])), priority=intern(priority), status=intern(status),
        out_of_window=bool(task["out_of_window"]), source=intern(source), trigger=str(task["trigger"]),
        window=window_parts(earliest, due, zone), earliest_iso=earliest.astimezone(zone).isoformat(),
        due_iso=due.astimezone(zone).isoformat() if due else "",
        completed=Moment(f"{short_moment(done_at)} {done_at.tzname()}", done_at.isoformat()) if done_at else None,
        closed_at=completed or due or earliest,
        sort_key=key or (),
        reason=reason, rule=words.rule(source), version=intern(str(task.get("pathway_version") or "")),
        age=age, safety=safety,
        off_hours=words.off_hours(due) if due is not None and status in ACTIONABLE else "",
        acknowledged=acknowledged, escalation=escalation, closed_by=closed_by,
    )


def assemble_page(compiled: CompiledPathway, patient: str | None,
                  failed_letters: tuple[int, list[tuple[str, str, str]]], as_of: datetime, horizon_end: datetime,
                  rows: Mapping[str, list[Row]], band_totals: Counter[str], role_totals: Counter[str],
                  beyond: Counter[str], by_role: Counter[tuple[str, str]], overdue: int,
                  closed_counts: Counter[str], closed: list[Row], versions: Counter[str],
                  patients: list[dict[str, object]], attention_total: int, settled: int,
                  letters: list[dict[str, object]]) -> dict[str, object]:
    """What the template shows, from the ranking's tallies (a pass over the outputs, or
    the stored per-patient rows: `write_from`)."""
    zone = compiled.clinic.zone
    bands = [Band(b.key, b.label, b.note, sorted(rows.get(b.key, ()), key=lambda r: r.sort_key),
                  band_totals[b.key]) for b in BANDS if band_totals[b.key]]
    roles = sorted({role for role, _ in by_role})
    shown = sum(band_totals.values())
    return {
        "patient": patient,
        "pathway": {"id": compiled.id, "version": compiled.version, "title": compiled.title,
                    # The versions in force, this one first: patients stay on the version they
                    # enrolled under until a migration moves them.
                    "versions": [{"version": v, "patients": n} for v, n in sorted(
                        versions.items(), key=lambda vn: (vn[0] != compiled.version, vn[0]))],
                    "older": sum(n for v, n in versions.items() if v != compiled.version)},
        "clinic": {"name": compiled.clinic.name, "zone": zone.key},
        "as_of": Moment(long_moment(as_of), as_of.isoformat()),
        "horizon": span(compiled.worklist.horizon),
        "horizon_end": Moment(long_moment(horizon_end), horizon_end.isoformat()),
        "bands": bands,
        "filter": [{"role": role, "label": role_label(role), "count": role_totals[role]}
                   for role in sorted(role_totals)],
        "shown": shown,
        "beyond": {"total": sum(beyond.values()),
                   "roles": [{"label": role_label(r), "count": n} for r, n in sorted(beyond.items())]},
        "summary": {
            "priorities": PRIORITIES,
            "roles": [{"label": role_label(role), "role": role,
                       "counts": [by_role[(role, p)] for p in PRIORITIES],
                       "total": sum(n for (r, _), n in by_role.items() if r == role)} for role in roles],
            "totals": [sum(n for (_, p), n in by_role.items() if p == prio) for prio in PRIORITIES],
            "open": sum(by_role.values()),
            "overdue": overdue,
            "done": closed_counts["done"],
            "cancelled": closed_counts["cancelled"],
        },
        "closed": closed,
        "closed_total": sum(closed_counts.values()),
        "patients": patients,
        "patients_total": attention_total,
        "settled_patients": settled,
        "steps": [{"name": s.name, "title": s.title, "role": role_label(s.role), "priority": str(s.priority),
                   "note": compiled.notes.get(f"step:{s.name}", ""),
                   "safety": safety_critical(s, str(s.priority))}
                  for s in compiled.steps.values()],
        "severities": compiled.flag_severity,
        "letters": sorted(letters, key=lambda letter: (str(letter["send_iso"]), str(letter["id"]))),
        "failed_letters": {"total": failed_letters[0],
                           "rows": [{"patient": ref, "letter": letter_id, "reason": reason}
                                    for ref, letter_id, reason in failed_letters[1]]},
    }


def patient_view(ref: str, body: Mapping[str, object], severity: Mapping[str, str]) -> dict[str, object]:
    def names(key: str) -> list[str]:
        value = body.get(key) or []
        if not isinstance(value, list):
            raise ValueError(f"patient {ref}: {key} must be a list")
        return [str(v) for v in value]

    # A flag the pathway does not declare (a pinned older version's) needs attention.
    flags = [(name, severity.get(name, "attention")) for name in names("flags")]
    status, holds = str(body.get("status", "")), names("holds")
    return {"ref": ref, "stage": str(body.get("stage", "")), "status": status, "flags": flags,
            "needs_attention": needs_attention(status, [name for name, _ in flags], holds, severity), "holds": holds}


@cache
def template():
    env = Environment(loader=PackageLoader("carepath.sinks", "templates"), autoescape=True,
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                      keep_trailing_newline=True)
    env.filters["role_label"] = role_label
    return env.get_template("worklist.html.j2")
