"""`carepath` command line. Each command is a few lines over `carepath.api`.

Exit codes: 0 success; 1 the input has errors (diagnostics printed); 2 the command line
itself is wrong; 70 an internal error (a bug: please report it with the message).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

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
