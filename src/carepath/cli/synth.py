"""`carepath synth`: a seeded synthetic cohort for the reference pathway (benchmarks, demos).

Kept out of `main.py` so that the generator is imported only when this command runs.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from pathlib import Path

from carepath.cli.arguments import instant


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return value


def run(args: argparse.Namespace) -> int:
    from carepath.synth import DEFAULT_AS_OF, DEFAULT_START, generate

    start = args.start or datetime.fromisoformat(DEFAULT_START)
    as_of = args.as_of or datetime.fromisoformat(DEFAULT_AS_OF)
    if as_of.timestamp() - start.timestamp() < 7 * 86400:
        print("carepath: --as-of must be at least a week after --start", file=sys.stderr)
        return 2
    stats = generate(Path(args.out), patients=args.patients, seed=args.seed, start=start, as_of=as_of,
                     bad_lines=args.bad_lines)
    print(f"{stats.patients} patient(s), {stats.events} event line(s) "
          f"({stats.duplicates} exact duplicate(s), {len(stats.bad_lines)} bad line(s), "
          f"{len(stats.gap_violations)} booking(s) inside the minimum gap) written to {args.out}", file=sys.stderr)
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("synth", help="write a seeded synthetic cohort for the reference pathway (no real people)",
                       description="Write DIR/patients.jsonl and DIR/events.jsonl (and DIR/synth.json: counts, mix "
                                   "and the lines a plan must reject) for pathways/ketamine-iv.yaml. Same "
                                   "arguments, same bytes. Streams: 100k patients need little memory.")
    p.add_argument("--patients", required=True, type=_positive, metavar="N")
    p.add_argument("--seed", required=True, type=int, metavar="S")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--start", type=instant, metavar="ISO", help="earliest enrolment (default 2025-10-20)")
    p.add_argument("--as-of", type=instant, metavar="ISO",
                   help="histories end here (default 2026-03-05T17:00:00+00:00)")
    p.add_argument("--bad-lines", type=_count, default=0, metavar="K",
                   help="insert K event lines a reader must reject, spread through the file")
    p.set_defaults(func=run)
