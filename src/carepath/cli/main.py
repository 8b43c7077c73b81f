"""`carepath` command line. Each command is a few lines over `carepath.api`: this module
the pathway commands, `running.py` the runs and their outputs, `review.py` the review
tools, `serve.py` and `synth.py` theirs; options several commands share are declared once
in `common.py`. Input the library refuses (`InvalidInput`) is printed here, once.

Exit codes: 0 success; 1 the input has errors (diagnostics printed); 2 the command line
itself is wrong; 69 a service the command needs did not answer (Prefect's server, the
ledger database; the message names it and the setting to change); 70 an internal error (a bug: please report it with the message).
`diff --exit-code` adds 3: the two pathways differ.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from carepath import __version__, api
from carepath.cli import review, running
from carepath.cli.arguments import out_folder
from carepath.cli.common import (  # noqa: F401 - the exit codes, importable from here as before
    EXIT_DIFFERENT,
    EXIT_INTERNAL,
    EXIT_INVALID,
    EXIT_OK,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    Stop,
    add_as_of,
    add_records,
)
from carepath.codes import SUMMARIES, Code
from carepath.diagnostics import has_errors
from carepath.model.schema import pathway_schema_text
from carepath.testing.coverage import coverage_by_pathway, scenario_files
from carepath.testing.scenarios import run_scenario


def _validate(args: argparse.Namespace) -> int:
    results = api.validate(args.paths, against_git=not args.no_git)
    diagnostics = [d for r in results for d in r.diagnostics]
    if args.format == "json":
        print(json.dumps([d.as_json() for d in diagnostics], indent=2))
    else:
        for d in diagnostics:
            print(d.render())
        if not args.quiet:
            bad = sum(1 for r in results if has_errors(r.diagnostics))
            warnings = sum(1 for d in diagnostics if not has_errors([d]))
            print(f"{len(results)} file(s) checked, {bad} with errors, {warnings} warning(s)", file=sys.stderr)
    return EXIT_INVALID if has_errors(diagnostics) else EXIT_OK


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
    from carepath.orchestrator.planning import write_patient_page, write_plan_json, write_plan_text

    if (args.format == "html") != (args.patient is not None):
        print("carepath plan: --patient REF and --format html go together (one patient's whole plan as a page)",
              file=sys.stderr)
        return EXIT_USAGE
    loaded = _load_cohort(args)
    if loaded is None:
        return EXIT_INVALID
    compiled, cohort = loaded
    if args.patient is not None:
        if not write_patient_page(sys.stdout, compiled, args.as_of, cohort, args.patient):
            print(f"{args.patients}: no patient {args.patient!r} (or its line is rejected)", file=sys.stderr)
            return EXIT_INVALID
        return EXIT_OK
    writer = write_plan_text if args.format == "text" else write_plan_json
    writer(sys.stdout, compiled, args.as_of, cohort)
    return EXIT_OK


def _letters(args: argparse.Namespace) -> int:
    from pathlib import Path

    from carepath.orchestrator.planning import plan_cohort
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
    except OSError as exc:
        print(f"carepath: cannot write letters to {args.out}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_INVALID
    formats = "text and HTML" if args.no_pdf else "text, HTML and PDF"
    print(f"{count} letter(s) written to {args.out} ({formats}, mode 0600); "
          f"{len(cohort.rejected)} input line(s) rejected", file=sys.stderr)
    return EXIT_OK


def _test(args: argparse.Namespace) -> int:
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
    short = False
    for compiled, scenarios, cov in coverage_by_pathway(outcomes):
        print(f"\ncoverage of {compiled.id} {compiled.version}: {cov.exercised}/{cov.total} "
              f"({cov.percent:.0f}%) by {scenarios} scenario(s)")
        for kind, names in cov.unexercised.items():
            print(f"  not exercised {kind}: {', '.join(names)}")
        short = short or (args.fail_under is not None and cov.percent < args.fail_under)
    print(f"\n{len(outcomes) - failed} passed, {failed} failed")
    return EXIT_INVALID if failed or short else EXIT_OK


def _schema(args: argparse.Namespace) -> int:
    sys.stdout.write(pathway_schema_text())
    return EXIT_OK


def _explain(args: argparse.Namespace) -> int:
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
        description="Clinical care pathways as code: YAML pathways validated like code, planned, and run "
                    "through Prefect into tasks, worklists, letters and FHIR.",
        epilog="Exit codes: 0 ok, 1 invalid input (diagnostics printed), 2 usage error, 69 a service (Prefect's "
               "server, the ledger database) did not answer, 70 internal error; "
               "'diff --exit-code' exits 3 when the pathways differ.",
    )
    parser.add_argument("--version", action="version", version=f"carepath {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("validate", help="check pathway files or directories; one line per problem",
                       description="Check pathway files (or every *.yaml/*.yml under a directory). "
                                   "Prints 'path:line:col: CODE message' per problem; exit 1 if any is an error. "
                                   "Inside a Git work tree, a file whose text changed since HEAD while its "
                                   "version did not is CP701: a sweep would refuse it (VersionReused).")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.add_argument("--no-git", action="store_true",
                   help="do not compare with Git's HEAD (skip CP701, the version-bump check)")
    p.add_argument("-q", "--quiet", action="store_true", help="no summary line on stderr")
    p.set_defaults(func=_validate)

    p = sub.add_parser("plan", help="plan every patient's work as of an instant (pure; no Prefect)",
                       description="Fold each patient's events through the pathway and print the plan: stage, "
                                   "status, flags, holds, tasks with due windows (clinic zone) and letters "
                                   "(patient zone). Rejected input lines are listed with their line numbers; "
                                   "every valid line is still planned.")
    p.add_argument("pathway", metavar="PATHWAY")
    add_records(p)
    add_as_of(p, required=True)
    p.add_argument("--format", choices=("json", "text", "html"), default="json",
                   help="json (the contract; default), a text summary for people, or html with --patient")
    p.add_argument("--patient", metavar="REF",
                   help="with --format html: that patient's whole plan as a page (the worklist lists only "
                        "actionable work)")
    p.set_defaults(func=_plan)

    p = sub.add_parser("letters", help="render the letters due at an instant to text, HTML and PDF (no Prefect)",
                       description="Plan as of an instant and render the letters due then (never a scheduled, "
                                   "expired or withdrawn one) into DIR/<letter-id>.{txt,html,pdf}, files with "
                                   "mode 0600, times in each patient's zone.")
    p.add_argument("pathway", metavar="PATHWAY")
    add_records(p)
    add_as_of(p, required=True)
    p.add_argument("--out", required=True, type=out_folder, metavar="DIR")
    p.add_argument("--no-pdf", action="store_true", help="skip PDF (faster; text and HTML only)")
    p.set_defaults(func=_letters)

    running.add_run(sub)
    running.add_export(sub)
    running.add_automations(sub)
    running.add_emit(sub)

    p = sub.add_parser("test", help="run scenario files and report what of the pathway they did not exercise",
                       description="Run *.scenario.yaml files (or every one under a directory) and report, per "
                                   "pathway, the steps, letters, rules, transitions, hold reactions and escalation "
                                   "tiers no scenario exercised.")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--fail-under", type=float, metavar="PERCENT",
                   help="exit 1 when a pathway's coverage is below this")
    p.set_defaults(func=_test)

    running.add_backup(sub)

    p = sub.add_parser("schema", help="print the JSON Schema of the pathway language",
                       description="Print the JSON Schema generated from the pathway models "
                                   "(committed as schemas/pathway.schema.json).")
    p.set_defaults(func=_schema)

    from carepath.cli.synth import add_parser as add_synth  # synthetic cohorts; generator imported on use
    add_synth(sub)

    from carepath.cli.serve import add_parsers as add_serve  # the web stack is imported only when it runs
    add_serve(sub)

    review.add_parsers(sub)

    p = sub.add_parser("explain", help="list diagnostic codes and what they mean")
    p.add_argument("codes", nargs="*", metavar="CODE")
    p.set_defaults(func=_explain)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except api.InvalidInput as exc:  # any command: every problem, positioned
        for d in exc.diagnostics:
            print(d.render(), file=sys.stderr)
        return EXIT_INVALID
    except Stop as exc:
        print(exc.message, file=sys.stderr)
        return exc.code
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
