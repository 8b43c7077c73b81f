"""`carepath` command line. Each command is a few lines over `carepath.api`.

Exit codes: 0 success; 1 the input has errors (diagnostics printed); 2 the command line
itself is wrong; 69 a service the command needs did not answer (Prefect's server, the
ledger database; the message names it and the setting to change); 70 an internal error (a bug: please report it with the message).
`diff --exit-code` adds 3: the two pathways differ.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from carepath import __version__
from carepath.cli.arguments import instant, out_folder, positive_int

EXIT_OK, EXIT_INVALID, EXIT_USAGE, EXIT_UNAVAILABLE, EXIT_INTERNAL = 0, 1, 2, 69, 70


def _validate(args: argparse.Namespace) -> int:
    from carepath import api
    from carepath.diagnostics import has_errors

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


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _run(args: argparse.Namespace) -> int:
    from carepath import api
    from carepath.orchestrator.pinning import check_against, read_migration
    from carepath.runtime import console
    from carepath.sinks.ledger import url_problem

    try:
        compiled = api.check_run_inputs(args.pathway, args.patients, args.events)
        if problem := api.letter_channel_problem(compiled):
            print(f"carepath: letters: {problem}", file=sys.stderr)
            return EXIT_INVALID
        if args.migration:  # its step map must name steps of this version (the old ones: checked in the run)
            check_against(read_migration(args.migration), args.migration, set(compiled.steps), None)
    except api.InvalidInput as exc:
        for d in exc.diagnostics:
            print(d.render(), file=sys.stderr)
        return EXIT_INVALID
    if args.ledger and (problem := url_problem(args.ledger)):
        print(f"carepath: --ledger: {problem}", file=sys.stderr)
        return EXIT_INVALID
    from carepath.sinks.storage import DOCUMENTS_ENV, location_problem

    if (documents := os.environ.get(DOCUMENTS_ENV)) and (problem := location_problem(documents)):
        print(f"carepath: {DOCUMENTS_ENV}: {problem}", file=sys.stderr)
        return EXIT_INVALID
    # A SIGTERM (a scheduler stopping the job) unwinds like Ctrl-C, so Prefect's temporary
    # server is stopped with us rather than left running.
    signal.signal(signal.SIGTERM, _interrupt)
    if not args.verbose:
        console.quiet_console()
    from carepath.runtime.runner import RunFailed, run_job
    from carepath.runtime.server import ServiceUnavailable
    from carepath.sinks.ledger import LedgerProblem

    console.install(console.Progress())
    try:
        result = run_job(args.pathway, args.patients, args.events, args.out, args.as_of, shard_size=args.shard_size,
                         ledger_url=args.ledger, pdf=not args.no_pdf, workers=args.workers, migration=args.migration,
                         full=args.full, export=args.export)
    except ServiceUnavailable as exc:
        print(f"carepath: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except LedgerProblem as exc:
        print(f"carepath: {exc}", file=sys.stderr)
        return EXIT_INVALID
    except RunFailed as exc:
        print(f"carepath: flow run {exc.flow_run_id} failed: {exc}", file=sys.stderr)
        return EXIT_INVALID if exc.user_error else EXIT_INTERNAL
    sys.stdout.write(console.summary_text(result))
    return EXIT_OK


def _export(args: argparse.Namespace) -> int:
    from carepath import api

    try:
        written = api.export(args.pathway, args.out, ledger_url=args.ledger, source=args.source, bundle=args.bundle)
    except api.InvalidInput as exc:
        for d in exc.diagnostics:
            print(d.render(), file=sys.stderr)
        return EXIT_INVALID
    except api.ExportRefused as exc:
        print(f"carepath: export: {exc}", file=sys.stderr)
        return EXIT_INVALID
    except api.ServiceDown as exc:
        print(f"carepath: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    for name, count in sorted(written.items()):
        print(f"{Path(args.out) / name}: " + ("unchanged" if count is None else f"{count:,} record(s)"))
    return EXIT_OK


def _emit(args: argparse.Namespace) -> int:
    from carepath import api
    from carepath.cli.arguments import StdinProblem, read_stdin
    from carepath.recording import NotRecorded, record_event

    try:
        text = read_stdin() if args.event == "-" else args.event
    except StdinProblem as exc:
        print(f"carepath: event not recorded: {exc}", file=sys.stderr)
        return EXIT_INVALID
    try:
        compiled = api.check_run_inputs(args.pathway, args.patients, args.events)
        recorded = record_event(compiled, args.patients, args.events, text)
        event = recorded.event
    except api.InvalidInput as exc:
        for d in exc.diagnostics:
            print(d.render(), file=sys.stderr)
        return EXIT_INVALID
    except NotRecorded as exc:
        print(f"carepath: event not recorded: {exc}", file=sys.stderr)
        return EXIT_INVALID
    from carepath.runtime.events import EVENT_NAME, announce
    from carepath.runtime.server import ServiceUnavailable

    try:
        sent = announce(compiled.id, event.patient, event.id, event.type)
    except ServiceUnavailable as exc:
        print(f"carepath: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    where = f"sent {EVENT_NAME} {sent} to Prefect" if sent else \
        "no Prefect server configured (PREFECT_API_URL): the next sweep will plan it"
    if recorded.appended:
        print(f"recorded event {event.id} ({event.type}) for {event.patient} in {args.events}; {where}")
    else:
        print(f"event {event.id} ({event.type}) for {event.patient} is already in {args.events} exactly as given: "
              f"not appended again; {where}")
    return EXIT_OK


def _backup(args: argparse.Namespace) -> int:
    from carepath.sinks.ledger import LedgerProblem
    from carepath.sinks.ledger_backup import backup_ledger

    try:
        done = backup_ledger(args.ledger, args.to)
    except LedgerProblem as exc:
        print(f"carepath: {exc}", file=sys.stderr)
        return EXIT_INVALID
    print(f"backed up the ledger {done.source} to {done.target} ({done.size:,} bytes, mode 0600, integrity ok); "
          "restore: stop the runs, copy it back over the ledger, remove the ledger's -wal and -shm files")
    return EXIT_OK


def _automations(args: argparse.Namespace) -> int:
    from pathlib import Path

    from carepath.runtime.automations import AutomationsProblem, resolve
    from carepath.runtime.server import ServiceUnavailable

    try:
        count = resolve(Path(args.file), Path(args.out))
    except (AutomationsProblem, OSError) as exc:
        print(f"carepath: {exc}", file=sys.stderr)
        return EXIT_INVALID
    except ServiceUnavailable as exc:
        print(f"carepath: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    print(f"wrote {count} automation(s) to {args.out}; create them with: "
          f"prefect automation create --from-file {args.out}")
    return EXIT_OK


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


# --- review tools: graph, diff, export-fhir (carepath.review; no Prefect) -------------

EXIT_DIFFERENT = 3  # `diff --exit-code` only; 1 stays "invalid input", as in every command


def _reviewed(spec: str):
    """The pathway a file or git:REF:path names, or None after printing its diagnostics."""
    from carepath import api
    from carepath.review.load import load_reviewed

    try:
        return load_reviewed(spec)
    except api.InvalidPathway as exc:
        for d in exc.diagnostics:
            print(d.render(), file=sys.stderr)
        return None


def _graph(args: argparse.Namespace) -> int:
    from carepath.review.graph import markdown_page, mermaid

    reviewed = _reviewed(args.pathway)
    if reviewed is None:
        return EXIT_INVALID
    sys.stdout.write(markdown_page(reviewed) if args.format == "markdown" else mermaid(reviewed))
    return EXIT_OK


def _diff(args: argparse.Namespace) -> int:
    from carepath.review.diff import diff_pathways
    from carepath.review.diff_format import format_markdown, format_text

    old, new = _reviewed(args.old), _reviewed(args.new)  # both first, so every problem is shown
    if old is None or new is None:
        return EXIT_INVALID
    result = diff_pathways(old, new)
    sys.stdout.write(format_markdown(result) if args.format == "markdown" else format_text(result))
    if not result.differs:
        print(f"no clinical differences between {args.old} and {args.new}", file=sys.stderr)
    return EXIT_DIFFERENT if args.exit_code and result.differs else EXIT_OK


def _export_fhir(args: argparse.Namespace) -> int:
    from carepath.review.plandefinition import plan_definition_bundle

    reviewed = _reviewed(args.pathway)
    if reviewed is None:
        return EXIT_INVALID
    print(json.dumps(plan_definition_bundle(reviewed, args.base_url), indent=2, ensure_ascii=False))
    return EXIT_OK


def _release_preview(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime
    from pathlib import Path

    from carepath import api
    from carepath.orchestrator.pinning import read_migration
    from carepath.orchestrator.release import preview
    from carepath.orchestrator.release_format import format_markdown, format_text
    from carepath.sinks.ledger import LedgerProblem, LedgerUnavailable, default_url

    url = args.ledger or default_url(Path(args.out))
    try:
        migration = read_migration(args.migration)
        result = preview(args.pathway, migration, args.patients, args.events, url,
                         args.as_of or datetime.now(UTC), args.migration)
    except api.InvalidInput as exc:
        for d in exc.diagnostics:
            print(d.render(), file=sys.stderr)
        return EXIT_INVALID
    except LedgerProblem as exc:
        print(f"carepath: {exc}", file=sys.stderr)
        return EXIT_INVALID
    except LedgerUnavailable as exc:
        print(f"carepath: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    if args.format == "json":
        print(json.dumps(result.as_json(), indent=2))
    else:
        sys.stdout.write(format_markdown(result) if args.format == "markdown" else format_text(result))
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
    p.add_argument("--patients", required=True, metavar="FILE", help="patients, JSON Lines")
    p.add_argument("--events", required=True, metavar="FILE", help="events, JSON Lines")
    p.add_argument("--as-of", required=True, type=instant, metavar="ISO", help="an instant with a UTC offset")
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
    p.add_argument("--patients", required=True, metavar="FILE")
    p.add_argument("--events", required=True, metavar="FILE")
    p.add_argument("--as-of", required=True, type=instant, metavar="ISO")
    p.add_argument("--out", required=True, type=out_folder, metavar="DIR")
    p.add_argument("--no-pdf", action="store_true", help="skip PDF (faster; text and HTML only)")
    p.set_defaults(func=_letters)

    p = sub.add_parser("run", help="the main job: plan, worklist, letters and change feed through a Prefect flow run",
                       description="Read the event lines appended since the last run, re-plan in shards the "
                                   "patients whose plan may have changed (everyone with --full), inside one "
                                   "recorded Prefect flow run, and write "
                                   "what people act on into DIR: worklist.html, rejected.jsonl, "
                                   "letters/YYYY/MM/DD/<letter-id>.{txt,html,pdf} (the letters due and never sent: "
                                   "an outbox, delivered after the worklist), and the change feed "
                                   "changes/<sweep-stamp>/<Type>.0001.ndjson with manifest.json (FHIR Bulk Data: "
                                   "what this sweep created or changed). With --export also the whole-cohort "
                                   "documents (see 'carepath export'): tasks.jsonl, tasks.csv, letters.jsonl, "
                                   "fhir/<Type>.0001.ndjson with fhir/manifest.json (CAREPATH_DOCUMENTS_URL: "
                                   "the documents to a folder or fsspec URL shared by several hosts). An "
                                   "outbox ledger (DIR/ledger.sqlite, or --ledger URL) makes it exactly-once: "
                                   "running again with the same inputs writes nothing new. Uses PREFECT_API_URL "
                                   "when set, otherwise Prefect's temporary local server (no server to start; it gets 180 s to "
                                   "answer unless PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS is set). Runs on "
                                   "one DIR take turns (DIR/.carepath.lock).")
    p.add_argument("pathway", metavar="PATHWAY")
    p.add_argument("--patients", required=True, metavar="FILE", help="patients, JSON Lines")
    p.add_argument("--events", required=True, metavar="FILE", help="events, JSON Lines")
    p.add_argument("--out", required=True, type=out_folder, metavar="DIR", help="where outputs and the ledger go")
    p.add_argument("--as-of", type=instant, metavar="ISO", help="an instant with a UTC offset (default: now)")
    p.add_argument("--ledger", metavar="URL", help="SQLAlchemy URL of the outbox ledger, e.g. "
                   "postgresql+psycopg://user@host/carepath (default: sqlite in DIR)")
    p.add_argument("--shard-size", type=positive_int, metavar="N", help="patients per Prefect task (default 2000)")
    p.add_argument("--workers", type=positive_int, default=1, metavar="N",
                   help="plan shards in N parallel worker processes, each shard a Prefect task (default 1)")
    p.add_argument("--migration", metavar="FILE",
                   help="move patients pinned to an older pathway version onto this one (YAML: pathway, from, to, "
                        "patients, reason, optional steps: old -> new; docs/migration-file.md); preview it first "
                        "with 'carepath release preview'; without it they keep the version they enrolled under")
    p.add_argument("--no-pdf", action="store_true", help="letters as text and HTML only")
    p.add_argument("--full", action="store_true",
                   help="re-plan every patient (by default only those with new events or a passed deadline, "
                        "with identical results)")
    p.add_argument("--export", action="store_true",
                   help="after the sweep, in the same flow run, write the whole-cohort documents (as "
                        "'carepath export' does)")
    p.add_argument("-v", "--verbose", action="store_true", help="show Prefect's own log lines on the console")
    p.set_defaults(func=_run)

    p = sub.add_parser("export", help="the whole-cohort documents from the ledger, without re-planning",
                       description="Write tasks.jsonl, tasks.csv, letters.jsonl and FHIR Bulk Data NDJSON in parts "
                                   "(fhir/Task.0001.ndjson, ... of at most 100,000 resources each, listed in "
                                   "fhir/manifest.json) into DIR, from the ledger the sweeps keep, as of the "
                                   "pathway's last sweep; fhir/bundle.json only with --bundle (refused above "
                                   "10,000 resources, what a FHIR server takes in one transaction). No Prefect.")
    p.add_argument("pathway", metavar="PATHWAY")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--ledger", metavar="URL", help="SQLAlchemy URL of the ledger")
    source.add_argument("--from", dest="source", type=Path, metavar="DIR",
                        help="the --out folder of the sweeps (its ledger.sqlite)")
    p.add_argument("--out", required=True, type=out_folder, metavar="DIR")
    p.add_argument("--bundle", action="store_true", help="also fhir/bundle.json (one FHIR collection bundle)")
    p.set_defaults(func=_export)

    p = sub.add_parser("automations", help="make the on-call automations file ready for `prefect automation create`",
                       description="Read an automations file that names notification blocks as "
                                   "'block:<type>/<name>' (automations/on-call.yaml), look each block up on the "
                                   "Prefect server named by PREFECT_API_URL, and write the automations with the "
                                   "blocks' ids as JSON, for `prefect automation create --from-file OUT`. "
                                   "See docs/operations.md.")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--out", required=True, metavar="OUT", help="the JSON file to write")
    p.set_defaults(func=_automations)

    p = sub.add_parser("emit", help="record a new event and tell Prefect, so that patient is re-planned",
                       description="Check one event exactly as the events reader would, append it to the "
                                   "events file, and send a 'carepath.event.recorded' event (pathway, patient "
                                   "ref, event id and type; never its data) to the Prefect server named by "
                                   "PREFECT_API_URL, waiting until it is delivered. A deployment's event "
                                   "trigger then re-plans that patient. Re-emitting an event already in the "
                                   "file only announces it again.")
    p.add_argument("pathway", metavar="PATHWAY")
    p.add_argument("--patients", required=True, metavar="FILE")
    p.add_argument("--events", required=True, metavar="FILE", help="the events file to append to")
    p.add_argument("event", metavar="EVENT", help="one event as JSON, or - to read it from stdin")
    p.set_defaults(func=_emit)

    p = sub.add_parser("test", help="run scenario files and report what of the pathway they did not exercise",
                       description="Run *.scenario.yaml files (or every one under a directory) and report, per "
                                   "pathway, the steps, letters, rules, transitions, hold reactions and escalation "
                                   "tiers no scenario exercised.")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--fail-under", type=float, metavar="PERCENT",
                   help="exit 1 when a pathway's coverage is below this")
    p.set_defaults(func=_test)

    p = sub.add_parser("backup", help="copy a SQLite ledger consistently while sweeps run (PostgreSQL: pg_dump)",
                       description="Copy the ledger with SQLite's online backup: every committed transaction, "
                                   "none half, without stopping the sweeps. The copy is mode 0600 and checked. "
                                   "A PostgreSQL ledger is refused: back it up with pg_dump.")
    p.add_argument("--ledger", required=True, metavar="URL",
                   help="the ledger: sqlite:///DIR/ledger.sqlite or its path (the default ledger is DIR/ledger.sqlite)")
    p.add_argument("--to", required=True, metavar="FILE", help="the backup file (replaced in one step)")
    p.set_defaults(func=_backup)

    p = sub.add_parser("schema", help="print the JSON Schema of the pathway language",
                       description="Print the JSON Schema generated from the pathway models "
                                   "(committed as schemas/pathway.schema.json).")
    p.set_defaults(func=_schema)

    from carepath.cli.synth import add_parser as add_synth  # synthetic cohorts; generator imported on use
    add_synth(sub)

    from carepath.cli.serve import add_parsers as add_serve  # the web stack is imported only when it runs
    add_serve(sub)

    # review tools; PATHWAY may also be git:REF:path, e.g. git:HEAD~1:pathways/ketamine-iv.yaml
    p = sub.add_parser("graph", help="print a Mermaid diagram of the stages, transitions and rules",
                       description="Print the pathway as a Mermaid flowchart (GitHub renders it): stages, "
                                   "transitions labelled with their event, condition and actions, and the "
                                   "cross-cutting rules in a box apart. --format markdown prints the page "
                                   "kept in docs/pathways/<id>.md.")
    p.add_argument("pathway", metavar="PATHWAY", help="a pathway file, or git:REF:path")
    p.add_argument("--format", choices=("mermaid", "markdown"), default="mermaid",
                   help="mermaid (the diagram; default) or markdown (a page with a ```mermaid block)")
    p.set_defaults(func=_graph)

    p = sub.add_parser("diff", help="what changed between two pathway versions, in clinical terms",
                       description="Compare two pathways on what they do, not on text: steps, windows "
                                   "(opens, due, basis, clinic-closed policy), parameters with their source "
                                   "tags, rules, stages and transitions, letters, clinic hours. OLD and NEW are "
                                   "files or git:REF:path (read with 'git show REF:path' in the current "
                                   "repository; the path is relative to its root). Prints nothing when there "
                                   "is no clinical difference.",
                       epilog="Exit codes: 0 the diff was printed (with or without differences); 1 a pathway "
                              "is invalid or cannot be read (diagnostics printed); 2 usage error; 3 with "
                              "--exit-code only: the pathways differ; 70 internal error.")
    p.add_argument("old", metavar="OLD", help="the pathway before: a file, or git:REF:path")
    p.add_argument("new", metavar="NEW", help="the pathway after: a file, or git:REF:path")
    p.add_argument("--format", choices=("text", "markdown"), default="text",
                   help="text (default) or markdown, for a pull-request comment")
    p.add_argument("--exit-code", action="store_true",
                   help="exit 3 when the pathways differ and 0 when they do not (like git diff --exit-code, "
                        "but 1 keeps meaning invalid input)")
    p.set_defaults(func=_diff)

    p = sub.add_parser("export-fhir", help="print the pathway definition as a FHIR R4 PlanDefinition bundle",
                       description="Print a FHIR R4 Bundle (type collection) holding a PlanDefinition of the "
                                   "pathway (an action group per stage, the cross-cutting rules with their "
                                   "triggers and conditions, task windows as relatedAction offsets) and an "
                                   "ActivityDefinition per step and per letter. This is the definition, not "
                                   "patient data (that is the bundle 'carepath run' writes).")
    p.add_argument("pathway", metavar="PATHWAY", help="a pathway file, or git:REF:path")
    p.add_argument("--base-url", default="http://example.org/fhir", metavar="URL",
                   help="base of the canonical URLs (default: http://example.org/fhir)")
    p.set_defaults(func=_export_fhir)

    p = sub.add_parser("release", help="roll a new pathway version out to patients in flight (preview a migration)")
    release = p.add_subparsers(dest="release_command", required=True, metavar="COMMAND")
    p = release.add_parser("preview", help="what moving patients to the new version would change, per patient",
                           description="Plan every patient the migration file moves twice as of one instant, "
                                       "under the version they are on and under PATHWAY (the new version), and "
                                       "print per patient, in clinical words, what the move changes: tasks added, "
                                       "withdrawn (with the reason) or moved (old due -> new due), letters it "
                                       "would send or withdraw, holds and flags; then the totals. Records "
                                       "nothing. Apply it with 'carepath run PATHWAY --migration FILE' at the "
                                       "same --as-of: that run changes exactly what this lists.")
    p.add_argument("pathway", metavar="PATHWAY", help="the new version's pathway file")
    p.add_argument("--migration", required=True, metavar="FILE", help="the migration file (docs/migration-file.md)")
    p.add_argument("--patients", required=True, metavar="FILE", help="patients, JSON Lines")
    p.add_argument("--events", required=True, metavar="FILE", help="events, JSON Lines")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--out", metavar="DIR", help="the output folder whose ledger (DIR/ledger.sqlite) to read")
    where.add_argument("--ledger", metavar="URL", help="SQLAlchemy URL of the outbox ledger")
    p.add_argument("--as-of", type=instant, metavar="ISO", help="an instant with a UTC offset (default: now)")
    p.add_argument("--format", choices=("text", "markdown", "json"), default="text",
                   help="text (default), markdown (for the sign-off beside 'carepath diff') or json")
    p.set_defaults(func=_release_preview)

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
