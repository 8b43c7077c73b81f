"""Planning a cohort from files: read patients and events, plan each patient, stream JSON.

This is the library behind `carepath plan` (and, later, the Prefect sweep): no Prefect,
no clock. Rejected lines from the readers and events the engine refused are reported
together, with their line numbers; every valid line is still planned.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO

from carepath.compile.compiled import CompiledPathway
from carepath.engine import plan
from carepath.engine.result import PatientPlan
from carepath.records import Event, Patient, read_events, read_patients


@dataclass(frozen=True)
class Rejected:
    file: str  # "patients" | "events"
    line: int
    id: str | None
    reason: str

    def as_json(self) -> dict[str, object]:
        return {"file": self.file, "line": self.line, "id": self.id, "reason": self.reason}


@dataclass
class Cohort:
    patients: dict[str, Patient]
    events: dict[str, list[Event]]
    rejected: list[Rejected]


def read_cohort(compiled: CompiledPathway, patients_path: str | Path, events_path: str | Path) -> Cohort:
    patients, bad_patients = read_patients(patients_path, default_timezone=compiled.clinic.zone.key)
    events, bad_events = read_events(events_path, event_types=compiled.event_fields, patients=patients)
    by_patient: dict[str, list[Event]] = {ref: [] for ref in patients}
    for event in events:
        by_patient[event.patient].append(event)
    rejected = [Rejected("patients", r.line, r.id, r.reason) for r in bad_patients]
    rejected += [Rejected("events", r.line, r.id, r.reason) for r in bad_events]
    return Cohort(patients, by_patient, rejected)


def plan_cohort(compiled: CompiledPathway, cohort: Cohort, as_of: datetime) -> Iterator[PatientPlan]:
    """Plans in patient-ref order; engine refusals are appended to `cohort.rejected`."""
    for ref in sorted(cohort.patients):
        result = plan(compiled, cohort.patients[ref], cohort.events[ref], as_of)
        cohort.rejected.extend(Rejected("events", r.line, r.id, r.reason) for r in result.rejected)
        yield result


def write_plan_json(out: IO[str], compiled: CompiledPathway, as_of: datetime, cohort: Cohort) -> int:
    """The plan contract's JSON, written patient by patient; returns the number of patients."""
    out.write('{\n  "pathway": ' + json.dumps({"id": compiled.id, "version": compiled.version}))
    out.write(',\n  "as_of": ' + json.dumps(as_of.isoformat()) + ',\n  "patients": [')
    count = 0
    for result in plan_cohort(compiled, cohort, as_of):
        out.write(("\n    " if count == 0 else ",\n    ") + json.dumps(result.as_json(compiled.version)))
        count += 1
    rejected = sorted(cohort.rejected, key=lambda r: (r.file != "events", r.file, r.line, r.id or ""))
    out.write("\n  ],\n  \"rejected\": [" + ",".join("\n    " + json.dumps(r.as_json()) for r in rejected))
    out.write("\n  ]\n}\n")
    return count


def write_plan_text(out: IO[str], compiled: CompiledPathway, as_of: datetime, cohort: Cohort) -> int:
    """A summary a clinician can read: per patient, stage and status, then open work by due time."""
    zone = compiled.clinic.zone
    out.write(f"{compiled.title} ({compiled.id} {compiled.version}) as of "
              f"{as_of.astimezone(zone):%a %d %b %Y %H:%M %Z}\n")
    count = 0
    for result in plan_cohort(compiled, cohort, as_of):
        count += 1
        extras = [f"flags: {', '.join(result.flags)}" if result.flags else "",
                  f"holds: {', '.join(result.holds)}" if result.holds else ""]
        out.write(f"\n{result.patient}  stage {result.stage}, {result.status}"
                  + "".join(f"; {e}" for e in extras if e) + "\n")
        for task in result.tasks:
            if task.status in ("done", "cancelled"):
                continue
            due = f"due {task.due:%a %d %b %H:%M %Z}" if task.due else "no due time"
            mark = " OUT OF WINDOW" if task.out_of_window else ""
            out.write(f"  [{task.status:7}] {task.priority:7} {task.step} ({task.role}): "
                      f"from {task.earliest:%a %d %b %H:%M} {due}{mark}\n")
        done = sum(1 for t in result.tasks if t.status == "done")
        if done:
            out.write(f"  ({done} task(s) done)\n")
    if cohort.rejected:
        out.write(f"\n{len(cohort.rejected)} input line(s) rejected:\n")
        for r in sorted(cohort.rejected, key=lambda r: (r.file, r.line)):
            out.write(f"  {r.file} line {r.line} ({r.id}): {r.reason}\n")
    return count
