"""The statement shapes the ledger's databases spell differently, written once.

The ledger runs on SQLite and PostgreSQL; both spell an upsert `INSERT … ON CONFLICT`,
through their own SQLAlchemy dialect. Any other database is refused by name when the
ledger is opened, not half-used. Batches stay under SQLite's bound-parameter limit.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, Table, text
from sqlalchemy.dialects import postgresql, sqlite

from carepath.sinks.ledger.problems import LedgerProblem

SUPPORTED = ("sqlite", "postgresql")
BATCH = 500  # rows per statement: under SQLite's bound-parameter limit

T = TypeVar("T")


class UnsupportedDatabase(LedgerProblem):
    """The ledger URL names a database carepath does not run on (exit 1)."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"the ledger cannot be kept in a {name} database: carepath supports "
                         f"{' and '.join(SUPPORTED)} (e.g. sqlite:///ledger.sqlite, "
                         "postgresql+psycopg://carepath@db.example/carepath)")


def checked(name: str) -> str:
    """`name` (a SQLAlchemy dialect's name) when the ledger supports it; else UnsupportedDatabase."""
    if name not in SUPPORTED:
        raise UnsupportedDatabase(name)
    return name


def insert(bind: Connection | Engine, table: Table) -> Any:  # noqa: ANN401 - either dialect's Insert
    """An INSERT that takes `on_conflict_do_update` / `on_conflict_do_nothing`."""
    name = checked(bind.dialect.name)
    return (postgresql if name == "postgresql" else sqlite).insert(table)


def chunks(items: Sequence[T]) -> Iterator[list[T]]:
    for start in range(0, len(items), BATCH):
        yield list(items[start:start + BATCH])


def upsert(conn: Connection, table: Table, keys: list[str], columns: list[str],
           rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert rows, or update `columns` of those whose `keys` exist (in `conn`'s transaction)."""
    for chunk in chunks(rows):
        stmt = insert(conn, table).values(chunk)
        conn.execute(stmt.on_conflict_do_update(index_elements=keys, set_={c: stmt.excluded[c] for c in columns}))


def insert_new(conn: Connection, table: Table, keys: list[str], rows: Sequence[Mapping[str, Any]]) -> int:
    """Insert the rows whose `keys` are not there yet; how many were."""
    added = 0
    for chunk in chunks(rows):
        stmt = insert(conn, table).values(chunk)
        added += conn.execute(stmt.on_conflict_do_nothing(index_elements=keys)).rowcount
    return added


def serialize_writers(conn: Connection, key: str) -> None:
    """Begin a read-then-write transaction holding the lock other processes' such
    transactions on `key` wait for: several processes sharing the ledger (concurrent first
    runs, a sweep beside an event run, workers on several hosts) would otherwise each read
    "not there yet" and insert the same rows, and all but one fail on the unique key.
    SQLite: the database's write lock at once (SQLAlchemy leaves BEGIN to the driver, which
    takes it only at the first write); PostgreSQL: a transaction-scoped advisory lock."""
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    elif conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": f"carepath:{key}"})
