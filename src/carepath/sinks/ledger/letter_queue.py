"""The letters outbox and the delivery queue.

Every due letter never sent is queued (`letter_queue`); the `deliver-letters` step claims
it (a lease, one conditional update) before a channel sees it, and records its send
(`letter_sends`) and takes it off the queue in one transaction after the channel
returned: processes sharing the ledger send it once, and a run killed midway sends the
same ids again at worst, never extra ones.
"""

from __future__ import annotations

from collections.abc import Sequence

import orjson
from sqlalchemy import Connection, func, select, update

from carepath.sinks.base import Output, OutputKind
from carepath.sinks.ledger.dialect import chunks, insert, insert_new
from carepath.sinks.ledger.documents import advance
from carepath.sinks.ledger.outputs import SENT_CHANNELS
from carepath.sinks.ledger.repository import Repository
from carepath.sinks.ledger.schema import outputs_table, queue_table, sends_table


class LetterQueue(Repository):
    def unsent(self, outputs: Sequence[Output]) -> list[Output]:
        """Those of `outputs` no channel has sent (in any form): a letter reaches the
        patient once, even when the clinic changes channel."""
        sent: set[str] = set()
        with self.engine.connect() as conn:
            channels = list(conn.execute(SENT_CHANNELS).scalars()) if outputs else []
            for chunk in chunks([o.id for o in outputs]):
                # By (channel, id), the key: by id alone each call scans every send of the cohort.
                rows = conn.execute(select(sends_table.c.output_id).where(sends_table.c.channel.in_(channels),
                                                                          sends_table.c.output_id.in_(chunk)))
                sent.update(r.output_id for r in rows)
        return [o for o in outputs if o.id not in sent]

    def mark_sent(self, pathway: str, channel: str, outputs: Sequence[Output], sent_at: str, run: str) -> None:
        """Record sends of the pathway's letters; a letter already recorded keeps its first `sent_at`."""
        rows = [{"channel": channel, "output_id": o.id, "sent_at": sent_at, "run": run} for o in outputs]
        with self.engine.begin() as conn:
            if insert_new(conn, sends_table, ["channel", "output_id"], rows):
                # letters.jsonl shows sends: it must be rewritten
                _sent_since(conn, pathway, [o.id for o in outputs], advance(conn, pathway))

    def queue_letters(self, pathway: str, letters: Sequence[Output], run: str) -> int:
        """Queue due letters for the `deliver-letters` step (a letter already queued, or
        failed, stays as it is); how many were added."""
        rows = [{"pathway": pathway, "letter_id": o.id, "patient": o.patient, "state": "queued", "reason": None,
                 "attempts": 0, "claimed_by": None, "claimed_until": None, "run": run} for o in letters]
        with self.engine.begin() as conn:
            return insert_new(conn, queue_table, ["pathway", "letter_id"], rows)

    def claim_letters(self, pathway: str, token: str, now: str, until: str, limit: int,
                      patient: str | None = None) -> list[tuple[str, str]]:
        """Claim up to `limit` queued (or failed) letters nobody holds a live lease on (only
        `patient`'s with one), in one transaction: the conditional update is re-checked per
        row by the database, so of two processes claiming at once each row goes to one.
        Returns the (letter id, patient) pairs `token` holds: a fresh token per claim."""
        q = queue_table.c
        free = (q.pathway == pathway) & (q.claimed_until.is_(None) | (q.claimed_until < now))
        if patient is not None:
            free = free & (q.patient == patient)
        candidates = select(q.letter_id).where(free).order_by(q.patient, q.letter_id).limit(limit)
        if self.engine.dialect.name == "postgresql":
            candidates = candidates.with_for_update(skip_locked=True)
        with self.engine.begin() as conn:
            # One statement, so SQLite takes its write lock before it reads which rows are free.
            conn.execute(update(queue_table).where(free, q.letter_id.in_(candidates))
                         .values(claimed_by=token, claimed_until=until))
            rows = conn.execute(select(q.letter_id, q.patient).where(q.pathway == pathway, q.claimed_by == token)
                                .order_by(q.patient, q.letter_id))
            return [(r.letter_id, r.patient) for r in rows]

    def settle_sent(self, pathway: str, channel: str, letter_ids: Sequence[str], sent_at: str, run: str) -> None:
        """Record letters as sent and take them off the queue, in one transaction."""
        if not letter_ids:
            return
        q = queue_table.c
        with self.engine.begin() as conn:
            for chunk in chunks(list(letter_ids)):
                stmt = insert(conn, sends_table).values(
                    [{"channel": channel, "output_id": i, "sent_at": sent_at, "run": run} for i in chunk])
                conn.execute(stmt.on_conflict_do_nothing(index_elements=["channel", "output_id"]))
                conn.execute(queue_table.delete().where(q.pathway == pathway, q.letter_id.in_(chunk)))
            # letters.jsonl shows sends: it must be rewritten
            _sent_since(conn, pathway, list(letter_ids), advance(conn, pathway))

    def settle_failed(self, pathway: str, token: str, reasons: dict[str, str]) -> None:
        """Letters that could not be rendered or sent: kept on the queue as failed, with a
        reason free of patient data; still held by `token` (so this delivery does not take
        them again) until `release`."""
        q = queue_table.c
        with self.engine.begin() as conn:
            for letter_id, reason in reasons.items():
                conn.execute(update(queue_table).where(q.pathway == pathway, q.letter_id == letter_id,
                                                       q.claimed_by == token)
                             .values(state="failed", reason=reason, attempts=q.attempts + 1))
            if reasons:
                advance(conn, pathway)  # the worklist shows failed letters

    def release(self, pathway: str, token: str) -> int:
        """Give back what `token` still holds (failed letters, or what a mail server that
        went down did not take): the next delivery takes it."""
        q = queue_table.c
        with self.engine.begin() as conn:
            return conn.execute(update(queue_table).where(q.pathway == pathway, q.claimed_by == token)
                                .values(claimed_by=None, claimed_until=None)).rowcount

    def claimants(self, pathway: str, prefix: str) -> list[str]:
        """The tokens holding claims that start with `prefix` (this host's processes)."""
        q = queue_table.c
        with self.engine.connect() as conn:
            return list(conn.execute(select(q.claimed_by).where(q.pathway == pathway, q.claimed_by.like(f"{prefix}%"))
                                     .distinct()).scalars())

    def unqueue(self, pathway: str, letter_ids: Sequence[str]) -> None:
        """Take letters off the queue that must not be sent any more (sent meanwhile,
        expired, withdrawn, no longer planned)."""
        q = queue_table.c
        with self.engine.begin() as conn:
            for chunk in chunks(list(letter_ids)):
                conn.execute(queue_table.delete().where(q.pathway == pathway, q.letter_id.in_(chunk)))

    def queued(self, pathway: str) -> dict[str, int]:
        """Letters on the queue by state (queued, failed)."""
        q = queue_table.c
        with self.engine.connect() as conn:
            rows = conn.execute(select(q.state, func.count()).where(q.pathway == pathway).group_by(q.state))
            return {state: n for state, n in rows}

    def failed_letters(self, pathway: str, limit: int | None = None) -> list[tuple[str, str, str]]:
        """(patient, letter id, reason) of the letters whose delivery failed, by patient."""
        q = queue_table.c
        query = (select(q.patient, q.letter_id, q.reason).where(q.pathway == pathway, q.state == "failed")
                 .order_by(q.patient, q.letter_id))
        if limit is not None:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            return [(r.patient, r.letter_id, r.reason or "") for r in conn.execute(query)]

    def delivery_rows(self, pathway: str, letter_ids: Sequence[str]) -> dict[str, tuple[dict, dict | None]]:
        """The current (not retired) bodies of these letters, each with its patient's
        care-plan summary (the sessions a letter names): what a letter is rendered from."""
        o = outputs_table.c
        letters: dict[str, tuple[str, dict]] = {}
        plans: dict[str, dict] = {}
        with self.engine.connect() as conn:
            for chunk in chunks(list(letter_ids)):
                rows = conn.execute(select(o.id, o.patient, o.body).where(
                    o.pathway == pathway, o.id.in_(chunk), o.retired == 0, o.kind == OutputKind.LETTER.value))
                letters.update((r.id, (r.patient, orjson.loads(r.body))) for r in rows)
            refs = sorted({patient for patient, _ in letters.values()})
            for chunk in chunks([f"careplan-{ref}" for ref in refs]):
                rows = conn.execute(select(o.patient, o.body).where(o.pathway == pathway, o.id.in_(chunk),
                                                                    o.retired == 0))
                plans.update((r.patient, orjson.loads(r.body)) for r in rows)
        return {i: (body, plans.get(patient)) for i, (patient, body) in letters.items()}


def _sent_since(conn: Connection, pathway: str, letter_ids: list[str], generation: int) -> None:
    """A send changes what the letter exports (its status): `export --since` must see it."""
    o = outputs_table.c
    for chunk in chunks(letter_ids):
        conn.execute(update(outputs_table).where(o.pathway == pathway, o.id.in_(chunk)).values(changed_gen=generation))
