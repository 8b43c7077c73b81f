"""The outputs each plan emitted: one row per output under its deterministic id (the
primary key), with a digest of its body. Recording the same plan again changes nothing;
a changed body (a task now done, overdue) is updated in place; an output no longer
planned is retired. Bodies hold pseudonymous refs only, never names."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import cast

import orjson
from sqlalchemy import Connection, case, func, select, text, update

from carepath.sinks.base import Output, OutputKind
from carepath.sinks.ledger.dialect import chunks, serialize_writers
from carepath.sinks.ledger.documents import advance
from carepath.sinks.ledger.repository import Repository
from carepath.sinks.ledger.schema import (
    outputs_table,
    patient_state_table,
    sends_table,
    worklist_patients_table,
    worklist_tasks_table,
)

# The channels that sent letters, each found through the key's index (a loose index scan
# that SQLite and PostgreSQL both run in a few steps, however many sends there are).
SENT_CHANNELS = text(
    "WITH RECURSIVE ch(channel) AS (SELECT MIN(channel) FROM letter_sends UNION ALL "
    "SELECT (SELECT MIN(channel) FROM letter_sends WHERE channel > ch.channel) FROM ch WHERE ch.channel IS NOT NULL) "
    "SELECT channel FROM ch WHERE channel IS NOT NULL")

_KIND_ORDER = {OutputKind.PATIENT.value: 0, OutputKind.TASK.value: 1, OutputKind.LETTER.value: 2}


@dataclass(frozen=True)
class Recorded:
    new: int = 0
    changed: int = 0
    unchanged: int = 0
    retired: int = 0

    def __add__(self, other: Recorded) -> Recorded:
        return Recorded(self.new + other.new, self.changed + other.changed,
                        self.unchanged + other.unchanged, self.retired + other.retired)


class Outputs(Repository):
    def record(self, pathway: str, patients: Sequence[str], outputs: Sequence[Output], run: str) -> Recorded:
        """Record the complete current outputs of `patients` in one transaction: new ids
        inserted, changed bodies updated in place, ids no longer planned for these
        patients retired. Idempotent."""
        wanted = {o.id: o for o in outputs}
        with self.engine.begin() as conn:
            serialize_writers(conn, f"outputs:{pathway}")
            existing: dict[str, tuple[str, int]] = {}
            for chunk in chunks(list(patients)):
                rows = conn.execute(select(outputs_table.c.id, outputs_table.c.digest, outputs_table.c.retired)
                                    .where(outputs_table.c.pathway == pathway, outputs_table.c.patient.in_(chunk)))
                existing.update((r.id, (r.digest, r.retired)) for r in rows)
            new = [o for o in outputs if o.id not in existing]
            changed = [o for o in outputs if o.id in existing and existing[o.id] != (o.digest, 0)]
            gone = [i for i, (_, retired) in existing.items() if i not in wanted and not retired]
            if not (new or changed or gone):
                return Recorded(0, 0, len(outputs), 0)
            generation = advance(conn, pathway)
            for batch in chunks(new):
                conn.execute(outputs_table.insert(), [
                    {"id": o.id, "kind": o.kind.value, "patient": o.patient, "pathway": pathway,
                     "digest": o.digest, "body": orjson.dumps(o.body).decode(), "retired": 0,
                     "first_run": run, "updated_run": run, "changed_gen": generation} for o in batch])
            for o in changed:
                conn.execute(update(outputs_table).where(outputs_table.c.pathway == pathway,
                                                         outputs_table.c.id == o.id).values(
                    digest=o.digest, body=orjson.dumps(o.body).decode(), retired=0, updated_run=run,
                    changed_gen=generation))
            for chunk in chunks(gone):
                conn.execute(update(outputs_table).where(outputs_table.c.pathway == pathway,
                                                         outputs_table.c.id.in_(chunk))
                             .values(retired=1, updated_run=run, changed_gen=generation))
        return Recorded(len(new), len(changed), len(outputs) - len(new) - len(changed), len(gone))

    def current_patients(self, pathway: str) -> set[str]:
        """Every patient with current outputs (a scan of the pathway's outputs: for the rare
        runs that re-plan everyone)."""
        with self.engine.connect() as conn:
            return set(conn.execute(select(outputs_table.c.patient).where(
                outputs_table.c.pathway == pathway, outputs_table.c.retired == 0).distinct()).scalars())

    def retire_patients(self, pathway: str, patients: Sequence[str], run: str) -> int:
        """Retire every output of these patients (they left the patients file) and forget
        their plans' digests, wakes and worklist rows, so that a patient who comes back is
        recorded afresh.
        One transaction; what they were sent stays recorded as sent. Returns the outputs retired."""
        retired = 0
        with self.engine.begin() as conn:
            for chunk in chunks(list(patients)):
                retired += conn.execute(update(outputs_table).where(
                    outputs_table.c.pathway == pathway, outputs_table.c.patient.in_(chunk),
                    outputs_table.c.retired == 0).values(retired=1, updated_run=run)).rowcount
                for table in (patient_state_table, worklist_patients_table, worklist_tasks_table):
                    conn.execute(table.delete().where(table.c.pathway == pathway, table.c.patient.in_(chunk)))
            if retired:
                generation = advance(conn, pathway)
                for chunk in chunks(list(patients)):
                    conn.execute(update(outputs_table).where(
                        outputs_table.c.pathway == pathway, outputs_table.c.patient.in_(chunk),
                        outputs_table.c.retired == 1, outputs_table.c.updated_run == run)
                        .values(changed_gen=generation))
        return retired

    def current(self, pathway: str, kinds: Iterable[OutputKind] | None = None) -> Iterator[Output]:
        """Every current (not retired) output of the pathway in (patient, kind, id) order, streamed."""
        query = select(outputs_table.c.id, outputs_table.c.kind, outputs_table.c.patient,
                       outputs_table.c.body, outputs_table.c.digest).where(outputs_table.c.pathway == pathway,
                                                                           outputs_table.c.retired == 0)
        if kinds is not None:
            query = query.where(outputs_table.c.kind.in_([k.value for k in kinds]))
        query = query.order_by(outputs_table.c.patient, outputs_table.c.kind, outputs_table.c.id)
        with self.engine.connect() as conn:
            result = conn.execution_options(stream_results=True, yield_per=2000).execute(query)
            rows = iter(result)
            # SQL sorts kinds alphabetically; sinks want patient, tasks, letters per patient.
            block: list = []
            for row in rows:
                if block and row.patient != block[0].patient:
                    yield from _in_kind_order(block)
                    block = []
                block.append(row)
            yield from _in_kind_order(block)

    def letters_with_sends(self, pathway: str) -> Iterator[tuple[str, dict, str | None]]:
        """Every current letter of the pathway as (patient, body, first sent_at or None), in
        (patient, id) order, streamed."""
        sends = (select(sends_table.c.output_id, func.min(sends_table.c.sent_at).label("sent_at"))
                 .group_by(sends_table.c.output_id).subquery())
        join = outputs_table.outerjoin(sends, sends.c.output_id == outputs_table.c.id)
        query = (select(outputs_table.c.patient, outputs_table.c.body, sends.c.sent_at).select_from(join)
                 .where(outputs_table.c.pathway == pathway, outputs_table.c.retired == 0,
                        outputs_table.c.kind == OutputKind.LETTER.value)
                 .order_by(outputs_table.c.patient, outputs_table.c.id))
        with self.engine.connect() as conn:
            for row in conn.execution_options(stream_results=True, yield_per=2000).execute(query):
                yield row.patient, orjson.loads(row.body), row.sent_at

    def patient_outputs(self, pathway: str, patient: str) -> list[tuple[Output, str | None]]:
        """One patient's current outputs under one pathway in (kind, id) order, each with
        its letter's first `sent_at` (None when unsent or not a letter): the per-patient
        record an event-triggered run writes, read through the patient index."""
        query = (select(outputs_table.c.id, outputs_table.c.kind, outputs_table.c.patient, outputs_table.c.body,
                        outputs_table.c.digest)
                 .where(outputs_table.c.patient == patient, outputs_table.c.pathway == pathway,
                        outputs_table.c.retired == 0))
        with self.engine.connect() as conn:
            rows = list(conn.execute(query))
            letters = [r.id for r in rows if r.kind == OutputKind.LETTER.value]
            sent = self._first_sends(conn, letters) if letters else {}
        return [(o, sent.get(o.id)) for o in _in_kind_order(rows)]

    def _first_sends(self, conn: Connection, letter_ids: list[str]) -> dict[str, str]:
        """The first `sent_at` of those letters that were sent. Looked up by (channel, id),
        the sends table's key, so its cost does not grow with the table (by id alone it is
        a scan of every send of the cohort)."""
        channels = list(conn.execute(SENT_CHANNELS).scalars())
        found: dict[str, str] = {}
        for chunk in chunks(letter_ids):
            rows = conn.execute(select(sends_table.c.output_id, func.min(sends_table.c.sent_at).label("sent_at"))
                                .where(sends_table.c.channel.in_(channels), sends_table.c.output_id.in_(chunk))
                                .group_by(sends_table.c.output_id))
            found.update((r.output_id, r.sent_at) for r in rows)
        return found

    def counts(self, pathway: str) -> dict[str, int]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(outputs_table.c.kind, func.count())
                                .where(outputs_table.c.pathway == pathway, outputs_table.c.retired == 0)
                                .group_by(outputs_table.c.kind))
            return {kind: n for kind, n in rows}

    def plan_digests(self, pathway: str, patients: Sequence[str]) -> dict[str, str]:
        """The digest of each patient's plan as last recorded (absent: compare every output)."""
        found = self._per_patient(patient_state_table, patient_state_table.c.digest, pathway, patients)
        return {ref: digest for ref, digest in found.items() if digest is not None}

    def changed_in(self, pathway: str, run: str) -> dict[str, set[str]]:
        """The current outputs the run created or changed, by patient (a sweep's change feed)."""
        o = outputs_table.c
        found: dict[str, set[str]] = {}
        with self.engine.connect() as conn:
            for r in conn.execute(select(o.patient, o.id).where(o.pathway == pathway, o.updated_run == run,
                                                                o.retired == 0)):
                found.setdefault(r.patient, set()).add(r.id)
        return found

    def changed_since(self, pathway: str, generation: int) -> dict[str, set[str]]:
        """The current outputs whose exported state changed after that generation, by
        patient, whichever run changed them (a sweep, an event-triggered re-plan, a send)."""
        o = outputs_table.c
        found: dict[str, set[str]] = {}
        with self.engine.connect() as conn:
            for r in conn.execute(select(o.patient, o.id).where(o.pathway == pathway, o.changed_gen > generation,
                                                                o.retired == 0)):
                found.setdefault(r.patient, set()).add(r.id)
        return found

    def document_rows(self, pathway: str, kinds: Iterable[OutputKind] | None = None,
                      patients: Sequence[str] | None = None,
                      ) -> Iterator[tuple[str, str, str, str, str, str | None]]:
        """`patients`: only theirs (in ref order, a batch at a time)."""
        if patients is not None:
            for chunk in chunks(sorted(patients)):
                yield from self._document_rows(pathway, kinds, chunk)
            return
        yield from self._document_rows(pathway, kinds, None)

    def _document_rows(self, pathway: str, kinds: Iterable[OutputKind] | None,
                       patients: list[str] | None) -> Iterator[tuple[str, str, str, str, str, str | None]]:
        """Every current output of the pathway as stored — (id, kind, patient, body as JSON
        text, digest, first `sent_at` of a letter a channel sent, else None) — in (patient,
        care plan / tasks / letters, id) order, streamed: one query that feeds every
        document of a sweep (`current` and `letters_with_sends` are the same rows split in
        two queries, with each body decoded into an `Output` there). `kinds`: only those."""
        sends = (select(sends_table.c.output_id, func.min(sends_table.c.sent_at).label("sent_at"))
                 .group_by(sends_table.c.output_id).subquery())
        kind = outputs_table.c.kind
        join = outputs_table.outerjoin(sends, (sends.c.output_id == outputs_table.c.id)
                                       & (kind == OutputKind.LETTER.value))
        order = case({OutputKind.PATIENT.value: 0, OutputKind.TASK.value: 1}, value=kind, else_=2)
        query = (select(outputs_table.c.id, kind, outputs_table.c.patient, outputs_table.c.body,
                        outputs_table.c.digest, sends.c.sent_at).select_from(join)
                 .where(outputs_table.c.pathway == pathway, outputs_table.c.retired == 0)
                 .order_by(outputs_table.c.patient, order, outputs_table.c.id))
        if kinds is not None:
            query = query.where(kind.in_(sorted(k.value for k in kinds)))
        if patients is not None:
            query = query.where(outputs_table.c.patient.in_(patients))
        with self.engine.connect() as conn:
            for rows in conn.execution_options(stream_results=True, yield_per=2000).execute(query).partitions():
                yield from cast("list[tuple[str, str, str, str, str, str | None]]", rows)



def _in_kind_order(rows: list) -> Iterator[Output]:
    for r in sorted(rows, key=lambda r: (_KIND_ORDER[r.kind], r.id)):
        yield Output(r.id, OutputKind(r.kind), r.patient, orjson.loads(r.body), r.digest)
