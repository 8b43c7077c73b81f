"""The deployable flows. Module-level on purpose: `prefect deploy` reads this file's AST
and a deployment imports its entrypoint by name (a flow built in a factory cannot run
from a deployment). The pathway is a parameter, so one flow serves every pathway.

Parameters, run names, task names, logs and artifacts carry file paths, shard names,
pseudonymous patient refs and counts — never a patient's name: names live only in the patients file and the letters.
Task results are not persisted and not cached: the outbox ledger, not Prefect, records
what was emitted, so a retried task or a re-run flow emits nothing twice.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import inspect
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.exceptions import MissingContextError
from prefect.futures import as_completed
from prefect.runtime import flow_run
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.utilities.annotations import quote

from carepath import failures
from carepath.loading import load_pathway
from carepath.orchestrator import sequence, steps
from carepath.orchestrator.executor import ProcessPool
from carepath.orchestrator.pinning import read_migration
from carepath.orchestrator.preflight import letter_channel_problem
from carepath.orchestrator.sequence import DEFAULT_SHARD_SIZE, WORK_DIR
from carepath.orchestrator.spec import RunSpec, parse_as_of
from carepath.orchestrator.steps import Step
from carepath.orchestrator.timers import horizon, timers_before
from carepath.outlock import output_lock
from carepath.runtime import artifacts
from carepath.runtime.notify import announce_facts
from carepath.runtime.smtp_block import smtp_for_run
from carepath.settings import SettingMissing, check_environment, check_parameters
from carepath.sinks.ledger import check_ledger
from carepath.sinks.storage import DOCUMENTS_ENV, check_documents_url, claim_location, storage_for

__all__ = ["DEFAULT_SHARD_SIZE", "PrefectTasks", "export", "patient_replan", "run_sweep", "sweep"]

T = TypeVar("T")
R = TypeVar("R")


def run_name_for(kind: str) -> str:
    params = flow_run.parameters
    stem = Path(str(params.get("pathway", "pathway"))).stem
    as_of = params.get("as_of") or "now"
    subject = f"-{params['patient']}" if kind == "patient" else ""
    return f"{kind}-{stem}{subject}-as-of-{as_of}"


def _wait_past(instant: datetime) -> None:
    """A worker starts a scheduled run up to its prefetch (10 s by default) before the
    scheduled time, but a timer's re-plan must see its instant passed: the plan changes
    only after its wake, and the next timer for an unchanged wake would be the same
    (idempotent) run, so an early start would lose the change until the next sweep."""
    wait = (instant - datetime.now(UTC)).total_seconds() + 1
    if wait > 0:
        time.sleep(min(wait, 120))


_NO_RESULTS = {"cache_policy": NO_CACHE, "persist_result": False}


class Withheld(Exception):
    """What Prefect records of a failure inside carepath: its code from the failure
    catalogue (`carepath.failures`), its type and where it happened, and its message
    only when the code is safe (the message cannot quote patient data: an SMTP host, a
    missing file, a reused version, a setting's name). Any other message can quote patient
    data (a template error quotes the value it could not use) and Prefect keeps state
    messages, logs and tracebacks in its database: it stays in this process (`original`)
    for the console that started the run."""

    def __init__(self, kind: str, where: str, original: BaseException | None = None, *,
                 text: str | None = None, code: str = "CP-UNEXPECTED") -> None:
        if text is None:
            text = (f"[{code}] {kind} in {where} (its message is withheld from Prefect: it may quote patient data; "
                    "see the failure codes in docs/operations.md)")
        super().__init__(text)
        self.kind, self.where, self.original, self.text, self.code = kind, where, original, text, code

    def __reduce__(self):  # pickled across processes without the original
        return (_rebuild_withheld, (self.kind, self.where, self.text, self.code))


def _rebuild_withheld(kind: str, where: str, text: str, code: str) -> Withheld:
    return Withheld(kind, where, text=text, code=code)


@contextmanager
def _withheld(where: str) -> Iterator[None]:
    try:
        yield
    except Withheld:
        raise
    except Exception as exc:
        if getattr(type(exc), "phi_free", False):
            raise  # its message names files, versions and digests only: Prefect and the operator see why
        # `from None`: the original must not ride along as the traceback's context.
        raise Withheld(type(exc).__name__, where, exc, text=failures.explain(exc, where),
                       code=failures.classify(exc).code) from None


OUT_SETTING = "the output folder (`carepath run --out`, a deployment's `out` parameter)"
_ENV_SETTINGS = ("CAREPATH_DOCUMENTS_URL", "CAREPATH_LETTER_CHANNEL", "CAREPATH_SMTP_BLOCK", "CAREPATH_SMTP_HOST",
                  "CAREPATH_SMTP_FROM")


def _settings_checked(fn):
    """The run's first step: every parameter and setting it needs is there (a missing
    Prefect variable reads as empty, an unset `{{ $VAR }}` stays a template); refused
    with the setting's name before anything is locked, read or written."""
    signature = inspect.signature(fn)

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        import os

        given = signature.bind(*args, **kwargs).arguments
        check_parameters({name: given.get(name) for name in ("pathway", "patients", "events", "out")},
                         files=("pathway", "patients", "events"))
        check_environment(os.environ, _ENV_SETTINGS)
        return fn(*args, **kwargs)
    return wrapper


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


@task(name="carepath-step", task_run_name="{label}", **_NO_RESULTS)
def _step(label: str, fn: Callable[..., R], args: tuple) -> R:
    with _withheld(label):
        return fn(*args)


class PrefectTasks:
    """The orchestrator's Executor as Prefect tasks, one per step and per shard, named
    after them, on the flow's task runner. Arguments are quoted: Prefect need not walk
    the compiled pathway looking for futures. With `processes` > 1 each shard's task
    runs its shard in a pool of that many worker processes (the flow's task runner must
    run as many tasks at once: `carepath.runtime.parallel`)."""

    def __init__(self, processes: int = 1) -> None:
        self.processes = processes

    def _task(self, step: Step):  # noqa: ANN202 - a Prefect task
        """The step's task with the retries its declaration allows (carepath.orchestrator.steps)."""
        return _step.with_options(retries=step.retries, retry_delay_seconds=step.retry_delay_seconds)

    def call(self, step: Step, fn: Callable[..., R], *args: object) -> R:
        return self._task(step)(step.name, quote(fn), quote(args))

    def map(self, step: Callable[[T], Step], fn: Callable[[T], R], items: Sequence[T]) -> Iterator[R]:
        if self.processes > 1 and len(items) > 1:
            with ProcessPool(self.processes).started() as in_pool:
                yield from self._submitted(step, in_pool, [(fn, item) for item in items])
        else:
            yield from self._submitted(step, fn, [(item,) for item in items])

    def _submitted(self, step: Callable, fn: Callable[..., R], calls: list[tuple]) -> Iterator[R]:
        futures = [self._task(step(args[-1])).submit(step(args[-1]).name, quote(fn), quote(args)) for args in calls]
        for future in as_completed(futures):
            yield future.result()


def _spec(pathway: str, out: str, as_of: str | None, ledger_url: str | None, pdf: bool,
          migration: str | None) -> RunSpec:
    spec = RunSpec.resolve(pathway, out, parse_as_of(as_of), str(flow_run.id), ledger_url=ledger_url, pdf=pdf,
                           migration=read_migration(migration) if migration else None)
    check_documents_url(spec.documents_url)  # a worker's CAREPATH_DOCUMENTS_URL, checked like `carepath run` does
    # Two pathways' documents in one folder or shared location would overwrite each other.
    spec.out.mkdir(parents=True, exist_ok=True)
    claim_location(storage_for(spec.out), spec.compiled.id, OUT_SETTING)
    if spec.documents_url:
        claim_location(storage_for(spec.documents), spec.compiled.id, DOCUMENTS_ENV)
    if (problem := letter_channel_problem(spec.compiled)) is not None:
        raise SettingMissing(problem)
    # The email channel's settings (perhaps a Prefect block) read here, not in the sinks.
    spec = dataclasses.replace(spec, smtp=smtp_for_run(spec.compiled))
    # `carepath run` checked the ledger before Prefect; here again, knowing the pathway (a shared ledger).
    check_ledger(spec.ledger_url, spec.out, spec.compiled.id)
    return spec


@flow(name="carepath-sweep", flow_run_name=lambda: run_name_for("sweep"), persist_result=False,
      task_runner=ThreadPoolTaskRunner(max_workers=1))
def sweep(pathway: str, patients: str, events: str, out: str, as_of: str | None = None,
          shard_size: int = DEFAULT_SHARD_SIZE, ledger_url: str | None = None, pdf: bool = True,
          migration: str | None = None, full: bool = False, export: bool = False) -> dict:
    """Ingest the events appended since the last run, re-plan the patients whose plan may
    have changed (new events, a deadline passed; every patient with `full`) in shards and
    emit what is new: the worklist, the change feed, the letters due (delivered after the
    worklist); with `export`, then the whole-cohort documents. Safe to run any number of
    times. Patients keep the pathway version they enrolled under unless the `migration`
    file moves them."""
    return run_sweep(pathway, patients, events, out, as_of, shard_size, ledger_url, pdf, migration, full=full,
                     export=export)


@_withholding("sweep")
@_settings_checked
@_one_run_per_folder
def run_sweep(pathway: str, patients: str, events: str, out: str, as_of: str | None, shard_size: int,
              ledger_url: str | None, pdf: bool, migration: str | None, processes: int = 1,
              full: bool = False, export: bool = False) -> dict:
    """The sweep's body, inside a flow run (whichever task runner that flow has)."""
    from carepath.runtime import console

    logger = get_run_logger()
    spec = _spec(pathway, out, as_of, ledger_url, pdf, migration)
    tasks = PrefectTasks(processes)
    try:
        summary = sequence.sweep(spec, patients, events, tasks, shard_size=shard_size,
                                 progress=console.current(), log=logger.info, full=full, export=export,
                                 refuse_unused_input=True, notify=announce_facts)
    except sequence.LettersUndelivered as undelivered:
        # Everything but those letters was written: the artifacts show it, then the run fails.
        artifacts.publish(undelivered.summary, spec.out)
        _set_timers(spec, undelivered.summary, tasks)
        raise
    _set_timers(spec, summary, tasks)
    artifacts.publish(summary, spec.out)
    return summary.as_json()


def _set_timers(spec: RunSpec, summary: sequence.RunSummary, tasks: PrefectTasks) -> int:
    """A re-plan of its own, at that instant, for each patient whose plan changes before
    the sweep after next (carepath.orchestrator.timers; carepath.runtime.timers)."""
    from carepath.runtime import timers

    logger = get_run_logger()
    due = timers_before(summary.wakes, spec.as_of, horizon(spec.as_of, spec.compiled.clinic.zone))
    scheduled = tasks.call(steps.SCHEDULE_TIMERS, timers.schedule, spec.compiled.id, due, logger.warning) if due else 0
    if scheduled:
        logger.info("%d re-plan(s) scheduled before the next sweep", scheduled)
    return scheduled


@flow(name="carepath-patient", flow_run_name=lambda: run_name_for("patient"), persist_result=False)
@_withholding("patient")
@_settings_checked
@_one_run_per_folder
def patient_replan(pathway: str, patients: str, events: str, out: str, patient: str, event_id: str | None = None,
                   as_of: str | None = None, ledger_url: str | None = None, pdf: bool = True,
                   migration: str | None = None, not_before: str | None = None) -> dict:
    """Re-plan one patient after a recorded event (the event trigger's flow), then write
    that patient's record (`patients/<xx>/<ref>.json`); the cohort-wide documents are left
    to the next sweep. `patient` is the pseudonymous ref the event carried. `not_before`:
    a timer's instant (the plan's wake), which this run must plan after."""
    logger = get_run_logger()
    if not_before is not None and as_of is None:
        _wait_past(datetime.fromisoformat(not_before))
    spec = _spec(pathway, out, as_of, ledger_url, pdf, migration)
    tasks = PrefectTasks()
    try:
        summary = sequence.replan_patient(spec, patients, events, patient, tasks, notify=announce_facts)
    except sequence.LettersUndelivered as undelivered:
        artifacts.publish(undelivered.summary, spec.out, key_prefix="carepath-patient")
        _set_timers(spec, undelivered.summary, tasks)
        raise
    _set_timers(spec, summary, tasks)
    artifacts.publish(summary, spec.out, key_prefix="carepath-patient")
    logger.info("patient %s re-planned after event %s: %d new, %d changed output(s)",
                patient, event_id or "(none)", summary.recorded.new, summary.recorded.changed)
    return summary.as_json()


@flow(name="carepath-export", flow_run_name=lambda: run_name_for("export"), persist_result=False)
@_withholding("export")
def export(pathway: str, out: str, ledger_url: str | None = None, as_of: str | None = None,
           bundle: bool = False) -> dict:
    """The whole-cohort documents from the ledger, without re-planning (the export
    deployment, nightly): tasks.jsonl, tasks.csv, letters.jsonl, FHIR NDJSON in parts with
    fhir/manifest.json; fhir/bundle.json with `bundle`. `out` holds the ledger unless
    `ledger_url` names it; `as_of` defaults to the pathway's last sweep."""
    from carepath.orchestrator.export import export_documents
    from carepath.sinks.ledger import Ledger, default_url

    check_parameters({"pathway": pathway, "out": out}, files=("pathway",))  # first: "" would be the cwd
    compiled = load_pathway(pathway)
    ledger = Ledger(ledger_url or default_url(Path(out).resolve()))
    try:
        written = export_documents(compiled, ledger, Path(out).resolve(), parse_as_of(as_of) if as_of else None,
                                   bundle=bundle)
    finally:
        ledger.close()
    get_run_logger().info("exported %s", ", ".join(f"{name}: {n}" for name, n in sorted(written.items())))
    return written
