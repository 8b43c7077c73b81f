"""Starting `carepath serve`, and the account and audit commands' library calls, so the
CLI stays a few lines of argument handling."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from carepath.loading import load_pathway
from carepath.serve.access import ADMIN, FILE_NAME, AccessProblem, AccessStore, AuditRow, path_for

ACCESS_DB_ENV = "CAREPATH_ACCESS_DB"


class NoLedger(ValueError):
    """The ledger to serve does not exist yet."""


def default_access_path() -> Path:
    """The machine's accounts database, used when nothing names one: `carepath users add
    USER --role ROLE` alone must create an account that `carepath serve --ledger URL` then
    finds, whatever ledger it serves."""
    data_home = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data_home) / "carepath" / FILE_NAME


def access_path(ledger_url: str | None, access_db: str | None) -> Path:
    """--access-db, else $CAREPATH_ACCESS_DB, else `access.sqlite` beside a SQLite ledger
    when one is named and that file exists (or the machine's has no accounts either), else
    the machine's (`default_access_path`)."""
    chosen = access_db or os.environ.get(ACCESS_DB_ENV) or None
    if chosen is not None:
        return path_for(ledger_url or "", chosen)
    fallback = default_access_path()
    if ledger_url is None or not ledger_url.startswith("sqlite:///"):
        return fallback
    beside = path_for(ledger_url, None)
    return beside if beside.exists() or not fallback.exists() else fallback


def pathway_roles(pathways: Iterable[str | Path]) -> frozenset[str]:
    """The roles of these pathways' steps, plus the administrator."""
    roles = {ADMIN}
    for path in pathways:
        roles |= {s.role for s in load_pathway(path).steps.values()}
    return frozenset(roles)


def add_user(store: AccessStore, name: str, role: str, password: str, pathways: Sequence[str]) -> None:
    if pathways:
        roles = pathway_roles(pathways)
    else:  # no pathway to check against: any well-formed role name (serve warns about unknown ones)
        if not role.replace("_", "").isalnum() or not role[:1].isalpha():
            raise AccessProblem(f"{role!r} is not a role name")
        roles = frozenset({role})
    store.add_user(name, role, password, roles)


def audit_lines(rows: Iterable[AuditRow]) -> Iterable[str]:
    for r in rows:
        detail = " ".join(f"{k}={v}" for k, v in sorted(r.detail.items()))
        yield f"{r.seq}\t{r.at}\t{r.user}\t{r.action}\t{r.patient or '-'}\t{detail}"


@dataclass(frozen=True)
class ServeOptions:
    pathways: Sequence[str]
    ledger: str
    patients: str
    events: str
    out: str | None = None
    access_db: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    idle_minutes: float = 15.0
    secure_cookies: bool = False
    user_header: str | None = None
    as_of: datetime | None = None     # a demo's clock starts here and runs
    rows: int = 50
    pdf: bool = True


def out_dir(ledger: str, out: str | None) -> Path:
    if out:
        return Path(out)
    if ledger.startswith("sqlite:///"):
        return Path(ledger.removeprefix("sqlite:///")).parent
    raise AccessProblem("the ledger is not a SQLite file: name the output folder with --out DIR")


def clock_from(start: datetime | None):  # noqa: ANN201 - a zero-argument callable giving an aware datetime
    if start is None:
        return lambda: datetime.now(UTC)
    began = time.monotonic()
    return lambda: start + timedelta(seconds=time.monotonic() - began)


def build(options: ServeOptions):  # noqa: ANN201 - (Starlette app, Site, AccessStore, warnings)
    from carepath.serve.app import Settings, create_app
    from carepath.serve.site import Site

    if options.ledger.startswith("sqlite:///") and not Path(options.ledger.removeprefix("sqlite:///")).exists():
        raise NoLedger(f"no ledger at {options.ledger.removeprefix('sqlite:///')}: run a sweep first "
                            "(`carepath run ... --out DIR` writes DIR/ledger.sqlite)")
    store = AccessStore(access_path(options.ledger, options.access_db))
    site = Site(options.pathways, options.ledger, options.patients, options.events,
                out_dir(options.ledger, options.out), clock_from(options.as_of), rows=options.rows, pdf=options.pdf)
    warnings = [f"account {u.name!r} has role {u.role!r}, which no served pathway has: it can see but not act"
                for u in store.users() if u.role not in site.roles and not u.disabled]
    if not store.users():
        warnings.append("no accounts yet: add one with `carepath users add NAME --role ROLE` (password on stdin)")
    settings = Settings(idle_minutes=options.idle_minutes, secure_cookies=options.secure_cookies,
                        user_header=options.user_header)
    return create_app(site, store, settings), site, store, warnings


def serve(options: ServeOptions, announce=print) -> None:  # noqa: ANN001
    import uvicorn

    app, site, _, warnings = build(options)
    for line in warnings:
        announce(f"carepath serve: {line}")
    announce(f"carepath serve: http://{options.host}:{options.port}/ (Ctrl-C stops it)")
    try:
        # proxy_headers: X-Forwarded-Proto from the trusted reverse proxy (127.0.0.1 by
        # default, FORWARDED_ALLOW_IPS) makes request.url https, so cookies are Secure.
        uvicorn.run(app, host=options.host, port=options.port, proxy_headers=True, log_level="warning",
                    access_log=False)
    finally:
        site.close()
