#!/usr/bin/env python3
"""PDF letters per CPU-second, with and without HarfBuzz's font subsetter, with the
cached letter fonts (the default) and without them (every letter's fonts subset anew).

    .venv/bin/python bench/pdf_fonts.py [--letters 40]

Two kinds of letter: the bench letter (one long paragraph, a heading, bullets and bold;
the same one every time) and the demo cohort's letters (examples/demo as of
2026-03-05T17:00Z, the reference pathway's templates, as bench/pdf_letters.py renders them).
Each mode runs in a fresh process. "without HarfBuzz" hides WeasyPrint's binding to
libharfbuzz-subset (what a machine without Debian's libharfbuzz-subset0 has); "no font
cache" leaves the letter font to the system's (DejaVu Sans via fontconfig), as before the
cache. CPU time of the rendering process, so other work on the machine counts little.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

ONE = r"""
import json, sys, time
harfbuzz, cache, n = sys.argv[1] == "1", sys.argv[2] == "1", int(sys.argv[3])
import warnings; warnings.simplefilter("ignore")
if not harfbuzz:
    import weasyprint.pdf.fonts, weasyprint.text.ffi
    weasyprint.pdf.fonts.harfbuzz_subset = weasyprint.text.ffi.harfbuzz_subset = None
from carepath.sinks import pdf, markup
sys.path.insert(0, "bench")
from pdf_letters import documents
if not cache:
    pdf._state["faces"] = []
html = markup.to_html("# Your next session\n\nDear Ada,\n\n" + "We look forward to seeing you. " * 40
                      + "\n\n- Bring your medicines.\n- Eat lightly.\n\n**With care**, the team.")
demo, paper = documents(n)
pdf.html_to_pdf(html)
start = time.process_time()
for _ in range(n):
    data = pdf.html_to_pdf(html)
took = time.process_time() - start
start = time.process_time()
sizes = [len(pdf.html_to_pdf(d, paper)) for d in demo]
took_demo = time.process_time() - start
print(json.dumps({"harfbuzz": harfbuzz, "font_cache": cache, "letters_per_cpu_s": round(n / took, 1),
                  "pdf_bytes": len(data), "demo_letters_per_cpu_s": round(len(demo) / took_demo, 1),
                  "demo_pdf_bytes": sum(sizes) // len(sizes)}))
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--letters", type=int, default=40)
    args = parser.parse_args()
    for harfbuzz in ("1", "0"):
        for cache in ("1", "0"):
            out = subprocess.run([sys.executable, "-c", ONE, harfbuzz, cache, str(args.letters)], cwd=ROOT,
                                 capture_output=True, text=True, check=True)
            print(json.loads(out.stdout.strip().splitlines()[-1]), flush=True)


if __name__ == "__main__":
    main()
