"""The run-time measurements of bench/run.py: `carepath run` against an already running
Prefect server (started here, on 127.0.0.1, with its own PREFECT_HOME).

- first run (letters as text and HTML; PDFs are measured separately): outputs recorded per
  second through the ledger, letters written per second;
- steady state: the same run again (nothing new to emit) ÷ `carepath plan` on the same input;
- peak RSS of the run;
- process-pool scale-out: steady-state sweep with `--workers 2` ÷ `--workers 1`;
- letters per second, HTML+text and PDF, rendered in process;
- the peer: the same sweep written by hand with one Prefect task per patient, on 1,000
  patients, both timed inside one warm process (flow call only), steady state.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PATHWAY = ROOT / "pathways" / "ketamine-iv.yaml"
AS_OF = "2026-03-05T17:00:00+00:00"
MIB = 1024 * 1024


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def prefect_server(home: Path):
    """A real `prefect server start`; yields its API URL and stops it (process group) after."""
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    port = _free_port()
    env = dict(os.environ, PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PREFECT_UI_ENABLED="false")
    log = open(home / "server.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}/api"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"bench: prefect server did not start; see {home / 'server.log'}")
            time.sleep(0.5)
        yield url
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


def _timed(cmd: list[str], env: dict[str, str]) -> tuple[float, float, int, str]:
    """Like `_run`, with the child's own CPU time and peak RSS from wait4."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out = proc.stdout.read()  # type: ignore[union-attr]
    err = proc.stderr.read()  # type: ignore[union-attr]
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"bench: {' '.join(cmd)} failed:\n{err.decode()[-2000:]}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss * 1024, out.decode()


def _run_cmd(cohort: Path, out: Path, *extra: str) -> list[str]:
    return [str(BIN / "carepath"), "run", str(PATHWAY), "--patients", str(cohort / "patients.jsonl"),
            "--events", str(cohort / "events.jsonl"), "--out", str(out), "--as-of", AS_OF, "--no-pdf", *extra]


def _count(summary: str, pattern: str) -> int:
    found = re.search(pattern, summary)
    return int(found.group(1).replace(",", "")) if found else 0


LETTERS = r"""
import json, sys, time
from datetime import datetime
from pathlib import Path
from carepath import api
from itertools import islice
from carepath.orchestrator.planning import plan_cohort, read_cohort
from carepath.sinks.letters import render_letter, write_letter
compiled = api.load_pathway(sys.argv[1])
cohort = read_cohort(compiled, Path(sys.argv[2]) / "patients.jsonl", Path(sys.argv[2]) / "events.jsonl")
plans = list(islice(plan_cohort(compiled, cohort, datetime.fromisoformat(sys.argv[4])), 300))
letters = [(p, l) for p in plans for l in p.letters]
out = Path(sys.argv[3]) / "letters"
result = {}
for name, pdf, n in (("html+text", False, 2000), ("pdf", True, 100)):
    start = time.perf_counter()
    for p, l in letters[:n]:
        write_letter(out / name, render_letter(compiled, cohort.patients[p.patient], p, l), pdf=pdf)
    result[name] = min(n, len(letters)) / (time.perf_counter() - start)
print(json.dumps(result))
"""

PEER = r"""
import json, sys, time
from datetime import datetime
from pathlib import Path
from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
from carepath import api
from carepath.orchestrator import emission
from carepath.orchestrator.planning import read_cohort
from carepath.engine import plan
from carepath.runtime.flows import sweep
from carepath.sinks.ledger import Ledger

pathway, data, work, as_of = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), datetime.fromisoformat(sys.argv[4])
compiled = api.load_pathway(pathway)
cohort = read_cohort(compiled, data / "patients.jsonl", data / "events.jsonl", group_size=100_000)
people = cohort.patients
_, events, _ = next(cohort.groups())
ledger = Ledger(f"sqlite:///{work / 'peer-ledger.sqlite'}")

# What a user would write by hand: one Prefect task per patient (same planning, same ledger).
@task(cache_policy=NO_CACHE, persist_result=False)
def plan_patient(ref: str) -> int:
    result = plan(compiled, people[ref], events[ref], as_of)
    recorded, _ = emission.emit_plans(compiled, [result], ledger, "peer")
    return recorded.new

@flow(persist_result=False)
def per_patient() -> int:
    return sum(f.result() for f in [plan_patient.submit(ref) for ref in sorted(people)])

# One design per process: a thousand task runs leave the client a backlog of events to
# send, which would otherwise slow whichever flow ran next in the same process.
timings = []
with temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
    for attempt in range(4):  # the first call emits; the later ones are the steady state timed
        start = time.perf_counter()
        if sys.argv[5] == "peer":
            per_patient()
        else:
            sweep(pathway=pathway, patients=str(data / "patients.jsonl"), events=str(data / "events.jsonl"),
                  out=str(work / "run-out"), as_of=as_of.isoformat(), pdf=False)
        if attempt:
            timings.append(time.perf_counter() - start)
print(json.dumps(timings))
"""


RUN_LARGE = 20_000


def _plan_series(ctx, data: Path, n: int):  # noqa: ANN001, ANN202
    """`carepath plan` on a cohort the plan measurements did not cover."""
    class Series:
        pass

    walls = []
    for _ in range(ctx.reps_large):
        wall, cpu, rss, _ = _timed([str(BIN / "carepath"), "plan", str(PATHWAY), "--patients",
                                    str(data / "patients.jsonl"), "--events", str(data / "events.jsonl"),
                                    "--as-of", AS_OF], dict(os.environ))
        walls.append(wall)
    series = Series()
    series.wall = statistics.median(walls)  # type: ignore[attr-defined]
    return series


def measure_all(ctx, Row, cohort) -> list:  # noqa: ANN001, N803 - bench/run.py's Context, Row and cohort()
    rows = []
    work = ctx.data / "runtime"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    with prefect_server(ctx.data / "prefect-home") as url:
        env = dict(os.environ, PREFECT_API_URL=url)
        # The first run of a cohort writes every letter it has ever planned (~17 per patient,
        # ~0.5 ms each as files): at 100k that is 1.7M letters and most of an hour, so the
        # run is measured on the small cohort and on RUN_LARGE patients.
        for n in (ctx.small, min(ctx.large, RUN_LARGE)):
            data = cohort(ctx, n)
            out = work / f"run-{n}"
            wall, cpu, rss, summary = _timed(_run_cmd(data, out), env)
            outputs = _count(summary, r"outputs: ([\d,]+) new")
            letters = _count(summary, r"letters: ([\d,]+) sent")
            rows.append(Row(f"`carepath run` first run, {n:,} patients (letters as text+HTML)",
                            f"{wall:.1f} s", detail=f"{outputs:,} outputs recorded = {outputs / wall:,.0f} outputs/s "
                            f"through the ledger; {letters:,} letters = {letters / wall:,.0f} letters/s; CPU {cpu:.1f} s; "
                            f"peak RSS {rss / MIB:,.0f} MiB"))
            steady = [_timed(_run_cmd(data, out), env) for _ in range(ctx.reps if n == ctx.small else ctx.reps_large)]
            s_wall = statistics.median(s[0] for s in steady)
            s_rss = max(s[2] for s in steady + [(wall, cpu, rss, summary)])
            plan = ctx.results.get(f"plan-{n}") or _plan_series(ctx, data, n)
            ratio = s_wall / plan.wall if plan else float("nan")  # type: ignore[attr-defined]
            rows.append(Row(f"`carepath run` steady state ÷ `carepath plan`, {n:,} patients", f"{ratio:.2f}×",
                            "≤ 1.5× plan", "PASS" if ratio <= 1.5 else "MISS",
                            f"run {s_wall:.2f} s (samples {', '.join(f'{s[0]:.2f}' for s in steady)}) vs plan "
                            f"{plan.wall if plan else float('nan'):.2f} s"))  # type: ignore[attr-defined]
            rows.append(Row(f"peak RSS, `carepath run`, {n:,} patients", f"{s_rss / MIB:,.0f} MiB",
                            "≤ 500 MiB", "PASS" if s_rss <= 500 * MIB else "MISS",
                            "the CLI process and its thread workers; the Prefect server runs apart"))
            if n != ctx.small:
                two = [_timed(_run_cmd(data, out, "--workers", "2"), env) for _ in range(ctx.reps_large)]
                t_wall = statistics.median(s[0] for s in two)
                speedup = s_wall / t_wall
                rows.append(Row(f"process-pool scale-out, `carepath run` steady state, {n:,} patients (2 workers ÷ 1)",
                                f"{speedup:.2f}×", "≥ 1.6×", "PASS" if speedup >= 1.6 else "MISS",
                                f"1 worker {s_wall:.2f} s, 2 workers {t_wall:.2f} s (samples "
                                f"{', '.join(f'{s[0]:.2f}' for s in two)}); the pool's start is included"))
        peer_data = cohort(ctx, 1000)
        timings = {}
        for design in ("peer", "sweep"):
            proc = subprocess.run([sys.executable, "-c", PEER, str(PATHWAY), str(peer_data), str(work), AS_OF, design],
                                  cwd=ROOT, env=env, capture_output=True, text=True)
            if proc.returncode != 0:
                raise SystemExit(f"bench: the {design} timing failed:\n{proc.stderr[-3000:]}")
            timings[design] = statistics.median(json.loads(proc.stdout.strip().splitlines()[-1]))
        peer, ours = timings["peer"], timings["sweep"]
        rows.append(Row("per-patient Prefect task peer ÷ `carepath run`, 1,000 patients, steady state",
                        f"{peer / ours:.1f}×", "report (expected ≥ 50×)", "PASS" if peer / ours >= 50 else "MISS",
                        f"peer {peer:.2f} s (one task per patient) vs sweep {ours:.2f} s (one task per shard); "
                        "each design in its own warm process, flow calls timed, heartbeats off"))
    proc = subprocess.run([sys.executable, "-c", LETTERS, str(PATHWAY), str(cohort(ctx, ctx.small)), str(work), AS_OF],
                          cwd=ROOT, capture_output=True, text=True, check=True)
    rates = json.loads(proc.stdout.strip().splitlines()[-1])
    rows.append(Row("letters rendered and written, in process", f"{rates['html+text']:,.0f} letters/s (HTML+text)",
                    detail=f"{rates['pdf']:,.1f} letters/s with PDF (WeasyPrint)"))
    shutil.rmtree(work, ignore_errors=True)
    return rows
