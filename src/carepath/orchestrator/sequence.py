"""The exactly-once sequence of a run, as one function per kind of run.

A sweep: archive the pathway version → clear what a killed run left half-written →
partition the cohort into shard files → for each shard (through the executor): plan →
record in the ledger → queue the due letters never sent; then rewrite the stale
documents (the worklist among them) → `rejected.jsonl` → `deliver-letters` (drain the
queue, each letter claimed in the ledger before it is sent) → the documents that show
sends, when it sent any. An event-triggered run does the same for one patient. Every
step is idempotent, so a retried step or a re-run after a crash emits nothing twice.
A mail server that is down stops only the delivery: everything else is written, and the
sequence ends with `LettersUndelivered` (the run's summary attached); the next run
delivers what it did not take.

The Prefect flows (carepath.runtime.flows), the tests and the benches all call these,
so what is tested is the sequence as it runs. No Prefect here; which executor runs the
steps (in process, a process pool, Prefect tasks) is the caller's choice.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Protocol

from carepath.orchestrator import steps
from carepath.orchestrator.choice import choose
from carepath.orchestrator.cohort_report import report_cohort
from carepath.orchestrator.delivery import Delivered, deliver_letters
from carepath.orchestrator.document_steps import (
    clear_leftovers,
    export_step,
    write_changes,
    write_documents,
    write_patient_record,
)
from carepath.orchestrator.emission import EmitShard, emit_patient
from carepath.orchestrator.executor import Executor, InProcess
from carepath.orchestrator.notices import Fact, Notices
from carepath.orchestrator.pinned_plans import archive_pathway
from carepath.orchestrator.run_summary import RunSummary, ShardReport
from carepath.orchestrator.spec import RunSpec
from carepath.orchestrator.timers import horizon as timer_horizon
from carepath.orchestrator.wake_index import WakeIndex
from carepath.sinks.documents import document_state
from carepath.sinks.email import SmtpUnavailable
from carepath.sinks.ledger import Ledger
from carepath.sinks.worklist import Worklist


class AllLinesRejected(Exception):
    """A sweep used nothing of an input file: every line was rejected (exit 1). The
    documents and `rejected.jsonl` are written first, so the reasons are there to read."""


class MigrationRejectedLines(Exception):
    """A migration moved patients to rules that reject event lines their old rules
    accepted (exit 1): those patients are now planned without them. Everything was
    written first; `rejected.jsonl` says why, line by line."""


DEFAULT_SHARD_SIZE = 2000  # patients per shard: ~0.1-0.2 s of planning against ~10 ms of a Prefect task's overhead


class Progress(Protocol):
    def start(self, shards: int, patients: int) -> None: ...
    def advance(self, patients: int) -> None: ...
    def finish(self) -> None: ...


Log = Callable[[str], None]  # one line of counts and refs (it may reach Prefect's logs): never a name
# Announces facts of urgent or safety work (the runtime's Prefect events); raises when it could not.
Notify = Callable[[Sequence[Fact]], None]


def _quiet(_line: str) -> None:
    pass


WORK_DIR = ".carepath-work"


def work_dir(out: Path) -> Path:
    """Scratch space for shard files: they hold names, so owner-only, removed after."""
    work = out / WORK_DIR
    work.mkdir(mode=0o700, parents=True, exist_ok=True)
    work.chmod(0o700)
    return work / "shards"


def sweep(spec: RunSpec, patients: str | Path, events: str | Path, executor: Executor | None = None, *,
          shard_size: int = DEFAULT_SHARD_SIZE, progress: Progress | None = None, log: Log = _quiet,
          full: bool = False, refuse_unused_input: bool = False, export: bool = False, bundle: bool = False,
          notify: Notify | None = None) -> RunSummary:
    """Ingest the lines appended to the events file, re-plan the patients the wake index
    says may have changed (every patient with `full`), emit what is new, announce the new
    facts of urgent and safety work through `notify` (without one they wait in the ledger
    for a run that has one), write the worklist, `rejected.jsonl` and the change feed,
    deliver the queued letters; with `export`, then the whole-cohort documents (`bundle`:
    fhir/bundle.json too). With `refuse_unused_input` (a run, not a library call) a sweep
    whose patients or events file had every line rejected ends with AllLinesRejected,
    after writing `rejected.jsonl`."""
    run = executor or InProcess()
    spec.out.mkdir(parents=True, exist_ok=True)
    ledger = Ledger(spec.ledger_url)
    try:
        run.call(steps.ARCHIVE_PATHWAY, archive_pathway, spec, ledger)
        accepted_before = _accepted_before(spec, ledger)
        if removed := clear_leftovers(spec.out, spec.documents):
            log(f"removed {removed} half-written file(s) left by an interrupted run")
        work = work_dir(spec.out)
        chosen = run.call(steps.CHOOSE_PATIENTS, choose, spec, str(patients), str(events), work, shard_size, full,
                          ledger)
        log(f"{chosen.patients} patients; {chosen.ingested} new event line(s); re-planning {chosen.planned} "
            f"in {len(chosen.shards)} shard(s) ({_reasons(chosen.reasons)})"
            + (f"; {chosen.removed} patient(s) no longer in the patients file left the documents" if chosen.removed
               else ""))
        if chosen.unterminated is not None:
            log(f"the events file's last line ({chosen.unterminated}) has no newline: read as it is now, as "
                "`carepath plan` reads it, and again by the next run; end every line with a newline")
        if progress:
            progress.start(len(chosen.shards), chosen.planned)
        reports: list[ShardReport] = []
        for report in run.map(lambda s: steps.PLAN_AND_EMIT.about(s.name), EmitShard(spec, ledger), chosen.shards):
            reports.append(report)
            if progress:
                progress.advance(report.patients)
        if progress:
            progress.finish()
        reports.sort(key=lambda r: r.shard)
        if notify is not None and Notices(ledger.engine, spec.compiled.id).has_pending():
            run.call(steps.ANNOUNCE_FACTS, announce_pending, spec, ledger, notify)
        documents = run.call(steps.WRITE_WORKLIST, write_documents, spec, ledger)
        cohort = run.call(steps.REPORT_COHORT, report_cohort, spec, str(patients), ledger)
        shutil.rmtree(work.parent, ignore_errors=True)
        changes = run.call(steps.WRITE_CHANGES, write_changes, spec, ledger)
        if changes is not None:
            documents[f"{changes}/manifest.json"] = 1
        failed_before = ledger.queued(spec.compiled.id).get("failed", 0)
        delivered = run.call(steps.DELIVER_LETTERS, deliver_letters, spec, str(patients), ledger)
        documents = _after_delivery(run, spec, ledger, delivered, documents, failed_before)
        if export:
            documents.update(run.call(steps.EXPORT_DOCUMENTS, export_step, spec, ledger, bundle))
        summary = RunSummary.of(spec.compiled, spec.as_of, reports, cohort.rejected, documents, cohort,
                                ledger.version_counts(spec.compiled.id), delivered)
        # Timers for every patient whose plan changes before the horizon, re-planned now or not.
        index = WakeIndex(ledger.engine, spec.compiled.id)
        summary = replace(summary, wakes=tuple(index.wakes_between(
            spec.as_of, timer_horizon(spec.as_of, spec.compiled.clinic.zone))))
    finally:
        ledger.close()
    log(f"recorded {summary.recorded.new} new, {summary.recorded.changed} changed output(s); "
        f"{summary.letters_written} letter(s) sent, {summary.letters_failed} failed, "
        f"{summary.letters_queued} waiting")
    if summary.older:  # said once per run, not per patient
        log(versions_note(summary.as_json()))
    if refuse_unused_input and cohort.all_rejected:
        raise AllLinesRejected(f"{cohort.all_rejected}: is it the right file? {spec.out / 'rejected.jsonl'} says "
                               "why, line by line")
    if refuse_unused_input and accepted_before is not None and not chosen.restarted:
        _refuse_lost_lines(spec, accepted_before)
    return _delivered_or_raise(summary)


def _accepted_before(spec: RunSpec, ledger: Ledger) -> tuple[int, set[int]] | None:
    """Before a migration's run: the last events line read so far and the lines the
    patients' plans rejected, to tell the lines the migration newly rejects."""
    if spec.migration is None:
        return None
    from carepath.orchestrator.event_store import EventStore

    return (EventStore(ledger.engine, spec.compiled.id).last_line(),
            WakeIndex(ledger.engine, spec.compiled.id).rejected_event_lines())


def _refuse_lost_lines(spec: RunSpec, before: tuple[int, set[int]]) -> None:
    last, rejected = before
    ledger = Ledger(spec.ledger_url)
    try:
        now = WakeIndex(ledger.engine, spec.compiled.id).rejected_event_lines()
    finally:
        ledger.close()
    lost = sorted(line for line in now - rejected if line <= last)
    if lost:
        shown = ", ".join(map(str, lost[:10])) + (f" and {len(lost) - 10} more" if len(lost) > 10 else "")
        raise MigrationRejectedLines(
            f"the migration to {spec.compiled.id} {spec.compiled.version} rejected {len(lost)} event line(s) that "
            f"the patients' previous rules accepted (line(s) {shown}; {spec.out / 'rejected.jsonl'} says why): "
            "the patients it moved are now planned without them. Correct those lines or the pathway, then run "
            "again")


class LettersUndelivered(SmtpUnavailable):
    """The mail server kept failing: the run wrote everything else (`summary`), and the
    letters it did not take stay queued for the next run."""

    def __init__(self, summary: RunSummary) -> None:
        self.summary = summary
        super().__init__(f"{summary.undelivered_because}; {summary.letters_queued} letter(s) stay queued and go "
                         "with the next run (the worklist and documents were written)")

    def __reduce__(self):  # noqa: ANN204 - pickled across processes as a plain SmtpUnavailable
        return (SmtpUnavailable, (str(self),))


def _delivered_or_raise(summary: RunSummary) -> RunSummary:
    if summary.undelivered_because:
        raise LettersUndelivered(summary)
    return summary


def versions_note(summary: dict) -> str:
    """'30 patient(s) stay on an older ketamine-iv version than 1.1.0 (1.0.0: 30; 1.1.0: 10); …' (counts only)."""
    versions = "; ".join(f"{v}: {n:,}" for v, n in summary["versions_in_force"].items())
    return (f"{summary['patients_on_older_versions']:,} patient(s) stay on an older {summary['pathway']} version "
            f"than {summary['version']} ({versions}); 'carepath release preview' shows what moving them changes")


def _after_delivery(run: Executor, spec: RunSpec, ledger: Ledger, delivered: Delivered,
                    documents: dict[str, int | None], failed_before: int) -> dict[str, int | None]:
    """The worklist lists the letters not delivered: written again when this delivery
    failed letters or delivered some that had failed (it was written before delivery, so
    a mail server that hangs never keeps it stale)."""
    if not (delivered.failed or (delivered.sent and failed_before)):
        if delivered.sent:  # sends moved the ledger's generation, but the worklist does not show them
            state = document_state(ledger.generation(spec.compiled.id), spec.compiled.version, spec.as_of)
            ledger.mark_snapshot(spec.compiled.id, Worklist.name, state, spec.run)
        return documents
    again = run.call(steps.WRITE_WORKLIST.about("after-delivery"), write_documents, spec, ledger)
    return {name: again.get(name) if again.get(name) is not None else n for name, n in documents.items()}


def _reasons(reasons: dict[str, int]) -> str:
    return ", ".join(f"{why}: {n}" for why, n in sorted(reasons.items())) or "nothing changed"


def announce_pending(spec: RunSpec, ledger: Ledger, notify: Notify) -> int:
    """Announce the facts recorded and not yet announced, then mark them: a run killed in
    between announces them again (with the same ids), never loses one."""
    notices = Notices(ledger.engine, spec.compiled.id)
    pending = notices.pending()
    if pending:
        notify(pending)
        notices.mark_announced(pending)
    return len(pending)


def replan_patient(spec: RunSpec, patients: str | Path, events: str | Path, ref: str,
                   executor: Executor | None = None, notify: Notify | None = None) -> RunSummary:
    """Re-plan one patient (after an event was recorded), then write the worklist and that
    patient's record (`patients/<xx>/<ref>.json`) and deliver that patient's letters; the
    whole-cohort documents are the export's."""
    run = executor or InProcess()
    spec.out.mkdir(parents=True, exist_ok=True)
    ledger = Ledger(spec.ledger_url)
    try:
        run.call(steps.ARCHIVE_PATHWAY, archive_pathway, spec, ledger)
        report = run.call(steps.REPLAN_PATIENT.about(ref), emit_patient, spec, str(patients), str(events), ref, ledger)
        if notify is not None and Notices(ledger.engine, spec.compiled.id).has_pending():
            run.call(steps.ANNOUNCE_FACTS, announce_pending, spec, ledger, notify)
        # The worklist too: an urgent task the event raised must not wait for the next sweep.
        documents = run.call(steps.WRITE_WORKLIST, write_documents, spec, ledger)
        record = run.call(steps.WRITE_PATIENT_RECORD.about(ref), write_patient_record, spec, ledger, ref)
        delivered = run.call(steps.DELIVER_LETTERS.about(ref), deliver_letters, spec, str(patients), ledger, ref)
        if delivered.sent or delivered.failed:  # the record shows its letters' sends
            record = run.call(steps.WRITE_PATIENT_RECORD.about(f"{ref}-after-delivery"), write_patient_record, spec,
                              ledger, ref)
    finally:
        ledger.close()
    return _delivered_or_raise(RunSummary.of(spec.compiled, spec.as_of, [report], len(report.rejected),
                                             {record: 1, **documents}, delivered=delivered))
