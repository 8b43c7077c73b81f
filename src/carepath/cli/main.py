"""`carepath` command line. Each command is a few lines over `carepath.api`.

Exit codes: 0 success; 1 the input has errors (diagnostics printed); 2 the command line
itself is wrong; 70 an internal error (a bug: please report it with the message).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from datetime import datetime

from carepath import __version__

EXIT_OK, EXIT_INVALID, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 70


def _validate(args: argparse.Namespace) -> int:
    from carepath import api
    from carepath.diagnostics import has_errors

    results = api.validate(args.paths)
    diagnostics = [d for r in results for d in r.diagnostics]
    if args.format == "json":
        print(json.dumps([d.as_json() for d in diagnostics], indent=2))
    else:
        for d in diagnostics:
            print(d.render())
        if not args.quiet:
            bad = sum(1 for r in results if has_errors(r.diagnostics))
            print(f"{len(results)} file(s) checked, {bad} with errors", file=sys.stderr)
    return EXIT_INVALID if has_errors(diagnostics) else EXIT_OK


def _as_of(text: str) -> datetime:
    """An aware instant; naive or malformed values are a usage error (exit 2)."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO date-time, e.g. 2026-03-05T17:00:00+00:00") from None
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no UTC offset; add one, e.g. {text}+00:00 or {text}-05:00")
    return value


def _load_cohort(args: argparse.Namespace):
    """The pathway and cohort named on the command line, or None after printing why not."""
    from carepath import api

    try:
        return api.load_cohort(args.pathway, args.patients, args.events)
    except api.InvalidInput as exc:
        for d in exc.diagnostics:
            print(d.render(), file=sys.stderr)
        return None


def _plan(args: argparse.Namespace) -> int:
    from carepath.planning import write_plan_json, write_plan_text

    loaded = _load_cohort(args)
    if loaded is None:
        return EXIT_INVALID
    compiled, cohort = loaded
    writer = write_plan_text if args.format == "text" else write_plan_json
    writer(sys.stdout, compiled, args.as_of, cohort)
    return EXIT_OK


def _letters(args: argparse.Namespace) -> int:
    from pathlib import Path

    from carepath.planning import plan_cohort
    from carepath.sinks.letters import LetterError, render_all

    loaded = _load_cohort(args)
    if loaded is None:
        return EXIT_INVALID
    compiled, cohort = loaded
    try:
        count = render_all(compiled, cohort.patients, plan_cohort(compiled, cohort, args.as_of), Path(args.out),
                           pdf=not args.no_pdf)
    except LetterError as exc:
        print(f"carepath: {exc}; run 'carepath validate' on the pathway", file=sys.stderr)
        return EXIT_INVALID
    formats = "text and HTML" if args.no_pdf else "text, HTML and PDF"
    print(f"{count} letter(s) written to {args.out} ({formats}, mode 0600); "
          f"{len(cohort.rejected)} input line(s) rejected", file=sys.stderr)
    return EXIT_OK


def _test(args: argparse.Namespace) -> int:
    from carepath import api
    from carepath.testing.coverage import coverage, scenario_files
    from carepath.testing.scenarios import run_scenario

    files = scenario_files(args.paths)
    if not files:
        print("no *.scenario.yaml files found", file=sys.stderr)
        return EXIT_INVALID
    outcomes = [run_scenario(f) for f in files]
    for outcome in outcomes:
        print(f"{'PASS' if outcome.passed else 'FAIL'}  {outcome.path}")
        for failure in outcome.failures:
            print("      " + failure.replace("\n", "\n      "))
    failed = sum(1 for o in outcomes if not o.passed)
    by_pathway: dict = {}
    for outcome in outcomes:
        if outcome.pathway_file is not None:
            by_pathway.setdefault(outcome.pathway_file, []).append(outcome)
    short = False
    for pathway_file, group in sorted(by_pathway.items()):
        try:
            compiled = api.load_pathway(pathway_file)
        except api.InvalidPathway:
            continue
        cov = coverage(compiled, group)
        print(f"\ncoverage of {compiled.id} {compiled.version}: {cov.exercised}/{cov.total} "
              f"({cov.percent:.0f}%) by {len(group)} scenario(s)")
        for kind, names in cov.unexercised.items():
            print(f"  not exercised {kind}: {', '.join(names)}")
        short = short or (args.fail_under is not None and cov.percent < args.fail_under)
    print(f"\n{len(outcomes) - failed} passed, {failed} failed")
    return EXIT_INVALID if failed or short else EXIT_OK


def _schema(args: argparse.Namespace) -> int:
    from carepath.model.schema import pathway_schema_text

    sys.stdout.write(pathway_schema_text())
    return EXIT_OK


def _explain(args: argparse.Namespace) -> int:
    from carepath.codes import SUMMARIES, Code

    wanted = {c.upper() for c in args.codes}
    for code in Code:
        if not wanted or code.value in wanted:
            print(f"{code.value}  {SUMMARIES[code]}")
    unknown = wanted - {c.value for c in Code}
    if unknown:
        print(f"unknown code(s): {', '.join(sorted(unknown))}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="carepath",
        description="Clinical care pathways as code: YAML pathways validated like code.",
        epilog="Exit codes: 0 ok, 1 invalid input (diagnostics printed), 2 usage error, 70 internal error.",
    )
    parser.add_argument("--version", action="version", version=f"carepath {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("validate", help="check pathway files or directories; one line per problem",
                       description="Check pathway files (or every *.yaml/*.yml under a directory). "
                                   "Prints 'path:line:col: CODE message' per problem; exit 1 if any is an error.")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.add_argument("-q", "--quiet", action="store_true", help="no summary line on stderr")
    p.set_defaults(func=_validate)

    p = sub.add_parser("plan", help="plan every patient's work as of an instant (pure; no Prefect)",
                       description="Fold each patient's events through the pathway and print the plan: stage, "
                                   "status, flags, holds, tasks with due windows (clinic zone) and letters "
                                   "(patient zone). Rejected input lines are listed with their line numbers; "
                                   "every valid line is still planned.")
    p.add_argument("pathway", metavar="PATHWAY")
    p.add_argument("--patients", required=True, metavar="FILE", help="patients, JSON Lines")
    p.add_argument("--events", required=True, metavar="FILE", help="events, JSON Lines")
    p.add_argument("--as-of", required=True, type=_as_of, metavar="ISO", help="an instant with a UTC offset")
    p.add_argument("--format", choices=("json", "text"), default="json",
                   help="json (the contract; default) or a text summary for people")
    p.set_defaults(func=_plan)

    p = sub.add_parser("letters", help="render every letter the plan holds to text, HTML and PDF (no Prefect)",
                       description="Plan as of an instant and render every letter in the plan into "
                                   "DIR/<letter-id>.{txt,html,pdf}, files with mode 0600, times in each "
                                   "patient's zone.")
    p.add_argument("pathway", metavar="PATHWAY")
    p.add_argument("--patients", required=True, metavar="FILE")
    p.add_argument("--events", required=True, metavar="FILE")
    p.add_argument("--as-of", required=True, type=_as_of, metavar="ISO")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--no-pdf", action="store_true", help="skip PDF (faster; text and HTML only)")
    p.set_defaults(func=_letters)

    p = sub.add_parser("test", help="run scenario files and report what of the pathway they did not exercise",
                       description="Run *.scenario.yaml files (or every one under a directory) and report, per "
                                   "pathway, the steps, letters, rules and transitions no scenario exercised.")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--fail-under", type=float, metavar="PERCENT",
                   help="exit 1 when a pathway's coverage is below this")
    p.set_defaults(func=_test)

    p = sub.add_parser("schema", help="print the JSON Schema of the pathway language",
                       description="Print the JSON Schema generated from the pathway models "
                                   "(committed as schemas/pathway.schema.json).")
    p.set_defaults(func=_schema)

    p = sub.add_parser("explain", help="list diagnostic codes and what they mean")
    p.add_argument("codes", nargs="*", metavar="CODE")
    p.set_defaults(func=_explain)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return EXIT_OK
    except Exception as exc:  # a bug, not a user mistake: say so without a traceback
        print(f"carepath: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        print("This is a bug in carepath; please report it with the command you ran.", file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
