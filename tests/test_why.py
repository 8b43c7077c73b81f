"""Why a task exists, in clinical words (carepath.engine.why): what its event recorded."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from carepath.engine.why import describe
from carepath.model.pathway import DataField, FieldType

NY = ZoneInfo("America/New_York")


def test_core_events_in_clinical_words() -> None:
    assert describe("assessment_recorded", {"instrument": "phq9", "items": [1, 1, 1, 1, 1, 1, 1, 1, 2]}, NY) \
        == "PHQ-9 item 9 answered 2 (total 10)"
    assert describe("assessment_recorded", {"instrument": "phq9", "items": [2] * 8 + [0]}, NY) == "PHQ-9 total 16"
    assert describe("session_missed", {"session": "s-3"}, NY) == "Session s-3 missed"
    assert describe("vitals_recorded", {"systolic": 152, "diastolic": 95, "phase": "pre_dose"}, NY) \
        == "Blood pressure 152/95 (pre-dose)"
    assert describe("screening_recorded", {"trd_trials": 1, "contraindications": [], "cautions": ["pregnancy"]},
                    NY) == "Screening: 1 documented antidepressant trial; caution pregnancy"
    assert describe("session_scheduled", {"session": "s-2", "start": "2026-03-09T14:00:00+00:00"}, NY) \
        == "Session s-2 booked for Mon 9 Mar 10:00 EDT"


def test_declared_events_show_coded_data_never_free_text() -> None:
    declared = {"note": DataField(type=FieldType.TEXT), "form": DataField(type=FieldType.TEXT, one_of=("a", "b")),
                "score": DataField(type=FieldType.INTEGER)}
    text = describe("rems_form_filed", {"note": "Ada Byron said she felt dizzy", "form": "a", "score": 3}, NY,
                    declared, "REMS Patient Monitoring Form filed.")
    assert text == "REMS Patient Monitoring Form filed: form a, score 3"
    assert describe("custom_thing", {}, NY, {}, None) == "Custom thing"
