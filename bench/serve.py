#!/usr/bin/env python3
"""`carepath serve` at two cohort sizes: the worklist page, and an action until the
re-planned page is back.

    .venv/bin/python bench/serve.py                      # 1,000 and 20,000 patients
    .venv/bin/python bench/serve.py --sizes 1000 5000 --reps 20

For each size: a seeded cohort (`carepath synth --patients N --seed 1`), copied beside
its ledger under bench/data/serve-N/ and swept once in process (no Prefect, letters as
text+HTML; kept for the next run), then the application in this process, through
Starlette's TestClient (no network), signed in as an administrator:
- the worklist page (`GET /`, every role, 50 rows a band), median of `--reps`;
- an action and the page that shows its outcome: `POST /tasks/<id>/complete` (the event
  checked and appended, the patient re-planned through the orchestrator's one-patient
  sequence, the board updated) then `GET /`, each on another open task, median.
Prints the table rows for BENCHMARKS.md; the targets are 20k ÷ 1k ≤ 1.5 for both.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import time
import warnings
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PATHWAY = ROOT / "pathways" / "ketamine-iv.yaml"
AS_OF = datetime.fromisoformat("2026-03-05T17:00:00+00:00")
SEED = 1
PASSWORD = "bench password 1234"


def prepared(n: int) -> Path:
    """bench/data/serve-N: the cohort and its swept ledger (made once)."""
    from carepath.orchestrator import sequence
    from carepath.orchestrator.spec import RunSpec

    folder = ROOT / "bench" / "data" / f"serve-{n}"
    source = PATHWAY.read_bytes()
    swept_under = folder / "pathway.yaml"
    if (folder / "ready").exists() and swept_under.exists() and swept_under.read_bytes() == source:
        return folder
    shutil.rmtree(folder / "out", ignore_errors=True)
    manifest = folder / "cohort" / "synth.json"
    if not manifest.exists() or json.loads(manifest.read_text()).get("patients") != n:
        shutil.rmtree(folder, ignore_errors=True)
        subprocess.run([str(BIN / "carepath"), "synth", "--patients", str(n), "--seed", str(SEED),
                        "--out", str(folder / "cohort")], check=True, stdout=subprocess.DEVNULL)
    (folder / "ready").unlink(missing_ok=True)
    swept_under.write_bytes(source)  # swept under these rules: another pathway sweeps again
    spec = RunSpec.resolve(PATHWAY, folder / "out", AS_OF, "sweep", pdf=False)
    start = time.perf_counter()
    sequence.sweep(spec, folder / "cohort" / "patients.jsonl", folder / "cohort" / "events.jsonl")
    (folder / "ready").write_text(f"swept in {time.perf_counter() - start:.1f} s\n")
    return folder


class Served:
    def __init__(self, folder: Path, work: Path) -> None:
        from carepath.serve.access import AccessStore
        from carepath.serve.app import create_app
        from carepath.serve.server import clock_from
        from carepath.serve.site import Site

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from starlette.testclient import TestClient

        shutil.rmtree(work, ignore_errors=True)
        shutil.copytree(folder, work)  # actions append to the copy's events file
        access = AccessStore(work / "out" / "access.sqlite")
        access.add_user("bench", "admin", PASSWORD, frozenset({"admin"}))
        start = time.perf_counter()
        self.site = Site([PATHWAY], f"sqlite:///{work / 'out' / 'ledger.sqlite'}", work / "cohort" / "patients.jsonl",
                         work / "cohort" / "events.jsonl", work / "out", clock_from(AS_OF), pdf=False)
        self.startup = time.perf_counter() - start
        self.client = TestClient(create_app(self.site, access), follow_redirects=False)

    def sign_in(self) -> None:
        """Just before measuring: a session idle past 15 minutes (a long sweep) is ended."""
        form = self.client.get("/login").text
        csrf = re.search(r'name="csrf" value="([^"]+)"', form).group(1)  # type: ignore[union-attr]
        assert self.client.post("/login", data={"username": "bench", "password": PASSWORD,
                                                "csrf": csrf}).status_code == 303
        page = self.client.get("/").text
        self.csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]

    def open_tasks(self) -> None:
        board = self.site.boards["ketamine-iv"]
        steps = board.compiled.steps
        self.tasks = [(e.id, e.patient) for e in board.entries.values()
                      if "task_completed" in steps[e.step].done_by]
        self.tasks.sort()

    def page(self) -> float:
        start = time.perf_counter()
        r = self.client.get("/")
        assert r.status_code == 200 and "band-" in r.text
        return time.perf_counter() - start

    def act(self) -> float:
        task, patient = self.tasks.pop(0)
        start = time.perf_counter()
        r = self.client.post(f"/tasks/{task}/complete", data={"csrf": self.csrf, "patient": patient, "back": "/"})
        page = self.client.get("/")
        elapsed = time.perf_counter() - start
        assert r.status_code == 303 and "marked done" in page.text, page.text[:2000]
        return elapsed


def _ms(samples: list[float]) -> str:
    return ", ".join(f"{s * 1000:.1f}" for s in samples)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs=2, default=[1000, 20000])
    parser.add_argument("--reps", type=int, default=15)
    args = parser.parse_args()
    small, large = args.sizes
    served = {n: Served(prepared(n), ROOT / "bench" / "data" / f"serve-{n}-run") for n in (small, large)}
    pages: dict[int, list[float]] = {small: [], large: []}
    acts: dict[int, list[float]] = {small: [], large: []}
    for n in (small, large):
        served[n].sign_in()
        served[n].open_tasks()
        served[n].page()  # warm: templates compiled
    for _ in range(args.reps):  # the sizes alternate, so a busy moment hits both
        for n in (small, large):
            pages[n].append(served[n].page())
    for _ in range(args.reps):
        for n in (small, large):
            acts[n].append(served[n].act())
    load = Path("/proc/loadavg").read_text().split()[0] if Path("/proc/loadavg").exists() else "?"
    rows = []
    for n in (small, large):
        s = served[n]
        rows.append(f"| serve: worklist page (`GET /`), {n:,} patients | {statistics.median(pages[n]) * 1000:.1f} ms "
                    f"| | | {len(pages[n])} samples (ms) {_ms(pages[n])}; start-up (board from the ledger) "
                    f"{s.startup:.2f} s; {len(s.site.boards['ketamine-iv'].entries):,} open tasks |")
    for n in (small, large):
        rows.append(f"| serve: action → re-planned page (`POST …/complete` + `GET /`), {n:,} patients "
                    f"| {statistics.median(acts[n]) * 1000:.1f} ms | | | samples (ms) {_ms(acts[n])} |")
    page_ratio = statistics.median(pages[large]) / statistics.median(pages[small])
    act_ratio = statistics.median(acts[large]) / statistics.median(acts[small])
    for what, ratio in (("worklist page", page_ratio), ("action → re-planned page", act_ratio)):
        rows.append(f"| **serve: {what}, {large:,} ÷ {small:,} patients** | **{ratio:.2f}×** | ≤ 1.5× "
                    f"| {'PASS' if ratio <= 1.5 else 'FAIL'} | load average {load} |")
    print("\n".join(rows))
    for s in served.values():
        s.site.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
