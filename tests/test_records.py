"""The patients and events readers: their line contract and the PHQ-9 rules."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import MappingProxyType

import pytest

from carepath.model.events import CORE_EVENTS
from carepath.model.pathway import DataField, FieldType
from carepath.records import Event, Patient, RecordsFileError, Rejection, judge, read_events, read_patients, readers
from carepath.records.types import new_event

PATIENTS = {"p-001", "p-002"}
AT = "2026-03-02T10:00:00-05:00"
NAMES = ("Ada", "Byron", "ada@example.org", "Grace", "Hopper")


@pytest.fixture(params=["fast", "stdlib"])
def parser(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every behaviour holds with orjson's fast path and with the stdlib-only reader."""
    if request.param == "stdlib":
        monkeypatch.setattr(judge, "parse_line", judge.parse_line_reference)
    return request.param


def event(id: str = "e-1", **changes: object) -> dict[str, object]:  # noqa: A002
    line: dict[str, object] = {"id": id, "patient": "p-001", "type": "session_completed", "at": AT,
                               "data": {"session": "s-1"}}
    line.update(changes)
    return line


def phq9(id: str, items: list[object], **extra: object) -> dict[str, object]:  # noqa: A002
    return event(id, type="assessment_recorded", data={"instrument": "phq9", "items": items, **extra})


def write(tmp_path: Path, lines: list[object], name: str = "events.jsonl") -> Path:
    path = tmp_path / name
    with path.open("wb") as handle:
        for line in lines:
            if isinstance(line, bytes):
                handle.write(line + b"\n")
            elif isinstance(line, str):
                handle.write(line.encode() + b"\n")
            else:
                handle.write(json.dumps(line).encode() + b"\n")
    return path


def read(tmp_path: Path, lines: list[object], **kwargs: object) -> tuple[list[Event], list[Rejection]]:
    kwargs.setdefault("event_types", CORE_EVENTS)
    kwargs.setdefault("patients", PATIENTS)
    return read_events(write(tmp_path, lines), **kwargs)  # type: ignore[arg-type]


def rejected_lines(rejections: list[Rejection]) -> list[int]:
    return [r.line for r in rejections]


# --- events: what is accepted ------------------------------------------------------


def test_valid_event_is_read_with_its_offset_and_line(tmp_path: Path, parser: str) -> None:
    events, rejected = read(tmp_path, [event()])
    assert rejected == []
    [e] = events
    assert (e.id, e.patient, e.type, e.line) == ("e-1", "p-001", "session_completed", 1)
    assert e.at == datetime(2026, 3, 2, 15, tzinfo=UTC)
    assert e.at.utcoffset() == timedelta(hours=-5)  # kept as given, not converted
    assert dict(e.data) == {"session": "s-1"}


def test_data_is_read_only_and_lists_become_tuples(tmp_path: Path, parser: str) -> None:
    events, _ = read(tmp_path, [phq9("e-1", [0, 1, 2, 3, 0, 1, 2, 3, 0])])
    [e] = events
    assert isinstance(e.data, MappingProxyType)
    assert e.data["items"] == (0, 1, 2, 3, 0, 1, 2, 3, 0)
    with pytest.raises(TypeError):
        e.data["items"] = ()  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        e.id = "other"  # type: ignore[misc]


def test_events_are_returned_in_file_order_not_time_order(tmp_path: Path, parser: str) -> None:
    events, _ = read(tmp_path, [event("e-2", at="2026-03-03T10:00:00Z"), event("e-1", at="2026-03-01T10:00:00Z")])
    assert [e.id for e in events] == ["e-2", "e-1"]


def test_datetime_data_field_is_parsed_aware(tmp_path: Path, parser: str) -> None:
    line = event(type="session_scheduled", data={"session": "s-1", "start": "2026-03-04T09:30:00+01:00"})
    [e], rejected = read(tmp_path, [line])
    assert rejected == []
    start = e.data["start"]
    assert isinstance(start, datetime) and start.utcoffset() == timedelta(hours=1)
    assert start == datetime(2026, 3, 4, 8, 30, tzinfo=UTC)


def test_blank_lines_are_skipped_and_line_numbers_still_count_them(tmp_path: Path, parser: str) -> None:
    events, rejected = read(tmp_path, ["", "   ", event("e-1"), "\t", "nope"])
    assert [e.line for e in events] == [3]
    assert rejected_lines(rejected) == [5]


def test_crlf_and_byte_order_mark_are_accepted(tmp_path: Path, parser: str) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(event("e-1")).encode() + b"\r\n"
                     + json.dumps(event("e-2")).encode() + b"\r\n")
    events, rejected = read_events(path, event_types=CORE_EVENTS, patients=PATIENTS)
    assert [e.id for e in events] == ["e-1", "e-2"] and rejected == []


def test_missing_data_reads_as_empty_and_null_optional_fields_as_absent(tmp_path: Path, parser: str) -> None:
    enrolled = event("e-1", type="enrolled")
    del enrolled["data"]
    screening = event("e-2", type="screening_recorded", data={"trd_trials": 2, "cautions": None})
    events, rejected = read(tmp_path, [enrolled, screening])
    assert rejected == []
    assert [dict(e.data) for e in events] == [{}, {"trd_trials": 2}]


def test_valid_lines_around_bad_lines_are_still_returned(tmp_path: Path, parser: str) -> None:
    lines = [event("e-1"), "{broken", event("e-3"), event("e-4", at="yesterday"), event("e-5")]
    events, rejected = read(tmp_path, lines)
    assert [(e.id, e.line) for e in events] == [("e-1", 1), ("e-3", 3), ("e-5", 5)]
    assert rejected_lines(rejected) == [2, 4]


# --- events: duplicates ------------------------------------------------------------


def test_exact_duplicate_is_ignored_even_when_written_differently(tmp_path: Path, parser: str) -> None:
    first = event("e-1")
    reordered = '{"data": {"session": "s-1"}, "at": "%s", "type": "session_completed", "patient": "p-001", "id": "e-1"}' % AT
    events, rejected = read(tmp_path, [first, first, reordered, event("e-2")])
    assert [(e.id, e.line) for e in events] == [("e-1", 1), ("e-2", 4)]
    assert rejected == []


def test_same_id_with_different_content_is_rejected_and_first_kept(tmp_path: Path, parser: str) -> None:
    lines = [event("e-1"), event("e-1", data={"session": "s-2"}), event("e-1", at="2026-03-02T15:00:00Z")]
    events, rejected = read(tmp_path, lines)
    assert [(e.line, e.data["session"]) for e in events] == [(1, "s-1")]
    assert rejected_lines(rejected) == [2, 3]
    assert all(r.id == "e-1" and "line 1" in r.reason for r in rejected)
    assert "data" in rejected[0].reason
    # The same instant written with another offset is different content.
    assert "time" in rejected[1].reason


def test_a_rejected_line_does_not_claim_its_id(tmp_path: Path, parser: str) -> None:
    events, rejected = read(tmp_path, [event("e-1", patient="p-404"), event("e-1")])
    assert [e.line for e in events] == [2] and rejected_lines(rejected) == [1]


# --- events: rejections ------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "needle"),
    [
        ("not json at all", "not valid JSON"),
        ("[1, 2, 3]", "JSON object"),
        ('"just text"', "JSON object"),
        ('{"id": "e-1", "patient": "p-001", "type": "enrolled", "at": "%s", "data": {"x": NaN}}' % AT, "NaN"),
        ('{"id": "e-1", "patient": "p-001", "type": "enrolled", "at": "%s", "data": {"x": "\\ud800"}}' % AT,
         "surrogate"),
        (b'{"id": "e-1", "patient": "p-001", "type": "enrolled", "at": "2026-03-02T10:00:00Z", "x": "caf\xe9"}',
         "UTF-8"),
        ("[" * 5000 + "]" * 5000, "JSON"),
    ],
)
def test_unreadable_lines_are_rejected(tmp_path: Path, parser: str, line: object, needle: str) -> None:
    events, rejected = read(tmp_path, [event("e-0"), line, event("e-2")])
    assert [e.id for e in events] == ["e-0", "e-2"]
    [r] = rejected
    assert r.line == 2 and needle in r.reason


@pytest.mark.parametrize(
    ("changes", "needle"),
    [
        ({"id": None}, "'id' is missing"),
        ({"id": 17}, "'id' must be text"),
        ({"id": ""}, "'id' is empty"),
        ({"id": " e-1"}, "spaces"),
        ({"patient": None}, "'patient' is missing"),
        ({"patient": ["p-001"]}, "'patient' must be text"),
        ({"type": None}, "'type' is missing"),
        ({"at": None}, "'at' is missing"),
        ({"at": 1772463600}, "'at' must be a date-time"),
        ({"at": "2 March 2026"}, "not a valid date-time"),
        ({"data": [1]}, "'data' must be a JSON object"),
        ({"dta": {}}, "unknown field 'dta'"),
    ],
)
def test_wrong_or_missing_top_level_fields(tmp_path: Path, parser: str, changes: dict[str, object], needle: str) -> None:
    line = event("e-1")
    line.update(changes)
    line = {k: v for k, v in line.items() if v is not None}
    events, rejected = read(tmp_path, [line])
    assert events == []
    [r] = rejected
    assert r.line == 1 and needle in r.reason, r.reason


def test_naive_timestamp_is_rejected_and_says_how_to_fix(tmp_path: Path, parser: str) -> None:
    events, rejected = read(tmp_path, [event("e-1", at="2026-03-02T10:00:00"), event("e-2", at="2026-03-02")])
    assert events == []
    assert rejected_lines(rejected) == [1, 2]
    assert all("no UTC offset" in r.reason and "-05:00" in r.reason for r in rejected)
    assert rejected[0].id == "e-1"


def test_naive_datetime_in_data_is_rejected(tmp_path: Path, parser: str) -> None:
    line = event(type="session_scheduled", data={"session": "s-1", "start": "2026-03-04T09:30:00"})
    _, [r] = read(tmp_path, [line])
    assert "data.start has no UTC offset" in r.reason


def test_unknown_event_type_is_rejected_with_a_suggestion(tmp_path: Path, parser: str) -> None:
    _, [r] = read(tmp_path, [event("e-1", type="session_complete")])
    assert r.line == 1 and r.id == "e-1"
    assert "unknown event type" in r.reason and "did you mean session_completed" in r.reason


def test_unknown_patient_is_rejected_naming_the_ref(tmp_path: Path, parser: str) -> None:
    events, [r] = read(tmp_path, [event("e-1"), event("e-2", patient="p-404")])
    assert [e.id for e in events] == ["e-1"]
    assert r.line == 2 and r.id == "e-2" and '"p-404"' in r.reason and "patients file" in r.reason


def test_patients_may_be_the_dict_read_patients_returns(tmp_path: Path, parser: str) -> None:
    patients = {"p-001": Patient("p-001", "Ada", "Byron", "UTC")}
    events, rejected = read(tmp_path, [event("e-1"), event("e-2", patient="p-002")], patients=patients)
    assert [e.id for e in events] == ["e-1"] and rejected_lines(rejected) == [2]


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ({}, "data.session is missing"),
        ({"session": 1}, "data.session must be text"),
        ({"session": "s-1", "extra": True}, "unknown field 'extra'"),
    ],
)
def test_core_data_fields_are_checked(tmp_path: Path, parser: str, data: dict[str, object], needle: str) -> None:
    _, [r] = read(tmp_path, [event("e-1", data=data)])
    assert needle in r.reason, r.reason


def test_one_of_and_integer_fields(tmp_path: Path, parser: str) -> None:
    good = event("e-1", type="vitals_recorded", data={"systolic": 120, "diastolic": 80, "phase": "pre_dose"})
    bad = event("e-2", type="vitals_recorded", data={"systolic": 120.5, "diastolic": True, "phase": "before"})
    events, [r] = read(tmp_path, [good, bad])
    assert [e.id for e in events] == ["e-1"]
    assert "data.systolic must be a whole number" in r.reason
    assert "data.diastolic must be a whole number (got true/false)" in r.reason
    assert "data.phase must be one of: post_dose, pre_dose" in r.reason


def test_task_acknowledged_names_the_task_and_who_owns_it(tmp_path: Path, parser: str) -> None:
    good = event("e-1", type="task_acknowledged", data={"task": "t-1", "by": "staff-7"})
    no_by = event("e-2", type="task_acknowledged", data={"task": "t-1"})
    events, [r] = read(tmp_path, [good, no_by])
    assert [(e.id, dict(e.data)) for e in events] == [("e-1", {"task": "t-1", "by": "staff-7"})]
    assert r.line == 2 and "data.by is missing" in r.reason


def test_every_problem_on_a_line_is_reported(tmp_path: Path, parser: str) -> None:
    _, [r] = read(tmp_path, [event("e-1", patient="p-404", at="2026-03-02T10:00:00", extra=1)])
    for needle in ("p-404", "no UTC offset", "unknown field 'extra'"):
        assert needle in r.reason


def test_integers_beyond_the_safe_range_are_rejected_by_both_parsers(tmp_path: Path, parser: str) -> None:
    line = ('{"id": "e-1", "patient": "p-001", "type": "screening_recorded", "at": "%s", '
            '"data": {"trd_trials": 123456789012345678901234567890}}' % AT)
    _, [r] = read(tmp_path, [line])
    assert "data.trd_trials must be a whole number" in r.reason


def test_over_long_line_is_rejected(tmp_path: Path, parser: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(judge, "MAX_LINE_BYTES", 200)
    events, [r] = read(tmp_path, [event("e-1", data={"session": "s" * 300}), event("e-2")])
    assert [e.id for e in events] == ["e-2"] and r.line == 1 and "longer than 200 bytes" in r.reason


# --- PHQ-9 -------------------------------------------------------------------------


def test_phq9_checks(tmp_path: Path, parser: str) -> None:
    lines = [
        phq9("ok", [0, 1, 2, 3, 0, 1, 2, 3, 0]),
        phq9("ok-total", [0, 1, 2, 3, 0, 1, 2, 3, 1], total=13),
        phq9("short", [0, 1, 2, 3, 0, 1, 2, 3]),
        phq9("long", [0] * 10),
        phq9("high", [0, 1, 2, 3, 0, 1, 2, 3, 4]),
        phq9("negative", [-1, 1, 2, 3, 0, 1, 2, 3, 0]),
        phq9("bool", [0, 1, 2, 3, 0, 1, 2, 3, True]),
        phq9("float", [0, 1, 2, 3, 0, 1, 2, 3, 1.0]),
        phq9("total", [0, 1, 2, 3, 0, 1, 2, 3, 1], total=12),
        phq9("total-bool", [0, 1, 2, 3, 0, 1, 2, 3, 1], total=True),
        phq9("instrument", [0] * 9) | {"data": {"instrument": "gad7", "items": [0] * 9}},
    ]
    events, rejected = read(tmp_path, lines)
    assert [e.id for e in events if e.type == "assessment_recorded"] == ["ok", "ok-total"]
    assert events[1].data["total"] == 13
    # The line with a wrong total stays rejected, but its answers reach the engine as a
    # derived event (same id and line): an item-9 answer must never be lost to a typo.
    (derived,) = [e for e in events if e.type == "assessment_rejected"]
    assert (derived.id, derived.line, derived.data["item9"], derived.data["stated_total"]) == ("total", 9, 1, 12)
    assert tuple(derived.data["items"]) == (0, 1, 2, 3, 0, 1, 2, 3, 1)
    reasons = {r.id: r.reason for r in rejected}
    assert rejected_lines(rejected) == list(range(3, 12))
    assert "exactly 9 item scores, but data.items has 8" in reasons["short"]
    assert "has 10" in reasons["long"]
    assert "from 0 to 3 (item 9 is 4)" in reasons["high"]
    assert "item 1 is -1" in reasons["negative"]
    assert "entry 9 is true/false" in reasons["bool"]
    assert "entry 9 is a number with a decimal point" in reasons["float"]
    assert "total is 12 but the items add up to 13" in reasons["total"]
    assert "data.total must be a whole number" in reasons["total-bool"]
    assert "data.instrument must be one of: phq9" in reasons["instrument"]


# --- pathway-declared event types --------------------------------------------------


CUSTOM_TYPES = {
    **CORE_EVENTS,
    "gad7_recorded": {
        "score": DataField(type=FieldType.INTEGER),
        "weight_kg": DataField(type=FieldType.NUMBER, optional=True),
        "consented": DataField(type=FieldType.BOOLEAN),
        "tags": DataField(type=FieldType.TEXT_LIST, optional=True, one_of=("a", "b")),
        "when": DataField(type=FieldType.DATETIME, optional=True),
        "scores": DataField(type=FieldType.INTEGER_LIST, optional=True),
    },
}


def test_pathway_declared_type_with_typed_data(tmp_path: Path, parser: str) -> None:
    good = event("e-1", type="gad7_recorded", data={
        "score": 7, "weight_kg": 71.5, "consented": False, "tags": ["a", "b"], "when": "2026-03-01T08:00:00Z",
        "scores": [1, 2],
    })
    minimal = event("e-2", type="gad7_recorded", data={"score": 0, "consented": True, "weight_kg": 70})
    bad = event("e-3", type="gad7_recorded", data={
        "score": "7", "weight_kg": "heavy", "consented": 1, "tags": ["a", "c"], "when": "soon", "scores": [1, "2"],
    })
    events, rejected = read(tmp_path, [good, minimal, bad], event_types=CUSTOM_TYPES)
    assert [e.id for e in events] == ["e-1", "e-2"]
    data = events[0].data
    assert data["tags"] == ("a", "b") and data["scores"] == (1, 2) and data["consented"] is False
    assert data["when"] == datetime(2026, 3, 1, 8, tzinfo=UTC)
    [r] = rejected
    for needle in ("data.score must be a whole number (got text)", "data.weight_kg must be a number (got text)",
                   "data.consented must be true or false (got a number)", "data.tags must be one of: a, b",
                   "data.when is not a valid date-time", "data.scores must be a list of whole numbers (entry 2"):
        assert needle in r.reason, (needle, r.reason)


def test_a_type_not_in_the_given_catalogue_is_unknown(tmp_path: Path, parser: str) -> None:
    _, [r] = read(tmp_path, [event("e-1", type="gad7_recorded", data={"score": 1, "consented": True})])
    assert "unknown event type" in r.reason


# --- patients ----------------------------------------------------------------------


def patient(ref: str = "p-001", **changes: object) -> dict[str, object]:
    line: dict[str, object] = {"patient": ref, "given_name": "Ada", "family_name": "Byron",
                               "timezone": "America/Los_Angeles", "email": "ada@example.org"}
    line.update(changes)
    return {k: v for k, v in line.items() if v is not None}


def read_p(tmp_path: Path, lines: list[object]) -> tuple[dict[str, Patient], list[Rejection]]:
    return read_patients(write(tmp_path, lines, "patients.jsonl"), default_timezone="America/New_York")


def test_patients_are_read_and_default_zone_applied(tmp_path: Path, parser: str) -> None:
    patients, rejected = read_p(tmp_path, [patient(), patient("p-002", timezone=None, email=None)])
    assert rejected == []
    assert list(patients) == ["p-001", "p-002"]
    assert patients["p-001"] == Patient("p-001", "Ada", "Byron", "America/Los_Angeles", "ada@example.org")
    assert patients["p-002"].timezone == "America/New_York" and patients["p-002"].email is None
    assert str(patients["p-001"].zone) == "America/Los_Angeles"


@pytest.mark.parametrize("zone", ["America/Nowhere", "EST-5", "America", "../../etc/passwd", "", "Byron"])
def test_invalid_zone_is_rejected(tmp_path: Path, parser: str, zone: str) -> None:
    patients, [r] = read_p(tmp_path, [patient("p-001", timezone=zone), patient("p-002")])
    assert list(patients) == ["p-002"]
    assert r.line == 1 and r.id == "p-001" and "IANA time zone" in r.reason


@pytest.mark.parametrize(
    ("changes", "needle"),
    [
        ({"patient": None}, "'patient' is missing"),
        ({"given_name": None}, "'given_name' is missing"),
        ({"family_name": 3}, "'family_name' must be text"),
        ({"given_name": "", "family_name": " "}, "both empty"),
        ({"timezone": 5}, "'timezone' must be text"),
        ({"email": ["a"]}, "'email' must be text"),
        ({"timezon": "Europe/London"}, "unknown field 'timezon'"),
    ],
)
def test_bad_patient_lines(tmp_path: Path, parser: str, changes: dict[str, object], needle: str) -> None:
    patients, [unreadable, r] = read_p(tmp_path, ["nope", patient("p-001", **changes)])
    assert patients == {}
    assert unreadable.line == 1 and "not valid JSON" in unreadable.reason
    assert r.line == 2 and needle in r.reason, r.reason


def test_patient_duplicates(tmp_path: Path, parser: str) -> None:
    lines = [patient(), patient(), patient(timezone="America/New_York"), patient("p-002", timezone=None),
             patient("p-002", timezone="America/New_York")]
    patients, rejected = read_p(tmp_path, lines)
    assert patients["p-001"].timezone == "America/Los_Angeles"
    assert rejected_lines(rejected) == [3]
    assert "line 1" in rejected[0].reason and "timezone" in rejected[0].reason


def test_default_timezone_must_be_valid(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="IANA"):
        read_patients(write(tmp_path, [patient()]), default_timezone="Mars/Olympus")


# --- privacy, errors, contract shape -----------------------------------------------


def test_reasons_never_contain_names_or_emails(tmp_path: Path, parser: str) -> None:
    # A shifted column can put a name or an address into any field.
    plines = [
        patient("p-000", timezone="Byron"),
        patient("p-002", given_name="Grace", family_name="Hopper", timezone="Hopper", email=5),
        patient("p-001", family_name="Lovelace", email="ada@example.org"),
        {"patient": "p-003", "Ada": "Byron"},
        patient("p-004", given_name=["Ada"], family_name={"Byron": 1}),
    ]
    _, prejected = read_p(tmp_path, [patient("p-001"), *plines])
    elines = [
        event("e-1", type="Ada"),
        event("e-2", at="Byron"),
        event("e-3", data={"session": "s-1", "given_name": "Ada"}),
        event("e-4", type="vitals_recorded", data={"systolic": "Ada", "diastolic": 80, "phase": "Byron"}),
        event("e-5", type="session_scheduled", data={"session": "s-1", "start": "ada@example.org"}),
        event("e-6", type="screening_recorded", data={"trd_trials": 2, "cautions": ["Hopper", 3]}),
        event("e-7", **{"ada@example.org": 1}),
        {"Grace Hopper": "x"},
        '{"note": "Ada Byron", oops}',
    ]
    _, erejected = read(tmp_path, elines)
    assert len(prejected) == len(plines) and len(erejected) == len(elines)
    for r in prejected + erejected:
        for name in NAMES:
            assert name.lower() not in r.reason.lower(), (name, r.reason)


def test_patient_repr_shows_only_the_ref() -> None:
    text = repr(Patient("p-001", "Ada", "Byron", "UTC", "ada@example.org"))
    assert "p-001" in text and not any(name in text for name in NAMES)


def test_rejection_as_json() -> None:
    assert Rejection(7, "e-23", "why").as_json() == {"file": "events", "line": 7, "id": "e-23", "reason": "why"}
    assert (json.dumps(Rejection(3, None, "x", "patients").as_json())
            == '{"file": "patients", "line": 3, "id": null, "reason": "x"}')


def test_missing_file_raises_a_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.jsonl"
    with pytest.raises(RecordsFileError) as info:
        read_events(missing, event_types=CORE_EVENTS, patients=PATIENTS)
    assert info.value.path == str(missing) and info.value.message == "file not found"
    with pytest.raises(RecordsFileError, match="directory"):
        read_patients(tmp_path, default_timezone="UTC")


def test_empty_file_reads_as_nothing(tmp_path: Path) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_bytes(b"")
    assert read_events(path, event_types=CORE_EVENTS, patients=PATIENTS) == ([], [])
    assert read_patients(path, default_timezone="UTC") == ({}, [])


def test_fast_event_constructor_matches_the_dataclass() -> None:
    at = datetime(2026, 3, 2, tzinfo=UTC)
    data = MappingProxyType({"session": "s-1"})
    made, built = new_event("e-1", "p-1", "t", at, data, 4), Event("e-1", "p-1", "t", at, data, 4)
    assert made == built and repr(made) == repr(built) and hash(made) == hash(built)
    assert [f.name for f in dataclasses.fields(Event)] == ["id", "patient", "type", "at", "data", "line"]


def test_iter_event_lines_streams_events_and_rejections(tmp_path: Path) -> None:
    path = write(tmp_path, [event("e-1"), "bad", event("e-1")])
    items = list(readers.iter_event_lines(path, event_types=CORE_EVENTS, patients=PATIENTS))
    assert [type(i).__name__ for i in items] == ["Event", "Rejection"]


def test_garbage_collector_state_is_restored(tmp_path: Path) -> None:
    import gc

    path = write(tmp_path, [event("e-1")])
    assert gc.isenabled()
    read_events(path, event_types=CORE_EVENTS, patients=PATIENTS)
    assert gc.isenabled()
    gc.disable()
    try:
        read_events(path, event_types=CORE_EVENTS, patients=PATIENTS)
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_records_do_not_import_prefect() -> None:
    code = "import sys, carepath.records; assert 'prefect' not in sys.modules, 'prefect imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
