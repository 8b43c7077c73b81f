"""The sweep with its shards planned in parallel worker processes: each shard is still a
Prefect task (named, retried, recorded) and runs in a process pool of the orchestrator
(`carepath.orchestrator.executor.ProcessPool`); the flow's thread task runner runs as
many shard tasks at once as there are processes. Deploy it like `sweep`: entrypoint
`src/carepath/runtime/parallel.py:sweep_parallel`; CAREPATH_WORKERS in the worker's
environment sets the processes (default 2)."""

from __future__ import annotations

import os

from prefect import flow
from prefect.task_runners import ThreadPoolTaskRunner

from carepath.runtime.flows import DEFAULT_SHARD_SIZE, run_name_for, run_sweep

DEFAULT_WORKERS = int(os.environ.get("CAREPATH_WORKERS", "2"))


def pool_runner(workers: int) -> ThreadPoolTaskRunner:
    """One thread per process: a shard task's thread waits while its process plans."""
    return ThreadPoolTaskRunner(max_workers=workers)


@flow(name="carepath-sweep-parallel", flow_run_name=lambda: run_name_for("sweep"), persist_result=False,
      task_runner=pool_runner(DEFAULT_WORKERS))
def sweep_parallel(pathway: str, patients: str, events: str, out: str, as_of: str | None = None,
                   shard_size: int = DEFAULT_SHARD_SIZE, ledger_url: str | None = None, pdf: bool = True,
                   migration: str | None = None, workers: int = DEFAULT_WORKERS, full: bool = False,
                   export: bool = False) -> dict:
    """`sweep` with its shards planned in `workers` parallel processes (CAREPATH_WORKERS
    on the worker sets the default, 2)."""
    return run_sweep(pathway, patients, events, out, as_of, shard_size, ledger_url, pdf, migration, workers, full,
                     export)
