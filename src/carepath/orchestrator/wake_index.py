"""Which patients a sweep must re-plan: the wake index.

Each plan records when it next changes with no new event (`PatientPlan.wake`: a window
closing, a letter falling due or expiring, recurring work opening). A patient is
re-planned when one of these holds, and only then:

- new lines name them (marked by the event store's ingest, in its transaction);
- they are new, or their line in the patients file changed (name, zone, email);
- their wake has come (`wake <= as_of`), or the as-of went back before their last plan;
- the pathway's rules changed (another digest), a migration was asked for, the events
  file was replaced, or `--full`;
- a patient who shares an event id with them was added or removed (that may change how
  a line of theirs is judged).

Otherwise the same events at the new as-of give the same plan (the property
tests/test_incremental.py checks against full re-plans), so leaving them alone is exact.

Each row also keeps what the run summary and `rejected.jsonl` need from the patient's
last plan (its workload and its rejected lines), so an incremental sweep reports on the
whole cohort while planning few.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson
from sqlalchemy import Connection, select

from carepath.orchestrator.event_store import key
from carepath.records.types import Patient
from carepath.sinks.ledger.dialect import chunks, insert, upsert
from carepath.sinks.ledger.schema import dirty_table
from carepath.sinks.ledger.schema import patient_state_table as wake_table


def instant(moment: datetime) -> str:
    """UTC, microseconds always written: equal-width text that sorts as the instants do."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")


def record_digest(patient: Patient) -> str:
    return hashlib.sha256(orjson.dumps([patient.ref, patient.given_name, patient.family_name, patient.timezone,
                                        patient.email])).hexdigest()[:32]


@dataclass(frozen=True)
class Planned:
    """One patient's row after a plan."""

    patient: str
    wake: datetime | None
    record: str
    summary: dict[str, object]
    digest: str | None = None  # of the whole plan as recorded (None: refused, nothing recorded)


@dataclass(frozen=True)
class Due:
    refs: tuple[str, ...]   # to re-plan, in ref order
    reasons: dict[str, int]  # why, counted (for the run's log)


class WakeIndex:
    def __init__(self, engine, pathway: str) -> None:  # noqa: ANN001 - the ledger's SQLAlchemy Engine
        self.engine, self.pathway = engine, pathway

    def mark_dirty(self, conn: Connection, refs: Iterable[str], restarted: bool = False) -> None:
        """Called inside the ingest's transaction with the (keyed) refs of new lines. When the
        events file was read anew (`restarted`), every row is dropped: a patient whose lines
        are gone has no new line to mark them, and whichever run comes next (an event run
        may have done the reading) must re-plan everyone."""
        if restarted:
            conn.execute(wake_table.delete().where(wake_table.c.pathway == self.pathway))
        rows = [{"pathway": self.pathway, "patient": ref} for ref in refs]
        stmt = insert(conn, dirty_table).on_conflict_do_nothing(index_elements=["pathway", "patient"])
        for chunk in chunks(rows):
            conn.execute(stmt, chunk)

    def due(self, patients: Mapping[str, Patient], as_of: datetime, rules: str, *, full: bool,
            sharing: Callable[[set[str]], set[str]]) -> Due:
        """The patients to re-plan at `as_of` (see the module notes)."""
        now, t = instant(as_of), wake_table.c
        mine = t.pathway == self.pathway
        with self.engine.connect() as conn:
            records: dict[str, str] = {r.patient: r.record for r in conn.execute(select(t.patient, t.record).where(mine))}
            # Asked of the database: the wake through its index; the other two are rare.
            woken = set(conn.execute(select(t.patient).where(mine, t.wake <= now)).scalars())
            other_rules = set(conn.execute(select(t.patient).where(mine, t.rules != rules)).scalars())
            went_back = set(conn.execute(select(t.patient).where(mine, t.as_of > now)).scalars())
            dirty = set(conn.execute(select(dirty_table.c.patient).where(dirty_table.c.pathway == self.pathway))
                        .scalars())
        reasons: dict[str, int] = {}
        chosen: set[str] = set()

        def take(ref: str, why: str) -> None:
            if ref not in chosen:
                chosen.add(ref)
                reasons[why] = reasons.get(why, 0) + 1

        for ref, patient in patients.items():
            record = records.get(ref)
            if full:
                take(ref, "full")
            elif record is None:
                take(ref, "new")
            elif key(ref) in dirty:
                take(ref, "new events")
            elif ref in other_rules:
                take(ref, "other rules")
            elif record != record_digest(patient):
                take(ref, "patient changed")
            elif ref in went_back:
                take(ref, "as-of went back")
            elif ref in woken:
                take(ref, "wake")
        changed = {ref for ref in patients if ref not in records} | {ref for ref in records if ref not in patients}
        if changed and not full:
            keyed = {key(ref): ref for ref in patients}
            for other in sharing(changed):
                if other in keyed:
                    take(keyed[other], "shares an event id")
        return Due(tuple(sorted(chosen)), reasons)

    def remember(self, planned: Iterable[Planned], as_of: datetime, rules: str) -> None:
        """After a shard's outputs were recorded and its due letters queued: each patient's
        state (their plan's digest and wake among it) in one statement, and their dirty
        marks cleared, in one transaction (a run killed before this re-plans them)."""
        planned = list(planned)
        rows: list[dict[str, object]] = [
            {"pathway": self.pathway, "patient": p.patient, "wake": instant(p.wake) if p.wake else None,
             "as_of": instant(as_of), "record": p.record, "rules": rules, "digest": p.digest,
             "summary": orjson.dumps(p.summary).decode()} for p in planned]
        with self.engine.begin() as conn:
            upsert(conn, wake_table, ["pathway", "patient"],
                   ["wake", "as_of", "record", "rules", "digest", "summary"], rows)
            for chunk in chunks([key(p.patient) for p in planned]):
                conn.execute(dirty_table.delete().where(dirty_table.c.pathway == self.pathway,
                                                        dirty_table.c.patient.in_(chunk)))

    def absent(self, patients: Collection[str]) -> list[str]:
        """Patients planned before whose line is no longer in the patients file (removed,
        or now rejected), in ref order."""
        with self.engine.connect() as conn:
            known = conn.execute(select(wake_table.c.patient).where(wake_table.c.pathway == self.pathway))
            return sorted(ref for (ref,) in known if ref not in patients)

    def drop(self, refs: Sequence[str], dirty: Iterable[str] = ()) -> None:
        """Forget these patients' rows (one who comes back is planned as new), and mark
        `dirty` (keyed refs: those sharing an event id with them) for re-planning, in one
        transaction."""
        with self.engine.begin() as conn:
            for chunk in chunks(list(refs)):
                conn.execute(wake_table.delete().where(wake_table.c.pathway == self.pathway,
                                                       wake_table.c.patient.in_(chunk)))
            self.mark_dirty(conn, dirty)

    def forget_wakes(self, refs: Iterable[str]) -> None:
        """These patients are re-planned at the next sweep whatever happens (a letter of
        theirs could not be delivered and is tried again)."""
        rows = [{"pathway": self.pathway, "patient": key(ref)} for ref in refs]
        if rows:
            with self.engine.begin() as conn:
                self.mark_dirty(conn, [r["patient"] for r in rows])  # type: ignore[misc]

    def wakes_between(self, start: datetime, end: datetime) -> list[tuple[str, datetime]]:
        """Every patient whose plan next changes after `start` and before `end` (the timers a sweep asks for)."""
        t = wake_table
        with self.engine.connect() as conn:
            rows = conn.execute(select(t.c.patient, t.c.wake).where(
                t.c.pathway == self.pathway, t.c.wake > instant(start), t.c.wake < instant(end)))
            return [(ref, datetime.fromisoformat(wake)) for ref, wake in rows]

    def rejected_event_lines(self) -> set[int]:
        """The events file's lines the patients' last plans rejected (their numbers)."""
        lines: set[int] = set()
        with self.engine.connect() as conn:
            result = conn.execution_options(stream_results=True).execute(
                select(wake_table.c.summary).where(wake_table.c.pathway == self.pathway))
            for (summary,) in result:
                lines.update(row[1] for row in orjson.loads(summary).get("rejected", ()) if row[0] == "events")
        return lines

    def summaries(self, patients: Collection[str]) -> Iterator[tuple[str, dict[str, object]]]:
        """Each known patient's stored summary, in ref order."""
        with self.engine.connect() as conn:
            result = conn.execution_options(stream_results=True).execute(
                select(wake_table.c.patient, wake_table.c.summary).where(wake_table.c.pathway == self.pathway)
                .order_by(wake_table.c.patient))
            for ref, summary in result:
                if ref in patients:
                    yield ref, orjson.loads(summary)

