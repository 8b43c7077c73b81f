"""The event store never disagrees with `carepath plan`: what it read is vouched for byte
by byte, an unterminated last line is read as `plan` reads it, and what names no known
patient (a patients line pasted into the feed, blank lines) leaves nothing in the ledger."""

from __future__ import annotations

import json
from pathlib import Path

from carepath.model.events import CORE_EVENTS
from carepath.orchestrator.event_store import EventStore
from carepath.records import read_events
from carepath.records.fields import compile_event_types
from carepath.sinks.ledger import Ledger

SPECS = compile_event_types(CORE_EVENTS)
KNOWN = {"r-7", "r-8"}


def _phq9(event_id: str, patient: str, item9: int, at: str = "2026-04-01T09:00:00+02:00") -> bytes:
    return json.dumps({"id": event_id, "patient": patient, "type": "assessment_recorded", "at": at,
                       "data": {"instrument": "phq9", "items": [1, 1, 1, 1, 1, 1, 1, 1, item9]}}).encode()


def _store(tmp_path: Path) -> tuple[Ledger, EventStore]:
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.sqlite'}")
    return ledger, EventStore(ledger.engine, "pw")


def _stored_bytes(ledger: Ledger) -> bytes:
    with ledger.engine.connect() as conn:
        return b"".join(bytes(raw) for (raw,) in conn.exec_driver_sql("SELECT raw FROM event_lines"))


def _row_count(ledger: Ledger) -> int:
    with ledger.engine.connect() as conn:
        return conn.exec_driver_sql("SELECT COUNT(*) FROM event_lines").scalar_one()


def _item9(store: EventStore, ref: str) -> list[int]:
    events, _ = store.events_of([ref], [], SPECS, KNOWN)
    return [e.data["items"][8] for e in events[ref]]


def test_a_same_length_correction_in_the_middle_is_noticed(tmp_path: Path) -> None:
    feed = tmp_path / "events.jsonl"
    lines = [_phq9(f"e-{n}", "r-7" if n % 2 else "r-8", 0) for n in range(200)]
    feed.write_bytes(b"\n".join(lines) + b"\n")
    ledger, store = _store(tmp_path)
    try:
        store.ingest(feed, known=KNOWN)
        before = feed.stat().st_size
        lines[101] = _phq9("e-101", "r-7", 3)  # item 9 corrected 0 -> 3, same length, far from head and tail
        feed.write_bytes(b"\n".join(lines) + b"\n")
        assert feed.stat().st_size == before
        again = store.ingest(feed, known=KNOWN)
        assert again.restarted
        assert 3 in _item9(store, "r-7")
        assert not store.ingest(feed, known=KNOWN).restarted  # unchanged: nothing read again
    finally:
        ledger.close()


def test_reread_reads_the_whole_file_again(tmp_path: Path) -> None:
    feed = tmp_path / "events.jsonl"
    feed.write_bytes(_phq9("e-1", "r-7", 0) + b"\n")
    ledger, store = _store(tmp_path)
    try:
        store.ingest(feed, known=KNOWN)
        again = store.ingest(feed, known=KNOWN, reread=True)
        assert again.restarted and again.lines == 1 and _item9(store, "r-7") == [0]
    finally:
        ledger.close()


def test_an_unterminated_last_line_is_read_as_plan_reads_it_and_again_when_it_ends(tmp_path: Path) -> None:
    feed = tmp_path / "events.jsonl"
    feed.write_bytes(_phq9("e-1", "r-7", 0) + b"\n" + _phq9("e-2", "r-7", 2))  # no newline at the end
    ledger, store = _store(tmp_path)
    try:
        first = store.ingest(feed, known=KNOWN)
        assert first.unterminated == 2 and "r-7" in first.patients
        assert _item9(store, "r-7") == [0, 2]  # the urgent answer is planned, as `plan` plans it
        plan_events, _ = read_events(feed, event_types=CORE_EVENTS, patients=KNOWN)
        assert [e.id for e in plan_events] == ["e-1", "e-2"]
        # The writer finishes the line and appends another: each line once, numbered as the reader does.
        with feed.open("ab") as handle:
            handle.write(b"\n" + _phq9("e-3", "r-7", 1) + b"\n")
        later = store.ingest(feed, known=KNOWN)
        assert not later.restarted and later.unterminated is None
        events, _ = store.events_of(["r-7"], [], SPECS, KNOWN)
        assert [(e.id, e.line) for e in events["r-7"]] == [("e-1", 1), ("e-2", 2), ("e-3", 3)]
    finally:
        ledger.close()


def test_a_half_written_last_line_is_rejected_as_plan_rejects_it_then_read_whole(tmp_path: Path) -> None:
    feed = tmp_path / "events.jsonl"
    whole = _phq9("e-9", "r-8", 1)
    feed.write_bytes(_phq9("e-1", "r-7", 0) + b"\n" + whole[:30])
    ledger, store = _store(tmp_path)
    try:
        store.ingest(feed, known=KNOWN)
        _, plan_rejected = read_events(feed, event_types=CORE_EVENTS, patients=KNOWN)
        assert [(r.line, r.reason) for r in store.unplaced(KNOWN, SPECS)] == \
            [(r.line, r.reason) for r in plan_rejected] != []
        with feed.open("ab") as handle:
            handle.write(whole[30:] + b"\n")
        store.ingest(feed, known=KNOWN)
        assert store.unplaced(KNOWN, SPECS) == [] and _item9(store, "r-8") == [1]
    finally:
        ledger.close()


def test_a_patients_line_pasted_into_the_feed_is_rejected_and_leaves_no_name_in_the_ledger(tmp_path: Path) -> None:
    feed = tmp_path / "events.jsonl"
    pasted = json.dumps({"patient": "r-7", "given_name": "Philippa", "family_name": "Quennell-Stroud",
                         "email": "pq@example.org"}).encode()
    stranger = _phq9("e-5", "r-unknown", 3).replace(b'"items"', b'"note": "Philippa", "items"')
    feed.write_bytes(_phq9("e-1", "r-7", 0) + b"\n" + pasted + b"\n" + stranger + b"\n")
    ledger, store = _store(tmp_path)
    try:
        store.ingest(feed, known=KNOWN)
        stored = _stored_bytes(ledger)
        assert b"Philippa" not in stored and b"Quennell" not in stored and b"pq@example.org" not in stored
        _, plan_rejected = read_events(feed, event_types=CORE_EVENTS, patients=KNOWN)
        judged = [(r.line, r.reason) for r in store.unplaced(KNOWN, SPECS)]
        _, own = store.events_of(["r-7"], [], SPECS, KNOWN)
        judged += [(r.line, r.reason) for r in own["r-7"]]
        assert sorted(judged) == sorted((r.line, r.reason) for r in plan_rejected)
        assert [line for line, _ in sorted(judged)] == [2, 3]
    finally:
        ledger.close()


def test_a_patient_unknown_when_their_line_was_read_gets_it_once_they_are_added(tmp_path: Path) -> None:
    feed = tmp_path / "events.jsonl"
    feed.write_bytes(_phq9("e-1", "r-late", 3) + b"\n")
    ledger, store = _store(tmp_path)
    try:
        store.ingest(feed, known=KNOWN)
        assert b"r-late" not in _stored_bytes(ledger)
        events, rejected = store.events_of(["r-late"], [], SPECS, KNOWN | {"r-late"})
        assert [e.data["items"][8] for e in events["r-late"]] == [3] and rejected["r-late"] == []
    finally:
        ledger.close()


def test_blank_lines_cost_nothing_lasting(tmp_path: Path) -> None:
    feed = tmp_path / "events.jsonl"
    feed.write_bytes(_phq9("e-1", "r-7", 0) + b"\n" + b"\n" * 200_000 + b"   \r\n" * 1000 + _phq9("e-2", "r-8", 0)
                     + b"\n")
    ledger, store = _store(tmp_path)
    try:
        store.ingest(feed, known=KNOWN)
        assert _row_count(ledger) == 2
        events, _ = store.events_of(["r-8"], [], SPECS, KNOWN)
        assert [(e.id, e.line) for e in events["r-8"]] == [("e-2", 201_002)]
        assert store.unplaced(KNOWN, SPECS) == []
    finally:
        ledger.close()


def test_a_sweep_says_when_the_last_line_has_no_newline(tmp_path: Path) -> None:
    import shutil
    from datetime import datetime

    from carepath.orchestrator import sequence
    from carepath.orchestrator.spec import RunSpec

    root = Path(__file__).resolve().parents[1]
    patients, events = tmp_path / "patients.jsonl", tmp_path / "events.jsonl"
    shutil.copy(root / "examples" / "demo" / "patients.jsonl", patients)
    events.write_bytes((root / "examples" / "demo" / "events.jsonl").read_bytes().rstrip(b"\n"))
    logged: list[str] = []
    spec = RunSpec.resolve(root / "pathways" / "ketamine-iv.yaml", tmp_path / "out",
                           datetime.fromisoformat("2026-03-05T17:00:00+00:00"), "run", pdf=False)
    sequence.sweep(spec, patients, events, log=logged.append)
    lines = len(events.read_bytes().split(b"\n"))
    assert any(f"last line ({lines}) has no newline" in line for line in logged), logged
