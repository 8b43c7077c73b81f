"""The commands that run pathways over a cohort and keep their outputs: run, export,
automations, emit, backup. Prefect (the runtime) and the ledger (SQLAlchemy) are imported
only by the commands that reach them, so `validate`, `--help` and the review tools start
without them."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from carepath import api
from carepath.cli.arguments import StdinProblem, out_folder, positive_int, read_stdin
from carepath.cli.common import EXIT_INTERNAL, EXIT_INVALID, EXIT_OK, EXIT_UNAVAILABLE, Stop, add_as_of, add_records
from carepath.recording import NotRecorded, record_event


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _run(args: argparse.Namespace) -> int:
    try:
        api.check_run(args.pathway, args.patients, args.events, migration=args.migration, ledger_url=args.ledger)
    except api.RunRefused as exc:
        raise Stop(f"carepath: {exc}") from None
    # A SIGTERM (a scheduler stopping the job) unwinds like Ctrl-C, so Prefect's temporary
    # server is stopped with us rather than left running.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        return _run_job(args)
    finally:  # called in-process (tests, a host program), the caller's handler comes back
        signal.signal(signal.SIGTERM, previous)


def _run_job(args: argparse.Namespace) -> int:
    from carepath.runtime import console  # Prefect: imported once the run is sure to start

    if not args.verbose:
        console.quiet_console()  # before the flows are imported: Prefect sets its logging up then
    from carepath.runtime.runner import RunFailed, run_job
    from carepath.runtime.server import ServiceUnavailable
    from carepath.sinks.ledger import LedgerProblem

    console.install(console.Progress())
    try:
        result = run_job(args.pathway, args.patients, args.events, args.out, args.as_of, shard_size=args.shard_size,
                         ledger_url=args.ledger, pdf=not args.no_pdf, workers=args.workers, migration=args.migration,
                         full=args.full, export=args.export)
    except ServiceUnavailable as exc:
        raise Stop(f"carepath: {exc}", EXIT_UNAVAILABLE) from None
    except LedgerProblem as exc:
        raise Stop(f"carepath: {exc}") from None
    except RunFailed as exc:
        raise Stop(f"carepath: flow run {exc.flow_run_id} failed: {exc}",
                   EXIT_INVALID if exc.user_error else EXIT_INTERNAL) from None
    sys.stdout.write(console.summary_text(result))
    return EXIT_OK


def _export(args: argparse.Namespace) -> int:
    try:
        written = api.export(args.pathway, args.out, ledger_url=args.ledger, source=args.source, bundle=args.bundle,
                             since=args.since)
    except api.ExportRefused as exc:
        raise Stop(f"carepath: export: {exc}") from None
    except api.ServiceDown as exc:
        raise Stop(f"carepath: {exc}", EXIT_UNAVAILABLE) from None
    for name, count in sorted(written.items()):
        print(f"{Path(args.out) / name}: " + ("unchanged" if count is None else f"{count:,} record(s)"))
    return EXIT_OK


def _emit(args: argparse.Namespace) -> int:
    try:
        text = read_stdin() if args.event == "-" else args.event
        compiled = api.check_run_inputs(args.pathway, args.patients, args.events)
        recorded = record_event(compiled, args.patients, args.events, text)
    except (StdinProblem, NotRecorded) as exc:
        raise Stop(f"carepath: event not recorded: {exc}") from None
    event = recorded.event
    from carepath.runtime.events import EVENT_NAME, announce  # Prefect: only to announce the event
    from carepath.runtime.server import ServiceUnavailable

    try:
        sent = announce(compiled.id, event.patient, event.id, event.type)
    except ServiceUnavailable as exc:
        raise Stop(f"carepath: {exc}", EXIT_UNAVAILABLE) from None
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
        raise Stop(f"carepath: {exc}") from None
    print(f"backed up the ledger {done.source} to {done.target} ({done.size:,} bytes, mode 0600, integrity ok); "
          "restore: stop the runs, copy it back over the ledger, remove the ledger's -wal and -shm files")
    return EXIT_OK


def _automations(args: argparse.Namespace) -> int:
    from carepath.runtime.automations import AutomationsProblem, resolve  # Prefect: a server is asked
    from carepath.runtime.server import ServiceUnavailable

    try:
        count = resolve(Path(args.file), Path(args.out))
    except (AutomationsProblem, OSError) as exc:
        raise Stop(f"carepath: {exc}") from None
    except ServiceUnavailable as exc:
        raise Stop(f"carepath: {exc}", EXIT_UNAVAILABLE) from None
    print(f"wrote {count} automation(s) to {args.out}; create them with: "
          f"prefect automation create --from-file {args.out}")
    return EXIT_OK


def add_run(sub: argparse._SubParsersAction) -> None:
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
                                   "when set, otherwise Prefect's temporary local server (no server to start; it "
                                   "gets 180 s to answer unless PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS is "
                                   "set). Runs on "
                                   "one DIR take turns (DIR/.carepath.lock).")
    p.add_argument("pathway", metavar="PATHWAY")
    add_records(p)
    p.add_argument("--out", required=True, type=out_folder, metavar="DIR", help="where outputs and the ledger go")
    add_as_of(p, required=False)
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


def add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="the whole-cohort documents from the ledger, without re-planning",
                       description="Write tasks.jsonl, tasks.csv, letters.jsonl and FHIR Bulk Data NDJSON in parts "
                                   "(fhir/Task.0001.ndjson, ... of at most 100,000 resources each, listed in "
                                   "fhir/manifest.json) into DIR, from the ledger the sweeps keep, as of the "
                                   "pathway's last sweep; fhir/bundle.json only with --bundle (refused above "
                                   "10,000 resources, what a FHIR server takes in one transaction). With --since "
                                   "STAMP, only fhir/ parts and manifest holding the resources created or changed "
                                   "after that sweep, by any run (a FHIR Bulk Data $export?_since=). No Prefect.")
    p.add_argument("pathway", metavar="PATHWAY")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--ledger", metavar="URL", help="SQLAlchemy URL of the ledger")
    source.add_argument("--from", dest="source", type=Path, metavar="DIR",
                        help="the --out folder of the sweeps (its ledger.sqlite)")
    p.add_argument("--out", required=True, type=out_folder, metavar="DIR")
    p.add_argument("--bundle", action="store_true", help="also fhir/bundle.json (one FHIR collection bundle)")
    p.add_argument("--since", metavar="STAMP",
                   help="only what changed after this sweep: its stamp (a changes/ folder's name, e.g. "
                        "20260105T090000Z-000042) or an ISO instant with offset (the last sweep at or before it); "
                        "writes fhir/ only, into a folder that holds no whole-cohort export")
    p.set_defaults(func=_export)


def add_automations(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("automations", help="make the on-call automations file ready for `prefect automation create`",
                       description="Read an automations file that names notification blocks as "
                                   "'block:<type>/<name>' (automations/on-call.yaml), look each block up on the "
                                   "Prefect server named by PREFECT_API_URL, and write the automations with the "
                                   "blocks' ids as JSON, for `prefect automation create --from-file OUT`. "
                                   "See docs/operations.md.")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--out", required=True, metavar="OUT", help="the JSON file to write")
    p.set_defaults(func=_automations)


def add_emit(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("emit", help="record a new event and tell Prefect, so that patient is re-planned",
                       description="Check one event exactly as the events reader would, append it to the "
                                   "events file, and send a 'carepath.event.recorded' event (pathway, patient "
                                   "ref, event id and type; never its data) to the Prefect server named by "
                                   "PREFECT_API_URL, waiting until it is delivered. A deployment's event "
                                   "trigger then re-plans that patient. Re-emitting an event already in the "
                                   "file only announces it again.")
    p.add_argument("pathway", metavar="PATHWAY")
    add_records(p, events_help="the events file to append to")
    p.add_argument("event", metavar="EVENT", help="one event as JSON, or - to read it from stdin")
    p.set_defaults(func=_emit)


def add_backup(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("backup", help="copy a SQLite ledger consistently while sweeps run (PostgreSQL: pg_dump)",
                       description="Copy the ledger with SQLite's online backup: every committed transaction, "
                                   "none half, without stopping the sweeps. The copy is mode 0600 and checked. "
                                   "A PostgreSQL ledger is refused: back it up with pg_dump.")
    p.add_argument("--ledger", required=True, metavar="URL",
                   help="the ledger: sqlite:///DIR/ledger.sqlite or its path (the default ledger is DIR/ledger.sqlite)")
    p.add_argument("--to", required=True, metavar="FILE", help="the backup file (replaced in one step)")
    p.set_defaults(func=_backup)
