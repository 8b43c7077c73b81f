"""The outbox ledger: the durable record of what carepath has emitted.

Prefect's temporary server is not a record (it drops queued events at exit) and its
caching is at-least-once under concurrency, so exactly-once emission rests here. One
module per concern:

- `schema`: the tables, on one `MetaData` (the migrations in
  carepath.sinks.ledger_migrations create them; a test compares the two);
- `dialect`: the statements SQLite and PostgreSQL spell differently, written once, and
  any other database refused by name;
- `opening`: the URL checked, the file made private, the schema brought up to date;
- `outputs`: each output under its deterministic id, and the plan digests;
- `letter_queue`: the letters outbox and the delivery queue (claims under a lease);
- `documents`: the per-pathway generation that says when a document is stale;
- `pins`: pathway versions archived, patients pinned, migrations applied.

`Ledger` is all of the repositories over one engine. The public names below are the
ones the rest of carepath imports from `carepath.sinks.ledger`.
"""

from __future__ import annotations

from carepath.sinks.ledger.dialect import UnsupportedDatabase, serialize_writers
from carepath.sinks.ledger.documents import DocumentStates
from carepath.sinks.ledger.letter_queue import LetterQueue
from carepath.sinks.ledger.opening import check_ledger, default_url, open_engine, private_sqlite, shown_url, url_problem
from carepath.sinks.ledger.outputs import Outputs, Recorded
from carepath.sinks.ledger.pins import Pins
from carepath.sinks.ledger.problems import LedgerProblem, LedgerUnavailable
from carepath.sinks.ledger.schema import (
    dirty_table,
    generations_table,
    ledger_metadata,
    migrations_table,
    outputs_table,
    patient_state_table,
    pins_table,
    queue_table,
    sends_table,
    snapshots_table,
    versions_table,
    withdrawals_table,
)

__all__ = [
    "Ledger", "LedgerProblem", "LedgerUnavailable", "Recorded", "UnsupportedDatabase", "check_ledger", "default_url",
    "dirty_table", "generations_table", "ledger_metadata", "migrations_table", "outputs_table",
    "patient_state_table", "pins_table", "private_sqlite", "queue_table", "sends_table", "serialize_writers",
    "shown_url",
    "snapshots_table", "url_problem", "versions_table", "withdrawals_table",
]


class Ledger(Outputs, LetterQueue, DocumentStates, Pins):
    """The ledger at `url`, opened (and upgraded to the newest revision) once."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = open_engine(url)

    def close(self) -> None:
        self.engine.dispose()
