"""One run's emission, step by step, as plain functions the Prefect flows call.

plan a shard → record its outputs in the ledger → queue the letters that are due and
that the ledger has never sent (the outbox; carepath.orchestrator.delivery sends them) →
(once per run) the worklist when stale, the change feed, and with `--export` the
whole-cohort documents (carepath.orchestrator.export). Each step is idempotent,
so Prefect may retry any of them and a killed run may simply be run again.

No Prefect here and no module-level state: each function is handed the run's `RunSpec`
(pathway compiled once, as-of, ledger URL, outputs) and the open `Ledger`; the sequence in
carepath.orchestrator.sequence calls them in order, through an executor.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import orjson

from carepath import api
from carepath.compile.compiled import CompiledPathway
from carepath.engine import plan
from carepath.engine.result import PatientPlan
from carepath.orchestrator.cohort import Rejected, Shard, read_patient_shard
from carepath.orchestrator.delivery import Delivered
from carepath.orchestrator.event_store import EventStore, key
from carepath.orchestrator.notices import Notices
from carepath.orchestrator.patients_index import PatientsIndex
from carepath.orchestrator.pinning import VersionReused, decide, id_aliases
from carepath.orchestrator.spec import RunSpec
from carepath.orchestrator.wake_index import Planned, WakeIndex, record_digest
from carepath.records import Patient, read_patients
from carepath.records.fields import compile_event_types
from carepath.records.readers import gc_paused
from carepath.sinks.base import OutputKind, Sink, outputs_of, write_atomic
from carepath.sinks.ledger import Ledger, Recorded
from carepath.sinks.letters import DUE, LetterFiles
from carepath.sinks.worklist_rows import READY, WorklistRows

ACTIVE_TASK = ("open", "overdue")
LETTER_STATUSES = ("scheduled", "due", "expired", "withdrawn")  # a plan letter's status at the run's as-of
URGENT_SHOWN = 100  # rows of urgent work a summary lists; the rest are counted


@dataclass(frozen=True)
class Workload:
    """Counts of one patient group's current plan: what the run summary and the Prefect
    artifacts show (refs and counts only)."""

    patients: int = 0
    open_tasks: Counter = field(default_factory=Counter)       # (role, priority) → open or overdue tasks
    overdue: int = 0
    letters: int = 0
    statuses: Counter = field(default_factory=Counter)         # patient status → patients
    # The top of the worklist, in its order: (sort key, band, patient ref, step, due, status, opened)
    urgent: tuple[tuple[tuple[object, ...], str, str, str, str, str, str], ...] = ()
    attention: int = 0    # patients the worklist lists as needing attention (good-news flags do not count)
    letter_statuses: Counter = field(default_factory=Counter)  # letter status at as-of → letters

    def __add__(self, other: Workload) -> Workload:
        urgent = tuple(sorted(self.urgent + other.urgent, key=lambda u: u[0])[:URGENT_SHOWN])
        return Workload(self.patients + other.patients, self.open_tasks + other.open_tasks,
                        self.overdue + other.overdue, self.letters + other.letters,
                        self.statuses + other.statuses, urgent, self.attention + other.attention,
                        self.letter_statuses + other.letter_statuses)


@dataclass(frozen=True)
class ShardReport:
    shard: str
    patients: int
    events: int
    recorded: Recorded
    letters_queued: int   # due letters put on the delivery queue
    workload: Workload
    rejected: tuple[Rejected, ...]
    facts: int = 0  # new facts of urgent or safety work recorded for on-call (carepath.orchestrator.notices)
    # (patient, wake) of each plan that next changes with no new event: when a timer may re-plan it
    wakes: tuple[tuple[str, datetime], ...] = ()


def summary_of(p: PatientPlan, rejected: Iterable[Rejected] = ()) -> dict[str, object]:
    """What the run summary needs of one plan (its open work, status, letters) and the
    patient's rejected lines, compact: the wake index keeps it for patients a sweep does
    not re-plan. No names."""
    letters: Counter = Counter(letter.status for letter in p.letters)
    return {
        "status": p.status, "flags": list(p.flags), "holds": list(p.holds), "letters": dict(letters),
        "tasks": [[t.id, t.step, t.role, t.priority, t.status, t.due.isoformat() if t.due else None,
                   t.earliest.isoformat(), t.acknowledged_at is not None] for t in p.tasks if t.status in ACTIVE_TASK],
        "rejected": [[r.file, r.line, r.id, r.reason] for r in rejected],
        "outputs": 1 + len(p.tasks) + len(p.letters),  # the care-plan summary, tasks, letters
    }


def workload(plans: Iterable[PatientPlan], compiled: CompiledPathway, as_of: datetime) -> Workload:
    return workload_of(((p.patient, summary_of(p)) for p in plans), compiled, as_of)


def workload_of(summaries: Iterable[tuple[str, dict]], compiled: CompiledPathway, as_of: datetime) -> Workload:
    """The counts and top rows of the patients' open work as of `as_of` (the worklist's
    bands are the as-of's: a task due tomorrow is `today`'s work tomorrow)."""
    from carepath.sinks.worklist import band_of, needs_attention, safety_critical, safety_sort_keys, sort_key

    open_tasks: Counter = Counter()
    statuses: Counter = Counter()
    urgent: list[tuple[tuple[object, ...], str, str, str, str, str, str]] = []
    overdue = letters = patients = attention = 0
    zone = compiled.clinic.zone
    now = as_of.astimezone(zone)
    horizon_end = now + compiled.worklist.horizon
    letter_statuses: Counter = Counter()
    parse = datetime.fromisoformat
    for ref, s in summaries:
        if "status" not in s:
            continue  # refused (pinned to a version that cannot be planned): no plan to count
        patients += 1
        statuses[s["status"]] += 1
        letters += sum(s["letters"].values())
        letter_statuses.update(s["letters"])
        safety_rows: list[tuple[str, bool, datetime, str, str, str, str]] = []
        # A summary stored before acknowledgements has seven fields: read as unacknowledged.
        for task_id, step, role, priority, status, due_text, earliest_text, *acknowledged in s["tasks"]:
            open_tasks[(role, priority)] += 1
            overdue += status == "overdue"
            due, earliest = parse(due_text) if due_text else None, parse(earliest_text)
            # Ranked as the worklist ranks its rows, so the artifact shows the page's top rows.
            safety = safety_critical(compiled.steps.get(step), priority)
            band = band_of(status, safety, due, earliest, now, now.date(), horizon_end, zone)
            if band == "safety":
                safety_rows.append((task_id, bool(acknowledged and acknowledged[0]), earliest, step, due_text or "",
                                    status, earliest_text))
            elif band in ("overdue", "today"):
                urgent.append((sort_key(band, due, earliest, priority, ref, task_id), band, ref, step,
                               due_text or "", status, earliest_text))
        if safety_rows:
            keys = safety_sort_keys(ref, [(r[0], r[1], r[2]) for r in safety_rows])
            urgent.extend((keys[r[0]], "safety", ref, *r[3:]) for r in safety_rows)
        # Open safety work makes a patient one needing attention, as the page lists them.
        attention += bool(safety_rows) or needs_attention(s["status"], tuple(s["flags"]), tuple(s["holds"]),
                                                          compiled.flag_severity)
    urgent.sort(key=lambda u: u[0])
    return Workload(patients, open_tasks, overdue, letters, statuses, tuple(urgent[:URGENT_SHOWN]), attention,
                    letter_statuses)


def archive_pathway(spec: RunSpec, ledger: Ledger) -> None:
    """Archive this pathway version's source in the ledger (so patients pinned to it can
    be planned under it later); VersionReused when the version was run with other rules.
    A ledger new to the pathway has its worklist rows marked complete from the start."""
    compiled = spec.compiled
    known = ledger.remember_version(compiled.id, compiled.version, spec.digest, spec.source.decode())
    if known is not None:
        raise VersionReused(
            f"{spec.pathway}: {compiled.id} version {compiled.version} was run before with different rules "
            f"(archived digest {known}, this file {spec.digest}); patients pinned to "
            f"{compiled.version} must not change rules silently: give the changed pathway a new version "
            "('carepath validate' in the pathway's Git work tree reports this as CP701 before it is deployed)")
    if ledger.generation(compiled.id) == 0:
        # Nothing recorded for this pathway yet: every re-plan from here on stores its
        # patients' worklist rows, so they are complete without the rebuilding pass.
        ledger.mark_snapshot(compiled.id, READY, spec.digest, spec.run)


def _archived(ledger: Ledger, pathway: Path, pathway_id: str, version: str) -> CompiledPathway | str:
    """A pinned older version compiled from the ledger's archive, or why it cannot be."""
    source = ledger.archived_source(pathway_id, version)
    if source is None:
        return "its source is not in the ledger's archive"
    try:
        return api.load_pathway_text(pathway, source.encode(), f"{pathway} (version {version} from the ledger)")
    except api.InvalidInput as exc:
        first = exc.diagnostics[0]
        return f"it is no longer valid: {first.code} {first.message}"


def pinned_groups(spec: RunSpec, plans: Sequence[PatientPlan], ledger: Ledger,
                  replan: Callable[[CompiledPathway, set[str]], list[PatientPlan]],
                  ) -> tuple[list[tuple[CompiledPathway, list[PatientPlan]]], list[Rejected]]:
    """The plans grouped by the version each patient is planned under (see carepath.orchestrator.pinning)."""
    compiled, run = spec.compiled, spec.run
    refs = [p.patient for p in plans]
    pins = ledger.pins(compiled.id, refs)
    olds = {v: _archived(ledger, spec.pathway, compiled.id, v) for v in set(pins.values()) - {compiled.version}}
    decision = decide(compiled.id, compiled.version, refs, pins, spec.migration,
                      {v: (None if isinstance(c, CompiledPathway) else c) for v, c in olds.items()})
    groups = [(compiled, [p for p in plans if p.patient in decision.current])]
    kept: dict[str, set[str]] = defaultdict(set)
    for ref, version in decision.keep.items():
        kept[version].add(ref)
    for version, group in sorted(kept.items()):
        old = olds[version]
        assert isinstance(old, CompiledPathway)
        groups.append((old, replan(old, group)))
    ledger.pin(compiled.id, {ref: compiled.version for ref in decision.enrol | decision.migrate}, run)
    migration = spec.migration
    if decision.migrate and migration is not None:  # later sweeps recognise the ids of renamed steps
        ledger.record_migration(compiled.id, migration.from_version, migration.to_version,
                                {old: list(new) for old, new in migration.steps.items()}, migration.reason, run)
        old = olds.get(migration.from_version)
        if isinstance(old, CompiledPathway):  # what the move withdraws stays on record, with why
            ledger.record_withdrawals(compiled.id, withdrawn(
                old, compiled, migration, replan(old, decision.migrate),
                [p for p in plans if p.patient in decision.migrate]), run)
    refused = [Rejected("pins", 0, ref, why) for ref, why in sorted(decision.refuse.items())]
    return groups, refused


def withdrawn(old: CompiledPathway, new: CompiledPathway, migration, before: Sequence[PatientPlan],  # noqa: ANN001
              after: Sequence[PatientPlan]) -> list[dict[str, str]]:
    """The open work of `before` (under `old`) that `after` (under `new`) no longer has, as
    `carepath release preview` words it."""
    from carepath.orchestrator.release import compare

    now = {p.patient: p for p in after}
    return [{"task": t.task, "patient": p.patient, "step": t.step, "from_version": old.version,
             "to_version": new.version, "why": t.why}
            for p in before if p.patient in now
            for t in compare(p, now[p.patient], set(new.steps), migration, set()).tasks if t.change == "withdrawn"]


def emit_plans(compiled: CompiledPathway, plans: Sequence[PatientPlan], ledger: Ledger, run: str,
               current: CompiledPathway | None = None) -> tuple[Recorded, int]:
    """Record the outputs of the plans that changed since they were last emitted, then
    queue their letters that are due and were never sent for the `deliver-letters` step
    (carepath.orchestrator.delivery). An unchanged plan costs one digest: a letter's
    status is part of the plan, so a letter that became due (or expired) since the last
    run changes its patient's digest. Returns what was recorded and how many letters
    were queued. The changed patients' worklist rows are stored with them, ranked by
    `current` (the pathway's rules now; `compiled` when not given)."""
    digests = {p.patient: hashlib.sha256(orjson.dumps(p.as_json(compiled.version))).hexdigest()[:32]
               for p in plans}
    known = ledger.plan_digests(compiled.id, list(digests))
    changed = [p for p in plans if known.get(p.patient) != digests[p.patient]]
    if not changed:
        return Recorded(unchanged=sum(1 + len(p.tasks) + len(p.letters) for p in plans)), 0
    outputs = [o for p in changed for o in outputs_of(p, compiled.version)]
    recorded = ledger.record(compiled.id, [p.patient for p in changed], outputs, run)
    due = [o for o in outputs if o.kind is OutputKind.LETTER and o.body.get("status") == DUE]
    queued = ledger.queue_letters(compiled.id, ledger.unsent(due), run)
    WorklistRows(ledger.engine, compiled.id).record(current or compiled, outputs)
    # Last: a run killed before this line re-examines these patients next time.
    ledger.set_plan_digests(compiled.id, {p.patient: digests[p.patient] for p in changed}, run)
    unchanged = sum(1 + len(p.tasks) + len(p.letters) for p in plans if known.get(p.patient) == digests[p.patient])
    return recorded + Recorded(unchanged=unchanged), queued


CHANNELS = ("file", "email", "print")


def channel_of(compiled: CompiledPathway) -> str:
    """The letter channel: CAREPATH_LETTER_CHANNEL for this run, else the pathway's `letter_channel`."""
    import os

    chosen = os.environ.get("CAREPATH_LETTER_CHANNEL") or compiled.letter_channel
    if chosen not in CHANNELS:
        raise ValueError(f"CAREPATH_LETTER_CHANNEL is {chosen!r}; use one of {', '.join(CHANNELS)}")
    return chosen


def letter_channel(compiled: CompiledPathway, out: Path, patients: dict, plans: dict[str, PatientPlan], pdf: bool,
                   as_of: datetime):  # noqa: ANN201 - a letters sink
    files = LetterFiles(out / "letters", compiled, patients, plans, pdf=pdf)
    channel = channel_of(compiled)
    if channel == "email":
        from carepath.sinks.email import EmailLetters

        return EmailLetters(compiled, patients, plans, files, pdf=pdf)
    if channel == "print":
        from carepath.sinks.print_batch import PrintBatch

        return PrintBatch(out, compiled, patients, plans, as_of.astimezone(compiled.clinic.zone).date().isoformat())
    return files


def _emit_groups(spec: RunSpec, groups: list[tuple[CompiledPathway, list[PatientPlan]]], ledger: Ledger,
                 ) -> tuple[Recorded, int, list[PatientPlan]]:
    recorded, queued, everyone = Recorded(), 0, []
    for compiled, plans in groups:
        if plans:
            r, q = emit_plans(compiled, plans, ledger, spec.run, spec.compiled)
            recorded, queued = recorded + r, queued + q
            everyone.extend(plans)
    return recorded, queued, everyone


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
    recorded, queued, emitted = _emit_groups(spec, groups, ledger)
    # What on-call must be told, recorded once per fact (announced by the run's notifier).
    notices = Notices(ledger.engine, compiled.id)
    facts = sum(len(notices.record(c, c.version, group, spec.run)) for c, group in groups if group)
    rejected: dict[str, list[Rejected]] = {ref: [Rejected("events", r.line, r.id, r.reason) for r in bad[ref]]
                                           for ref in patients}
    for p in emitted:
        rejected[p.patient].extend(Rejected("events", r.line, r.id, r.reason) for r in p.rejected)
    for r in refused:
        rejected[r.id].append(r)  # type: ignore[index]
    index = WakeIndex(ledger.engine, compiled.id)
    planned = [Planned(p.patient, p.wake, record_digest(patients[p.patient]), summary_of(p, rejected[p.patient]))
               for p in emitted]
    # Refused patients (pinned to a version that cannot be planned) keep only their rejection.
    planned += [Planned(r.id, None, record_digest(patients[r.id]), {"rejected": [[r.file, r.line, r.id, r.reason]]})
                for r in refused if r.id is not None]
    index.remember(planned, as_of, spec.digest)
    all_rejected = tuple(r for ref in sorted(rejected) for r in rejected[ref])
    # The workload from the summaries just stored (refused patients have none and count for nothing).
    work = workload_of(((pl.patient, pl.summary) for pl in planned), compiled, as_of)
    wakes = tuple((p.patient, p.wake) for p in emitted if p.wake is not None)
    return ShardReport(name, len(patients), sum(len(e) for e in events.values()), recorded, queued, work,
                       all_rejected, facts, wakes)


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


FAILED_SHOWN = 100  # letters not delivered that the worklist lists; the rest are counted


def document_sinks(compiled: CompiledPathway, out: Path | str, as_of: datetime,
                   failed_letters: tuple[int, list[tuple[str, str, str]]] = (0, [])) -> list[Sink]:
    """What a sweep keeps current besides the outbox and `rejected.jsonl`: the worklist.
    The whole-cohort documents are the export's (carepath.orchestrator.export)."""
    from carepath.sinks.worklist import Worklist

    return [Worklist(out, compiled, as_of, failed_letters=failed_letters)]


def write_documents(spec: RunSpec, ledger: Ledger) -> dict[str, int | None]:
    """Rewrite the sweep's documents (the worklist) when stale; None for those left as
    they were. The worklist is built from the stored per-patient rows
    (`carepath.sinks.worklist_rows`), so its cost follows what it lists, not the cohort;
    they are rebuilt in one pass over the ledger first when the rules changed since they
    were complete (or a ledger from before them)."""
    from carepath.sinks._documents import document_state, ledger_groups
    from carepath.sinks.storage import storage_for
    from carepath.sinks.worklist import Worklist

    compiled, as_of = spec.compiled, spec.as_of
    out = storage_for(spec.documents)
    failed = ledger.failed_letters(compiled.id, limit=FAILED_SHOWN)
    failed_total = ledger.queued(compiled.id).get("failed", 0) if len(failed) == FAILED_SHOWN else len(failed)
    worklist = Worklist(out, compiled, as_of, failed_letters=(failed_total, failed))
    state = document_state(ledger.generation(compiled.id), compiled.version, as_of)
    if ledger.snapshot_state(compiled.id, worklist.name) == state and worklist.storage.exists(worklist.name):
        return {worklist.name: None}
    rows = WorklistRows(ledger.engine, compiled.id)
    if ledger.snapshot_state(compiled.id, READY) != spec.digest:
        rows.rebuild(compiled, ledger_groups(ledger.document_rows(compiled.id, worklist.kinds)))
        ledger.mark_snapshot(compiled.id, READY, spec.digest, spec.run)
    written = worklist.write_from(rows.read(compiled, as_of))
    ledger.mark_snapshot(compiled.id, worklist.name, state, spec.run)
    return {worklist.name: written}


def write_changes(spec: RunSpec, ledger: Ledger) -> str | None:
    """The sweep's change feed (see carepath.orchestrator.export.write_changes), and the
    sweep's as-of remembered for the exports."""
    from carepath.orchestrator.export import remember_sweep
    from carepath.orchestrator.export import write_changes as write
    from carepath.sinks.storage import storage_for

    folder = write(spec.compiled, ledger, storage_for(spec.documents), spec.as_of, spec.run)
    remember_sweep(ledger, spec.compiled.id, spec.as_of, spec.run)
    return folder


def export_step(spec: RunSpec, ledger: Ledger, bundle: bool = False) -> dict[str, int | None]:
    """`carepath run --export`: the export's documents after the sweep, same as-of."""
    from carepath.orchestrator.export import export_documents
    from carepath.sinks.storage import storage_for

    return export_documents(spec.compiled, ledger, storage_for(spec.documents), spec.as_of, bundle=bundle,
                            run=spec.run)


def write_patient_record(spec: RunSpec, ledger: Ledger, patient: str) -> str:
    """After an event-triggered re-plan: that patient's record (`patients/<xx>/<ref>.json`)
    instead of the cohort-wide documents, whose rewrite costs time in proportion to the
    cohort. The ledger's generation moved, so the next sweep rebuilds those documents."""
    from carepath.sinks.patient_record import patient_record
    from carepath.sinks.patient_record import write_patient_record as write
    from carepath.sinks.storage import storage_for

    compiled = spec.compiled
    outputs = ledger.patient_outputs(compiled.id, patient)
    record = patient_record(compiled.id, compiled.version, patient, outputs, spec.as_of)
    return write(storage_for(spec.documents), record)


def clear_leftovers(out: Path, documents: str | Path | None = None) -> int:
    """Remove half-written files a killed run left behind (`write_atomic`'s temporaries).
    Called when a sweep starts: what they were to hold is rewritten by this run."""
    count = 0
    for folder, pattern in ((out, ".*.tmp"), (out / "letters", "**/.*.tmp"), (out / "fhir", ".*.tmp"),
                            (out / "patients", "**/.*.tmp")):
        for tmp in folder.glob(pattern) if folder.is_dir() else ():
            tmp.unlink(missing_ok=True)
            count += 1
    from carepath.sinks.storage import FsspecStorage, documents_location, storage_for

    store = storage_for(documents if documents is not None else documents_location(out))
    if isinstance(store, FsspecStorage):  # the sweep's own documents on a shared store
        count += store.clear_temporaries(("", "fhir"))
    return count


@dataclass(frozen=True)
class CohortReport:
    rejected: int       # input lines refused, the whole cohort's
    workload: Workload  # the whole cohort's open work
    outputs: int = 0    # the cohort's current outputs (a patient not re-planned left theirs unchanged)
    all_rejected: str = ""  # which input file had every line rejected (probably the wrong file), or ""


def report_cohort(spec: RunSpec, patients_path: str | Path, ledger: Ledger) -> CohortReport:
    """After a sweep: `rejected.jsonl` and the workload of every patient, from the wake
    index's rows (patients not re-planned by this sweep included) and the event store."""
    compiled = spec.compiled
    patients, bad_patients = PatientsIndex(ledger.engine, compiled.id).refs(patients_path, compiled.clinic.zone.key)
    index = WakeIndex(ledger.engine, compiled.id)
    store = EventStore(ledger.engine, compiled.id)
    rejected = [Rejected("patients", r.line, r.id, r.reason) for r in bad_patients]
    rejected += [Rejected("events", r.line, r.id, r.reason)
                 for r in store.unplaced(patients, compile_event_types(compiled.event_fields))]
    summaries = []
    for ref, summary in index.summaries(patients):
        rejected.extend(Rejected(*row) for row in summary["rejected"])  # type: ignore[union-attr]
        summaries.append((ref, summary))
    write_rejected(spec.out, rejected)
    outputs = sum(int(summary.get("outputs", 0)) for _, summary in summaries)  # type: ignore[call-overload]
    return CohortReport(len(rejected), workload_of(summaries, compiled, spec.as_of), outputs,
                        _all_rejected(len(patients), len(bad_patients),
                                      sum(r.file == "events" for r in rejected), store.line_count()))


def _all_rejected(patients: int, bad_patients: int, bad_events: int, event_lines: int) -> str:
    """Which file had every one of its lines rejected (a run that used nothing of it
    must not end green: it is most often the events file given as --patients)."""
    if patients == 0 and bad_patients:
        return f"every line of the patients file ({bad_patients}) was rejected"
    if event_lines and bad_events >= event_lines:
        return f"every line of the events file ({event_lines}) was rejected"
    return ""


def write_rejected(out: Path, rejected: Iterable[Rejected]) -> Path:
    """`rejected.jsonl`: every input line refused this run, with line and reason (no names)."""
    rows = sorted(rejected, key=lambda r: (r.file != "events", r.file, r.line, r.id or ""))
    path = out / "rejected.jsonl"
    data = b"".join(orjson.dumps(r.as_json()) + b"\n" for r in rows)
    if not path.exists() or path.read_bytes() != data:
        write_atomic(path, data)
    return path



@dataclass(frozen=True)
class RunSummary:
    """What one run did, in counts (safe for Prefect, logs and the console)."""

    pathway: str
    version: str
    as_of: str
    shards: int
    events: int
    recorded: Recorded
    letters_written: int
    workload: Workload
    rejected: int
    documents: dict[str, int | None]
    replanned: int = 0  # patients planned by this run (the others' plans could not have changed)
    versions: dict[str, int] = field(default_factory=dict)  # pathway version → patients pinned to it
    letters_failed: int = 0   # letters whose rendering or sending failed this run (each recorded with its reason)
    letters_queued: int = 0   # letters still waiting on the delivery queue after this run, failed ones included
    undelivered_because: str = ""  # the mail server that kept failing (PHI-free), when one did
    facts: int = 0      # new facts of urgent or safety work recorded for on-call
    # (patient, wake) of the re-planned patients whose plan next changes with no new event
    wakes: tuple[tuple[str, datetime], ...] = ()

    @property
    def older(self) -> int:
        """Patients who stay on an older version than the pathway file's (until migrated)."""
        return sum(n for v, n in self.versions.items() if v != self.version)

    @classmethod
    def of(cls, compiled: CompiledPathway, as_of: datetime, reports: Sequence[ShardReport], rejected: int,
           documents: dict[str, int | None], cohort: CohortReport | None = None,
           versions: dict[str, int] | None = None,
           delivered: Delivered | None = None) -> RunSummary:
        """`cohort`: the whole cohort's report (a sweep re-plans few patients): its workload,
        and every current output not new or changed counts as unchanged; else the reports'."""
        recorded, work = Recorded(), Workload()
        for r in reports:
            recorded, work = recorded + r.recorded, work + r.workload
        if cohort is not None:
            work = cohort.workload
            unchanged = max(0, cohort.outputs - recorded.new - recorded.changed)
            recorded = Recorded(recorded.new, recorded.changed, unchanged, recorded.retired)
        delivered = delivered or Delivered()
        return cls(compiled.id, compiled.version, as_of.isoformat(), len(reports), sum(r.events for r in reports),
                   recorded, delivered.sent, work, rejected, documents, sum(r.patients for r in reports),
                   dict(versions or {}), delivered.failed, delivered.queued, delivered.unavailable,
                   sum(r.facts for r in reports), tuple(w for r in reports for w in r.wakes))

    def as_json(self) -> dict[str, object]:
        return {
            "pathway": self.pathway, "version": self.version, "as_of": self.as_of, "shards": self.shards,
            "patients": self.workload.patients, "replanned": self.replanned, "events": self.events,
            "outputs": {"new": self.recorded.new, "changed": self.recorded.changed,
                        "unchanged": self.recorded.unchanged, "retired": self.recorded.retired},
            "letters_written": self.letters_written, "letters_failed": self.letters_failed,
            "letters_queued": self.letters_queued, "letters_planned": self.workload.letters,
            "letters_by_status": {status: self.workload.letter_statuses.get(status, 0) for status in LETTER_STATUSES},
            "open_tasks": [{"role": role, "priority": prio, "count": n}
                           for (role, prio), n in sorted(self.workload.open_tasks.items())],
            "overdue": self.workload.overdue,
            "patients_by_status": dict(sorted(self.workload.statuses.items())),
            "patients_needing_attention": self.workload.attention,
            "rejected_lines": self.rejected,
            "documents_rewritten": sorted(k for k, v in self.documents.items() if v is not None),
            "versions_in_force": dict(sorted(self.versions.items())),
            "patients_on_older_versions": self.older,
        }
