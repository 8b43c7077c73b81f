"""The clinical safety semantics as language features: what scenario files cannot pin on their own
(coverage of hold reactions, the checks of the new constructs on the shipped pathways)."""

from __future__ import annotations

from pathlib import Path

import pytest

from carepath.api import load_pathway
from carepath.check.runner import check_file
from carepath.testing.coverage import coverage
from carepath.testing.scenarios import run_scenario

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = ROOT / "tests" / "scenarios"
PATHWAYS = {"ketamine-iv": SCENARIOS, "esketamine-spravato": SCENARIOS / "esketamine"}


@pytest.mark.parametrize("pathway_id", sorted(PATHWAYS))
def test_shipped_pathways_keep_the_safety_constructs(pathway_id: str) -> None:
    checked = check_file(ROOT / "pathways" / f"{pathway_id}.yaml")
    assert checked.ok and checked.pathway is not None
    p = checked.pathway
    assert p.steps["suicide_risk_assessment"].safety and p.steps["hold_breach_review"].safety
    assert p.holds["dosing"].breached_by == ["session_completed"]
    assert "blocked" in p.letters["pre_session_instructions"].withheld_while
    assert "pending_eligibility" in p.letters["pre_session_instructions"].withheld_while
    # No flag the pathway raises is left without a way to clear (CP409 would warn).
    assert not [d for d in checked.diagnostics if d.code == "CP409"]


@pytest.mark.parametrize("pathway_id", sorted(PATHWAYS))
def test_coverage_counts_hold_reactions(pathway_id: str) -> None:
    compiled = load_pathway(ROOT / "pathways" / f"{pathway_id}.yaml")
    folder = PATHWAYS[pathway_id]
    breach = [run_scenario(f) for f in sorted(folder.glob("safety-dose-during-hold-*.scenario.yaml"))]
    booking = [run_scenario(f) for f in sorted(folder.glob("safety-booking-during-hold-*.scenario.yaml"))]
    assert breach and booking and all(o.passed for o in breach + booking)
    assert coverage(compiled, breach).unexercised["hold reactions"] == ["dosing booking"]
    assert coverage(compiled, booking).unexercised["hold reactions"] == ["dosing breach"]
    assert "hold reactions" not in coverage(compiled, breach + booking).unexercised
