"""Where the steps of a run execute, behind one Protocol.

The run sequence (carepath.orchestrator.sequence) hands each step (its declaration in
carepath.orchestrator.steps: name, idempotence, retries) to an executor: `call` for a
single step (archive, partition, write documents), `map` for the shards. In-process runs
everything here, in order; `ProcessPool` plans and emits shards in worker processes; the
Prefect executor (carepath.runtime.flows) makes each step a Prefect task. A step's
function and arguments are picklable and free of patient data (shards are files named by
path), so any executor can ship them.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from typing import Protocol, TypeVar

from carepath.orchestrator.steps import Step

T = TypeVar("T")
R = TypeVar("R")


class Executor(Protocol):
    def call(self, step: Step, fn: Callable[..., R], *args: object) -> R:
        """Run one step and return its result."""
        ...

    def map(self, step: Callable[[T], Step], fn: Callable[[T], R], items: Sequence[T]) -> Iterator[R]:
        """Run `fn` on every item (a step each, `step(item)`); results as they complete."""
        ...


class InProcess:
    """Every step here, one after another."""

    def call(self, step: Step, fn: Callable[..., R], *args: object) -> R:
        return fn(*args)

    def map(self, step: Callable[[T], Step], fn: Callable[[T], R], items: Sequence[T]) -> Iterator[R]:
        for item in items:
            yield fn(item)


class ProcessPool(InProcess):
    """Shards in `workers` processes; the single steps stay in this process. Workers are
    started by a fork server (not forked from this process, which may run threads: a
    Prefect flow's), once per run."""

    def __init__(self, workers: int) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self.workers = workers

    def map(self, step: Callable[[T], Step], fn: Callable[[T], R], items: Sequence[T]) -> Iterator[R]:
        if self.workers == 1 or len(items) < 2:
            yield from super().map(step, fn, items)
            return
        with self._pool(len(items)) as pool:
            futures = [pool.submit(fn, item) for item in items]
            for future in as_completed(futures):
                yield future.result()

    @contextmanager
    def started(self) -> Iterator[Callable[[Callable[[T], R], T], R]]:
        """The pool, as a function that runs one item in it and waits for its result: for
        a caller that runs its own threads per item (a Prefect task runner)."""
        with self._pool(self.workers) as pool:
            yield lambda fn, item: pool.submit(fn, item).result()

    def _pool(self, size: int) -> ProcessPoolExecutor:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["carepath.orchestrator.emission"])
        return ProcessPoolExecutor(max_workers=min(self.workers, size), mp_context=context)
