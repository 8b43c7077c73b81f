"""The review tools (carepath.review; no Prefect): graph, diff, export-fhir, and the
preview of a release (`release preview`, whose orchestrator and ledger are imported when
it runs: a second the other commands do not pay)."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

from carepath import api
from carepath.cli.common import EXIT_DIFFERENT, EXIT_INVALID, EXIT_OK, EXIT_UNAVAILABLE, Stop, add_as_of, add_records
from carepath.review import diff_format
from carepath.review.diff import diff_pathways
from carepath.review.graph import markdown_page, mermaid
from carepath.review.load import Reviewed, load_reviewed
from carepath.review.plandefinition import plan_definition_bundle


def _reviewed(spec: str) -> Reviewed | None:
    """The pathway a file or git:REF:path names, or None after printing its diagnostics."""
    try:
        return load_reviewed(spec)
    except api.InvalidPathway as exc:
        for d in exc.diagnostics:
            print(d.render(), file=sys.stderr)
        return None


def _graph(args: argparse.Namespace) -> int:
    reviewed = _reviewed(args.pathway)
    if reviewed is None:
        return EXIT_INVALID
    sys.stdout.write(markdown_page(reviewed) if args.format == "markdown" else mermaid(reviewed))
    return EXIT_OK


def _diff(args: argparse.Namespace) -> int:
    old, new = _reviewed(args.old), _reviewed(args.new)  # both first, so every problem is shown
    if old is None or new is None:
        return EXIT_INVALID
    result = diff_pathways(old, new)
    formatted = diff_format.format_markdown(result) if args.format == "markdown" else diff_format.format_text(result)
    sys.stdout.write(formatted)
    if not result.differs:
        print(f"no clinical differences between {args.old} and {args.new}", file=sys.stderr)
    return EXIT_DIFFERENT if args.exit_code and result.differs else EXIT_OK


def _export_fhir(args: argparse.Namespace) -> int:
    reviewed = _reviewed(args.pathway)
    if reviewed is None:
        return EXIT_INVALID
    print(json.dumps(plan_definition_bundle(reviewed, args.base_url), indent=2, ensure_ascii=False))
    return EXIT_OK


def _release_preview(args: argparse.Namespace) -> int:
    from carepath.orchestrator import release_format
    from carepath.orchestrator.pinning import read_migration
    from carepath.orchestrator.release import preview
    from carepath.sinks.ledger import LedgerProblem, LedgerUnavailable, default_url

    url = args.ledger or default_url(Path(args.out))
    try:
        result = preview(args.pathway, read_migration(args.migration), args.patients, args.events, url,
                         args.as_of or datetime.now(UTC), args.migration)
    except LedgerProblem as exc:
        raise Stop(f"carepath: {exc}") from None
    except LedgerUnavailable as exc:
        raise Stop(f"carepath: {exc}", EXIT_UNAVAILABLE) from None
    if args.format == "json":
        print(json.dumps(result.as_json(), indent=2))
    elif args.format == "markdown":
        sys.stdout.write(release_format.format_markdown(result))
    else:
        sys.stdout.write(release_format.format_text(result))
    return EXIT_OK


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """graph, diff, export-fhir, release; PATHWAY may also be git:REF:path, e.g.
    git:HEAD~1:pathways/ketamine-iv.yaml."""
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
    add_records(p)
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--out", metavar="DIR", help="the output folder whose ledger (DIR/ledger.sqlite) to read")
    where.add_argument("--ledger", metavar="URL", help="SQLAlchemy URL of the outbox ledger")
    add_as_of(p, required=False)
    p.add_argument("--format", choices=("text", "markdown", "json"), default="text",
                   help="text (default), markdown (for the sign-off beside 'carepath diff') or json")
    p.set_defaults(func=_release_preview)
