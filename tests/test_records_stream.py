"""The streaming, bounded-memory events reader (records.stream) reaches exactly the
verdicts of the reference reader (read_events) on messy files: duplicate ids valid and
invalid, conflicts, blank and broken lines, a BOM, no final newline; also when its Bloom
filter is so small that almost every line is a false 'seen before'."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from carepath.model.events import CORE_EVENTS
from carepath.records import read_events, stream
from carepath.records.fields import compile_event_types

SHARD_OF = {"p-1": 0, "p-2": 1, "p-3": 1}

_ids = st.sampled_from(["e-1", "e-2", "e-3", "e-4", " e-5", ""])
_patients = st.sampled_from(["p-1", "p-2", "p-3", "p-9"])
_times = st.sampled_from(["2026-03-02T10:00:00-05:00", "2026-03-02T15:00:00+00:00", "2026-03-02T10:00:00"])
_events = st.fixed_dictionaries({
    "id": _ids, "patient": _patients, "at": _times,
    "type": st.sampled_from(["enrolled", "session_completed", "session_complete"]),
    "data": st.sampled_from([{}, {"session": "s-1"}, {"session": "s-2"}, {"session": 3}]),
})
_line = st.one_of(
    _events.map(json.dumps),
    _events.map(json.dumps),
    st.sampled_from(["", "   ", "not json", "[1, 2]", '{"id": "e-1"', '{"id": "e-2", "patient": "p-1"}']),
)


def _reference(path: Path) -> tuple[list[tuple], list[tuple]]:
    events, rejected = read_events(path, event_types=CORE_EVENTS, patients=SHARD_OF)
    return ([(e.line, e.id, e.patient, e.type, e.at, e.at.utcoffset(), dict(e.data)) for e in events],
            [(r.line, r.id, r.reason) for r in rejected])


def _streamed(path: Path) -> tuple[list[tuple], list[tuple]]:
    shards: dict[int, list[bytes]] = {}
    rejected = stream.route_events(path, event_types=CORE_EVENTS, shard_of=SHARD_OF,
                                   write=lambda s, record: shards.setdefault(s, []).append(record))
    events = []
    specs = compile_event_types(CORE_EVENTS)
    for records in shards.values():
        for item in stream.read_routed(records, specs=specs, patients=SHARD_OF):
            if hasattr(item, "reason"):
                rejected.append(item)
            else:
                events.append(item)
    events.sort(key=lambda e: e.line)
    rejected.sort(key=lambda r: r.line)
    return ([(e.line, e.id, e.patient, e.type, e.at, e.at.utcoffset(), dict(e.data)) for e in events],
            [(r.line, r.id, r.reason) for r in rejected])


@pytest.mark.parametrize("tiny_filter", [False, True])
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(_line, max_size=40), bom=st.booleans(), final_newline=st.booleans())
def test_streamed_reading_matches_the_reference(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_filter: bool,
                                                lines: list[str], bom: bool, final_newline: bool) -> None:
    if tiny_filter:
        monkeypatch.setattr(stream, "_filter_bits", lambda size: 16)
    text = "\n".join(lines) + ("\n" if final_newline else "")
    path = tmp_path / "events.jsonl"
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode())
    assert _streamed(path) == _reference(path)


def test_a_conflict_names_the_earlier_line_and_an_exact_resend_is_skipped(tmp_path: Path) -> None:
    first = {"id": "e-1", "patient": "p-1", "type": "enrolled", "at": "2026-03-02T10:00:00-05:00", "data": {}}
    path = tmp_path / "events.jsonl"
    rows = [first, {**first, "patient": "p-2"}, first]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    events, rejected = _streamed(path)
    assert [e[0] for e in events] == [1]
    assert [(r[0], r[1]) for r in rejected] == [(2, "e-1")]
    assert "already used on line 1 with a different patient" in rejected[0][2]


@pytest.mark.parametrize("tiny_filter", [False, True])
def test_a_wrong_phq9_total_keeps_its_answers_in_both_readers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              tiny_filter: bool) -> None:
    """A PHQ-9 whose stated total disagrees with its items is rejected by both readers, and
    both hand the engine the same derived `assessment_rejected` event (item 9 survives),
    also when its id collides with another line's (the streaming reader's replay path)."""
    if tiny_filter:
        monkeypatch.setattr(stream, "_filter_bits", lambda size: 16)
    at = "2026-03-02T10:00:00-05:00"
    rows = [
        {"id": "e-1", "patient": "p-1", "type": "enrolled", "at": at, "data": {}},
        {"id": "a-1", "patient": "p-1", "type": "assessment_recorded", "at": at,
         "data": {"instrument": "phq9", "items": [2, 2, 2, 2, 2, 2, 1, 1, 2], "total": 3}},
        {"id": "e-1", "patient": "p-2", "type": "assessment_recorded", "at": at,
         "data": {"instrument": "phq9", "items": [0, 0, 0, 0, 0, 0, 0, 0, 1], "total": 0}},
        {"id": "a-3", "patient": "p-2", "type": "assessment_recorded", "at": at,
         "data": {"instrument": "phq9", "items": [0, 0, 0, 0, 0, 0, 0, 0, 4], "total": 4}},
    ]
    path = tmp_path / "events.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    streamed, reference = _streamed(path), _reference(path)
    assert streamed == reference
    events, rejected = reference
    assert [(e[0], e[1], e[3], e[6].get("item9")) for e in events] == [
        (1, "e-1", "enrolled", None), (2, "a-1", "assessment_rejected", 2), (3, "e-1", "assessment_rejected", 1)]
    assert [r[0] for r in rejected] == [2, 3, 4]  # line 4 has an item out of range: its answers are not trusted
