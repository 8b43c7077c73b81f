"""Planning a cohort from files: read patients and events, plan each patient, stream JSON.

This is the library behind `carepath plan` and `carepath letters`: no Prefect, no clock.
The events file is ingested once into an event store of the command's own (a temporary
SQLite file, `event_store.scratch_store`) and read back `group_size` patients at a time,
so memory does not grow with the cohort; the lines are judged as the sweep judges them
(`records.judge`, through the store). Rejected lines from the readers and events the
engine refused are reported together, with their line numbers; every valid line is
still planned.
"""

from __future__ import annotations

import json
import tempfile
import weakref
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO

from carepath.compile.compiled import CompiledPathway
from carepath.engine import plan
from carepath.engine.result import PatientPlan
from carepath.orchestrator.event_store import EventStore, scratch_store
from carepath.records import Event, Patient, Rejection, read_patients
from carepath.records.fields import TypeSpec, compile_event_types
from carepath.records.readers import gc_paused
from carepath.sinks.base import outputs_of
from carepath.sinks.worklist import Worklist

__all__ = ["Cohort", "plan_cohort", "read_cohort", "write_patient_page", "write_plan_json",
           "write_plan_text"]


@dataclass
class Cohort:
    """Patients in memory; their events in a temporary event store on disk, read back and
    planned `group_size` patients at a time (the store is removed with the cohort)."""

    patients: dict[str, Patient]
    rejected: list[Rejection]
    store: EventStore = field(repr=False)
    specs: dict[str, TypeSpec] = field(repr=False)
    group_size: int = 2000

    def events_of(self, refs: Iterable[str]) -> tuple[dict[str, list[Event]], list[Rejection]]:
        """These patients' valid events and the rejections of their own lines, judged with
        every line that shares an event id with them (as the whole file judges them)."""
        refs = list(refs)
        ids = {event_id for event_id, _ in self.store.shared(refs)}
        events, bad = self.store.events_of(refs, ids, self.specs, self.patients)
        return events, [r for ref in refs for r in bad[ref]]

    def groups(self) -> Iterator[tuple[list[str], dict[str, list[Event]], list[Rejection]]]:
        """(refs, their events, the rejections of their lines), `group_size` patients at a
        time in ref order."""
        refs = sorted(self.patients)
        for start in range(0, len(refs), self.group_size):
            group = refs[start:start + self.group_size]
            yield group, *self.events_of(group)


def read_cohort(compiled: CompiledPathway, patients_path: str | Path, events_path: str | Path,
                *, group_size: int = 2000) -> Cohort:
    """Reads the patients and ingests the events (one pass) into a private scratch store;
    the lines that name no known patient are judged at once."""
    if group_size < 1:
        raise ValueError("group_size must be at least 1")
    patients, bad_patients = read_patients(patients_path, default_timezone=compiled.clinic.zone.key)
    specs = compile_event_types(compiled.event_fields)
    scratch = tempfile.TemporaryDirectory(prefix="carepath-plan-")
    try:
        store = scratch_store(Path(scratch.name), compiled.id)
        store.ingest(events_path, known=patients)
        rejected = bad_patients + store.unplaced(patients, specs)
    except BaseException:
        scratch.cleanup()
        raise
    cohort = Cohort(patients, rejected, store, specs, group_size)
    weakref.finalize(cohort, _remove, store, scratch)
    return cohort


def _remove(store: EventStore, scratch: tempfile.TemporaryDirectory) -> None:
    store.engine.dispose()
    scratch.cleanup()


def plan_cohort(compiled: CompiledPathway, cohort: Cohort, as_of: datetime) -> Iterator[PatientPlan]:
    """Plans in patient-ref order, a group at a time; the lines rejected while planning
    (invalid event lines, engine refusals) are appended to `cohort.rejected`."""
    for refs, events, rejected in cohort.groups():
        cohort.rejected.extend(rejected)
        yield from _plan_group(compiled, cohort, refs, events, as_of)


def _plan_group(compiled: CompiledPathway, cohort: Cohort, refs: list[str], events: dict[str, list[Event]],
                as_of: datetime) -> list[PatientPlan]:
    """These patients planned (their events are taken from `events`); the events the
    engine refused are appended to `cohort.rejected`."""
    # Records and plans hold no reference cycles: the collector's passes over a group's
    # young objects cost a third of the time here.
    with gc_paused():
        plans = []
        for ref in refs:
            result = plan(compiled, cohort.patients[ref], events.pop(ref), as_of)
            cohort.rejected.extend(Rejection(r.line, r.id, r.reason) for r in result.rejected)
            plans.append(result)
    return plans


def write_plan_json(out: IO[str], compiled: CompiledPathway, as_of: datetime, cohort: Cohort) -> int:
    """The plan contract's JSON, written patient by patient; returns the number of patients."""
    out.write('{\n  "pathway": ' + json.dumps({"id": compiled.id, "version": compiled.version}))
    out.write(',\n  "as_of": ' + json.dumps(as_of.isoformat()) + ',\n  "patients": [')
    count = 0
    # The JSON of a patient is acyclic and freed at once; with the collector running, its
    # full passes over the cohort's patients cost a fifth of a 100k-patient plan.
    with gc_paused():
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
        # Good news (e.g. remission) is said as such, so a reader does not take it for a warning.
        flags = [f if compiled.flag_severity.get(f, "attention") == "attention"
                 else f"{f} ({compiled.flag_severity[f]})" for f in result.flags]
        extras = [f"flags: {', '.join(flags)}" if flags else "",
                  f"holds: {', '.join(result.holds)}" if result.holds else ""]
        out.write(f"\n{result.patient}  stage {result.stage}, {result.status}"
                  + "".join(f"; {e}" for e in extras if e) + "\n")
        for task in result.tasks:
            if task.status in ("done", "cancelled"):
                continue
            due = f"due {task.due:%a %d %b %H:%M %Z}" if task.due else "no due time"
            mark = " OUT OF WINDOW" if task.out_of_window else ""
            if task.held:
                mark += f" (held: {', '.join(task.held)})"
            if task.acknowledged_by:
                mark += f" (acknowledged by {task.acknowledged_by})"
            if task.escalation:
                mark += f" (escalated to {task.escalation.tier} since {task.escalation.since:%a %d %b %H:%M})"
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


def write_patient_page(out: IO[str], compiled: CompiledPathway, as_of: datetime, cohort: Cohort, ref: str) -> bool:
    """One patient's whole plan as a worklist-style page (every task, done and cancelled ones
    and work beyond the worklist's horizon included); False when the cohort has no such patient."""
    if ref not in cohort.patients:
        return False
    from carepath.engine.closure import closures

    # The patient's own events (and the lines sharing their ids) are read from the store:
    # one patient is planned, not the cohort.
    events, _ = cohort.events_of([ref])
    [result] = _plan_group(compiled, cohort, [ref], {ref: list(events[ref])}, as_of)
    # What closed each withdrawn task and letter: the patient's history folded once more.
    closed = closures(compiled, cohort.patients[ref], events[ref], as_of)
    page, _ = Worklist(Path("."), compiled, as_of, patient=ref, closures=closed).render(
        outputs_of(result, compiled.version))
    out.write(page)
    return True
