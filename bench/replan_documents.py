#!/usr/bin/env python3
"""What the documents of a one-patient (event-triggered) re-plan cost at two cohort sizes.

    .venv/bin/python bench/replan_documents.py                # 1,000 and 20,000 patients
    .venv/bin/python bench/replan_documents.py --sizes 1000 5000

For each size: a seeded cohort (`carepath synth --patients N --seed 1`, kept under
bench/data/), one sweep in process (no Prefect: the emission functions the flows call,
letters as text+HTML) into a scratch folder, then, for one patient, repeated at successive
as-of instants (so nothing is skipped as unchanged), the two sizes alternating:
- the patient's record, what the event flow now writes (`emission.write_patient_record`);
- the cohort-wide documents, what it wrote before (`emission.write_documents`);
- the whole event run as it is now (`emission.emit_patient` + the record), for context.
Medians, wall time, in this process. Prints table rows for BENCHMARKS.md.
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


def timed(fn, reps: int) -> list[float]:  # noqa: ANN001
    samples = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
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
        self.sizes = {p.name: p.stat().st_size for p in (self.out / "tasks.jsonl", self.out / "fhir" / "bundle.json")}

    def _spec(self, run: str):  # noqa: ANN202
        from dataclasses import replace

        return replace(self.spec, as_of=AS_OF + timedelta(minutes=next(self.step)), run=run)

    def record(self) -> None:
        """What the event flow writes now."""
        from carepath.orchestrator.emission import write_patient_record

        write_patient_record(self._spec("evt"), self.ledger, self.ref)

    def documents(self) -> None:
        """What it wrote before: every cohort-wide document (at a new as-of: nothing is skipped)."""
        from carepath.orchestrator.emission import write_documents

        write_documents(self._spec("evt"), self.ledger)

    def event_run(self) -> None:
        """The whole event-triggered re-plan as it is now (the orchestrator's one-patient
        sequence): emission (it still streams the events file for the patient's lines) and
        the record."""
        from carepath.orchestrator import sequence

        sequence.replan_patient(self._spec("evt"), self.data / "patients.jsonl", self.data / "events.jsonl",
                                self.ref)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs=2, default=[1000, 20000], metavar="N")
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args(argv)
    small, large = (Cohort(n) for n in args.sizes)
    samples: dict[tuple[int, str], list[float]] = {}
    # Side by side, alternating, so that other work on the machine weighs on both sizes alike.
    for what, reps in (("record", 20 * args.reps), ("event_run", args.reps), ("documents", args.reps)):
        for _ in range(reps):
            for c in (small, large):
                samples.setdefault((c.n, what), []).extend(timed(getattr(c, what), 1))
    for c in (small, large):
        shutil.rmtree(c.out, ignore_errors=True)
    med = {key: statistics.median(xs) for key, xs in samples.items()}
    command = f".venv/bin/python bench/replan_documents.py --sizes {small.n} {large.n} --reps {args.reps}"
    fmt = lambda xs: ", ".join(f"{x * 1000:.1f}" for x in xs)  # noqa: E731
    rows = []
    for c in (small, large):
        rows.append(f"| one-patient re-plan: its record (`patients/<xx>/<ref>.json`), {c.n:,} patients | "
                    f"{med[(c.n, 'record')] * 1000:.1f} ms |  |  | {len(samples[(c.n, 'record')])} samples, "
                    f"min {min(samples[(c.n, 'record')]) * 1000:.1f} ms, max {max(samples[(c.n, 'record')]) * 1000:.1f} ms |")
    for c in (small, large):
        rows.append(f"| one-patient re-plan: cohort-wide documents rewritten (what it did before), {c.n:,} patients | "
                    f"{med[(c.n, 'documents')]:.2f} s |  |  | samples (ms) {fmt(samples[(c.n, 'documents')])}; "
                    f"tasks.jsonl {c.sizes['tasks.jsonl'] / 2**20:.0f} MiB, "
                    f"bundle.json {c.sizes['bundle.json'] / 2**20:.0f} MiB; sweep to set up {c.sweep:.0f} s |")
    for c in (small, large):
        rows.append(f"| one-patient re-plan: whole event run now (emission + record), {c.n:,} patients | "
                    f"{med[(c.n, 'event_run')]:.2f} s |  |  | samples (ms) {fmt(samples[(c.n, 'event_run')])} |")
    ratio = med[(large.n, "record")] / med[(small.n, "record")]
    before = med[(large.n, "documents")] / med[(small.n, "documents")]
    whole = med[(large.n, "event_run")] / med[(small.n, "event_run")]
    rows.append(f"| one-patient re-plan's document cost, {large.n:,} ÷ {small.n:,} patients | {ratio:.2f}× | ≤ 1.5× | "
                f"{'PASS' if ratio <= 1.5 else 'MISS'} | the record; rewriting the cohort-wide documents (before) grew "
                f"{before:.1f}×; the whole event run still grows {whole:.1f}× (its emission streams the events file) |")
    print(f"Reproduce: `{command}`")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
