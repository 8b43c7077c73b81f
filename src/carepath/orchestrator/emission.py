"""The `plan-and-emit` step (and `replan-patient`, its one-patient form).

Plan the patients of a shard from the event store → record the outputs of the plans that
changed in the ledger → queue the letters that are due and that the ledger has never sent
(carepath.orchestrator.delivery sends them) → record the facts on-call must be told →
store each patient's state (their plan's digest, wake and summary) in one statement,
last, so a run killed before it re-plans them. Idempotent: Prefect may retry it and a
killed run may simply be run again.

No Prefect here and no module-level state: each function is handed the run's `RunSpec`
(pathway compiled once, as-of, ledger URL, outputs) and the open `Ledger`; the sequence in
carepath.orchestrator.sequence calls the steps in order, through an executor. The other
steps live in their own modules (carepath.orchestrator.steps lists them all); their
names are re-exported here for callers written before they moved.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from carepath.compile.compiled import CompiledPathway
from carepath.engine import plan
from carepath.engine.result import PatientPlan
from carepath.orchestrator.cohort import Shard, read_patient_shard
from carepath.orchestrator.event_store import EventStore, key
from carepath.orchestrator.notices import Notices
from carepath.orchestrator.patients_index import PatientsIndex
from carepath.orchestrator.pinned_plans import pinned_groups
from carepath.orchestrator.pinning import id_aliases
from carepath.orchestrator.run_summary import ShardReport
from carepath.orchestrator.spec import RunSpec
from carepath.orchestrator.wake_index import Planned, WakeIndex, record_digest
from carepath.orchestrator.workload import summary_of, workload_of
from carepath.records import Patient, Rejection, read_patients
from carepath.records.fields import compile_event_types
from carepath.records.readers import gc_paused
from carepath.sinks.base import OutputKind, outputs_of
from carepath.sinks.ledger import Ledger, Recorded
from carepath.sinks.letters import DUE
from carepath.sinks.worklist_rows import WorklistRows


@dataclass(frozen=True)
class Emitted:
    """What recording some plans did: counts, and each plan's digest (stored with the
    patient's state, so an unchanged plan costs one lookup next time)."""

    recorded: Recorded = Recorded()
    letters_queued: int = 0
    digests: dict[str, str] = field(default_factory=dict)

    def __add__(self, other: Emitted) -> Emitted:
        return Emitted(self.recorded + other.recorded, self.letters_queued + other.letters_queued,
                       {**self.digests, **other.digests})


def emit_plans(compiled: CompiledPathway, plans: Sequence[PatientPlan], ledger: Ledger, run: str,
               current: CompiledPathway | None = None) -> Emitted:
    """Record the outputs of the plans that changed since they were last emitted, then
    queue their letters that are due and were never sent for the `deliver-letters` step
    (carepath.orchestrator.delivery). An unchanged plan costs one digest: a letter's
    status is part of the plan, so a letter that became due (or expired) since the last
    run changes its patient's digest. The digests are stored by the caller, with each
    patient's state (`WakeIndex.remember`), after these patients' worklist rows, ranked by
    `current` (the pathway's rules now; `compiled` when not given)."""
    digests = {p.patient: hashlib.sha256(orjson.dumps(p.as_json(compiled.version))).hexdigest()[:32]
               for p in plans}
    known = ledger.plan_digests(compiled.id, list(digests))
    changed = [p for p in plans if known.get(p.patient) != digests[p.patient]]
    if not changed:
        return Emitted(Recorded(unchanged=sum(1 + len(p.tasks) + len(p.letters) for p in plans)), 0, digests)
    outputs = [o for p in changed for o in outputs_of(p, compiled.version)]
    recorded = ledger.record(compiled.id, [p.patient for p in changed], outputs, run)
    due = [o for o in outputs if o.kind is OutputKind.LETTER and o.body.get("status") == DUE]
    queued = ledger.queue_letters(compiled.id, ledger.unsent(due), run)
    WorklistRows(ledger.engine, compiled.id).record(current or compiled, outputs)
    unchanged = sum(1 + len(p.tasks) + len(p.letters) for p in plans if known.get(p.patient) == digests[p.patient])
    return Emitted(recorded + Recorded(unchanged=unchanged), queued, digests)


def _emit_groups(spec: RunSpec, groups: list[tuple[CompiledPathway, list[PatientPlan]]], ledger: Ledger,
                 ) -> tuple[Emitted, list[PatientPlan]]:
    emitted, everyone = Emitted(), []
    for compiled, plans in groups:
        if plans:
            emitted += emit_plans(compiled, plans, ledger, spec.run, spec.compiled)
            everyone.extend(plans)
    return emitted, everyone


def emit_patients(spec: RunSpec, patients: dict[str, Patient], ledger: Ledger, others: Iterable[str] = (),
                  ids: Sequence[str] = (), name: str = "") -> ShardReport:
    """Plan these patients from the event store, record their outputs, queue their due
    letters, then record in the wake index when each plan next changes (last, so a run
    killed before it re-plans them). `others` and `ids`: see `EventStore.events_of`."""
    compiled, as_of = spec.compiled, spec.as_of
    store = EventStore(ledger.engine, compiled.id)
    specs = compile_event_types(compiled.event_fields)
    # Events may name a task by an id it had under other rules (a version-hashed id, a renamed step).
    aliases = id_aliases(ledger.archived_versions(compiled.id), ledger.step_renames(compiled.id), spec.migration)
    with gc_paused():
        events, bad = store.events_of(patients, ids, specs, set(patients) | set(others))
        plans = [plan(compiled, patients[ref], events[ref], as_of, aliases=aliases) for ref in sorted(patients)]

    def replan(old: CompiledPathway, refs: set[str]) -> list[PatientPlan]:
        return [plan(old, patients[ref], events[ref], as_of, aliases=aliases) for ref in sorted(refs)]

    groups, refused = pinned_groups(spec, plans, ledger, replan)
    done, emitted = _emit_groups(spec, groups, ledger)
    # What on-call must be told, recorded once per fact (announced by the run's notifier).
    notices = Notices(ledger.engine, compiled.id)
    facts = sum(len(notices.record(c, c.version, group, spec.run)) for c, group in groups if group)
    rejected: dict[str, list[Rejection]] = {ref: list(bad[ref]) for ref in patients}
    for p in emitted:
        rejected[p.patient].extend(Rejection(r.line, r.id, r.reason) for r in p.rejected)
    for r in refused:
        rejected[r.id].append(r)  # type: ignore[index]
    index = WakeIndex(ledger.engine, compiled.id)
    planned = [Planned(p.patient, p.wake, record_digest(patients[p.patient]), summary_of(p, rejected[p.patient]),
                       done.digests[p.patient]) for p in emitted]
    # Refused patients (pinned to a version that cannot be planned) keep only their rejection.
    planned += [Planned(r.id, None, record_digest(patients[r.id]), {"rejected": [[r.file, r.line, r.id, r.reason]]})
                for r in refused if r.id is not None]
    index.remember(planned, as_of, spec.digest)
    all_rejected = tuple(r for ref in sorted(rejected) for r in rejected[ref])
    # The workload from the summaries just stored (refused patients have none and count for nothing).
    work = workload_of(((pl.patient, pl.summary) for pl in planned), compiled, as_of)
    wakes = tuple((p.patient, p.wake) for p in emitted if p.wake is not None)
    return ShardReport(name, len(patients), sum(len(e) for e in events.values()), done.recorded,
                       done.letters_queued, work, all_rejected, facts, wakes)


def emit_shard(spec: RunSpec, shard: Shard, ledger: Ledger) -> ShardReport:
    """Steps 1-3 of the sequence for one shard of patients to re-plan."""
    patients, others, ids = read_patient_shard(shard.path)
    return emit_patients(spec, patients, ledger, others, ids, shard.name)


@dataclass(frozen=True)
class EmitShard:
    """`emit_shard` for one run, as an executor's step. In this process it uses the run's
    open ledger; pickled into a worker process it opens its own for each shard."""

    spec: RunSpec
    ledger: Ledger | None = field(default=None, compare=False)

    def __call__(self, shard: Shard) -> ShardReport:
        if self.ledger is not None:
            return emit_shard(self.spec, shard, self.ledger)
        ledger = Ledger(self.spec.ledger_url)
        try:
            return emit_shard(self.spec, shard, ledger)
        finally:
            ledger.close()

    def __reduce__(self) -> tuple[type, tuple[RunSpec]]:
        return (EmitShard, (self.spec,))


class PatientNotFound(LookupError):
    """An event-triggered run names a ref with no valid line in the patients file."""


def emit_patient(spec: RunSpec, patients_path: str | Path, events_path: str | Path, ref: str,
                 ledger: Ledger) -> ShardReport:
    """Re-plan one patient (an event-triggered run): the lines appended to the events file
    are ingested, then only that patient's events are read, from the store."""
    compiled = spec.compiled
    people = PatientsIndex(ledger.engine, compiled.id)
    patient = people.one(patients_path, ref, compiled.clinic.zone.key)
    if patient is None:
        raise PatientNotFound(f"patient {ref!r} is not in {patients_path} (or its line is rejected)")
    store = EventStore(ledger.engine, compiled.id)
    index = WakeIndex(ledger.engine, compiled.id)
    known, _ = people.refs(patients_path, compiled.clinic.zone.key)  # from the index the last sweep made
    store.ingest(events_path, on_new=index.mark_dirty, known=known)
    shared = store.shared([ref])
    others: set[str] = set()
    if shared:  # rare: another patient's line uses an id of theirs; is that patient known?
        keyed = {key(r): r for r in read_patients(patients_path, default_timezone=compiled.clinic.zone.key)[0]}
        others = {keyed[p] for _, p in shared if p in keyed}
    return emit_patients(spec, {ref: patient}, ledger, others, sorted({i for i, _ in shared}), f"patient-{ref}")


# Moved to the modules of their steps; importable from here as before.
from carepath.orchestrator.cohort_report import CohortReport, report_cohort, write_rejected  # noqa: E402
from carepath.orchestrator.document_steps import (  # noqa: E402
    FAILED_SHOWN,
    clear_leftovers,
    document_sinks,
    export_step,
    write_changes,
    write_documents,
    write_patient_record,
)
from carepath.orchestrator.letter_channels import CHANNELS, channel_of, letter_channel  # noqa: E402
from carepath.orchestrator.pinned_plans import archive_pathway, archived, withdrawn  # noqa: E402
from carepath.orchestrator.run_summary import LETTER_STATUSES, RunSummary  # noqa: E402
from carepath.orchestrator.workload import ACTIVE_TASK, URGENT_SHOWN, Workload, workload  # noqa: E402

__all__ = [
    "ACTIVE_TASK", "CHANNELS", "FAILED_SHOWN", "LETTER_STATUSES", "URGENT_SHOWN", "CohortReport", "EmitShard",
    "Emitted", "PatientNotFound", "RunSummary", "ShardReport", "Workload", "archive_pathway", "archived",
    "channel_of", "clear_leftovers", "document_sinks", "emit_patient", "emit_patients", "emit_plans", "emit_shard",
    "export_step", "letter_channel", "pinned_groups", "report_cohort", "summary_of", "withdrawn", "workload",
    "workload_of", "write_changes", "write_documents", "write_patient_record", "write_rejected",
]
