#!/usr/bin/env python3
"""What the documents of a one-patient (event-triggered) re-plan cost at two cohort sizes.

    .venv/bin/python bench/replan_documents.py                # 1,000 and 20,000 patients
    .venv/bin/python bench/replan_documents.py --sizes 1000 5000

For each size: a seeded cohort (`carepath synth --patients N --seed 1`, kept under
bench/data/), one sweep in process (no Prefect: the emission functions the flows call,
letters as text+HTML) into a scratch folder, then, for one patient, repeated at successive
as-of instants (so nothing is skipped as unchanged), the two sizes alternating:
- the patient's record (`emission.write_patient_record`);
- the worklist, which an event run writes too (`emission.write_documents`: from the
  stored worklist rows, SQL counts and the bodies of the rows it lists);
- the whole event run (`sequence.replan_patient`: emission, worklist, record, delivery).
Medians of wall and CPU time, in this process. Prints table rows for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PATHWAY = str(ROOT / "pathways" / "ketamine-iv.yaml")
AS_OF = datetime.fromisoformat("2026-03-05T17:00:00+00:00")
SEED = 1


def cohort(n: int) -> Path:
    directory = ROOT / "bench" / "data" / f"cohort-{n}-seed{SEED}-clean"
    manifest = directory / "synth.json"
    if not manifest.exists() or json.loads(manifest.read_text()).get("patients") != n:
        subprocess.run([str(BIN / "carepath"), "synth", "--patients", str(n), "--seed", str(SEED),
                        "--out", str(directory)], check=True)
    return directory


def timed(fn, reps: int) -> list[tuple[float, float]]:  # noqa: ANN001
    """(wall, CPU) seconds of each call."""
    samples = []
    for _ in range(reps):
        start, cpu = time.perf_counter(), time.process_time()
        fn()
        samples.append((time.perf_counter() - start, time.process_time() - cpu))
    return samples


class Cohort:
    """One cohort swept into a scratch folder, ready for one-patient re-plans."""

    def __init__(self, n: int) -> None:
        from carepath.orchestrator import sequence
        from carepath.orchestrator.spec import RunSpec
        from carepath.sinks.ledger import Ledger

        self.n, self.data = n, cohort(n)
        self.out = ROOT / "bench" / "data" / f"replan-out-{n}"
        shutil.rmtree(self.out, ignore_errors=True)
        self.out.mkdir(parents=True)
        self.spec = RunSpec.resolve(PATHWAY, self.out, AS_OF, "sweep", pdf=False)
        start = time.perf_counter()
        sequence.sweep(self.spec, self.data / "patients.jsonl", self.data / "events.jsonl")
        self.sweep = time.perf_counter() - start
        self.ledger = Ledger(self.spec.ledger_url)  # one connection for the timed steps, as one run holds
        self.ref = json.loads((self.data / "patients.jsonl").open().readline())["patient"]
        self.step = iter(range(1, 100_000))
        self.worklist_bytes = (self.out / "worklist.html").stat().st_size

    def _spec(self, run: str):  # noqa: ANN202
        from dataclasses import replace

        return replace(self.spec, as_of=AS_OF + timedelta(minutes=next(self.step)), run=run)

    def record(self) -> None:
        """What the event flow writes now."""
        from carepath.orchestrator.emission import write_patient_record

        write_patient_record(self._spec("evt"), self.ledger, self.ref)

    def worklist(self) -> None:
        """The worklist at a new as-of (nothing is skipped)."""
        from carepath.orchestrator.emission import write_documents

        write_documents(self._spec("evt"), self.ledger)

    def event_run(self) -> None:
        """The whole event-triggered re-plan (the orchestrator's one-patient sequence)."""
        from carepath.orchestrator import sequence

        sequence.replan_patient(self._spec("evt"), self.data / "patients.jsonl", self.data / "events.jsonl",
                                self.ref)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs=2, default=[1000, 20000], metavar="N")
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args(argv)
    small, large = (Cohort(n) for n in args.sizes)
    samples: dict[tuple[int, str], list[tuple[float, float]]] = {}
    # Side by side, alternating, so that other work on the machine weighs on both sizes alike.
    for what, reps in (("record", 20 * args.reps), ("event_run", args.reps), ("worklist", args.reps)):
        for _ in range(reps):
            for c in (small, large):
                samples.setdefault((c.n, what), []).extend(timed(getattr(c, what), 1))
    for c in (small, large):
        shutil.rmtree(c.out, ignore_errors=True)
    wall = {key: statistics.median(w for w, _ in xs) for key, xs in samples.items()}
    cpu = {key: statistics.median(c for _, c in xs) for key, xs in samples.items()}
    command = f".venv/bin/python bench/replan_documents.py --sizes {small.n} {large.n} --reps {args.reps}"
    rows = []
    for what, label in (("record", "its record (`patients/<xx>/<ref>.json`)"), ("worklist", "the worklist"),
                        ("event_run", "the whole event run")):
        for c in (small, large):
            rows.append(f"| one-patient re-plan: {label}, {c.n:,} patients | {wall[(c.n, what)] * 1000:.1f} ms "
                        f"(CPU {cpu[(c.n, what)] * 1000:.1f} ms) |  |  | median of {len(samples[(c.n, what)])}"
                        + (f"; page {c.worklist_bytes / 1024:.0f} KiB" if what == "worklist" else "") + " |")
    for what in ("worklist", "event_run"):
        ratio = cpu[(large.n, what)] / cpu[(small.n, what)]
        rows.append(f"| one-patient re-plan, {what.replace('_', ' ')}, {large.n:,} ÷ {small.n:,} patients (CPU) | "
                    f"{ratio:.2f}× | ≤ 1.5× | {'PASS' if ratio <= 1.5 else 'MISS'} | wall "
                    f"{wall[(large.n, what)] / wall[(small.n, what)]:.2f}× |")
    print(f"Reproduce: `{command}`")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
