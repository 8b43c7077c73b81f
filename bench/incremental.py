#!/usr/bin/env python3
"""Incremental sweeps, one-patient re-plans and the process pool, measured in one run.

    .venv/bin/carepath synth --patients 1000 --seed 1 --out /tmp/c1k
    .venv/bin/carepath synth --patients 20000 --seed 1 --out /tmp/c20k
    .venv/bin/python bench/incremental.py --small /tmp/c1k --large /tmp/c20k [--repeat 3]

Each cohort is copied (its events file grows during the bench), swept once as of
2026-03-05T17:00Z (untimed: the first run reads every line and writes every due letter),
then, rep by rep, an hour later each time:

- **steady state, 1 % changed**: PHQ-9 answers are appended for 1 % of the patients, then
  the default sweep (ingest the new lines, re-plan who the wake index names);
- **full re-plan**: the same kind of change for another 1 %, then `full=True` (every
  patient re-planned) with the export (`--export`: every whole-cohort document) half an
  hour later — what a sweep wrote before sweeps and exports were split. The incremental
  sweep writes the worklist, `rejected.jsonl` and its change feed only; each row gives the
  documents' share, the export's time and the bytes the sweep wrote (files created or
  rewritten, and the ledger's growth);
- **one-patient re-plan** (an event-triggered run: ingest, that patient's events from the
  store, emission, the patient's record) after one appended event, at both sizes;
- **2 workers ÷ 1**: full re-plans with a process pool of 2 and in process, interleaved,
  all at one as-of (after an untimed one), so that the documents are not rewritten.

No Prefect (a Prefect task adds ~10 ms per step). Wall and CPU seconds (this process's:
the sweeps run in process) are both reported; `--no-pool` skips the pool rows. Prints JSON
lines and the summary rows.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

from carepath.orchestrator import sequence
from carepath.orchestrator.executor import InProcess, ProcessPool
from carepath.orchestrator.spec import RunSpec

ROOT = Path(__file__).resolve().parents[1]
PATHWAY = ROOT / "pathways" / "ketamine-iv.yaml"
AS_OF = datetime.fromisoformat("2026-03-05T17:00:00+00:00")


class Timed:
    """An executor that also times its named single steps (the documents among them)."""

    def __init__(self, inner: InProcess | ProcessPool) -> None:
        self.inner, self.steps = inner, {}

    def call(self, name, fn, *args):  # noqa: ANN001, ANN201
        start = time.perf_counter()
        try:
            return self.inner.call(name, fn, *args)
        finally:
            self.steps[str(name)] = self.steps.get(str(name), 0.0) + time.perf_counter() - start

    def map(self, name, fn, items):  # noqa: ANN001, ANN201
        return self.inner.map(name, fn, items)


class Cohort:
    def __init__(self, source: Path, tmp: Path, label: str) -> None:
        self.dir = tmp / label
        self.dir.mkdir()
        shutil.copy(source / "patients.jsonl", self.dir / "patients.jsonl")
        shutil.copy(source / "events.jsonl", self.dir / "events.jsonl")
        self.refs = sorted(json.loads(line)["patient"] for line in (self.dir / "patients.jsonl").open())
        self.out = self.dir / "out"
        self.serial = 0
        self.rng = random.Random(1)

    @property
    def patients(self) -> Path:
        return self.dir / "patients.jsonl"

    @property
    def events(self) -> Path:
        return self.dir / "events.jsonl"

    def append(self, refs: list[str], at: datetime) -> None:
        """A PHQ-9 for each of `refs` (new ids), recorded at `at`."""
        lines = []
        for ref in refs:
            self.serial += 1
            items = [self.rng.randint(0, 2) for _ in range(8)] + [0]
            lines.append(json.dumps({"id": f"bench-{self.serial}", "patient": ref, "type": "assessment_recorded",
                                     "at": at.isoformat(), "data": {"instrument": "phq9", "items": items,
                                                                    "total": sum(items)}}))
        with self.events.open("a") as handle:
            handle.write("".join(line + "\n" for line in lines))

    def sweep(self, as_of: datetime, run: str, *, full: bool = False, workers: int = 1,
              export: bool = False) -> dict[str, object]:
        executor = Timed(ProcessPool(workers) if workers > 1 else InProcess())
        spec = RunSpec.resolve(PATHWAY, self.out, as_of, run, pdf=False)
        before = _sizes(self.out)
        start, cpu = time.perf_counter(), time.process_time()
        summary = sequence.sweep(spec, self.patients, self.events, executor, full=full, export=export)
        took, cpu = time.perf_counter() - start, time.process_time() - cpu
        after = _sizes(self.out)
        # What the sweep wrote: every file it created or rewrote, and the ledger's growth.
        written = sum(size for name, (size, mtime) in after.items()
                      if "ledger" not in name and before.get(name, (0, 0))[1] != mtime)
        written += sum(after.get(n, (0, 0))[0] - before.get(n, (0, 0))[0] for n in after if "ledger" in n)
        documents = sum(executor.steps.get(step, 0.0) for step in
                        ("write-worklist", "write-changes", "export-documents", "write-documents"))
        return {"seconds": round(took, 3), "cpu_s": round(cpu, 3), "documents_s": round(documents, 3),
                "export_s": round(executor.steps.get("export-documents", 0.0), 3), "bytes_written": written,
                "replanned": summary.replanned, "patients": summary.workload.patients,
                "changed": summary.recorded.new + summary.recorded.changed, "load_1min": round(os.getloadavg()[0], 2)}

    def replan_one(self, as_of: datetime, run: str) -> tuple[float, float]:
        """Wall and CPU seconds of one event-triggered re-plan (worklist included)."""
        ref = self.rng.choice(self.refs)
        self.append([ref], as_of - timedelta(minutes=1))
        spec = RunSpec.resolve(PATHWAY, self.out, as_of, run, pdf=False)
        start, cpu = time.perf_counter(), time.process_time()
        sequence.replan_patient(spec, self.patients, self.events, ref)
        return time.perf_counter() - start, time.process_time() - cpu


def _sizes(folder: Path) -> dict[str, tuple[int, int]]:
    found = {}
    for path in folder.rglob("*"):
        if path.is_file():
            st = path.stat()
            found[str(path.relative_to(folder))] = (st.st_size, st.st_mtime_ns)
    return found


def _median(values: list[float]) -> float:
    return statistics.median(values)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--small", type=Path, required=True)
    parser.add_argument("--large", type=Path, required=True)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--one-patient-samples", type=int, default=20)
    parser.add_argument("--no-pool", action="store_true", help="skip the 2-workers ÷ 1 rows")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="carepath-incremental-") as tmp:
        small, large = Cohort(args.small, Path(tmp), "small"), Cohort(args.large, Path(tmp), "large")
        for cohort in (small, large):
            start = time.perf_counter()
            cohort.sweep(AS_OF, "first")
            print(json.dumps({"first_run_s": round(time.perf_counter() - start, 1), "patients": len(cohort.refs)}),
                  flush=True)
        rows: dict[str, list[dict[str, object]]] = {"incremental": [], "full": [], "pool-1": [], "pool-2": []}
        moment = AS_OF
        for i in range(args.repeat):
            for mode in ("incremental", "full"):
                moment += timedelta(minutes=30)
                large.append(large.rng.sample(large.refs, len(large.refs) // 100), moment - timedelta(minutes=5))
                # The full re-plan writes what a full re-plan wrote before sweeps and exports were
                # split: every patient re-planned and every whole-cohort document (--export).
                row = large.sweep(moment, f"{mode}-{i}", full=mode == "full", export=mode == "full")
                row["changed_patients"] = len(large.refs) // 100
                rows[mode].append(row)
                print(json.dumps({"mode": mode, **row}), flush=True)
        # The pool: full re-plans at one as-of, after an untimed one at it, so the documents
        # (serial, rewritten only when their content or as-of changed) are left alone and
        # what is compared is the parallel part (the rows above show the documents' cost).
        moment += timedelta(minutes=30)
        if not args.no_pool:
            large.sweep(moment, "pool-warm-up", full=True)
        for i in range(0 if args.no_pool else args.repeat):
            for workers in (1, 2):
                row = large.sweep(moment, f"pool-{workers}-{i}", full=True, workers=workers)
                rows[f"pool-{workers}"].append(row)
                print(json.dumps({"mode": f"full, {workers} worker(s)", **row}), flush=True)
        one: dict[str, list[float]] = {"small": [], "large": []}
        one_cpu: dict[str, list[float]] = {"small": [], "large": []}
        for i in range(args.one_patient_samples):
            moment += timedelta(minutes=1)
            for label, cohort in (("small", small), ("large", large)):
                wall, cpu = cohort.replan_one(moment, f"one-{i}")
                one[label].append(wall)
                one_cpu[label].append(cpu)
        print(json.dumps({"one_patient_s": {k: [round(v, 4) for v in vs] for k, vs in one.items()},
                          "one_patient_cpu_s": {k: [round(v, 4) for v in vs] for k, vs in one_cpu.items()}}),
              flush=True)

        def med(mode: str, field: str = "seconds") -> float:
            return _median([float(r[field]) for r in rows[mode]])  # type: ignore[arg-type]

        print(json.dumps({
            "incremental_s": med("incremental"), "incremental_documents_s": med("incremental", "documents_s"),
            "full_s": med("full"), "full_documents_s": med("full", "documents_s"),
            "incremental_over_full": round(med("incremental") / med("full"), 3),
            "incremental_cpu_s": med("incremental", "cpu_s"), "full_cpu_s": med("full", "cpu_s"),
            "incremental_over_full_cpu": round(med("incremental", "cpu_s") / med("full", "cpu_s"), 3),
            "export_s": med("full", "export_s"),
            "incremental_bytes_per_changed_patient": round(med("incremental", "bytes_written")
                                                           / max(1, len(large.refs) // 100)),
            "without_documents": round((med("incremental") - med("incremental", "documents_s"))
                                       / (med("full") - med("full", "documents_s")), 3),
            "one_patient_small_s": round(_median(one["small"]), 4), "one_patient_large_s": round(_median(one["large"]), 4),
            "one_patient_large_over_small": round(_median(one["large"]) / _median(one["small"]), 2),
            "one_patient_cpu_large_over_small": round(_median(one_cpu["large"]) / _median(one_cpu["small"]), 2),
            **({} if args.no_pool else {"pool_1_s": med("pool-1"), "pool_2_s": med("pool-2"),
                                        "pool_speedup": round(med("pool-1") / med("pool-2"), 2)}),
            "cpus": os.cpu_count(),
        }))


if __name__ == "__main__":
    main()
