"""`carepath serve`, `carepath users` and `carepath audit`: argument handling over
`carepath.serve.server`. Kept out of `main.py` so the web stack is imported only here."""

from __future__ import annotations

import argparse
import sys

from carepath.cli.arguments import instant, positive_int


def _store(args: argparse.Namespace):  # noqa: ANN202
    from carepath.serve.access import AccessStore
    from carepath.serve.server import access_path

    return AccessStore(access_path(args.ledger, args.access_db))


def _password() -> str:
    if sys.stdin is None or sys.stdin.closed:
        raise ValueError("standard input is closed: give the password on it (one line)")
    if sys.stdin.isatty():
        import getpass

        return getpass.getpass("Password: ")
    return sys.stdin.readline().rstrip("\r\n")


def _users(args: argparse.Namespace) -> int:
    from carepath.serve.access import AccessProblem
    from carepath.serve.passwords import WeakPassword
    from carepath.serve.server import add_user

    try:
        store = _store(args)
    except AccessProblem as exc:
        print(f"carepath users: {exc}", file=sys.stderr)
        return 2
    try:
        if args.users_command == "add":
            add_user(store, args.user, args.role, _password(), args.pathway)
            print(f"added {args.user} ({args.role}) to {store.path}")
        elif args.users_command == "disable":
            store.disable_user(args.user)
            print(f"disabled {args.user}; their sessions are ended")
        else:
            for user in store.users():
                print(f"{user.name}\t{user.role}\t{'disabled' if user.disabled else 'active'}")
    except (AccessProblem, WeakPassword, ValueError) as exc:
        print(f"carepath users: {exc}", file=sys.stderr)
        return 1
    return 0


def _audit(args: argparse.Namespace) -> int:
    import json

    from carepath.serve.access import AccessProblem
    from carepath.serve.server import audit_lines

    try:
        store = _store(args)
    except AccessProblem as exc:
        print(f"carepath audit: {exc}", file=sys.stderr)
        return 2
    rows = store.audit_rows(since=args.since)
    if args.format == "json":
        for r in rows:
            print(json.dumps({"seq": r.seq, "at": r.at, "user": r.user, "action": r.action, "patient": r.patient,
                              "detail": r.detail}))
    else:
        for line in audit_lines(rows):
            print(line)
    return 0


def _serve(args: argparse.Namespace) -> int:
    from carepath import api
    from carepath.orchestrator.pinning import VersionReused
    from carepath.serve.access import AccessProblem
    from carepath.serve.server import NoLedger, ServeOptions, serve

    try:
        for path in args.pathways:
            api.check_run_inputs(path, args.patients, args.events)
        serve(ServeOptions(args.pathways, args.ledger, args.patients, args.events, args.out, args.access_db,
                           args.host, args.port, args.idle_minutes, args.secure_cookies, args.trust_user_header,
                           args.as_of, args.rows, not args.no_pdf),
              announce=lambda line: print(line, file=sys.stderr, flush=True))
    except api.InvalidInput as exc:
        for d in exc.diagnostics:
            print(d.render(), file=sys.stderr)
        return 1
    except (NoLedger, VersionReused) as exc:
        print(f"carepath serve: {exc}", file=sys.stderr)
        return 1
    except AccessProblem as exc:
        print(f"carepath serve: {exc}", file=sys.stderr)
        return 2
    return 0


def _where(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ledger", metavar="URL", help="the ledger: a SQLite ledger keeps the accounts database "
                                                   "(access.sqlite) beside itself")
    p.add_argument("--access-db", metavar="PATH", help="the accounts and audit database (default: "
                                                       "$CAREPATH_ACCESS_DB, else beside a SQLite --ledger, else "
                                                       "the machine's: ~/.local/share/carepath/access.sqlite)")


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="the live worklist for signed-in staff: act on tasks, see a patient's episode",
                       description="Serve the worklist live from the ledger over HTTP (put a TLS reverse proxy in "
                                   "front: docs/operations.md). Staff sign in with accounts from `carepath users`; "
                                   "acknowledging, completing or deciding a task records an event in the events "
                                   "file (as `carepath emit` does) and re-plans that patient at once. Every "
                                   "sign-in, patient page viewed and action is in the audit table "
                                   "(`carepath audit`). No Prefect is involved.")
    p.add_argument("pathways", nargs="+", metavar="PATHWAY")
    p.add_argument("--ledger", required=True, metavar="URL", help="the ledger the sweeps write (SQLAlchemy URL)")
    p.add_argument("--patients", required=True, metavar="FILE")
    p.add_argument("--events", required=True, metavar="FILE", help="the events file actions append to")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=positive_int, default=8000, help="port (default 8000)")
    p.add_argument("--out", metavar="DIR", help="where re-plans write letters and patient records "
                                                "(default: the SQLite ledger's folder)")
    p.add_argument("--access-db", metavar="PATH", help="accounts and audit database (default: "
                                                       "$CAREPATH_ACCESS_DB, else access.sqlite beside the ledger "
                                                       "when it exists, else the machine's, which `carepath users` "
                                                       "uses when given no --ledger)")
    p.add_argument("--idle-minutes", type=float, default=15.0, help="sign out after this long idle (default 15)")
    p.add_argument("--secure-cookies", action="store_true",
                   help="always mark cookies Secure (they are on https requests, including X-Forwarded-Proto "
                        "https from a proxy on 127.0.0.1)")
    p.add_argument("--trust-user-header", metavar="HEADER",
                   help="sign in the account named by this header (e.g. X-Forwarded-User from oauth2-proxy); "
                        "only when the proxy is the sole way in. Off by default")
    p.add_argument("--as-of", type=instant, metavar="ISO", help="start the clock at this instant and let it run "
                                                                 "(demos on a fixed cohort); default: now")
    p.add_argument("--rows", type=positive_int, default=50, help="rows listed per band (default 50)")
    p.add_argument("--no-pdf", action="store_true", help="write letters without their PDF on re-plans")
    p.set_defaults(func=_serve)

    p = sub.add_parser("users", help="add, disable or list the accounts that may sign in to `carepath serve`",
                       description="Accounts for `carepath serve`: argon2id password hashes in the accounts "
                                   "database beside the ledger. `add` reads the password from standard input "
                                   "(one line; at least 12 characters).")
    users = p.add_subparsers(dest="users_command", required=True, metavar="COMMAND")
    q = users.add_parser("add", help="add an account (password: one line on stdin)")
    q.add_argument("user", metavar="USER")
    q.add_argument("--role", required=True, help="one of the pathway's roles, or admin")
    q.add_argument("--pathway", action="append", default=[], metavar="FILE",
                   help="check the role against this pathway's roles (repeatable)")
    _where(q)
    q = users.add_parser("disable", help="disable an account and end its sessions")
    q.add_argument("user", metavar="USER")
    _where(q)
    q = users.add_parser("list", help="list the accounts")
    _where(q)
    p.set_defaults(func=_users)

    p = sub.add_parser("audit", help="print the audit table of `carepath serve` (sign-ins, pages viewed, actions)",
                       description="Print the append-only audit table: one line per sign-in, patient page "
                                   "viewed and action (sequence, time, user, action, patient ref, details).")
    _where(p)
    p.add_argument("--since", type=int, default=0, metavar="SEQ", help="only rows after this sequence number")
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.set_defaults(func=_audit)
