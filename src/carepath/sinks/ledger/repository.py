"""What every repository of the ledger shares: its engine and two statement shapes."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Column, Engine, Table, select

from carepath.sinks.ledger.dialect import chunks, upsert


class Repository:
    """One concern's reads and writes; `Ledger` is all of them over one engine."""

    engine: Engine

    def _per_patient(self, table: Table, value: Column, pathway: str, patients: Sequence[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        with self.engine.connect() as conn:
            for chunk in chunks(list(patients)):
                rows = conn.execute(select(table.c.patient, value).where(
                    table.c.pathway == pathway, table.c.patient.in_(chunk)))
                found.update((r[0], r[1]) for r in rows)
        return found

    def _upsert(self, table: Table, keys: list[str], columns: list[str], rows: list[dict[str, object]]) -> None:
        """Insert rows, or update `columns` of those whose `keys` exist (one transaction)."""
        if rows:
            with self.engine.begin() as conn:
                upsert(conn, table, keys, columns, rows)
