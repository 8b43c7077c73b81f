"""`carepath plan` judges the events file through its own event store, a group of
patients at a time; it reaches exactly the verdicts of the reference reader (read_events)
on messy files: duplicate ids valid and invalid, conflicts across patients and groups,
blank and broken lines, a BOM, no final newline, unknown patients."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from carepath.api import load_pathway
from carepath.orchestrator.planning import Cohort, read_cohort
from carepath.records import read_events

ROOT = Path(__file__).resolve().parents[1]
COMPILED = load_pathway(ROOT / "pathways" / "ketamine-iv.yaml")
PATIENTS = ("p-1", "p-2", "p-3")

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


def _files(tmp_path: Path, events: bytes) -> tuple[Path, Path]:
    patients = tmp_path / "patients.jsonl"
    patients.write_text("".join(json.dumps({"patient": ref, "given_name": "Ada", "family_name": "Byron"}) + "\n"
                                for ref in PATIENTS))
    path = tmp_path / "events.jsonl"
    path.write_bytes(events)
    return patients, path


def _row(e) -> tuple:  # noqa: ANN001
    return (e.line, e.id, e.patient, e.type, e.at, e.at.utcoffset(), dict(e.data))


def _reference(path: Path) -> tuple[list[tuple], list[tuple]]:
    events, rejected = read_events(path, event_types=COMPILED.event_fields, patients=set(PATIENTS))
    return [_row(e) for e in events], [(r.line, r.id, r.reason) for r in rejected]


def _planned(patients: Path, path: Path, group_size: int) -> tuple[list[tuple], list[tuple]]:
    cohort: Cohort = read_cohort(COMPILED, patients, path, group_size=group_size)
    events, rejected = [], list(cohort.rejected)
    for _, found, bad in cohort.groups():
        events += [e for group in found.values() for e in group]
        rejected += bad
    return (sorted((_row(e) for e in events), key=lambda row: row[0]),
            sorted(((r.line, r.id, r.reason) for r in rejected if r.file == "events"), key=lambda row: row[0]))


@pytest.mark.parametrize("group_size", [1, 2000])
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(_line, max_size=40), bom=st.booleans(), final_newline=st.booleans())
def test_planned_verdicts_match_the_reference(tmp_path: Path, group_size: int, lines: list[str], bom: bool,
                                             final_newline: bool) -> None:
    text = "\n".join(lines) + ("\n" if final_newline else "")
    patients, path = _files(tmp_path, (b"\xef\xbb\xbf" if bom else b"") + text.encode())
    assert _planned(patients, path, group_size) == _reference(path)


def test_a_conflict_across_patients_names_the_earlier_line_and_an_exact_resend_is_skipped(tmp_path: Path) -> None:
    first = {"id": "e-1", "patient": "p-1", "type": "enrolled", "at": "2026-03-02T10:00:00-05:00", "data": {}}
    rows = [first, {**first, "patient": "p-3"}, first]
    patients, path = _files(tmp_path, "".join(json.dumps(r) + "\n" for r in rows).encode())
    events, rejected = _planned(patients, path, group_size=1)  # p-1 and p-3 planned in different groups
    assert [e[0] for e in events] == [1]
    assert [(r[0], r[1]) for r in rejected] == [(2, "e-1")]
    assert "already used on line 1 with a different patient" in rejected[0][2]


@pytest.mark.parametrize("group_size", [1, 2000])
def test_a_wrong_phq9_total_keeps_its_answers(tmp_path: Path, group_size: int) -> None:
    """A PHQ-9 whose stated total disagrees with its items is rejected, and the engine gets
    the derived `assessment_rejected` event (item 9 survives), also when its id is another
    patient's too."""
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
    patients, path = _files(tmp_path, "".join(json.dumps(r) + "\n" for r in rows).encode())
    planned, reference = _planned(patients, path, group_size), _reference(path)
    assert planned == reference
    events, rejected = reference
    assert [(e[0], e[1], e[3], e[6].get("item9")) for e in events] == [
        (1, "e-1", "enrolled", None), (2, "a-1", "assessment_rejected", 2), (3, "e-1", "assessment_rejected", 1)]
    assert [r[0] for r in rejected] == [2, 3, 4]  # line 4 has an item out of range: its answers are not trusted


def test_the_scratch_store_goes_with_the_cohort(tmp_path: Path) -> None:
    import gc
    import tempfile

    patients, path = _files(tmp_path, b'{"id": "e-1", "patient": "p-1", "type": "enrolled", '
                                      b'"at": "2026-03-02T10:00:00-05:00", "data": {}}\n')
    before = set(Path(tempfile.gettempdir()).glob("carepath-plan-*"))
    cohort = read_cohort(COMPILED, patients, path)
    made = set(Path(tempfile.gettempdir()).glob("carepath-plan-*")) - before
    assert len(made) == 1 and any(next(iter(made)).iterdir())
    del cohort
    gc.collect()
    assert not next(iter(made)).exists()
