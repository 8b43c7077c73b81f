"""PHQ-9 bands come from the pathway (`phq9_bands`), not from the engine."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta
from pathlib import Path
from types import MappingProxyType
from zoneinfo import ZoneInfo

import pytest

from carepath.api import load_pathway, validate
from carepath.engine.clock import AsOf
from carepath.engine.planner import Fold
from carepath.records import Event, Patient
from pathway_variants import REFERENCE, edit, write_variant

ROOT = Path(__file__).resolve().parents[1]
NY = ZoneInfo("America/New_York")
AT = datetime(2026, 3, 2, 10, 0, tzinfo=NY)
PATIENT = Patient("p-1", "T", "P", "America/New_York")


def _band(compiled, items: list[int]) -> str:
    """The band conditions read (phq9.band) after one PHQ-9 with these answers."""
    events = [Event("e-1", "p-1", "enrolled", AT, MappingProxyType({}), 1),
              Event("e-2", "p-1", "assessment_recorded", AT + timedelta(hours=1),
                    MappingProxyType({"instrument": "phq9", "items": items}), 2)]
    fold = Fold(compiled, PATIENT)
    fold.run(events, AsOf(AT + timedelta(days=1)))
    return str(fold.context(events[-1])["phq9"]["band"])


@pytest.mark.parametrize("name", ["ketamine-iv", "esketamine-spravato"])
@pytest.mark.parametrize(("items", "band"), [
    ([0] * 9, "minimal"), ([1, 1, 1, 1, 0, 0, 0, 0, 0], "minimal"), ([1, 1, 1, 1, 1, 0, 0, 0, 0], "mild"),
    ([2, 2, 2, 2, 2, 0, 0, 0, 0], "moderate"), ([2, 2, 2, 2, 2, 2, 2, 1, 0], "moderately_severe"),
    ([3] * 9, "severe"),
])
def test_the_shipped_pathways_declare_the_published_bands(name: str, items: list[int], band: str) -> None:
    assert _band(load_pathway(ROOT / "pathways" / f"{name}.yaml"), items) == band


def test_a_clinic_s_own_bands_are_the_ones_conditions_read() -> None:
    compiled = load_pathway(REFERENCE)
    own = dataclasses.replace(compiled, phq9_bands=((9, "low"), (27, "high")))
    assert _band(own, [2, 2, 2, 2, 2, 0, 0, 0, 0]) == "high"
    assert _band(own, [1] * 9) == "low"
    assert _band(dataclasses.replace(compiled, phq9_bands=()), [3] * 9) == "none"


def test_bands_that_do_not_rise_to_27_are_a_positioned_error(tmp_path: Path) -> None:
    text = edit(REFERENCE.read_text(), ("  moderately_severe: 19\n  severe: 27\n",
                                        "  moderately_severe: 19\n  severe: 18\n"))
    (checked,) = validate([str(write_variant(tmp_path, text))], against_git=False)
    (problem,) = [d for d in checked.diagnostics if "phq9_bands" in d.message]
    assert problem.code == "CP202" and "rising, the last 27" in problem.message
    start = next(n for n, line in enumerate(text.splitlines(), 1) if line.startswith("phq9_bands:"))
    assert start <= problem.line <= start + 5
