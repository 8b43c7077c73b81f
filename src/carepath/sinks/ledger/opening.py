"""Opening a ledger: its URL checked, a SQLite file made private and put in WAL mode,
the database refused clearly when it cannot serve (corrupt, unsupported, written by a
newer carepath, missing while letters exist), and its schema brought up to date.

SQLite next to the outputs by default (WAL, so parallel shard tasks in other processes
wait instead of failing); any SQLAlchemy URL of a supported database selects another,
e.g. `postgresql+psycopg://…`.
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DatabaseError, OperationalError

from carepath.sinks import ledger_migrations
from carepath.sinks.ledger.dialect import SUPPORTED, UnsupportedDatabase, checked
from carepath.sinks.ledger.problems import LedgerProblem, LedgerUnavailable
from carepath.sinks.ledger.schema import outputs_table


def default_url(out_dir: Path) -> str:
    return f"sqlite:///{(out_dir / 'ledger.sqlite').resolve()}"


def url_problem(url: str) -> str | None:
    """Why `url` cannot serve as the ledger, or None. Checked before a run starts: the URL
    is a flow parameter, which Prefect stores and shows."""
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        parsed = make_url(url)
    except ArgumentError:
        return f"{url!r} is not a database URL (e.g. postgresql+psycopg://carepath@db.example/carepath)"
    if parsed.get_backend_name() not in SUPPORTED:
        return str(UnsupportedDatabase(parsed.get_backend_name()))
    if parsed.password:
        return ("the ledger URL holds a password, and Prefect would store and display it as a flow parameter: "
                "give the password through PGPASSWORD or ~/.pgpass instead")
    try:
        parsed.get_dialect().import_dbapi()
    except (NoSuchModuleError, ImportError) as exc:
        return f"no database driver for {parsed.drivername!r} is installed ({exc})"
    return None


def shown_url(url: str) -> str:
    """The ledger as a message may name it: its file, or its URL without a password."""
    if url.startswith("sqlite:///"):
        return url.removeprefix("sqlite:///")
    return make_url(url).render_as_string(hide_password=True)


def _letters_on_disk(out_dir: Path) -> bool:
    letters = out_dir / "letters"
    return letters.is_dir() and next((p for p in letters.rglob("*.txt") if p.is_file()), None) is not None


def check_ledger(url: str, out_dir: Path, pathway: str | None = None) -> None:
    """Before a run: the ledger can be opened, and letters already on disk are in it.

    Without its ledger a run would take every letter for new and write (send) it again:
    the files under `out_dir/letters` are the evidence that the ledger was used, so a
    missing or empty ledger beside them is refused rather than started afresh. With
    `pathway`, a shared ledger that holds other pathways' outputs but none of this one's
    is refused the same way (an `out` pointed at the wrong shared ledger).
    """
    where = shown_url(url)
    if url.startswith("sqlite:///"):
        path = Path(where)
        if path.exists() and not path.is_file():
            raise LedgerProblem(f"the ledger {path} is not a file")
        if not path.exists():
            if _letters_on_disk(out_dir):
                raise LedgerProblem(_missing(where, out_dir))
            return
    checked(make_url(url).get_backend_name())
    engine = create_engine(url, future=True, **({"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}))
    try:
        with engine.connect() as conn:
            from sqlalchemy import inspect as inspect_db

            inspector = inspect_db(conn)
            has_outputs = inspector.has_table("outputs")
            ledger_migrations.check(conn)
            # One row is enough evidence; counting all of them would scan millions. A ledger
            # from before outputs were kept per pathway has no such column: any row counts.
            query = select(outputs_table.c.id).limit(1)
            scoped = has_outputs and "pathway" in {c["name"] for c in inspector.get_columns("outputs")}
            if pathway is not None and scoped:
                query = query.where(outputs_table.c.pathway == pathway)
            rows = conn.execute(query).first() if has_outputs else None
    except OperationalError as exc:
        if url.startswith("sqlite"):
            raise LedgerProblem(f"the ledger {where} cannot be used ({exc.orig}): check the file, its folder's "
                                "permissions and free disk space") from None
        raise LedgerUnavailable(f"the ledger database {where}", f"{' '.join(str(exc.orig).split())}. Check "
                                "--ledger, that the server runs, and the password in PGPASSWORD or ~/.pgpass") from None
    except DatabaseError as exc:
        raise LedgerProblem(f"the ledger {where} is not a usable carepath ledger ({exc.orig}): restore it from a "
                            f"backup, or move it away together with {out_dir / 'letters'} to start afresh") from None
    except ledger_migrations.NewerLedger as exc:
        raise LedgerProblem(_newer(where, exc)) from None
    finally:
        engine.dispose()
    if not rows and _letters_on_disk(out_dir):
        raise LedgerProblem(_missing(where, out_dir, "is missing or empty" if pathway is None else
                                     f"holds nothing of pathway {pathway}"))


def _newer(where: str, exc: ledger_migrations.NewerLedger) -> str:
    return (f"the ledger {where} was written by a newer carepath: {exc}. Run the carepath version that wrote it "
            "(or a newer one); an older version must not write into it")


def _missing(where: str, out_dir: Path, state: str = "is missing or empty") -> str:
    return (f"the ledger {where} {state}, but {out_dir / 'letters'} holds letters written by earlier "
            "runs: without the ledger every letter would be written again as new. Restore the ledger from a "
            f"backup, or move {out_dir / 'letters'} away to start afresh")


_WAL_PATIENCE_SECONDS = 60.0


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # noqa: ANN001
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout=60000")
    _enter_wal(cursor)
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _enter_wal(cursor: sqlite3.Cursor) -> None:
    """Switch the file to WAL, waiting out other processes that open it at the same moment.
    Changing the journal mode needs the file to itself, and SQLite answers "database is
    locked" at once, without its busy handler, while another connection holds it: so
    several workers opening one new ledger together would fail all but one."""
    deadline = time.monotonic() + _WAL_PATIENCE_SECONDS
    pause = 0.01
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if ("locked" not in str(exc) and "busy" not in str(exc)) or time.monotonic() >= deadline:
                raise
            time.sleep(pause)
            pause = min(pause * 2, 0.5)


def private_sqlite(path: Path) -> None:
    """Create a SQLite ledger file owner-only (0600) before SQLite does (with the umask's
    0644), and tighten an existing one: it holds every event's clinical data. SQLite gives
    its -wal and -shm files the database file's mode."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        for name in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            if name.exists() and name.stat().st_mode & 0o077:
                os.chmod(name, 0o600)
    except (PermissionError, IsADirectoryError):
        pass  # not ours to change (a shared ledger's owner decides); opening it says the rest


def open_engine(url: str) -> Engine:
    """The ledger's engine, its schema at the newest revision (a ledger already current
    costs one query); LedgerProblem when it cannot serve."""
    if url.startswith("sqlite:///"):
        private_sqlite(Path(url.removeprefix("sqlite:///")))
    checked(make_url(url).get_backend_name())
    engine = create_engine(url, future=True, **({"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}))
    if url.startswith("sqlite"):
        event.listen(engine, "connect", _sqlite_pragmas)
    try:
        ledger_migrations.upgrade(engine)
    except ledger_migrations.NewerLedger as exc:
        engine.dispose()
        raise LedgerProblem(_newer(shown_url(url), exc)) from None
    return engine
