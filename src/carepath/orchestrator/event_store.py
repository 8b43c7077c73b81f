"""The events file, ingested incrementally into the ledger's database and read back by patient.

The events file is append-only in practice (a feed the clinic's systems add lines to). A
sweep re-planning every patient from the whole file cost time in proportion to the file;
instead each run ingests the lines appended since the last one (the feed row remembers
how far the file was read), storing each line raw under its line number, its patient ref
and its event id. A patient's events are then read by index.

Verdicts are the reference's (`records.judge.event_verdicts`): a line's verdict depends
only on the line, the known patients and the earlier lines that share its id, so a
patient's lines plus every line sharing an id with them give exactly the verdicts the
whole file gives those lines. Lines naming no known patient are judged when
`rejected.jsonl` is written, against the patients of that run.

A file that is not the one read before (another path, shorter, or any byte of its read
part changed) is ingested again from its first line, and every patient is re-planned. The
feed row keeps a SHA-256 of everything read so far, and each ingest hashes the read part
again before reading on: a same-length correction in the middle of the file (an item-9
answer 0 -> 3) is noticed. Hashing runs at disk speed, far below the cost of parsing;
`--full` (`ingest(..., reread=True)`) reads the whole file again regardless.

An unterminated last line is read as `carepath plan` reads it (planned, or rejected if
it is half-written), but provisionally: it is stored past the feed's offset and read again
by every later ingest until its newline arrives, so the store and `plan` always agree.

What is stored raw is only what a plan can need: the lines of the run's known patients
whose keys are an event's. A line naming no known patient (or no patient, or not JSON)
and a line with keys no event has (a patients line pasted into the feed, names and all)
are stored as a pointer to their place in the file, read from there when they are judged;
the ledger keeps no copy of their content. Blank lines are not stored at all.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Collection, Container, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
from sqlalchemy import (
    Connection,
    create_engine,
    event,
    func,
    select,
)

from carepath.records import judge
from carepath.records.fields import TypeSpec
from carepath.records.judge import EVENT_KEYS, MAX_LINE_BYTES, event_verdicts
from carepath.records.readers import open_records
from carepath.records.types import Event, RecordsFileError, Rejection
from carepath.sinks.ledger.dialect import serialize_writers
from carepath.sinks.ledger.schema import feed_table, lines_table, shared_ids_table

_BATCH = 500       # rows per statement (SQLite's bound-parameter limit)
_CHUNK = 1 << 22   # bytes read per step of an ingest
_POINTER = b"\n"  # a stored line starting with it is "<offset> <length>" in the file, not the line


@dataclass(frozen=True)
class Ingested:
    lines: int             # lines ingested by this call
    patients: frozenset[str]  # refs named by those lines
    restarted: bool        # the file was not the one read before: everything was read again
    first: bool = False    # nothing had been read before
    unterminated: int | None = None  # the number of a last line without its newline (read provisionally)


def _hash_range(digest, handle, start: int, end: int) -> None:  # noqa: ANN001 - hashlib object, binary file
    handle.seek(start)
    while start < end and (chunk := handle.read(min(_CHUNK, end - start))):
        digest.update(chunk)
        start += len(chunk)


def _fingerprint(digest) -> str:  # noqa: ANN001 - a hashlib object
    return digest.copy().hexdigest()[:32]


def key(value: str) -> str:
    """A ref or id as the store indexes it: itself, or a digest of it when it is long (an
    index entry must stay small; nothing limits a ref's length)."""
    if len(value) <= 100:
        return value
    return "sha256:" + hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()


def _route(raw: bytes, number: int, known: Container[str] | None) -> tuple[str | None, str | None, bool]:
    """The (keyed) patient ref and event id a line names, if it is a JSON object that names
    them, and whether the line itself is kept (see the module notes)."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        obj = judge.parse_line(number, raw)  # the reference parser reads what orjson refuses (e.g. a BOM)
    if type(obj) is not dict:
        return None, None, False
    patient, event_id = obj.get("patient"), obj.get("id")
    keep = type(patient) is str and (known is None or patient in known) and EVENT_KEYS.issuperset(obj)
    return (key(patient) if type(patient) is str else None, key(event_id) if type(event_id) is str else None,
            keep)


def scratch_store(directory: Path, pathway: str) -> EventStore:
    """An event store of its own in `directory`: a SQLite file with only the event tables,
    for a command that reads an events file once (`carepath plan`, `letters`). On disk, so
    memory does not grow with the file; not durable, since nothing outlives the command."""
    engine = create_engine(f"sqlite:///{directory / 'events.sqlite'}", future=True)
    event.listen(engine, "connect", _scratch_pragmas)
    lines_table.metadata.create_all(engine, tables=[feed_table, lines_table, shared_ids_table])
    return EventStore(engine, pathway)


def _scratch_pragmas(dbapi_connection, _record) -> None:  # noqa: ANN001 - a DB-API connection
    # A crash loses nothing worth keeping: no journal, no waiting for the disk.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=OFF")
    cursor.execute("PRAGMA synchronous=OFF")
    cursor.close()


def _blank(raw: bytes) -> bool:
    return not raw.strip()


class EventStore:
    """One pathway's ingested events in the ledger's database (`engine` is the ledger's)."""

    def __init__(self, engine, pathway: str) -> None:  # noqa: ANN001 - a SQLAlchemy Engine
        self.engine, self.pathway = engine, pathway

    # -- ingest -----------------------------------------------------------------------

    def ingest(self, path: str | Path, on_new: Callable[[Connection, set[str], bool], None] | None = None, *,
               known: Container[str] | None = None, reread: bool = False) -> Ingested:
        """Store the lines appended to `path` since the last ingest; `on_new(conn, refs,
        restarted)` runs in the same transaction as the moved offset (the wake index marks
        those patients, or everyone when the file was read anew), so a run killed midway
        never loses track of what it ingested. `known`: the run's patient refs (lines of
        others are stored as pointers; None keeps every line). `reread`: read the whole
        file again (`--full`)."""
        resolved = str(Path(path).resolve())
        with open_records(path) as handle:
            try:
                size = os.fstat(handle.fileno()).st_size
                with self.engine.begin() as conn:
                    serialize_writers(conn, f"events:{self.pathway}")  # two runs never ingest the same lines
                    row = conn.execute(select(feed_table).where(feed_table.c.pathway == self.pathway)).first()
                    digest = hashlib.sha256()
                    restarted = reread or row is None or row.path != resolved or row.offset > size
                    if not restarted:
                        _hash_range(digest, handle, 0, row.offset)
                        restarted = _fingerprint(digest) != row.fingerprint
                    refs: set[str] = set()
                    if restarted:
                        conn.execute(lines_table.delete().where(lines_table.c.pathway == self.pathway))
                        conn.execute(shared_ids_table.delete().where(shared_ids_table.c.pathway == self.pathway))
                        digest = hashlib.sha256()
                        offset, number = 0, 0
                    else:
                        offset, number = row.offset, row.lines
                        refs.update(self._drop_provisional(conn, number))
                    start = offset
                    count, new_refs, offset, number, ids, tail = self._read_from(conn, handle, offset, number, known,
                                                                                  collect_ids=not restarted)
                    refs |= new_refs
                    self._note_shared(conn, None if restarted else ids)
                    _hash_range(digest, handle, start, offset)
                    values = {"path": resolved, "offset": offset, "lines": number,
                              "fingerprint": _fingerprint(digest)}
                    if row is None:
                        conn.execute(feed_table.insert().values(pathway=self.pathway, **values))
                    else:
                        conn.execute(feed_table.update().where(feed_table.c.pathway == self.pathway).values(**values))
                    if on_new is not None and (refs or restarted):
                        on_new(conn, refs, restarted)
            except OSError as exc:
                raise RecordsFileError(path, f"could not be read ({exc.strerror or exc})") from None
        return Ingested(count, frozenset(refs), restarted, row is None, tail)

    def _drop_provisional(self, conn: Connection, lines: int) -> set[str]:
        """Remove a provisionally stored unterminated line (past `lines`); the refs it named,
        whose plans used it and are made again."""
        c = lines_table.c
        gone = {p for (p,) in conn.execute(select(c.patient).where(c.pathway == self.pathway, c.line > lines))
                if p is not None}
        conn.execute(lines_table.delete().where(c.pathway == self.pathway, c.line > lines))
        return gone

    def _read_from(self, conn: Connection, handle, offset: int, number: int,  # noqa: ANN001
                   known: Container[str] | None = None, *, collect_ids: bool = True,
                   ) -> tuple[int, set[str], int, int, set[str], int | None]:
        """Lines from `offset` to the last newline, split as a file is iterated (on b"\n"
        only, so line numbers are the readers'), then an unterminated last line, stored
        provisionally (its number is returned; offset and count stop before it). A line
        too long to be a record is kept only up to the length that gets it rejected, so a
        hostile line never fills memory. The event ids of the lines read are returned only
        with `collect_ids` (a file read anew has its shared ids found by one query instead:
        a set of every id would hold the whole file's ids in memory)."""
        handle.seek(offset)
        limit = MAX_LINE_BYTES + 1
        refs: set[str] = set()
        ids: set[str] = set()
        rows: list[tuple[str, int, str | None, str | None, bytes]] = []
        count = 0

        def add(raw: bytes, at: int, length: int) -> None:
            nonlocal rows, count
            patient, event_id, keep = _route(raw, number, known)
            if patient is not None:
                refs.add(patient)
                if event_id is not None and collect_ids:
                    ids.add(event_id)
            stored = raw if keep else _POINTER + f"{at} {length}".encode()
            rows.append((self.pathway, number, patient, event_id, stored))
            if len(rows) >= 20 * _BATCH:
                _insert_lines(conn, rows)
                count += len(rows)
                rows = []

        pending, dropped = b"", 0  # the unfinished line (at most `limit` bytes kept) and what was cut from it
        while chunk := handle.read(_CHUNK):
            data = pending + chunk
            end = data.rfind(b"\n") + 1
            if end == 0:
                dropped += max(0, len(data) - limit)
                pending = data[:limit]
                continue
            at = offset
            for index, raw in enumerate(data[:end].split(b"\n")[:-1]):
                number += 1
                length = len(raw) + 1 + (dropped if index == 0 else 0)
                if not _blank(raw):
                    add(raw[:limit] + b"\n" if len(raw) < limit else raw[:limit], at, length)
                at += length
            offset += end + dropped
            pending, dropped = data[end:end + limit], max(0, len(data) - end - limit)
        if rows:
            _insert_lines(conn, rows)
            count += len(rows)
            rows = []
        tail = None
        if pending and not _blank(pending):
            number += 1
            tail = number
            add(pending[:limit], offset, len(pending) + dropped)  # provisional: offset and lines stop before it
            _insert_lines(conn, rows)
            count += 1
            number -= 1
        return count, refs, offset, number, ids, tail

    def _note_shared(self, conn: Connection, ids: set[str] | None) -> None:
        """Record the event ids now used by lines of more than one patient: among `ids`
        (those of the lines just read), or among all lines (None: the file was read anew)."""
        c = lines_table.c
        # COUNT(DISTINCT) skips lines naming no patient; no condition on the patient column
        # here, or SQLite picks the patient index and scans every line.
        query = (select(c.event_id).where(c.pathway == self.pathway, c.event_id.is_not(None))
                 .group_by(c.event_id).having(func.count(func.distinct(c.patient)) > 1))
        found: set[str] = set()
        if ids is None:
            found.update(i for (i,) in conn.execute(query))
        else:
            for chunk in _chunks(sorted(ids)):
                found.update(i for (i,) in conn.execute(query.where(c.event_id.in_(chunk))))
        known = {i for (i,) in conn.execute(select(shared_ids_table.c.event_id).where(
            shared_ids_table.c.pathway == self.pathway))} if found else set()
        rows = [{"pathway": self.pathway, "event_id": i} for i in sorted(found - known)]
        for start in range(0, len(rows), _BATCH):
            conn.execute(shared_ids_table.insert(), rows[start:start + _BATCH])

    # -- reading ----------------------------------------------------------------------

    def lines_of(self, refs: Iterable[str], ids: Iterable[str] = ()) -> list[tuple[int, str | None, bytes]]:
        """(line, keyed patient, raw) of every line of these patients and of every line of the
        (keyed) event ids `ids`, in line order."""
        refs = sorted({key(r) for r in refs})
        columns = (lines_table.c.line, lines_table.c.patient, lines_table.c.raw)
        mine: dict[int, tuple[int, str | None, bytes]] = {}
        with self.engine.connect() as conn:
            for chunk in _chunks(refs):
                mine.update((r[0], tuple(r)) for r in conn.execute(select(*columns).where(
                    lines_table.c.pathway == self.pathway, lines_table.c.patient.in_(chunk))))
            for chunk in _chunks(sorted(set(ids))):
                mine.update((r[0], tuple(r)) for r in conn.execute(select(*columns).where(
                    lines_table.c.pathway == self.pathway, lines_table.c.event_id.in_(chunk))))
            raws = self._raws(conn, [(n, raw) for n, _, raw in mine.values()])
        return [(n, mine[n][1], raws[n]) for n in sorted(mine)]

    def _raws(self, conn: Connection, rows: Iterable[tuple[int, bytes]]) -> dict[int, bytes]:
        """Each line's bytes: as stored, or read from the events file where a pointer was
        stored (the feed's fingerprint vouches that the file still holds them)."""
        found: dict[int, bytes] = {}
        pointers: list[tuple[int, int, int]] = []
        for line, raw in rows:
            if raw.startswith(_POINTER):
                at, length = (int(part) for part in raw[1:].split(b" "))
                pointers.append((line, at, length))
            else:
                found[line] = raw
        if not pointers:
            return found
        path = conn.execute(select(feed_table.c.path).where(feed_table.c.pathway == self.pathway)).scalar_one()
        limit = MAX_LINE_BYTES + 1
        with open_records(path) as handle:
            for line, at, length in sorted(pointers, key=lambda p: p[1]):
                handle.seek(at)
                found[line] = handle.read(min(length, limit))  # with its newline, as the reader sees it
        return found

    def shared(self, refs: Iterable[str]) -> list[tuple[str, str]]:
        """(event id, patient), keyed, for every patient whose lines use an event id that
        several patients use and one of these patients uses: all the verdicts of these
        patients' lines may depend on. These patients are among them (a shard holds only
        some of the patients re-planned, and needs the lines of the others too). Read from
        the (rare) ids that several patients use."""
        mine = {key(r) for r in refs}
        c = lines_table.c
        with self.engine.connect() as conn:
            ids = [i for (i,) in conn.execute(select(shared_ids_table.c.event_id).where(
                shared_ids_table.c.pathway == self.pathway))]
            users: dict[str, set[str]] = {}
            for chunk in _chunks(ids):
                for i, p in conn.execute(select(c.event_id, c.patient).where(
                        c.pathway == self.pathway, c.event_id.in_(chunk))):
                    if p is not None:
                        users.setdefault(i, set()).add(p)
        return sorted((i, p) for i, patients in users.items() if patients & mine for p in patients)

    def events_of(self, refs: Iterable[str], ids: Iterable[str], specs: dict[str, TypeSpec],
                  known: Container[str]) -> tuple[dict[str, list[Event]], dict[str, list[Rejection]]]:
        """The valid events of these patients and the rejections of their own lines, judged
        with every line sharing an id with them (`ids`, from `shared`) and `known`, the
        refs of this run's patients (at least theirs and those of the others sharing ids)."""
        refs = set(refs)
        ref_of = {key(r): r for r in refs}
        events: dict[str, list[Event]] = {ref: [] for ref in refs}
        rejected: dict[str, list[Rejection]] = {ref: [] for ref in refs}
        lines = self.lines_of(refs, ids)
        owner = {line: ref_of.get(patient) for line, patient, _ in lines}
        for item in event_verdicts(((line, raw) for line, _, raw in lines), specs, known):
            ref = owner.get(item.line)
            if ref is None:
                continue  # another patient's line, read only for its id
            if type(item) is Event:
                events[ref].append(item)
            else:
                rejected[ref].append(item)  # type: ignore[arg-type]
        return events, rejected

    def line_count(self) -> int:
        """Lines stored (blank lines are not)."""
        with self.engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(lines_table).where(
                lines_table.c.pathway == self.pathway)).scalar_one()

    def last_line(self) -> int:
        """The number of the last line stored (0: none)."""
        with self.engine.connect() as conn:
            return conn.execute(select(func.max(lines_table.c.line)).where(
                lines_table.c.pathway == self.pathway)).scalar_one() or 0

    def unplaced(self, patients: Collection[str], specs: dict[str, TypeSpec]) -> list[Rejection]:
        """The rejections of lines that name no known patient (or no patient, or are not
        JSON objects): judged against this run's patients, as the whole file would be."""
        with self.engine.connect() as conn:
            named = [p for (p,) in conn.execute(select(lines_table.c.patient).where(
                lines_table.c.pathway == self.pathway).group_by(lines_table.c.patient)) if p is not None]
            known = {key(p) for p in patients}
            unknown = [p for p in named if p not in known]
            rows = list(conn.execute(select(lines_table.c.line, lines_table.c.raw).where(
                lines_table.c.pathway == self.pathway, lines_table.c.patient.is_(None))))
            for chunk in _chunks(unknown):
                rows += conn.execute(select(lines_table.c.line, lines_table.c.raw).where(
                    lines_table.c.pathway == self.pathway, lines_table.c.patient.in_(chunk))).all()
            raws = self._raws(conn, rows)
        rows = sorted(raws.items())
        # Such a line is rejected whatever came before it (it can never be an accepted
        # event), so judging each alone gives the whole file's verdict.
        return [r for line, raw in rows for r in event_verdicts([(line, raw)], specs, patients)
                if type(r) is Rejection]


def _insert_lines(conn: Connection, rows: list[tuple[str, int, str | None, str | None, bytes]]) -> None:
    """Through the driver's executemany: SQLAlchemy's per-row parameter handling cost as
    much as the inserts themselves (an ingest of 500k lines: 6 s of 13)."""
    marks = ", ".join(["?"] * 5 if conn.dialect.paramstyle == "qmark" else ["%s"] * 5)
    conn.exec_driver_sql(f"INSERT INTO event_lines (pathway, line, patient, event_id, raw) VALUES ({marks})", rows)


def _chunks(items: list) -> Iterator[list]:
    for start in range(0, len(items), _BATCH):
        yield items[start:start + _BATCH]
