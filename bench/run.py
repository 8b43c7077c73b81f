#!/usr/bin/env python3
"""Every carepath performance measurement in one run; writes BENCHMARKS.md at the repo root.

    .venv/bin/python bench/run.py            # full: 10k and 100k patients (about 15 min)
    .venv/bin/python bench/run.py --quick    # smoke test: 1k and 5k patients, fewer repetitions

Cohorts come from `carepath synth` (seeded, so every run measures the same bytes) and are
kept under bench/data/ (gitignored). Each measurement runs in its own process, several
times; the report gives medians (and every sample), wall and CPU time, and peak RSS
from `os.wait4` (the child's own rusage). Ratios are taken between measurements of the
same run, side by side, so they hold on a busy machine better than absolute numbers.
The load average is recorded: other work on the machine inflates wall times.

Adding a measurement: write a function `(ctx) -> list[Row]` and list it in MEASUREMENTS.
The run-time measurements (`carepath run`, Dask, the peer) live in bench/runtime.py.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PATHWAY = ROOT / "pathways" / "ketamine-iv.yaml"
AS_OF = "2026-03-05T17:00:00+00:00"
SEED = 1
BAD_LINES = 20
MIB = 1024 * 1024

# --- running things ------------------------------------------------------------------------


@dataclass
class Sample:
    wall: float
    cpu: float      # user + sys of the child
    rss: int        # peak resident set, bytes


def run_once(cmd: list[str], *, stdout: Path | None = None) -> Sample:
    out = open(stdout, "wb") if stdout else subprocess.DEVNULL  # noqa: SIM115
    try:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    finally:
        if stdout:
            out.close()  # type: ignore[union-attr]
    if proc.returncode != 0:
        raise SystemExit(f"bench: {' '.join(cmd)} failed (exit {proc.returncode}):\n{err[-2000:]}")
    return Sample(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss * 1024)


@dataclass
class Series:
    samples: list[Sample]

    @property
    def wall(self) -> float:
        return statistics.median(s.wall for s in self.samples)

    @property
    def cpu(self) -> float:
        return statistics.median(s.cpu for s in self.samples)

    @property
    def rss(self) -> int:
        return max(s.rss for s in self.samples)

    def walls(self) -> str:
        return ", ".join(f"{s.wall:.2f}" for s in self.samples)


def measure(cmd: list[str], reps: int, *, stdout: Path | None = None) -> Series:
    return Series([run_once(cmd, stdout=stdout) for _ in range(reps)])


# --- context and report rows ---------------------------------------------------------------


@dataclass
class Row:
    what: str
    value: str
    target: str = ""
    status: str = ""           # PASS | MISS | pending | "" (context only)
    detail: str = ""


@dataclass
class Context:
    small: int
    large: int
    reps: int
    reps_large: int
    data: Path
    cohorts: dict[int, Path] = field(default_factory=dict)
    results: dict[str, object] = field(default_factory=dict)   # shared between measurements
    profiles: list[tuple[str, str]] = field(default_factory=list)


def carepath(*args: str) -> list[str]:
    return [str(BIN / "carepath"), *args]


def cohort(ctx: Context, n: int) -> Path:
    """The seeded cohort of n patients, generated once and kept under bench/data/."""
    directory = ctx.data / f"cohort-{n}-seed{SEED}"
    manifest = directory / "synth.json"
    if not manifest.exists() or json.loads(manifest.read_text()).get("patients") != n:
        print(f"  generating {n} patients ...", flush=True)
        subprocess.run(carepath("synth", "--patients", str(n), "--seed", str(SEED), "--out", str(directory),
                                "--bad-lines", str(BAD_LINES)), cwd=ROOT, check=True)
    ctx.cohorts[n] = directory
    return directory


def _judge(ok: bool) -> str:
    return "PASS" if ok else "MISS"


# --- measurements ---------------------------------------------------------------------------


def startup(ctx: Context) -> list[Row]:
    bare = measure([sys.executable, "-c", "pass"], ctx.reps)
    validate = measure(carepath("validate", "-q", str(PATHWAY)), ctx.reps)
    ctx.results["bare"] = bare.wall
    return [
        Row("bare `python -c pass`", f"{bare.wall:.3f} s", detail=f"samples {bare.walls()}"),
        Row("`carepath validate` reference pathway", f"{validate.wall:.3f} s", "≤ 0.3 s wall",
            _judge(validate.wall <= 0.3),
            f"{validate.wall / bare.wall:.1f}× bare python; CPU {validate.cpu:.3f} s; samples {validate.walls()}"),
    ]


# The floor: read each line and decode it, nothing else (the bad lines are skipped).
DECODE = {
    name: (f"import {name},sys\nwith open(sys.argv[1],'rb') as f:\n    for line in f:\n"
           f"        try: {name}.loads(line)\n        except ValueError: pass")
    for name in ("json", "orjson")
}


def read_decode(ctx: Context) -> list[Row]:
    rows = []
    for n in (ctx.small, ctx.large):
        events = cohort(ctx, n) / "events.jsonl"
        reps = ctx.reps if n == ctx.small else ctx.reps_large
        for name, code in DECODE.items():
            series = measure([sys.executable, "-c", code, str(events)], reps)
            ctx.results[f"decode-{name}-{n}"] = series
            rows.append(Row(f"bare read + `{name}.loads` per line, {n:,} patients", f"{series.wall:.2f} s",
                            detail=f"CPU {series.cpu:.2f} s; samples {series.walls()}"))
    return rows


def plan_end_to_end(ctx: Context) -> list[Row]:
    rows = []
    out = ctx.data / "plan-output.json"
    for n in (ctx.small, ctx.large):
        d = cohort(ctx, n)
        reps = ctx.reps if n == ctx.small else ctx.reps_large
        series = measure(carepath("plan", str(PATHWAY), "--patients", str(d / "patients.jsonl"),
                                  "--events", str(d / "events.jsonl"), "--as-of", AS_OF), reps, stdout=out)
        ctx.results[f"plan-{n}"] = series
        rate = n / series.wall
        rows.append(Row(f"`carepath plan` end to end, {n:,} patients", f"{series.wall:.2f} s = {rate:,.0f} patients/s",
                        "≥ 10,000 patients/s" if n == ctx.large else "", _judge(rate >= 10_000) if n == ctx.large else "",
                        f"CPU {series.cpu:.2f} s ({n / series.cpu:,.0f} patients/CPU-s); output "
                        f"{out.stat().st_size / MIB:,.0f} MiB; samples {series.walls()}"))
        for name in DECODE:
            decode = ctx.results[f"decode-{name}-{n}"]
            ratio = series.wall / decode.wall  # type: ignore[attr-defined]
            target = n == ctx.large and name == "json"
            rows.append(Row(f"plan ÷ bare read+{name} decode, {n:,} patients", f"{ratio:.2f}×",
                            "≤ 3×" if target else "", _judge(ratio <= 3) if target else "",
                            f"CPU ratio {series.cpu / decode.cpu:.2f}×"))  # type: ignore[attr-defined]
        rows.append(Row(f"peak RSS, `carepath plan`, {n:,} patients", f"{series.rss / MIB:,.0f} MiB",
                        "≤ 500 MiB" if n == ctx.large else "", _judge(series.rss <= 500 * MIB) if n == ctx.large else ""))
    out.unlink(missing_ok=True)
    small, large = ctx.results[f"plan-{ctx.small}"], ctx.results[f"plan-{ctx.large}"]
    exponent = math.log(large.wall / small.wall) / math.log(ctx.large / ctx.small)  # type: ignore[attr-defined]
    cpu_exp = math.log(large.cpu / small.cpu) / math.log(ctx.large / ctx.small)  # type: ignore[attr-defined]
    rows.append(Row(f"plan cost growth {ctx.small:,} → {ctx.large:,} (time ∝ nᵏ)", f"k = {exponent:.2f}",
                    "linear (k ≈ 1)", _judge(exponent <= 1.1), f"by CPU time k = {cpu_exp:.2f}"))
    return rows


ENGINE_ONLY = r"""
import gc, json, sys, time
from datetime import datetime
from pathlib import Path
from carepath import api
from carepath.orchestrator.planning import read_cohort
from carepath.engine import plan
compiled = api.load_pathway(sys.argv[1])
d, work, as_of = Path(sys.argv[2]), Path(sys.argv[3]), datetime.fromisoformat(sys.argv[4])
cohort = read_cohort(compiled, d / "patients.jsonl", d / "events.jsonl", group_size=2000)
people = cohort.patients
wall = cpu = 0.0
patients = 0
for refs, events, _ in cohort.groups():     # reading is not the engine: untimed
    gc.disable()
    w, c = time.perf_counter(), time.process_time()
    for ref in refs:
        plan(compiled, people[ref], events[ref], as_of)
    wall += time.perf_counter() - w
    cpu += time.process_time() - c
    gc.enable()
    patients += len(refs)
print(json.dumps({"patients": patients, "wall": wall, "cpu": cpu}))
"""


def engine_only(ctx: Context) -> list[Row]:
    rows = []
    for n in (ctx.small, ctx.large):
        d = cohort(ctx, n)
        samples = []
        for _ in range(ctx.reps if n == ctx.small else ctx.reps_large):
            proc = subprocess.run([sys.executable, "-c", ENGINE_ONLY, str(PATHWAY), str(d), str(ctx.data / "work"), AS_OF],
                                  cwd=ROOT, check=True, capture_output=True, text=True)
            samples.append(json.loads(proc.stdout))
        wall = statistics.median(s["wall"] for s in samples)
        cpu = statistics.median(s["cpu"] for s in samples)
        ctx.results[f"engine-{n}"] = (wall, cpu)
        rate = n / wall
        rows.append(Row(f"engine alone, in process, one core, {n:,} patients", f"{rate:,.0f} patients/s",
                        "≥ 20,000 patients/s" if n == ctx.large else "",
                        _judge(rate >= 20_000) if n == ctx.large else "",
                        f"{wall:.2f} s wall, {n / cpu:,.0f} patients/CPU-s; "
                        "samples " + ", ".join(f"{s['wall']:.2f}" for s in samples)))
    (w1, c1), (w2, c2) = ctx.results[f"engine-{ctx.small}"], ctx.results[f"engine-{ctx.large}"]  # type: ignore[misc]
    k = math.log(w2 / w1) / math.log(ctx.large / ctx.small)
    rows.append(Row(f"engine cost growth {ctx.small:,} → {ctx.large:,}", f"k = {k:.2f}", "linear (k ≈ 1)",
                    _judge(k <= 1.1), f"by CPU time k = {math.log(c2 / c1) / math.log(ctx.large / ctx.small):.2f}"))
    if n / wall < 20_000:
        ctx.profiles.append((f"engine alone ({ctx.small:,} patients), cProfile, top 20 by own time", _profile(ctx)))
    return rows


PROFILE = r"""
import cProfile, io, pstats, sys
from datetime import datetime
from pathlib import Path
from carepath import api
from carepath.orchestrator.planning import read_cohort
from carepath.engine import plan
compiled = api.load_pathway(sys.argv[1])
d, work, as_of = Path(sys.argv[2]), Path(sys.argv[3]), datetime.fromisoformat(sys.argv[4])
cohort = read_cohort(compiled, d / "patients.jsonl", d / "events.jsonl", group_size=2000)
people = cohort.patients
groups = [group for group, _ in zip(cohort.groups(), range(2))]
def run():
    for refs, events, _ in groups:
        for ref in refs:
            plan(compiled, people[ref], events[ref], as_of)
profile = cProfile.Profile()
profile.runcall(run)
out = io.StringIO()
pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(20)
print(out.getvalue().split("\n", 4)[-1].replace(str(Path.cwd()) + "/", ""))
"""


def _profile(ctx: Context) -> str:
    proc = subprocess.run([sys.executable, "-c", PROFILE, str(PATHWAY), str(ctx.cohorts[ctx.small]),
                           str(ctx.data / "work"), AS_OF], cwd=ROOT, check=True, capture_output=True, text=True)
    return proc.stdout.strip()


def runtime(ctx: Context) -> list[Row]:
    """`carepath run` against a running Prefect server, the Dask scale-out and the
    one-task-per-patient peer (bench/runtime.py)."""
    sys.path.insert(0, str(Path(__file__).parent))
    import runtime as measured  # noqa: PLC0415 - beside this file, not a package

    return measured.measure_all(ctx, Row, cohort)


MEASUREMENTS = [startup, read_decode, plan_end_to_end, engine_only, runtime]

# --- the report ---------------------------------------------------------------------------------


def _machine() -> list[str]:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem = next(l for l in Path("/proc/meminfo").read_text().splitlines() if l.startswith("MemTotal"))
        memory = f"{int(mem.split()[1]) / MIB:.0f} GiB"
    except (OSError, StopIteration):
        memory = "unknown"
    versions = subprocess.run([sys.executable, "-c", (
        "import importlib.metadata as m\n"
        "print(', '.join(f'{p} {m.version(p)}' for p in ('carepath','orjson','Jinja2','pydantic','PyYAML')))")],
        capture_output=True, text=True).stdout.strip()
    return [f"- machine: {cpu}, {os.cpu_count()} cores, {memory} RAM; {platform.platform()}",
            f"- Python {platform.python_version()}; {versions}"]


def write_report(ctx: Context, rows: list[Row], command: str, started: float, load: tuple[float, float]) -> Path:
    lines = [
        "# carepath benchmarks",
        "",
        "Generated by `bench/run.py`; do not edit by hand (analysis lives in `bench/findings.md`, included below).",
        "",
        f"Reproduce: `{command}` (cohorts: `carepath synth --patients N --seed {SEED} --bad-lines {BAD_LINES}`, "
        f"plans as of {AS_OF}).",
        "",
        *_machine(),
        f"- run: {time.strftime('%Y-%m-%d %H:%M %Z', time.localtime(started))}, {time.time() - started:.0f} s; "
        f"load average {load[0]:.2f} at start, {load[1]:.2f} at end (2 cores: above ~1 other work was running, "
        "inflating wall times; CPU times are less affected)",
        f"- repetitions: {ctx.reps} (small), {ctx.reps_large} (large); medians shown; peak RSS is the largest sample",
        "",
        "| measurement | result | target | status | detail |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| {r.what} | {r.value} | {r.target} | {r.status} | {r.detail} |" for r in rows]
    for title, text in ctx.profiles:
        lines += ["", f"## Profile: {title}", "", "```", text, "```"]
    findings = ROOT / "bench" / "findings.md"
    if findings.exists():
        lines += ["", findings.read_text().rstrip()]
    report = ROOT / "BENCHMARKS.md"
    report.write_text("\n".join(lines) + "\n")
    return report


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1k and 5k patients, 2 repetitions: a smoke test")
    parser.add_argument("--reps", type=int, help="repetitions per measurement (default 5 small, 3 large)")
    parser.add_argument("--data", default=str(ROOT / "bench" / "data"), help="where cohorts are kept")
    args = parser.parse_args(argv)
    if args.quick:
        ctx = Context(1_000, 5_000, args.reps or 2, args.reps or 2, Path(args.data))
    else:
        ctx = Context(10_000, 100_000, args.reps or 5, args.reps or 3, Path(args.data))
    ctx.data.mkdir(parents=True, exist_ok=True)
    started, load0 = time.time(), os.getloadavg()[0]
    rows: list[Row] = []
    for measurement in MEASUREMENTS:
        print(f"bench: {measurement.__name__} ...", flush=True)
        rows += measurement(ctx)
    shutil.rmtree(ctx.data / "work", ignore_errors=True)
    command = ".venv/bin/python bench/run.py" + (" --quick" if args.quick else "")
    report = write_report(ctx, rows, command, started, (load0, os.getloadavg()[0]))
    for r in rows:
        print(f"  {r.status:7} {r.what}: {r.value}")
    print(f"bench: wrote {report.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
