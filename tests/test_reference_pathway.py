"""The shipped reference pathway validates cleanly and keeps the contract's names."""

from __future__ import annotations

from pathlib import Path

from carepath.api import load_pathway
from carepath.check.runner import check_file
from carepath.model.pathway import SourceTag

CONTRACT_STEPS = {
    "records_request", "contraindication_review", "integration_psychotherapy", "integration_window_conflict",
    "suicide_risk_assessment", "missed_session_outreach", "relapse_review", "rescue_session", "rescreen",
    "repeat_phq9", "booster_session", "safety_review",
}
CONTRACT_LETTERS = {
    "welcome", "screening_eligible", "screening_not_eligible", "records_pending", "series_schedule",
    "pre_session_instructions", "integration_reminder", "missed_session", "relapse_warning_signs",
    "maintenance_plan",
}


def test_reference_pathway_has_no_diagnostics_at_all(reference_pathway: Path) -> None:
    result = check_file(reference_pathway)
    assert [d.render() for d in result.diagnostics] == []


def test_reference_pathway_keeps_contract_names(reference_pathway: Path) -> None:
    compiled = load_pathway(reference_pathway)
    assert (compiled.id, compiled.version) == ("ketamine-iv", "1.0.0")
    assert set(compiled.stages) == {"screening", "initial_series", "maintenance", "relapse_response"}
    assert CONTRACT_STEPS <= set(compiled.steps)
    assert CONTRACT_LETTERS <= set(compiled.letters)


def test_reference_defaults_match_domain(reference_pathway: Path) -> None:
    from datetime import time, timedelta

    from carepath.compile.compiled import ClockDue, OffsetDue
    from carepath.model.pathway import Basis, ClosedPolicy

    c = load_pathway(reference_pathway)
    assert c.clinic.zone.key == "America/New_York"
    assert c.clinic.hours[0] == ((time(8), time(18)),) and c.clinic.hours[5] == ()
    window = c.steps["integration_psychotherapy"].window
    assert (window.opens, window.due) == (timedelta(hours=24), OffsetDue(timedelta(hours=48)))
    assert window.basis is Basis.ELAPSED and window.when_clinic_closed is ClosedPolicy.ESCALATE
    assert c.min_session_gap == timedelta(hours=44)
    assert c.stages["initial_series"].series.sessions == 6
    assert c.steps["suicide_risk_assessment"].window.due == ClockDue(time(23, 59), 0)
    assert c.steps["suicide_risk_assessment"].holds == ("dosing",)
    relapse = next(r for r in c.rules if r.id == "relapse")
    assert relapse.consecutive == 1
    assert c.parameters["relapse_threshold"] == 10
    assert c.parameters["missed_sessions_for_risk"] == 2


def test_every_parameter_states_its_source(reference_pathway: Path) -> None:
    pathway = check_file(reference_pathway).pathway
    assert pathway is not None
    for name, parameter in pathway.parameters.items():
        assert parameter.source in set(SourceTag), name
    # ... and the file comments each one with its tag for reviewers.
    text = reference_pathway.read_text()
    for name in pathway.parameters:
        line = next(l for l in text.splitlines() if l.strip().startswith(f"{name}:"))
        assert "[" in line and "]" in line, f"parameter {name} lacks its [TAG] comment"


def test_pathways_declare_the_schema_for_editors(root: Path) -> None:
    for path in (root / "pathways").glob("*.yaml"):
        assert path.read_text().splitlines()[0] == "# yaml-language-server: $schema=../schemas/pathway.schema.json"
