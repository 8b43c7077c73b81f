#!/usr/bin/env python3
"""What the cohort-wide documents of a sweep cost (`emission.write_documents`), in all and
per document, at two cohort sizes; optionally beside an older source tree, interleaved.

    .venv/bin/python bench/documents.py                              # 1,000 and 20,000 patients
    .venv/bin/python bench/documents.py --sizes 1000 5000 --reps 5
    .venv/bin/python bench/documents.py --ledger 20000=/tmp/out20k/ledger.sqlite   # skip that sweep
    git archive <commit> src | tar -x -C /tmp/before && \\
        .venv/bin/python bench/documents.py --before /tmp/before/src     # before ÷ after

For each size: a seeded cohort (`carepath synth --patients N --seed 1`, kept under
bench/data/) swept once in process as of 2026-03-05T17:00:00+00:00 (letters as text+HTML,
no PDF), or a copy of the ledger of such a sweep (`--ledger N=PATH`). Then, in a fresh
process per source tree and repetition (the trees alternate, so that other work on the
machine weighs on both alike), on a copy of that ledger:
- every document at a new as-of (all of them stale: what each sweep at a new hour does);
- each document alone (its file removed, the others current: only it is stale).
Medians, wall time. Prints the rows for BENCHMARKS.md ("Documents of a sweep").
"""

from __future__ import annotations

import argparse
import json
import os
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
# Each document's file whose absence makes it (and only it) stale.
DOCUMENTS = {"tasks.jsonl": "tasks.jsonl", "tasks.csv": "tasks.csv", "worklist.html": "worklist.html",
             "fhir/bundle.json + NDJSON": "fhir/manifest.json", "letters.jsonl": "letters.jsonl"}
FILES = ("tasks.jsonl", "tasks.csv", "worklist.html", "fhir/bundle.json", "fhir/Task.ndjson",
         "fhir/CommunicationRequest.ndjson", "fhir/CarePlan.ndjson", "letters.jsonl")


def cohort(n: int) -> Path:
    directory = ROOT / "bench" / "data" / f"cohort-{n}-seed{SEED}-clean"
    manifest = directory / "synth.json"
    if not manifest.exists() or json.loads(manifest.read_text()).get("patients") != n:
        subprocess.run([str(BIN / "carepath"), "synth", "--patients", str(n), "--seed", str(SEED),
                        "--out", str(directory)], check=True)
    return directory


def swept_ledger(n: int, given: Path | None) -> tuple[Path, str]:
    """The ledger of a finished sweep of the n-patient cohort, and where it came from."""
    if given is not None:
        return given, f"copy of {given}"
    ledger = ROOT / "bench" / "data" / f"documents-{n}" / "sweep" / "ledger.sqlite"
    if not ledger.exists():
        from carepath.orchestrator import sequence
        from carepath.orchestrator.spec import RunSpec

        data = cohort(n)
        shutil.rmtree(ledger.parent, ignore_errors=True)
        spec = RunSpec.resolve(PATHWAY, ledger.parent, AS_OF, "sweep", pdf=False)
        start = time.perf_counter()
        sequence.sweep(spec, data / "patients.jsonl", data / "events.jsonl")
        print(f"swept {n:,} patients in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    return ledger, "swept by this script"


def worker(ledger: Path, out: Path, minutes: int) -> dict[str, object]:
    """One repetition in this process: every document at a new as-of, then each alone."""
    import resource

    from carepath.orchestrator.emission import write_documents
    from carepath.orchestrator.spec import RunSpec
    from carepath.sinks.ledger import Ledger

    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    shutil.copyfile(ledger, out / "ledger.sqlite")
    spec = RunSpec.resolve(PATHWAY, out, AS_OF + timedelta(hours=3, minutes=minutes), f"bench-{minutes}", pdf=False)
    led = Ledger(spec.ledger_url)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    written = write_documents(spec, led)
    times = {"all": time.perf_counter() - start}
    rss_all = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    sizes = {name: (out / name).stat().st_size for name in FILES}
    digests = {name: _sha256(out / name) for name in FILES}
    for label, marker in DOCUMENTS.items():
        (out / marker).unlink()
        start = time.perf_counter()
        again = write_documents(spec, led)
        times[label] = time.perf_counter() - start
        assert sum(v is not None for v in again.values()) == 1, again
    led.close()
    shutil.rmtree(out, ignore_errors=True)
    return {"times": times, "sizes": sizes, "digests": digests, "outputs": written, "rss_before_kib": rss_before,
            "rss_all_kib": rss_all}


def _sha256(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def run_worker(tree: Path | None, ledger: Path, out: Path, minutes: int) -> dict[str, object]:
    env = dict(os.environ)
    if tree is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(tree), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    done = subprocess.run([sys.executable, __file__, "--worker", str(ledger), str(out), str(minutes)],
                          env=env, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str]) -> int:
    if argv[:1] == ["--worker"]:
        print(json.dumps(worker(Path(argv[1]), Path(argv[2]), int(argv[3]))))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 20000], metavar="N")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--ledger", action="append", default=[], metavar="N=PATH",
                        help="use a copy of this ledger (a finished sweep of the N-patient cohort) instead of sweeping")
    parser.add_argument("--before", type=Path, metavar="SRC",
                        help="an older tree's src/ folder, measured beside this one")
    args = parser.parse_args(argv)
    given = {int(n): Path(p) for n, _, p in (item.partition("=") for item in args.ledger)}
    trees: dict[str, Path | None] = {"after": None} if args.before is None else {"before": args.before, "after": None}
    load_start = os.getloadavg()
    started = time.time()
    results: dict[tuple[int, str], list[dict[str, object]]] = {}
    sources: dict[int, str] = {}
    for n in args.sizes:
        ledger, sources[n] = swept_ledger(n, given.get(n))
        for rep in range(args.reps):
            for label, tree in trees.items():
                out = ROOT / "bench" / "data" / f"documents-{n}" / label
                results.setdefault((n, label), []).append(run_worker(tree, ledger, out, rep + 1))
    load_end = os.getloadavg()
    elapsed = time.time() - started
    command = "  ".join(["`.venv/bin/python bench/documents.py", f"--sizes {' '.join(map(str, args.sizes))}",
                         f"--reps {args.reps}"] + [f"--ledger {x}" for x in args.ledger]
                        + ([f"--before {args.before}"] if args.before else [])) + "`"
    print(f"Reproduce: {command.replace('  ', ' ')}")
    print(f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(started))}, {elapsed:.0f} s; load average "
          f"{load_start[0]:.2f} at start, {load_end[0]:.2f} at end (2 cores); ledgers: "
          + "; ".join(f"{n:,}: {sources[n]}" for n in args.sizes))
    print()
    columns = ["all documents (a sweep at a new as-of)", *DOCUMENTS]
    print("| patients | source | " + " | ".join(columns) + " | peak RSS |")
    print("|---|---|" + "---|" * (len(columns) + 1))
    for n in args.sizes:
        for label in trees:
            runs = results[(n, label)]
            cells = []
            for key in ["all", *DOCUMENTS]:
                xs = [r["times"][key] for r in runs]
                cells.append(f"{statistics.median(xs):.2f} s ({', '.join(f'{x:.2f}' for x in xs)})")
            rss = max(r["rss_all_kib"] for r in runs) / 1024
            grew = max(r["rss_all_kib"] - r["rss_before_kib"] for r in runs) / 1024
            print(f"| {n:,} | {label} | " + " | ".join(cells) + f" | {rss:.0f} MiB (+{grew:.0f} while writing) |")
    if "before" in trees:
        print()
        for n in args.sizes:
            before = statistics.median(r["times"]["all"] for r in results[(n, "before")])
            after = statistics.median(r["times"]["all"] for r in results[(n, "after")])
            same = all(b["digests"] == a["digests"] for b, a in zip(results[(n, "before")], results[(n, "after")]))
            print(f"- {n:,} patients: all documents {before:.2f} s → {after:.2f} s ({before / after:.2f}× faster); "
                  f"every file byte-identical before and after (SHA-256, same as-of): {'yes' if same else 'NO'}")
    for n in args.sizes:
        sizes = results[(n, "after")][0]["sizes"]
        outputs = results[(n, "after")][0]["outputs"]
        print(f"- {n:,} patients: {outputs['fhir/bundle.json']:,} outputs; "
              + ", ".join(f"{name} {size / 2**20:,.0f} MiB" for name, size in sizes.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
