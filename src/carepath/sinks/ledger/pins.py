"""Version pinning: each version's source archived, the version each patient is planned
under, and the migrations applied (their step maps and the work they withdrew)."""

from __future__ import annotations

from collections.abc import Sequence

import orjson
from sqlalchemy import func, select

from carepath.sinks.ledger.dialect import serialize_writers
from carepath.sinks.ledger.repository import Repository
from carepath.sinks.ledger.schema import migrations_table, pins_table, versions_table, withdrawals_table


class Pins(Repository):
    def remember_version(self, pathway: str, version: str, digest: str, source: str) -> str | None:
        """Archive a pathway version's source; returns the digest already archived under
        that version when it differs (the same version number reused for other rules)."""
        with self.engine.begin() as conn:
            serialize_writers(conn, f"versions:{pathway}")
            known = conn.execute(select(versions_table.c.digest).where(
                versions_table.c.pathway == pathway, versions_table.c.version == version)).scalar_one_or_none()
            if known is None:
                conn.execute(versions_table.insert().values(pathway=pathway, version=version,
                                                            digest=digest, source=source))
                return None
            return None if known == digest else known

    def archived_source(self, pathway: str, version: str) -> str | None:
        with self.engine.connect() as conn:
            return conn.execute(select(versions_table.c.source).where(
                versions_table.c.pathway == pathway, versions_table.c.version == version)).scalar_one_or_none()

    def pins(self, pathway: str, patients: Sequence[str]) -> dict[str, str]:
        return self._per_patient(pins_table, pins_table.c.version, pathway, patients)

    def pin(self, pathway: str, versions: dict[str, str], run: str) -> None:
        """Pin (or, after a migration, re-pin) patients to versions."""
        self._upsert(pins_table, ["patient", "pathway"], ["version", "run"],
                     [{"patient": p, "pathway": pathway, "version": v, "run": run} for p, v in versions.items()])

    def version_counts(self, pathway: str) -> dict[str, int]:
        """Patients pinned to each version of the pathway (the versions in force)."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(pins_table.c.version, func.count()).where(pins_table.c.pathway == pathway)
                                .group_by(pins_table.c.version))
            return {version: n for version, n in rows}

    def archived_versions(self, pathway: str) -> list[str]:
        with self.engine.connect() as conn:
            return sorted(conn.execute(select(versions_table.c.version).where(
                versions_table.c.pathway == pathway)).scalars())

    def record_migration(self, pathway: str, from_version: str, to_version: str, steps: dict[str, list[str]],
                         reason: str, run: str) -> None:
        self._upsert(migrations_table, ["pathway", "from_version", "to_version"], ["steps", "reason", "run"],
                     [{"pathway": pathway, "from_version": from_version, "to_version": to_version,
                       "steps": orjson.dumps(steps, option=orjson.OPT_SORT_KEYS).decode(), "reason": reason,
                       "run": run}])

    def record_withdrawals(self, pathway: str, rows: list[dict[str, str]], run: str) -> None:
        """Open work a migration withdrew: dicts with task, patient, step, from_version, to_version, why."""
        self._upsert(withdrawals_table, ["pathway", "task"], ["patient", "step", "from_version", "to_version", "why",
                                                             "run"],
                     [{"pathway": pathway, "run": run, **row} for row in rows])

    def withdrawals(self, pathway: str) -> list[dict[str, str]]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(withdrawals_table).where(withdrawals_table.c.pathway == pathway)
                                .order_by(withdrawals_table.c.patient, withdrawals_table.c.task))
            return [dict(r._mapping) for r in rows]

    def step_renames(self, pathway: str) -> dict[str, tuple[str, ...]]:
        """Every applied migration's step map, merged: old step → the steps that replaced it."""
        merged: dict[str, set[str]] = {}
        with self.engine.connect() as conn:
            for (steps,) in conn.execute(select(migrations_table.c.steps).where(
                    migrations_table.c.pathway == pathway)):
                for old, new in orjson.loads(steps).items():
                    merged.setdefault(old, set()).update(new)
        return {old: tuple(sorted(new)) for old, new in merged.items()}
