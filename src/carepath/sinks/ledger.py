"""The outbox ledger: the durable record of what carepath has emitted.

Prefect's temporary server is not a record (it drops queued events at exit) and its
caching is at-least-once under concurrency, so exactly-once emission rests here:

- every output is one row under its deterministic id (the primary key), with a digest of
  its body; recording the same plan again changes nothing, a changed body (a task now
  done, overdue) is updated in place;
- every due letter never sent is queued (`letter_queue`); the delivery step claims it
  (a lease, one conditional update) before a channel sees it, and records its send
  (`letter_sends`) and takes it off the queue in one transaction after the channel
  returned: processes sharing the ledger send it once, and a run killed midway sends
  the same ids again at worst, never extra ones;
- a `generation` counter per pathway moves with every change of that pathway's outputs
  and sends, so its document sinks (SNAPSHOT) are
  rewritten only when something changed (or the as-of they show did) since they were
  last written.

SQLite next to the outputs by default (WAL, so parallel shard tasks in other processes
wait instead of failing); any SQLAlchemy URL selects another database, e.g.
`postgresql+psycopg://…`. Bodies hold pseudonymous refs only, never names.

The tables below are what the queries use; the database gets them from the Alembic
revisions in carepath.sinks.ledger_migrations, run when a ledger is opened (a change here
needs a new revision there; a test compares the two).
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import orjson
from sqlalchemy import (
    Column,
    Connection,
    Engine,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    create_engine,
    event,
    func,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DatabaseError, OperationalError

from carepath.sinks import ledger_migrations
from carepath.sinks.base import Output, OutputKind

ledger_metadata = MetaData()

# Keyed by (pathway, id): a patient ref may be enrolled in two pathways that share one
# ledger, and each pathway's outputs (its care-plan summary `careplan-<ref>` among them)
# are its own; every read and write below names the pathway.
outputs_table = Table(
    "outputs", ledger_metadata,
    Column("id", String(80), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("patient", String(200), nullable=False),
    Column("pathway", String(200), nullable=False),
    Column("digest", String(64), nullable=False),
    Column("body", Text, nullable=False),
    Column("retired", Integer, nullable=False, default=0),  # 1: no longer in the patient's plan
    Column("first_run", String(64), nullable=False),
    Column("updated_run", String(64), nullable=False),
    PrimaryKeyConstraint("pathway", "id", name="pk_outputs"),
    Index("ix_outputs_pathway_patient", "pathway", "patient"),
    Index("ix_outputs_pathway_updated_run", "pathway", "updated_run"),  # a sweep's change feed
)

# Per pathway: two pathways' documents (in their own output folders) sharing one ledger
# are each rewritten when their own content is stale. (A ledger from before this loses
# its older `snapshots` table in the upgrade: each document is rewritten once after it.)
snapshots_table = Table(
    "document_snapshots", ledger_metadata,
    Column("pathway", String(200), primary_key=True),
    Column("sink", String(64), primary_key=True),
    Column("state", String(200), nullable=False),  # generation and as-of the document shows
    Column("run", String(64), nullable=False),
)

# Per pathway, so one pathway's run never makes another's documents stale.
generations_table = Table(
    "pathway_generations", ledger_metadata,
    Column("pathway", String(200), primary_key=True),
    Column("value", Integer, nullable=False),
)

# Version pinning: the pathway version each patient enrolled under, and each version's
# source, so a pinned patient can be re-planned under the rules they started with.
pins_table = Table(
    "pins", ledger_metadata,
    Column("patient", String(200), primary_key=True),
    Column("pathway", String(200), primary_key=True),
    Column("version", String(64), nullable=False),
    Column("run", String(64), nullable=False),
)

versions_table = Table(
    "pathway_versions", ledger_metadata,
    Column("pathway", String(200), primary_key=True),
    Column("version", String(64), primary_key=True),
    Column("digest", String(64), nullable=False),
    Column("source", Text, nullable=False),
)

# Each migration applied (revision 0004): from, to, the step map (old step → new steps,
# JSON) and the reason signed off. Later sweeps read the step maps so that events naming a
# renamed step's old ids still close the new step's work.
migrations_table = Table(
    "pathway_migrations", ledger_metadata,
    Column("pathway", String(200), primary_key=True),
    Column("from_version", String(64), primary_key=True),
    Column("to_version", String(64), primary_key=True),
    Column("steps", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("run", String(64), nullable=False),
)

# The open work a migration withdrew (it has no counterpart in the new version), with the
# reason, so what the preview listed stays on record after it was applied (revision 0004).
withdrawals_table = Table(
    "migration_withdrawals", ledger_metadata,
    Column("pathway", String(200), primary_key=True),
    Column("task", String(80), primary_key=True),
    Column("patient", String(200), nullable=False),
    Column("step", String(200), nullable=False),
    Column("from_version", String(64), nullable=False),
    Column("to_version", String(64), nullable=False),
    Column("why", Text, nullable=False),
    Column("run", String(64), nullable=False),
)

# One digest of each patient's whole plan, written after all their outputs were recorded
# and delivered: an unchanged plan (the hourly re-plan of most patients) then costs one
# lookup instead of a comparison per output.
patient_state_table = Table(
    "patient_state", ledger_metadata,
    Column("pathway", String(200), primary_key=True),
    Column("patient", String(200), primary_key=True),
    Column("digest", String(64), nullable=False),
    Column("run", String(64), nullable=False),
)

# The letters outbox: one row per letter a channel sent, written only after the channel
# returned. A letter goes out once per channel, whatever later happens to its body
# (it may expire or be withdrawn after it was sent); `sent_at` is the run's as-of.
sends_table = Table(
    "letter_sends", ledger_metadata,
    Column("channel", String(64), primary_key=True),
    Column("output_id", String(80), primary_key=True),
    Column("sent_at", String(40), nullable=False),
    Column("run", String(64), nullable=False),
)

# The queue of letters to deliver: planning adds the due letters no channel has sent; the
# `deliver-letters` step claims rows (a lease: `claimed_by` a token, `claimed_until` a wall
# time) in one transaction, so processes sharing the ledger never take the same letter,
# then removes each row in the transaction that records its send. A letter that could
# not be rendered or sent stays here as `failed` with a reason free of patient data, and
# is tried again by the next delivery while it is due.
queue_table = Table(
    "letter_queue", ledger_metadata,
    Column("pathway", String(200), nullable=False),
    Column("letter_id", String(80), nullable=False),
    Column("patient", String(200), nullable=False),
    Column("state", String(16), nullable=False),   # queued | failed
    Column("reason", Text, nullable=True),         # why it failed, PHI-free
    Column("attempts", Integer, nullable=False, default=0),
    Column("claimed_by", String(64), nullable=True),
    Column("claimed_until", String(40), nullable=True),  # UTC ISO wall time the lease ends
    Column("run", String(64), nullable=False),     # the run that queued it
    PrimaryKeyConstraint("pathway", "letter_id", name="pk_letter_queue"),
)

# The channels that sent letters, each found through the key's index (a loose index scan
# that SQLite and PostgreSQL both run in a few steps, however many sends there are).
_CHANNELS = text(
    "WITH RECURSIVE ch(channel) AS (SELECT MIN(channel) FROM letter_sends UNION ALL "
    "SELECT (SELECT MIN(channel) FROM letter_sends WHERE channel > ch.channel) FROM ch WHERE ch.channel IS NOT NULL) "
    "SELECT channel FROM ch WHERE channel IS NOT NULL")

_KIND_ORDER = {OutputKind.PATIENT.value: 0, OutputKind.TASK.value: 1, OutputKind.LETTER.value: 2}
_BATCH = 500  # rows per statement: under SQLite's bound-parameter limit


@dataclass(frozen=True)
class Recorded:
    new: int = 0
    changed: int = 0
    unchanged: int = 0
    retired: int = 0

    def __add__(self, other: Recorded) -> Recorded:
        return Recorded(self.new + other.new, self.changed + other.changed,
                        self.unchanged + other.unchanged, self.retired + other.retired)


def default_url(out_dir: Path) -> str:
    return f"sqlite:///{(out_dir / 'ledger.sqlite').resolve()}"


def url_problem(url: str) -> str | None:
    """Why `url` cannot serve as the ledger, or None. Checked before a run starts: the URL
    is a flow parameter, which Prefect stores and shows."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        parsed = make_url(url)
    except ArgumentError:
        return f"{url!r} is not a database URL (e.g. postgresql+psycopg://carepath@db.example/carepath)"
    if parsed.password:
        return ("the ledger URL holds a password, and Prefect would store and display it as a flow parameter: "
                "give the password through PGPASSWORD or ~/.pgpass instead")
    try:
        parsed.get_dialect().import_dbapi()
    except (NoSuchModuleError, ImportError) as exc:
        return f"no database driver for {parsed.drivername!r} is installed ({exc})"
    return None


class LedgerProblem(Exception):
    """The ledger cannot be used as it is (corrupt, missing while letters exist): the
    message names it and what to do; the user must act (exit 1)."""


class LedgerUnavailable(Exception):
    """The ledger's database server did not answer (exit 69)."""

    def __init__(self, service: str, detail: str) -> None:
        self.service, self.detail = service, detail
        super().__init__(f"{service} did not answer: {detail}")


def shown_url(url: str) -> str:
    """The ledger as a message may name it: its file, or its URL without a password."""
    if url.startswith("sqlite:///"):
        return url.removeprefix("sqlite:///")
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def _letters_on_disk(out_dir: Path) -> bool:
    letters = out_dir / "letters"
    return letters.is_dir() and next((p for p in letters.rglob("*.txt") if p.is_file()), None) is not None


def check_ledger(url: str, out_dir: Path, pathway: str | None = None) -> None:
    """Before a run: the ledger can be opened, and letters already on disk are in it.

    Without its ledger a run would take every letter for new and write (send) it again:
    the files under `out_dir/letters` are the evidence that the ledger was used, so a
    missing or empty ledger beside them is refused rather than started afresh. With
    `pathway`, a shared ledger that holds other pathways' outputs but none of this one's
    is refused the same way (an `out` pointed at the wrong shared ledger).
    """
    where = shown_url(url)
    if url.startswith("sqlite:///"):
        path = Path(where)
        if path.exists() and not path.is_file():
            raise LedgerProblem(f"the ledger {path} is not a file")
        if not path.exists():
            if _letters_on_disk(out_dir):
                raise LedgerProblem(_missing(where, out_dir))
            return
    engine = create_engine(url, future=True, **({"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}))
    try:
        with engine.connect() as conn:
            from sqlalchemy import inspect as inspect_db

            inspector = inspect_db(conn)
            has_outputs = inspector.has_table("outputs")
            ledger_migrations.check(conn)
            # One row is enough evidence; counting all of them would scan millions. A ledger
            # from before outputs were kept per pathway has no such column: any row counts.
            query = select(outputs_table.c.id).limit(1)
            scoped = has_outputs and "pathway" in {c["name"] for c in inspector.get_columns("outputs")}
            if pathway is not None and scoped:
                query = query.where(outputs_table.c.pathway == pathway)
            rows = conn.execute(query).first() if has_outputs else None
    except OperationalError as exc:
        if url.startswith("sqlite"):
            raise LedgerProblem(f"the ledger {where} cannot be used ({exc.orig}): check the file, its folder's "
                                "permissions and free disk space") from None
        raise LedgerUnavailable(f"the ledger database {where}", f"{' '.join(str(exc.orig).split())}. Check "
                                "--ledger, that the server runs, and the password in PGPASSWORD or ~/.pgpass") from None
    except DatabaseError as exc:
        raise LedgerProblem(f"the ledger {where} is not a usable carepath ledger ({exc.orig}): restore it from a "
                            f"backup, or move it away together with {out_dir / 'letters'} to start afresh") from None
    except ledger_migrations.NewerLedger as exc:
        raise LedgerProblem(_newer(where, exc)) from None
    finally:
        engine.dispose()
    if not rows and _letters_on_disk(out_dir):
        raise LedgerProblem(_missing(where, out_dir, "is missing or empty" if pathway is None else
                                     f"holds nothing of pathway {pathway}"))


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


def _newer(where: str, exc: ledger_migrations.NewerLedger) -> str:
    return (f"the ledger {where} was written by a newer carepath: {exc}. Run the carepath version that wrote it "
            "(or a newer one); an older version must not write into it")


def _missing(where: str, out_dir: Path, state: str = "is missing or empty") -> str:
    return (f"the ledger {where} {state}, but {out_dir / 'letters'} holds letters written by earlier "
            "runs: without the ledger every letter would be written again as new. Restore the ledger from a "
            f"backup, or move {out_dir / 'letters'} away to start afresh")


_WAL_PATIENCE_SECONDS = 60.0


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # noqa: ANN001
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout=60000")
    _enter_wal(cursor)
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _enter_wal(cursor: sqlite3.Cursor) -> None:
    """Switch the file to WAL, waiting out other processes that open it at the same moment.
    Changing the journal mode needs the file to itself, and SQLite answers "database is
    locked" at once, without its busy handler, while another connection holds it: so
    several workers opening one new ledger together would fail all but one."""
    deadline = time.monotonic() + _WAL_PATIENCE_SECONDS
    pause = 0.01
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if ("locked" not in str(exc) and "busy" not in str(exc)) or time.monotonic() >= deadline:
                raise
            time.sleep(pause)
            pause = min(pause * 2, 0.5)


def private_sqlite(path: Path) -> None:
    """Create a SQLite ledger file owner-only (0600) before SQLite does (with the umask's
    0644), and tighten an existing one: it holds every event's clinical data. SQLite gives
    its -wal and -shm files the database file's mode."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        for name in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            if name.exists() and name.stat().st_mode & 0o077:
                os.chmod(name, 0o600)
    except (PermissionError, IsADirectoryError):
        pass  # not ours to change (a shared ledger's owner decides); opening it says the rest


class Ledger:
    def __init__(self, url: str) -> None:
        self.url = url
        self._dialect = sqlite if url.startswith("sqlite") else postgresql
        kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
        if url.startswith("sqlite:///"):
            private_sqlite(Path(url.removeprefix("sqlite:///")))
        self.engine: Engine = create_engine(url, future=True, **kwargs)
        if url.startswith("sqlite"):
            event.listen(self.engine, "connect", _sqlite_pragmas)
        # Tables are created and older ledgers upgraded by the ledger's migrations (see
        # carepath.sinks.ledger_migrations); a ledger already current costs one query.
        try:
            ledger_migrations.upgrade(self.engine)
        except ledger_migrations.NewerLedger as exc:
            self.engine.dispose()
            raise LedgerProblem(_newer(shown_url(url), exc)) from None

    def close(self) -> None:
        self.engine.dispose()

    # -- outputs ---------------------------------------------------------------------

    def record(self, pathway: str, patients: Sequence[str], outputs: Sequence[Output], run: str) -> Recorded:
        """Record the complete current outputs of `patients` in one transaction: new ids
        inserted, changed bodies updated in place, ids no longer planned for these
        patients retired. Idempotent."""
        wanted = {o.id: o for o in outputs}
        with self.engine.begin() as conn:
            serialize_writers(conn, f"outputs:{pathway}")
            existing: dict[str, tuple[str, int]] = {}
            for chunk in _chunks(list(patients)):
                rows = conn.execute(select(outputs_table.c.id, outputs_table.c.digest, outputs_table.c.retired)
                                    .where(outputs_table.c.pathway == pathway, outputs_table.c.patient.in_(chunk)))
                existing.update((r.id, (r.digest, r.retired)) for r in rows)
            new = [o for o in outputs if o.id not in existing]
            changed = [o for o in outputs if o.id in existing and existing[o.id] != (o.digest, 0)]
            gone = [i for i, (_, retired) in existing.items() if i not in wanted and not retired]
            for chunk in _chunks(new):
                conn.execute(outputs_table.insert(), [
                    {"id": o.id, "kind": o.kind.value, "patient": o.patient, "pathway": pathway,
                     "digest": o.digest, "body": orjson.dumps(o.body).decode(), "retired": 0,
                     "first_run": run, "updated_run": run} for o in chunk])
            for o in changed:
                conn.execute(update(outputs_table).where(outputs_table.c.pathway == pathway,
                                                         outputs_table.c.id == o.id).values(
                    digest=o.digest, body=orjson.dumps(o.body).decode(), retired=0, updated_run=run))
            for chunk in _chunks(gone):
                conn.execute(update(outputs_table).where(outputs_table.c.pathway == pathway,
                                                         outputs_table.c.id.in_(chunk))
                             .values(retired=1, updated_run=run))
            if new or changed or gone:
                self._advance(conn, pathway)
        return Recorded(len(new), len(changed), len(outputs) - len(new) - len(changed), len(gone))

    def retire_patients(self, pathway: str, patients: Sequence[str], run: str) -> int:
        """Retire every output of these patients (they left the patients file) and forget
        their plans' digests, so that a patient who comes back is recorded afresh. One
        transaction; what they were sent stays recorded as sent. Returns the outputs retired."""
        retired = 0
        with self.engine.begin() as conn:
            for chunk in _chunks(list(patients)):
                retired += conn.execute(update(outputs_table).where(
                    outputs_table.c.pathway == pathway, outputs_table.c.patient.in_(chunk),
                    outputs_table.c.retired == 0).values(retired=1, updated_run=run)).rowcount
                conn.execute(patient_state_table.delete().where(patient_state_table.c.pathway == pathway,
                                                                patient_state_table.c.patient.in_(chunk)))
            if retired:
                self._advance(conn, pathway)
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

    # -- the letters outbox ----------------------------------------------------------

    def unsent(self, outputs: Sequence[Output]) -> list[Output]:
        """Those of `outputs` no channel has sent (in any form): a letter reaches the
        patient once, even when the clinic changes channel."""
        sent: set[str] = set()
        with self.engine.connect() as conn:
            channels = list(conn.execute(_CHANNELS).scalars()) if outputs else []
            for chunk in _chunks([o.id for o in outputs]):
                # By (channel, id), the key: by id alone each call scans every send of the cohort.
                rows = conn.execute(select(sends_table.c.output_id).where(sends_table.c.channel.in_(channels),
                                                                          sends_table.c.output_id.in_(chunk)))
                sent.update(r.output_id for r in rows)
        return [o for o in outputs if o.id not in sent]

    def mark_sent(self, pathway: str, channel: str, outputs: Sequence[Output], sent_at: str, run: str) -> None:
        """Record sends of the pathway's letters; a letter already recorded keeps its first `sent_at`."""
        rows = [{"channel": channel, "output_id": o.id, "sent_at": sent_at, "run": run} for o in outputs]
        with self.engine.begin() as conn:
            added = 0
            for chunk in _chunks(rows):
                stmt = self._dialect.insert(sends_table).values(chunk)
                added += conn.execute(stmt.on_conflict_do_nothing(index_elements=["channel", "output_id"])).rowcount
            if added:  # letters.jsonl shows sends: it must be rewritten
                self._advance(conn, pathway)

    # -- the delivery queue ------------------------------------------------------------

    def queue_letters(self, pathway: str, letters: Sequence[Output], run: str) -> int:
        """Queue due letters for the `deliver-letters` step (a letter already queued, or
        failed, stays as it is); how many were added."""
        rows = [{"pathway": pathway, "letter_id": o.id, "patient": o.patient, "state": "queued", "reason": None,
                 "attempts": 0, "claimed_by": None, "claimed_until": None, "run": run} for o in letters]
        added = 0
        with self.engine.begin() as conn:
            for chunk in _chunks(rows):
                stmt = self._dialect.insert(queue_table).values(chunk)
                added += conn.execute(stmt.on_conflict_do_nothing(index_elements=["pathway", "letter_id"])).rowcount
        return added

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
        if self._dialect is postgresql:
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
            for chunk in _chunks(list(letter_ids)):
                stmt = self._dialect.insert(sends_table).values(
                    [{"channel": channel, "output_id": i, "sent_at": sent_at, "run": run} for i in chunk])
                conn.execute(stmt.on_conflict_do_nothing(index_elements=["channel", "output_id"]))
                conn.execute(queue_table.delete().where(q.pathway == pathway, q.letter_id.in_(chunk)))
            self._advance(conn, pathway)  # letters.jsonl shows sends: it must be rewritten

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
                self._advance(conn, pathway)  # the worklist shows failed letters

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
            for chunk in _chunks(list(letter_ids)):
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
            for chunk in _chunks(list(letter_ids)):
                rows = conn.execute(select(o.id, o.patient, o.body).where(
                    o.pathway == pathway, o.id.in_(chunk), o.retired == 0, o.kind == OutputKind.LETTER.value))
                letters.update((r.id, (r.patient, orjson.loads(r.body))) for r in rows)
            refs = sorted({patient for patient, _ in letters.values()})
            for chunk in _chunks([f"careplan-{ref}" for ref in refs]):
                rows = conn.execute(select(o.patient, o.body).where(o.pathway == pathway, o.id.in_(chunk),
                                                                    o.retired == 0))
                plans.update((r.patient, orjson.loads(r.body)) for r in rows)
        return {i: (body, plans.get(patient)) for i, (patient, body) in letters.items()}

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
        channels = list(conn.execute(_CHANNELS).scalars())
        found: dict[str, str] = {}
        for chunk in _chunks(letter_ids):
            rows = conn.execute(select(sends_table.c.output_id, func.min(sends_table.c.sent_at).label("sent_at"))
                                .where(sends_table.c.channel.in_(channels), sends_table.c.output_id.in_(chunk))
                                .group_by(sends_table.c.output_id))
            found.update((r.output_id, r.sent_at) for r in rows)
        return found

    # -- snapshots -------------------------------------------------------------------

    def generation(self, pathway: str) -> int:
        """Moves whenever the pathway's outputs or sends change (0 before any)."""
        with self.engine.connect() as conn:
            return conn.execute(select(generations_table.c.value).where(
                generations_table.c.pathway == pathway)).scalar_one_or_none() or 0

    def _advance(self, conn, pathway: str) -> None:  # noqa: ANN001 - a connection inside a transaction
        stmt = self._dialect.insert(generations_table).values(pathway=pathway, value=1)
        conn.execute(stmt.on_conflict_do_update(index_elements=["pathway"],
                                                set_={"value": generations_table.c.value + 1}))

    def snapshot_state(self, pathway: str, sink: str) -> str | None:
        """What the pathway's document of that sink last showed (see `mark_snapshot`), or None."""
        with self.engine.connect() as conn:
            return conn.execute(select(snapshots_table.c.state).where(
                snapshots_table.c.pathway == pathway, snapshots_table.c.sink == sink)).scalar_one_or_none()

    def mark_snapshot(self, pathway: str, sink: str, state: str, run: str) -> None:
        self._upsert(snapshots_table, ["pathway", "sink"], ["state", "run"],
                     [{"pathway": pathway, "sink": sink, "state": state, "run": run}])

    # -- counts (for summaries and tests) --------------------------------------------

    def counts(self, pathway: str) -> dict[str, int]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(outputs_table.c.kind, func.count())
                                .where(outputs_table.c.pathway == pathway, outputs_table.c.retired == 0)
                                .group_by(outputs_table.c.kind))
            return {kind: n for kind, n in rows}

    # -- whole-plan digests ----------------------------------------------------------

    def plan_digests(self, pathway: str, patients: Sequence[str]) -> dict[str, str]:
        return self._per_patient(patient_state_table, patient_state_table.c.digest, pathway, patients)

    def set_plan_digests(self, pathway: str, digests: dict[str, str], run: str) -> None:
        self._upsert(patient_state_table, ["pathway", "patient"], ["digest", "run"],
                     [{"pathway": pathway, "patient": p, "digest": d, "run": run} for p, d in digests.items()])

    # -- version pinning -------------------------------------------------------------

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

    # -- statement shapes shared by the tables above --------------------------------

    def _per_patient(self, table: Table, value: Column, pathway: str, patients: Sequence[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        with self.engine.connect() as conn:
            for chunk in _chunks(list(patients)):
                rows = conn.execute(select(table.c.patient, value).where(
                    table.c.pathway == pathway, table.c.patient.in_(chunk)))
                found.update((r[0], r[1]) for r in rows)
        return found

    def _upsert(self, table: Table, keys: list[str], columns: list[str], rows: list[dict[str, object]]) -> None:
        """Insert rows, or update `columns` of those whose `keys` exist (one transaction)."""
        if not rows:
            return
        with self.engine.begin() as conn:
            for chunk in _chunks(rows):
                stmt = self._dialect.insert(table).values(chunk)
                conn.execute(stmt.on_conflict_do_update(index_elements=keys,
                                                        set_={c: stmt.excluded[c] for c in columns}))

    # -- the cohort-wide documents, in one pass ----------------------------------------

    def changed_in(self, pathway: str, run: str) -> dict[str, set[str]]:
        """The current outputs the run created or changed, by patient (a sweep's change feed)."""
        o = outputs_table.c
        found: dict[str, set[str]] = {}
        with self.engine.connect() as conn:
            for r in conn.execute(select(o.patient, o.id).where(o.pathway == pathway, o.updated_run == run,
                                                                o.retired == 0)):
                found.setdefault(r.patient, set()).add(r.id)
        return found

    def document_rows(self, pathway: str, kinds: Iterable[OutputKind] | None = None,
                      patients: Sequence[str] | None = None,
                      ) -> Iterator[tuple[str, str, str, str, str, str | None]]:
        """`patients`: only theirs (in ref order, a batch at a time)."""
        if patients is not None:
            for chunk in _chunks(sorted(patients)):
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
        from sqlalchemy import case

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
                yield from rows


def _in_kind_order(rows: list) -> Iterator[Output]:
    for r in sorted(rows, key=lambda r: (_KIND_ORDER[r.kind], r.id)):
        yield Output(r.id, OutputKind(r.kind), r.patient, orjson.loads(r.body), r.digest)


def _chunks(items: list) -> Iterator[list]:
    for start in range(0, len(items), _BATCH):
        yield items[start:start + _BATCH]
