"""The exactly-once sequence of a run, as one function per kind of run.

A sweep: archive the pathway version → clear what a killed run left half-written →
partition the cohort into shard files → for each shard (through the executor): plan →
record in the ledger → send the due letters never sent → rewrite the stale documents →
`rejected.jsonl`. An event-triggered run does the same for one patient. Every step is
idempotent, so a retried step or a re-run after a crash emits nothing twice.

The Prefect flows (carepath.runtime.flows), the tests and the benches all call these,
so what is tested is the sequence as it runs. No Prefect here; which executor runs the
steps (in process, a process pool, Prefect tasks) is the caller's choice.
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

from carepath.orchestrator.emission import (
    EmitShard, RunSummary, ShardReport, archive_pathway, clear_leftovers, emit_patient, report_cohort,
    write_documents, write_patient_record,
)
from carepath.orchestrator.choice import choose
from carepath.orchestrator.executor import Executor, InProcess
from carepath.orchestrator.notices import Fact, Notices
from carepath.orchestrator.spec import RunSpec
from carepath.orchestrator.timers import horizon as timer_horizon
from carepath.orchestrator.wake_index import WakeIndex
from carepath.sinks.ledger import Ledger

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
          full: bool = False, notify: Notify | None = None) -> RunSummary:
    """Ingest the lines appended to the events file, re-plan the patients the wake index
    says may have changed (every patient with `full`), emit what is new, announce the new
    facts of urgent and safety work through `notify` (without one they wait in the ledger
    for a run that has one), and rewrite the cohort-wide documents."""
    run = executor or InProcess()
    spec.out.mkdir(parents=True, exist_ok=True)
    ledger = Ledger(spec.ledger_url)
    try:
        run.call("archive-pathway-version", archive_pathway, spec, ledger)
        if removed := clear_leftovers(spec.out, spec.documents):
            log(f"removed {removed} half-written file(s) left by an interrupted run")
        work = work_dir(spec.out)
        chosen = run.call("choose-patients", choose, spec, str(patients), str(events), work, shard_size, full, ledger)
        log(f"{chosen.patients} patients; {chosen.ingested} new event line(s); re-planning {chosen.planned} "
            f"in {len(chosen.shards)} shard(s) ({_reasons(chosen.reasons)})")
        if progress:
            progress.start(len(chosen.shards), chosen.planned)
        reports: list[ShardReport] = []
        for report in run.map(lambda s: f"plan-and-emit-{s.name}", EmitShard(spec, ledger), chosen.shards):
            reports.append(report)
            if progress:
                progress.advance(report.patients)
        if progress:
            progress.finish()
        reports.sort(key=lambda r: r.shard)
        if notify is not None and Notices(ledger.engine, spec.compiled.id).has_pending():
            run.call("announce-facts", announce_pending, spec, ledger, notify)
        documents = run.call("write-documents", write_documents, spec, ledger)
        cohort = run.call("report-cohort", report_cohort, spec, str(patients), ledger)
        shutil.rmtree(work.parent, ignore_errors=True)
        summary = RunSummary.of(spec.compiled, spec.as_of, reports, cohort.rejected, documents, cohort)
        # Timers for every patient whose plan changes before the horizon, re-planned now or not.
        index = WakeIndex(ledger.engine, spec.compiled.id)
        summary = replace(summary, wakes=tuple(index.wakes_between(
            spec.as_of, timer_horizon(spec.as_of, spec.compiled.clinic.zone))))
    finally:
        ledger.close()
    log(f"recorded {summary.recorded.new} new, {summary.recorded.changed} changed output(s); "
        f"{summary.letters_written} letter(s) written")
    return summary


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
    """Re-plan one patient (after an event was recorded), then write that patient's record
    (`patients/<xx>/<ref>.json`): the cohort-wide documents cost time in proportion to the
    cohort, so they are left to the next sweep (the ledger's generation moved)."""
    run = executor or InProcess()
    spec.out.mkdir(parents=True, exist_ok=True)
    ledger = Ledger(spec.ledger_url)
    try:
        run.call("archive-pathway-version", archive_pathway, spec, ledger)
        report = run.call(f"replan-patient-{ref}", emit_patient, spec, str(patients), str(events), ref, ledger)
        if notify is not None and Notices(ledger.engine, spec.compiled.id).has_pending():
            run.call("announce-facts", announce_pending, spec, ledger, notify)
        record = run.call(f"write-patient-record-{ref}", write_patient_record, spec, ledger, ref)
    finally:
        ledger.close()
    return RunSummary.of(spec.compiled, spec.as_of, [report], len(report.rejected), {record: 1})
