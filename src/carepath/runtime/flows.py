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
import functools
import inspect
import shutil
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.exceptions import MissingContextError
from prefect.futures import as_completed
from prefect.runtime import flow_run
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.utilities.annotations import quote

from carepath.orchestrator import sequence
from carepath.orchestrator.executor import ProcessPool
from carepath.orchestrator.pinning import read_migration
from carepath.orchestrator.sequence import DEFAULT_SHARD_SIZE, WORK_DIR
from carepath.orchestrator.spec import RunSpec, parse_as_of
from carepath.orchestrator.timers import horizon, timers_before
from carepath.outlock import output_lock
from carepath.runtime import artifacts
from carepath.runtime.notify import announce_facts
from carepath.sinks.ledger import check_ledger

__all__ = ["DEFAULT_SHARD_SIZE", "PrefectTasks", "patient_replan", "run_sweep", "sweep"]

T = TypeVar("T")
R = TypeVar("R")


def _run_name(kind: str) -> str:
    params = flow_run.parameters
    stem = Path(str(params.get("pathway", "pathway"))).stem
    as_of = params.get("as_of") or "now"
    subject = f"-{params['patient']}" if kind == "patient" else ""
    return f"{kind}-{stem}{subject}-as-of-{as_of}"


_NO_RESULTS = {"cache_policy": NO_CACHE, "persist_result": False}
# Steps that write outputs are retried: each is idempotent (the ledger records what was done).
_RETRIED = ("plan-and-emit", "replan-patient", "write-documents", "report-cohort")


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

    def __reduce__(self):  # pickled across processes without the original
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

    def _task(self, label: str):  # noqa: ANN202 - a Prefect task
        retried = label.startswith(_RETRIED)
        return _step.with_options(retries=2 if retried else 0,
                                  retry_delay_seconds=1 if retried else 0)

    def call(self, name: str, fn: Callable[..., R], *args: object) -> R:
        return self._task(name)(name, quote(fn), quote(args))

    def map(self, name: Callable[[T], str], fn: Callable[[T], R], items: Sequence[T]) -> Iterator[R]:
        if self.processes > 1 and len(items) > 1:
            with ProcessPool(self.processes).started() as in_pool:
                yield from self._submitted(name, in_pool, [(fn, item) for item in items])
        else:
            yield from self._submitted(name, fn, [(item,) for item in items])

    def _submitted(self, name: Callable, fn: Callable[..., R], calls: list[tuple]) -> Iterator[R]:
        futures = [self._task(name(args[-1])).submit(name(args[-1]), quote(fn), quote(args)) for args in calls]
        for future in as_completed(futures):
            yield future.result()


def _spec(pathway: str, out: str, as_of: str | None, ledger_url: str | None, pdf: bool,
          migration: str | None) -> RunSpec:
    spec = RunSpec.resolve(pathway, out, parse_as_of(as_of), str(flow_run.id), ledger_url=ledger_url, pdf=pdf,
                           migration=read_migration(migration) if migration else None)
    spec.out.mkdir(parents=True, exist_ok=True)
    check_ledger(spec.ledger_url, spec.out)  # `carepath run` checked before Prefect; a deployment's run checks here
    return spec


@flow(name="carepath-sweep", flow_run_name=lambda: _run_name("sweep"), persist_result=False,
      task_runner=ThreadPoolTaskRunner(max_workers=1))
def sweep(pathway: str, patients: str, events: str, out: str, as_of: str | None = None,
          shard_size: int = DEFAULT_SHARD_SIZE, ledger_url: str | None = None, pdf: bool = True,
          migration: str | None = None, full: bool = False) -> dict:
    """Ingest the events appended since the last run, re-plan the patients whose plan may
    have changed (new events, a deadline passed; every patient with `full`) in shards and
    emit what is new: tasks, letters, worklist, FHIR bundle. Safe to run any number of
    times. Patients keep the pathway version they enrolled under unless the `migration`
    file moves them."""
    return run_sweep(pathway, patients, events, out, as_of, shard_size, ledger_url, pdf, migration, full=full)


@_withholding("sweep")
@_one_run_per_folder
def run_sweep(pathway: str, patients: str, events: str, out: str, as_of: str | None, shard_size: int,
              ledger_url: str | None, pdf: bool, migration: str | None, processes: int = 1,
              full: bool = False) -> dict:
    """The sweep's body, inside a flow run (whichever task runner that flow has)."""
    from carepath.runtime import console

    logger = get_run_logger()
    spec = _spec(pathway, out, as_of, ledger_url, pdf, migration)
    tasks = PrefectTasks(processes)
    summary = sequence.sweep(spec, patients, events, tasks, shard_size=shard_size,
                             progress=console.current(), log=logger.info, full=full, notify=announce_facts)
    _set_timers(spec, summary, tasks)
    artifacts.publish(summary, spec.out)
    return summary.as_json()


def _set_timers(spec: RunSpec, summary: sequence.RunSummary, tasks: PrefectTasks) -> int:
    """A re-plan of its own, at that instant, for each patient whose plan changes before
    the sweep after next (carepath.orchestrator.timers; carepath.runtime.timers)."""
    from carepath.runtime import timers

    logger = get_run_logger()
    due = timers_before(summary.wakes, spec.as_of, horizon(spec.as_of, spec.compiled.clinic.zone))
    scheduled = tasks.call("schedule-timers", timers.schedule, spec.compiled.id, due, logger.warning) if due else 0
    if scheduled:
        logger.info("%d re-plan(s) scheduled before the next sweep", scheduled)
    return scheduled


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
    spec = _spec(pathway, out, as_of, ledger_url, pdf, migration)
    tasks = PrefectTasks()
    summary = sequence.replan_patient(spec, patients, events, patient, tasks, notify=announce_facts)
    _set_timers(spec, summary, tasks)
    artifacts.publish(summary, spec.out, key_prefix="carepath-patient")
    logger.info("patient %s re-planned after event %s: %d new, %d changed output(s)",
                patient, event_id or "(none)", summary.recorded.new, summary.recorded.changed)
    return summary.as_json()
