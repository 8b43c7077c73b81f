"""The worklist's size and render time as the cohort grows.

    .venv/bin/python bench/worklist.py [N ...]      (default: 1000 50000)

For each N: a seeded cohort from `carepath synth --patients N --seed 1` (cached under
bench/data/), planned in process as of 2026-03-05T17:00:00+00:00, then the worklist written
from the plan's outputs, as `carepath run` hands them over. Prints one markdown row per
cohort: page size, the time to rank every output into the page's bands (one pass, linear
in the outputs) and to render the page (bounded by the listed rows), the plan excluded.
Peak RSS is the process's, with every output held in memory (a run streams them).
"""

from __future__ import annotations

import gc
import resource
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
AS_OF = datetime.fromisoformat("2026-03-05T17:00:00+00:00")


def cohort(n: int) -> Path:
    directory = ROOT / "bench" / "data" / f"worklist-{n}"
    if not (directory / "events.jsonl").exists():
        subprocess.run([str(ROOT / ".venv" / "bin" / "carepath"), "synth", "--patients", str(n), "--seed", "1",
                        "--out", str(directory)], check=True)
    return directory


def measure(n: int) -> str:
    from carepath.api import load_cohort
    from carepath.orchestrator.planning import plan_cohort
    from carepath.sinks.base import outputs_of
    from carepath.sinks.worklist import Worklist

    directory = cohort(n)
    compiled, planned = load_cohort(ROOT / "pathways" / "ketamine-iv.yaml", directory / "patients.jsonl",
                                    directory / "events.jsonl")
    outputs = [o for plan in plan_cohort(compiled, planned, AS_OF) for o in outputs_of(plan, compiled.version)]
    tasks = sum(1 for o in outputs if o.kind == "task" and o.body["status"] in ("open", "overdue"))
    # A run streams the outputs from the ledger; here they are all in memory at once, and the
    # collector's full passes over them would be charged to the sink: set them aside.
    gc.collect()
    gc.freeze()
    from carepath.sinks.worklist_page import template

    with tempfile.TemporaryDirectory() as out:
        sink = Worklist(Path(out), compiled, AS_OF)
        start = time.perf_counter()
        content, _ = sink.page(iter(outputs))
        ranked = time.perf_counter()
        template().render(page=content)
        rendered = time.perf_counter()
        sink.write(iter(outputs))
        size = sink.path.stat().st_size
        page = sink.path.read_text()
    rows = page.count('<tr class="task') - page.count('data-group="closed"')
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return (f"| {n:,} | {len(outputs):,} | {tasks:,} | {rows:,} | {size / 1024:,.0f} KiB | {ranked - start:.2f} s | "
            f"{rendered - ranked:.2f} s | {rss:,.0f} MiB |")


def main(argv: list[str]) -> int:
    sizes = [int(a) for a in argv] or [1000, 50000]
    print("| patients | outputs read | open or overdue tasks | rows listed | worklist.html | rank (one pass over "
          "the outputs) | render the page | peak RSS (planning included) |")
    print("|---|---|---|---|---|---|---|---|")
    for n in sizes:
        # One process per cohort, so that peak RSS is that cohort's.
        row = subprocess.run([sys.executable, __file__, "--one", str(n)], check=True, capture_output=True,
                             text=True, cwd=ROOT).stdout.strip()
        print(row, flush=True)
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--one"]:
        print(measure(int(sys.argv[2])))
        sys.exit(0)
    sys.exit(main(sys.argv[1:]))
