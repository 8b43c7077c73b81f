"""A due time falls while the clinic is open unless the step says it may not."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from carepath.api import load_pathway
from carepath.cli.main import main
from carepath.engine.calendar import within_hours
from pathway_variants import REFERENCE, edit, write_variant

NY = ZoneInfo("America/New_York")
TEXT = REFERENCE.read_text()
BOOSTER = ("    title: Maintenance booster infusion\n    role: care_coordinator\n    window:\n",
           "    title: Maintenance booster infusion\n    role: care_coordinator\n    window:\n"
           "      due_outside_hours: allowed\n")


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(NY)


@pytest.fixture(scope="module")
def clinic():
    return load_pathway(REFERENCE).clinic


@pytest.mark.parametrize(("due", "expected"), [
    ("2026-05-09T10:45:00-04:00", "2026-05-11T18:00:00-04:00"),   # Saturday → Monday's close
    ("2026-05-12T19:27:00-04:00", "2026-05-13T18:00:00-04:00"),   # Tuesday evening → Wednesday's close
    ("2026-05-12T07:00:00-04:00", "2026-05-12T18:00:00-04:00"),   # before opening → that day's close
    ("2026-05-12T18:00:00-04:00", "2026-05-12T18:00:00-04:00"),   # at closing time: stands
    ("2026-05-12T09:30:00-04:00", "2026-05-12T09:30:00-04:00"),   # open: stands
])
def test_within_hours(clinic, due: str, expected: str) -> None:
    assert within_hours(clinic, at(due)) == at(expected)


def test_a_closed_date_is_skipped(clinic) -> None:
    closed = replace(clinic, closed_dates=frozenset({date(2026, 5, 11)}))
    assert within_hours(closed, at("2026-05-09T10:45:00-04:00")) == at("2026-05-12T18:00:00-04:00")


def test_defaults_keep_safety_deadlines_and_integration_windows() -> None:
    steps = load_pathway(REFERENCE).steps
    moves = {name: s.window.move_outside_hours for name, s in steps.items()}
    # Routine and high work falls due while the clinic is open...
    assert moves["booster_session"] and moves["phq9_reassessment"] and moves["safety_review"] and moves["rescreen"]
    # ...urgent work, a clock-time due ("23:59 the same day") and a window with its own
    # closed-clinic policy keep their exact deadlines.
    assert not moves["suicide_risk_assessment"] and not moves["relapse_review"]
    assert not moves["integration_psychotherapy"]


def test_a_step_may_allow_a_due_outside_hours(tmp_path: Path) -> None:
    allowed = load_pathway(write_variant(tmp_path, edit(TEXT, BOOSTER)))
    assert not allowed.steps["booster_session"].window.move_outside_hours


def test_a_bad_value_is_a_positioned_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = write_variant(tmp_path, edit(TEXT, (BOOSTER[0], BOOSTER[1].replace("allowed", "sometimes"))))
    assert main(["validate", str(bad)]) == 1
    out = capsys.readouterr().out
    line = TEXT[:TEXT.index(BOOSTER[0])].count("\n") + 4
    assert f"{bad}:{line}:26: " in out and "due_outside_hours" in out, out


def test_a_parameter_of_the_wrong_kind_is_a_positioned_error(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    bad = write_variant(tmp_path, edit(TEXT, (BOOSTER[0], BOOSTER[1].replace("allowed", "$weekend_policy"))))
    assert main(["validate", str(bad)]) == 1
    out = capsys.readouterr().out
    line = TEXT[:TEXT.index(BOOSTER[0])].count("\n") + 4
    assert f"{bad}:{line}:26: CP308 expected one of allowed, next_opening (parameter '$weekend_policy')" in out
