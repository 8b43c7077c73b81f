#!/usr/bin/env python3
"""Scale-out of the sweep across processes: the orchestrator's sequence with the
in-process executor and with a process pool of 2, steady state (the ledger already holds
every plan, as on the hourly sweep), same cohort, same as-of, runs interleaved.

    .venv/bin/carepath synth --patients 20000 --seed 1 --out /tmp/c20k
    .venv/bin/python bench/scaleout.py /tmp/c20k [--repeat 3] [--shard-size 2000]

Prints one JSON line per run and a summary: the median of each executor, their ratio,
and the serial part (archive, partition, documents) measured inside the 1-worker runs.
`cpu_s` is this process's CPU (with reaped children): the whole sweep for 1 worker; for
2 it leaves out the pool's workers (children of the fork server, reaped when it exits).
No Prefect: what is measured is the orchestrator; a Prefect task adds ~10 ms per shard.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import tempfile
import time
from datetime import datetime
from pathlib import Path

from carepath.orchestrator import sequence
from carepath.orchestrator.executor import InProcess, ProcessPool
from carepath.orchestrator.spec import RunSpec

ROOT = Path(__file__).resolve().parents[1]
PATHWAY = ROOT / "pathways" / "ketamine-iv.yaml"
AS_OF = datetime.fromisoformat("2026-03-05T17:00:00+00:00")


class Timed:
    """An executor wrapper that times the single (serial) steps."""

    def __init__(self, inner: InProcess) -> None:
        self.inner, self.serial = inner, 0.0

    def call(self, name, fn, *args):  # noqa: ANN001, ANN201
        start = time.perf_counter()
        try:
            return self.inner.call(name, fn, *args)
        finally:
            self.serial += time.perf_counter() - start

    def map(self, name, fn, items):  # noqa: ANN001, ANN201
        return self.inner.map(name, fn, items)


def _cpu() -> float:
    """CPU seconds of this process and of its reaped children (the pool's workers)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("cohort", type=Path)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--shard-size", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="carepath-scaleout-") as tmp:
        out = Path(tmp) / "out"
        patients, events = args.cohort / "patients.jsonl", args.cohort / "events.jsonl"
        spec = RunSpec.resolve(PATHWAY, out, AS_OF, "first", pdf=False)
        start = time.perf_counter()
        sequence.sweep(spec, patients, events, shard_size=args.shard_size)  # the first run: every letter
        print(json.dumps({"first_run_s": round(time.perf_counter() - start, 2)}), flush=True)
        times: dict[int, list[float]] = {1: [], 2: []}
        serial: list[float] = []
        for i in range(args.repeat):
            for workers in (1, 2):
                executor = Timed(ProcessPool(workers))
                spec = RunSpec.resolve(PATHWAY, out, AS_OF, f"steady-{workers}-{i}", pdf=False)
                load = os.getloadavg()[0]
                cpu_before = _cpu()
                start = time.perf_counter()
                summary = sequence.sweep(spec, patients, events, executor, shard_size=args.shard_size)
                took = time.perf_counter() - start
                cpu = _cpu() - cpu_before
                times[workers].append(took)
                if workers == 1:
                    serial.append(executor.serial)
                print(json.dumps({"workers": workers, "seconds": round(took, 2), "serial_s": round(executor.serial, 2),
                                  "cpu_s": round(cpu, 2), "patients": summary.workload.patients,
                                  "changed": summary.recorded.new + summary.recorded.changed,
                                  "load_1min": round(load, 2)}), flush=True)
        one, two = statistics.median(times[1]), statistics.median(times[2])
        print(json.dumps({"median_1_worker_s": round(one, 2), "median_2_workers_s": round(two, 2),
                          "speedup": round(one / two, 2),
                          "serial_share_1_worker": round(statistics.median(serial) / one, 2), "cpus": os.cpu_count()}))


if __name__ == "__main__":
    main()
