"""How late a page arrives after the instant its fact became true, on a real Prefect
server: `prefect server start`, a process worker, the on-event deployment, the on-call
automations and a webhook block pointing at a local receiver (the set-up of
tests/test_integration_on_call.py, which this runs).

Measured: a fact that becomes true with no new event (an item-9 answer dated ahead, met
by the timer its triggered run scheduled; and, once the engine escalates, the escalation
to the on-call prescriber at its due instant) → the webhook's receipt. Target ≤ 60 s.

    .venv/bin/python bench/escalation_lateness.py [--runs N]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def one_run() -> dict[str, float]:
    env = {**os.environ, "PREFECT_HOME": str(ROOT / ".prefect-home")}
    out = subprocess.run([sys.executable, "-m", "pytest", "tests/test_integration_on_call.py", "-q", "-s",
                          "-p", "no:cacheprovider"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    if out.returncode != 0:
        sys.exit(f"the integration test failed:\n{out.stdout[-4000:]}\n{out.stderr[-2000:]}")
    found: dict[str, float] = {}
    for m in re.finditer(r"^[.sxF]*(emit|timer|escalation)[^\n]*?paged ([0-9.]+) s after", out.stdout, re.M):
        found[m.group(1)] = float(m.group(2))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    samples: dict[str, list[float]] = {}
    for _ in range(args.runs):
        for kind, late in one_run().items():
            samples.setdefault(kind, []).append(late)
    for kind, values in sorted(samples.items()):
        print(f"{kind}: median {statistics.median(values):.1f} s late, max {max(values):.1f} s "
              f"(target ≤ 60 s; samples {', '.join(f'{v:.1f}' for v in values)})")


if __name__ == "__main__":
    main()
