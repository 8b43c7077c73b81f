"""When the documents are stale: a generation per pathway that moves with every change of
its outputs and sends, and what each document last showed. A document sink (SNAPSHOT)
is rewritten only when something changed (or the as-of it shows did) since it was last
written."""

from __future__ import annotations

from sqlalchemy import Connection, select

from carepath.sinks.ledger.dialect import insert
from carepath.sinks.ledger.repository import Repository
from carepath.sinks.ledger.schema import generations_table, snapshots_table, sweeps_table


def advance(conn: Connection, pathway: str) -> int:
    """Move the pathway's generation, in the transaction that changed what it shows; the
    new generation (the row stays locked by this transaction, so it is this change's)."""
    stmt = insert(conn, generations_table).values(pathway=pathway, value=1)
    conn.execute(stmt.on_conflict_do_update(index_elements=["pathway"],
                                            set_={"value": generations_table.c.value + 1}))
    return int(conn.execute(select(generations_table.c.value).where(
        generations_table.c.pathway == pathway)).scalar_one())


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

    def record_sweep(self, pathway: str, stamp: str, as_of: str, generation: int, run: str) -> None:
        """A sweep's stamp, as-of (UTC, fixed width) and the generation after it."""
        self._upsert(sweeps_table, ["pathway", "stamp"], ["as_of", "generation", "run"],
                     [{"pathway": pathway, "stamp": stamp, "as_of": as_of, "generation": generation, "run": run}])

    def sweep_generation(self, pathway: str, stamp: str) -> int | None:
        """The generation after the sweep of that stamp; None: no such sweep recorded."""
        with self.engine.connect() as conn:
            return conn.execute(select(sweeps_table.c.generation).where(
                sweeps_table.c.pathway == pathway, sweeps_table.c.stamp == stamp)).scalar_one_or_none()

    def sweep_at(self, pathway: str, as_of: str) -> tuple[str, int] | None:
        """The last sweep (stamp, generation) whose as-of is at or before `as_of` (UTC, fixed width)."""
        s = sweeps_table.c
        with self.engine.connect() as conn:
            row = conn.execute(select(s.stamp, s.generation).where(s.pathway == pathway, s.as_of <= as_of)
                               .order_by(s.as_of.desc(), s.generation.desc()).limit(1)).first()
        return (row.stamp, row.generation) if row else None
