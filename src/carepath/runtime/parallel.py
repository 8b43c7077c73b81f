"""The sweep with its shards planned in parallel worker processes, through Prefect's own
Dask integration (prefect-dask) rather than a home-made pool. A separate module so that
`carepath run` without `--workers` does not import Dask. Deploy it like `sweep`:
entrypoint `src/carepath/runtime/parallel.py:sweep_parallel`; CAREPATH_DASK_WORKERS in
the worker's environment sets the processes (default 2)."""

from __future__ import annotations

import os

from prefect import flow
from prefect_dask import DaskTaskRunner

from carepath.runtime.flows import DEFAULT_SHARD_SIZE, _run_name, run_sweep


def dask_runner(workers: int) -> DaskTaskRunner:
    return DaskTaskRunner(cluster_kwargs={"n_workers": workers, "threads_per_worker": 1, "processes": True,
                                          "dashboard_address": None})


@flow(name="carepath-sweep-parallel", flow_run_name=lambda: _run_name("sweep"), persist_result=False,
      task_runner=dask_runner(int(os.environ.get("CAREPATH_DASK_WORKERS", "2"))))
def sweep_parallel(pathway: str, patients: str, events: str, out: str, as_of: str | None = None,
                   shard_size: int = DEFAULT_SHARD_SIZE, ledger_url: str | None = None, pdf: bool = True,
                   migration: str | None = None) -> dict:
    """`sweep` with its shards planned in parallel worker processes (Dask, through
    prefect-dask); CAREPATH_DASK_WORKERS on the worker sets how many (default 2)."""
    return run_sweep(pathway, patients, events, out, as_of, shard_size, ledger_url, pdf, migration)
