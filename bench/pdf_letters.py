"""PDF letters per second, before and after, in one run (a focused part of the bench).

    .venv/bin/python bench/pdf_letters.py [--before N] [--after N]

Renders the demo cohort's letters (examples/demo, as of 2026-03-05T17:00Z) to PDF:
- before: what every letter cost until now: a fresh WeasyPrint font configuration per
  letter, fonts subset by fontTools (HarfBuzz's subsetter switched off), one process;
- after, one core: carepath.sinks.pdf in one process (HarfBuzz subsetting when installed,
  one font configuration, the clinic's page size);
- after, all cores: the same batch shared out among worker processes (render_pdfs).
Each variant runs in its own fresh process, so the first letter's set-up counts.
Prints one line per variant and a Markdown table row for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
AS_OF = "2026-03-05T17:00:00+00:00"


def documents(n: int) -> tuple[list[str], str]:
    from datetime import datetime

    from carepath import api
    from carepath.orchestrator.planning import plan_cohort, read_cohort
    from carepath.sinks.letters import render_letter

    compiled = api.load_pathway(ROOT / "pathways" / "ketamine-iv.yaml")
    cohort = read_cohort(compiled, ROOT / "examples" / "demo" / "patients.jsonl",
                         ROOT / "examples" / "demo" / "events.jsonl")
    docs = []
    for plan in plan_cohort(compiled, cohort, datetime.fromisoformat(AS_OF)):
        for letter in plan.letters:
            docs.append(render_letter(compiled, cohort.patients[plan.patient], plan, letter).html)
            if len(docs) == n:
                return docs, compiled.clinic.paper
    return docs, compiled.clinic.paper


def measure(variant: str, n: int) -> dict[str, float]:
    docs, paper = documents(n)
    start = time.perf_counter()
    if variant == "before":
        import weasyprint.pdf.fonts as pdf_fonts

        pdf_fonts.harfbuzz_subset = None  # what a machine without libharfbuzz-subset0 did
        from weasyprint import HTML

        out = [HTML(string=d).write_pdf() for d in docs]
    else:
        os.environ["CAREPATH_PDF_WORKERS"] = "1" if variant == "after-1" else os.environ.get("CAREPATH_PDF_WORKERS", "")
        from carepath.sinks.pdf import render_pdfs

        out = render_pdfs(docs, paper)
    wall = time.perf_counter() - start
    assert all(p.startswith(b"%PDF-") for p in out)
    return {"letters": len(out), "seconds": wall, "per_s": len(out) / wall}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=int, default=40, help="letters for the old path (slow)")
    parser.add_argument("--after", type=int, default=300, help="letters for the new paths")
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:
        n = args.before if args.variant == "before" else args.after
        print(json.dumps(measure(args.variant, n)))
        return 0
    from carepath.sinks.pdf import harfbuzz_subsetting, workers

    results = {}
    for variant in ("before", "after-1", "after"):
        proc = subprocess.run([sys.executable, __file__, "--variant", variant, "--before", str(args.before),
                               "--after", str(args.after)], capture_output=True, text=True, check=True)
        results[variant] = json.loads(proc.stdout.strip().splitlines()[-1])
        r = results[variant]
        print(f"{variant:8} {r['letters']:4d} letters in {r['seconds']:6.1f} s = {r['per_s']:6.1f} letters/s")
    cores = workers()
    before, one, every = (results[v]["per_s"] for v in ("before", "after-1", "after"))
    print(f"HarfBuzz subsetting: {'yes' if harfbuzz_subsetting() else 'NO (install libharfbuzz-subset0)'}; "
          f"{cores} core(s)")
    print(f"| PDF letters (bench/pdf_letters.py) | before {before:.1f}/s | after {one:.1f}/s per core, "
          f"{every:.1f}/s on {cores} cores ({every / before:.1f}× before) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
