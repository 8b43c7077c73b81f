"""Escalation as reviewers and other systems see it: diff, graph, the FHIR PlanDefinition and Task."""

from __future__ import annotations

from pathlib import Path

from carepath.review.diff import diff_pathways
from carepath.review.diff_format import format_text
from carepath.review.graph import mermaid
from carepath.review.load import load_reviewed
from carepath.review.plandefinition import plan_definition_bundle
from pathway_variants import REFERENCE, edit, write_variant

TEXT = REFERENCE.read_text()


def test_diff_shows_escalation_tiers_and_delays_by_value(tmp_path: Path) -> None:
    new = write_variant(tmp_path, edit(TEXT, ("  tiers: [on_call_prescriber, medical_director]",
                                             "  tiers: [on_call_prescriber]"),
                                       ("  delay_out_of_hours: $escalation_delay_out_of_hours",
                                        "  delay_out_of_hours: 30m")))
    text = format_text(diff_pathways(load_reviewed(str(REFERENCE)), load_reviewed(str(new))))
    assert "Escalation: tiers changed from on_call_prescriber → medical_director to on_call_prescriber" in text
    assert "Escalation: delay out of hours changed from 60 min to 30 min" in text
    # The same value written as its parameter's value is no clinical change.
    same = write_variant(tmp_path / "same", edit(TEXT, ("  repeat: $escalation_repeat", "  repeat: 24h")))
    text = format_text(diff_pathways(load_reviewed(str(REFERENCE)), load_reviewed(str(same))))
    assert "Escalation" not in text


def test_graph_and_plan_definition_name_the_tiers_and_delays() -> None:
    reviewed = load_reviewed(str(REFERENCE))
    graph = mermaid(reviewed)
    assert "<b>escalation</b>" in graph and "each after 15 min (raised in hours)" in graph
    bundle = plan_definition_bundle(reviewed)
    usage = {e["resource"].get("name"): e["resource"].get("usage", "") for e in bundle["entry"]}
    assert "escalates to on_call_prescriber then medical_director" in usage["SuicideRiskAssessment"]
    assert "escalates again every 24 h" in usage["SuicideRiskAssessment"]
    assert "escalates to" not in usage["IntegrationPsychotherapy"]  # routine work


def test_fhir_task_names_who_acknowledged_it_and_its_escalation(tmp_path: Path) -> None:
    import json
    from datetime import timedelta

    from fhir.resources.R4B.bundle import Bundle

    from carepath.engine.result import EscalationState
    from carepath.sinks.base import OutputKind
    from carepath.sinks.fhir import FhirBundle
    from sink_cohort import AS_OF, planned_cohort, with_body

    cohort = planned_cohort(tmp_path / "cohort")
    task = next(o for o in cohort.of_kind(OutputKind.TASK) if o.body["step"] == "suicide_risk_assessment")
    since = AS_OF - timedelta(minutes=30)
    state = EscalationState("medical_director", since, AS_OF + timedelta(hours=2)).as_json()
    changed = with_body(task, acknowledged_by="staff-3", acknowledged_at=(AS_OF - timedelta(hours=1)).isoformat(),
                        escalation=state)
    outputs = [changed if o.id == task.id else o for o in cohort.outputs]
    FhirBundle(tmp_path / "out", cohort.compiled, AS_OF).write(iter(outputs))
    bundle = json.loads((tmp_path / "out" / "fhir" / "bundle.json").read_text())
    Bundle.model_validate(bundle)  # still valid FHIR R4
    (resource,) = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Task"
                   and e["resource"]["identifier"][0]["value"] == task.id]
    assert resource["owner"] == {"identifier": {"value": "staff-3"}}
    assert any(n["text"].startswith(f"Escalated to medical_director since {since.isoformat()}")
               for n in resource["note"])
