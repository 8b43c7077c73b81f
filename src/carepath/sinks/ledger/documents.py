"""When the documents are stale: a generation per pathway that moves with every change of
its outputs and sends, and what each document last showed. A document sink (SNAPSHOT)
is rewritten only when something changed (or the as-of it shows did) since it was last
written."""

from __future__ import annotations

from sqlalchemy import Connection, select

from carepath.sinks.ledger.dialect import insert
from carepath.sinks.ledger.repository import Repository
from carepath.sinks.ledger.schema import generations_table, snapshots_table


def advance(conn: Connection, pathway: str) -> None:
    """Move the pathway's generation, in the transaction that changed what it shows."""
    stmt = insert(conn, generations_table).values(pathway=pathway, value=1)
    conn.execute(stmt.on_conflict_do_update(index_elements=["pathway"],
                                            set_={"value": generations_table.c.value + 1}))


class DocumentStates(Repository):
    def generation(self, pathway: str) -> int:
        """Moves whenever the pathway's outputs or sends change (0 before any)."""
        with self.engine.connect() as conn:
            return conn.execute(select(generations_table.c.value).where(
                generations_table.c.pathway == pathway)).scalar_one_or_none() or 0

    def snapshot_state(self, pathway: str, sink: str) -> str | None:
        """What the pathway's document of that sink last showed (see `mark_snapshot`), or None."""
        with self.engine.connect() as conn:
            return conn.execute(select(snapshots_table.c.state).where(
                snapshots_table.c.pathway == pathway, snapshots_table.c.sink == sink)).scalar_one_or_none()

    def mark_snapshot(self, pathway: str, sink: str, state: str, run: str) -> None:
        self._upsert(snapshots_table, ["pathway", "sink"], ["state", "run"],
                     [{"pathway": pathway, "sink": sink, "state": state, "run": run}])
