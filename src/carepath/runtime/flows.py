"""The deployable flows. Module-level on purpose: `prefect deploy` reads this file's AST
and a deployment imports its entrypoint by name (a flow built in a factory cannot run
from a deployment). The pathway is a parameter, so one flow serves every pathway.

Parameters, run names, task names, logs and artifacts carry file paths, shard names,
pseudonymous patient refs and counts — never a patient's name (DESIGN.md, PHI boundary).
Task results are not persisted and not cached: the outbox ledger, not Prefect, records
what was emitted, so a retried task or a re-run flow emits nothing twice.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.exceptions import MissingContextError
from prefect.futures import as_completed
from prefect.runtime import flow_run
from prefect.task_runners import ThreadPoolTaskRunner

from carepath import cohort, emission
from carepath.outlock import output_lock
from carepath.pinning import Migration, read_migration
from carepath.runtime import artifacts, console
from carepath.sinks.ledger import check_ledger, default_url

DEFAULT_SHARD_SIZE = 2000  # patients per Prefect task: ~0.1-0.2 s of planning against ~10 ms of task overhead


def _instant(as_of: str | None) -> datetime:
    """The as-of instant: given (with an offset), or now for scheduled sweeps."""
    if as_of is None:
        return datetime.now(UTC).replace(microsecond=0)
    value = datetime.fromisoformat(as_of)
    if value.tzinfo is None:
        raise ValueError(f"as_of {as_of!r} has no UTC offset")
    return value


def _run_name(kind: str) -> str:
    params = flow_run.parameters
    stem = Path(str(params.get("pathway", "pathway"))).stem
    as_of = params.get("as_of") or "now"
    subject = f"-{params['patient']}" if kind == "patient" else ""
    return f"{kind}-{stem}{subject}-as-of-{as_of}"


WORK_DIR = ".carepath-work"


def _work_dir(out: Path) -> Path:
    """Scratch space for shard files: they hold names, so owner-only, removed after."""
    work = out / WORK_DIR
    work.mkdir(mode=0o700, parents=True, exist_ok=True)
    work.chmod(0o700)
    return work / "shards"


_NO_RESULTS = {"cache_policy": NO_CACHE, "persist_result": False}


class Withheld(Exception):
    """What Prefect records of a failure inside carepath: the error's type and where it
    happened, never its message. A message can quote patient data (a template error
    quotes the value it could not use, a parser the line it could not read), and Prefect
    keeps state messages, logs and tracebacks in its database. The original stays in
    this process (`original`) for the console that started the run."""

    def __init__(self, kind: str, where: str, original: BaseException | None = None) -> None:
        super().__init__(f"{kind} in {where} (its message is withheld from Prefect: it may quote patient data; "
                         "the console that started the run shows it)")
        self.kind, self.where, self.original = kind, where, original

    def __reduce__(self):  # pickled across processes (Dask) without the original
        return (Withheld, (self.kind, self.where))


@contextmanager
def _withheld(where: str) -> Iterator[None]:
    try:
        yield
    except Withheld:
        raise
    except Exception as exc:
        # `from None`: the original must not ride along as the traceback's context.
        raise Withheld(type(exc).__name__, where, exc) from None


def _one_run_per_folder(fn):
    """The body runs holding the output folder's lock (see carepath.outlock), and the
    scratch folder (shard files, which hold names) goes with it, also when the run is
    interrupted (Ctrl-C, or SIGTERM which the CLI turns into the same)."""
    signature = inspect.signature(fn)

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        out = Path(signature.bind(*args, **kwargs).arguments["out"])

        def note(message: str) -> None:
            print(f"carepath: {message}", file=sys.stderr, flush=True)
            with contextlib.suppress(MissingContextError):
                get_run_logger().warning(message)

        with output_lock(out, note=note):
            try:
                return fn(*args, **kwargs)
            finally:
                shutil.rmtree(out / WORK_DIR, ignore_errors=True)
    return wrapper


def _withholding(where: str):
    """`_withheld` around a whole function (a flow's body)."""
    def decorate(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with _withheld(where):
                return fn(*args, **kwargs)
        return wrapper
    return decorate


@task(name="partition", task_run_name="partition", **_NO_RESULTS)
def partition_cohort(pathway: str, patients: str, events: str, work: str, shard_size: int) -> cohort.Partition:
    with _withheld("partition"):
        compiled = emission.compiled_pathway(pathway)
        return cohort.partition(compiled, patients, events, Path(work), shard_size)


@task(name="plan-and-emit", task_run_name="plan-and-emit-{shard.name}", retries=2, retry_delay_seconds=1,
      **_NO_RESULTS)
def plan_and_emit(pathway: str, shard: cohort.Shard, as_of: datetime, ledger_url: str, out: str, run: str,
                  pdf: bool, migration: Migration | None) -> emission.ShardReport:
    with _withheld(f"plan-and-emit-{shard.name}"):
        return emission.emit_shard(pathway, shard, as_of, ledger_url, Path(out), run, pdf=pdf, migration=migration)


@task(name="replan-patient", task_run_name="replan-patient-{patient}", retries=2, retry_delay_seconds=1,
      **_NO_RESULTS)
def replan_patient(pathway: str, patients: str, events: str, patient: str, as_of: datetime, ledger_url: str,
                   out: str, run: str, pdf: bool, migration: Migration | None) -> emission.ShardReport:
    with _withheld(f"replan-patient-{patient}"):
        return emission.emit_patient(pathway, patients, events, patient, as_of, ledger_url, Path(out), run,
                                     pdf=pdf, migration=migration)


@task(name="archive-pathway-version", task_run_name="archive-pathway-version", **_NO_RESULTS)
def archive_pathway(pathway: str, ledger_url: str) -> None:
    with _withheld("archive-pathway-version"):
        emission.archive_pathway(pathway, ledger_url)


@task(name="write-documents", task_run_name="write-documents", retries=2, retry_delay_seconds=1, **_NO_RESULTS)
def write_documents(pathway: str, ledger_url: str, out: str, as_of: datetime, run: str) -> dict[str, int | None]:
    with _withheld("write-documents"):
        return emission.write_documents(pathway, ledger_url, Path(out), as_of, run)


@task(name="write-patient-record", task_run_name="write-patient-record-{patient}", retries=2,
      retry_delay_seconds=1, **_NO_RESULTS)
def write_patient_record(pathway: str, ledger_url: str, out: str, patient: str, as_of: datetime) -> str:
    with _withheld(f"write-patient-record-{patient}"):
        return emission.write_patient_record(pathway, ledger_url, Path(out), patient, as_of)


@flow(name="carepath-sweep", flow_run_name=lambda: _run_name("sweep"), persist_result=False,
      task_runner=ThreadPoolTaskRunner(max_workers=1))
def sweep(pathway: str, patients: str, events: str, out: str, as_of: str | None = None,
          shard_size: int = DEFAULT_SHARD_SIZE, ledger_url: str | None = None, pdf: bool = True,
          migration: str | None = None) -> dict:
    """Plan every patient of a cohort in shards and emit what is new: tasks, letters,
    worklist, FHIR bundle. Safe to run any number of times. Patients keep the pathway
    version they enrolled under unless the `migration` file moves them."""
    return run_sweep(pathway, patients, events, out, as_of, shard_size, ledger_url, pdf, migration)


@dataclass(frozen=True)
class _Start:
    """What both flows settle first: the instant, the output folder, the ledger, the run."""

    when: datetime
    out: Path
    url: str
    run: str
    migration: Migration | None


def _start(pathway: str, out: str, as_of: str | None, ledger_url: str | None, migration: str | None) -> _Start:
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    start = _Start(_instant(as_of), out_dir, ledger_url or default_url(out_dir), str(flow_run.id),
                   read_migration(migration) if migration else None)
    check_ledger(start.url, out_dir)  # `carepath run` checked before Prefect; a deployment's run checks here
    archive_pathway(pathway, start.url)
    return start


@_withholding("sweep")
@_one_run_per_folder
def run_sweep(pathway: str, patients: str, events: str, out: str, as_of: str | None, shard_size: int,
              ledger_url: str | None, pdf: bool, migration: str | None) -> dict:
    """The sweep's body, inside a flow run (whichever task runner that flow has)."""
    logger = get_run_logger()
    start = _start(pathway, out, as_of, ledger_url, migration)
    when, out_dir, url, run, moving = start.when, start.out, start.url, start.run, start.migration
    if removed := emission.clear_leftovers(out_dir):
        logger.warning("removed %d half-written file(s) left by an interrupted run", removed)
    work = _work_dir(out_dir)
    part = partition_cohort(pathway, patients, events, str(work), shard_size)
    logger.info("%d patients, %d events in %d shard(s); %d input line(s) rejected",
                part.patients, part.events, len(part.shards), len(part.rejected))
    bar = console.current()
    if bar:
        bar.start(len(part.shards), part.patients)
    futures = [plan_and_emit.submit(pathway, s, when, url, out, run, pdf, moving) for s in part.shards]
    reports = []
    for future in as_completed(futures):
        report = future.result()
        reports.append(report)
        if bar:
            bar.advance(report.patients)
    if bar:
        bar.finish()
    reports.sort(key=lambda r: r.shard)
    documents = write_documents(pathway, url, out, when, run)
    rejected = list(part.rejected) + [r for rep in reports for r in rep.rejected]
    emission.write_rejected(out_dir, rejected)
    shutil.rmtree(work.parent, ignore_errors=True)
    summary = emission.RunSummary.of(emission.compiled_pathway(pathway), when, reports, len(rejected), documents)
    artifacts.publish(summary, out_dir)
    logger.info("recorded %d new, %d changed output(s); %d letter(s) written",
                summary.recorded.new, summary.recorded.changed, summary.letters_written)
    return summary.as_json()


@flow(name="carepath-patient", flow_run_name=lambda: _run_name("patient"), persist_result=False)
@_withholding("patient")
@_one_run_per_folder
def patient_replan(pathway: str, patients: str, events: str, out: str, patient: str, event_id: str | None = None,
                   as_of: str | None = None, ledger_url: str | None = None, pdf: bool = True,
                   migration: str | None = None) -> dict:
    """Re-plan one patient after a recorded event (the event trigger's flow), then write
    that patient's record (`patients/<xx>/<ref>.json`); the cohort-wide documents are left
    to the next sweep. `patient` is the pseudonymous ref the event carried."""
    logger = get_run_logger()
    start = _start(pathway, out, as_of, ledger_url, migration)
    when, out_dir, url, run, moving = start.when, start.out, start.url, start.run, start.migration
    report = replan_patient(pathway, patients, events, patient, when, url, out, run, pdf, moving)
    # One patient's record, not the cohort-wide documents: the next sweep rebuilds those.
    documents = {write_patient_record(pathway, url, out, patient, when): 1}
    summary = emission.RunSummary.of(emission.compiled_pathway(pathway), when, [report], len(report.rejected),
                                     documents)
    artifacts.publish(summary, out_dir, key_prefix="carepath-patient")
    logger.info("patient %s re-planned after event %s: %d new, %d changed output(s)",
                patient, event_id or "(none)", summary.recorded.new, summary.recorded.changed)
    return summary.as_json()
