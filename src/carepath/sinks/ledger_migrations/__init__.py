"""The ledger's schema as Alembic revisions, run when a ledger is opened.

`versions/` holds one file per revision; `REVISIONS` lists them in order, so a ledger at
the newest one is recognised with a single query and without reading the revision files
(every process-pool worker opens the ledger). A ledger behind it is upgraded under a
database lock — SQLite: a `BEGIN IMMEDIATE` transaction; PostgreSQL: a transaction-scoped
advisory lock — inside one transaction: processes opening it at the same moment wait, the
first upgrades, the others then find it current; an upgrade that fails leaves it as it was.

The revision is kept in its own table, `carepath_ledger_version`, not Alembic's default
`alembic_version`: a clinic may put the ledger in the database Prefect itself migrates.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Connection, Engine, inspect, text
from sqlalchemy.exc import OperationalError, ProgrammingError

# Oldest first; the last is the schema the ledger's code queries (the table definitions
# in carepath.sinks.ledger.schema). A new revision file appends its id here.
REVISIONS: tuple[str, ...] = ("0001", "0002", "0003", "0004", "0005", "0006", "0007", "0008")
HEAD = REVISIONS[-1]
VERSION_TABLE = "carepath_ledger_version"

# PostgreSQL advisory locks are one 64-bit key per database: "carepath" in ASCII.
_PG_LOCK = int.from_bytes(b"carepath", "big")
_HERE = Path(__file__).resolve().parent


class NewerLedger(Exception):
    """The ledger is at a revision this carepath does not know: a newer carepath wrote it."""

    def __init__(self, revision: str) -> None:
        self.revision = revision
        super().__init__(f"the ledger is at schema revision {revision}, which this carepath does not know "
                         f"(it knows {', '.join(REVISIONS)})")


def current(conn: Connection) -> str | None:
    """The ledger's revision; None for an empty database and for a ledger written before
    the ledger had migrations (its tables present, no version table)."""
    if not inspect(conn).has_table(VERSION_TABLE):
        return None
    return conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar()


def check(conn: Connection) -> None:
    """Raise NewerLedger when this carepath cannot use the ledger's schema."""
    found = current(conn)
    if found is not None and found not in REVISIONS:
        raise NewerLedger(found)


def upgrade(engine: Engine) -> bool:
    """Bring the ledger to HEAD; True when a revision ran (False: it was already there)."""
    if _at_head(engine):
        return False
    with engine.connect() as conn:
        _lock(conn)
        check(conn)
        if current(conn) == HEAD:  # another process upgraded it while we waited for the lock
            conn.rollback()
            return False
        from alembic import command
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(_HERE).replace("%", "%%"))
        config.attributes["connection"] = conn  # env.py runs the revisions on it, inside our transaction
        command.upgrade(config, HEAD)
        conn.commit()
    return True


def _at_head(engine: Engine) -> bool:
    with engine.connect() as conn:
        try:
            return conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars().all() == [HEAD]
        except (OperationalError, ProgrammingError):  # no version table yet
            return False


def _lock(conn: Connection) -> None:
    """Begin the upgrade's transaction holding the database's write lock."""
    if conn.dialect.name == "sqlite":
        # SQLAlchemy leaves BEGIN to the driver, which would take the write lock only at
        # the first write: two processes could both read "not current" and both upgrade.
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    elif conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK})
