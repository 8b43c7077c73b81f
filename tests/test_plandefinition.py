"""`carepath export-fhir`: the pathway definition as a FHIR R4 PlanDefinition bundle."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B.bundle import Bundle

from carepath.cli.main import main
from carepath.review.load import load_reviewed
from carepath.review.plandefinition import fhir_id, plan_definition_bundle
from pathway_variants import REFERENCE, ROOT, edit, write_variant

PATHWAYS = sorted((ROOT / "pathways").glob("*.yaml"))


def walk(actions: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for action in actions:
        yield action
        yield from walk(action.get("action", []))


@pytest.fixture(scope="module")
def bundle() -> dict[str, Any]:
    return plan_definition_bundle(load_reviewed(str(REFERENCE)))


@pytest.mark.parametrize("pathway", PATHWAYS, ids=[p.stem for p in PATHWAYS])
def test_every_shipped_pathway_exports_a_valid_r4_bundle(pathway: Path) -> None:
    data = plan_definition_bundle(load_reviewed(str(pathway)))
    Bundle.model_validate(data)  # raises on anything FHIR R4(B) does not allow
    actions = list(walk(data["entry"][0]["resource"]["action"]))
    ids = [a["id"] for a in actions]
    assert len(ids) == len(set(ids)), "action ids must be unique"
    for action in actions:  # every relatedAction points at an action that exists
        for related in action.get("relatedAction", []):
            assert related["actionId"] in ids
    urls = {f'{e["resource"]["url"]}|{e["resource"]["version"]}' for e in data["entry"]}
    for action in actions:  # every definition resolves inside the bundle
        if "definitionCanonical" in action:
            assert action["definitionCanonical"] in urls


def test_plan_definition_and_one_activity_definition_per_step_and_letter(bundle: dict[str, Any]) -> None:
    compiled = load_reviewed(str(REFERENCE)).compiled
    resources = [e["resource"] for e in bundle["entry"]]
    plan = resources[0]
    assert (plan["resourceType"], plan["id"], plan["version"], plan["status"]) == (
        "PlanDefinition", "ketamine-iv", "1.0.0", "draft")
    tasks = {r["name"]: r for r in resources if r.get("kind") == "Task"}
    letters = [r for r in resources if r.get("kind") == "CommunicationRequest"]
    assert len(tasks) == len(compiled.steps) and len(letters) == len(compiled.letters)
    suicide = tasks["SuicideRiskAssessment"]
    assert suicide["priority"] == "asap" and suicide["participant"][0]["role"]["text"].startswith("prescriber")
    assert "23:59 (clinic time) the same clinic day" in suicide["usage"] and "holds dosing" in suicide["usage"]
    assert [a["title"] for a in plan["action"]] == [
        "Stage: screening", "Stage: initial_series", "Stage: maintenance", "Stage: relapse_response",
        "Cross-cutting rules"]


def test_integration_window_is_an_offset_range_after_the_session(bundle: dict[str, Any]) -> None:
    plan = bundle["entry"][0]["resource"]
    rules = {a["id"]: a for a in plan["action"][-1]["action"]}
    rule = rules["rule-integration-after-session"]
    assert rule["trigger"] == [{"type": "named-event", "name": "session_completed"}]
    task = next(a for a in rule["action"] if a["title"].startswith("Integration psychotherapy"))
    (related,) = task["relatedAction"]
    assert related["actionId"] == rule["id"] and related["relationship"] == "after-start"
    low, high = related["offsetRange"]["low"], related["offsetRange"]["high"]
    assert (low["value"], low["code"], high["value"], high["code"]) == (24, "h", 48, "h")
    assert low["system"] == "http://unitsofmeasure.org"
    assert task["definitionCanonical"].endswith("/ActivityDefinition/ketamine-iv-integration-psychotherapy|1.0.0")


def test_conditions_and_stage_moves(bundle: dict[str, Any]) -> None:
    plan = bundle["entry"][0]["resource"]
    rules = {a["id"]: a for a in plan["action"][-1]["action"]}
    (condition,) = rules["rule-suicidality"]["condition"]
    assert condition["kind"] == "applicability"
    assert condition["expression"]["expression"] == "phq9.item9 > 0"
    relapse = rules["rule-relapse"]
    assert "Only in stages: initial_series, maintenance." in relapse["textEquivalent"]
    goto = next(a for a in walk(relapse["action"]) if a["title"] == "Go to stage relapse_response")
    assert goto["relatedAction"][0]["actionId"] == "stage-relapse-response"
    screening = plan["action"][0]["action"][0]
    assert screening["title"] == "Move to stage initial_series"
    assert screening["trigger"][0]["name"] == "screening_recorded"
    maintenance = {a["title"]: a for a in plan["action"][2]["action"]}
    booster = maintenance["Maintenance booster infusion"]
    assert booster["timingTiming"]["repeat"] == {"frequency": 1, "period": 4, "periodUnit": "wk"}


def test_long_names_still_make_valid_ids() -> None:
    assert fhir_id("a_b") == "a-b"
    long = fhir_id("x" * 80)
    assert len(long) == 64 and long != fhir_id("x" * 81)


def test_cli_prints_json_and_rejects_an_invalid_pathway(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export-fhir", str(REFERENCE), "--base-url", "https://fhir.clinic.example/r4/"]) == 0
    data = json.loads(capsys.readouterr().out)
    Bundle.model_validate(data)
    assert data["entry"][0]["fullUrl"] == "https://fhir.clinic.example/r4/PlanDefinition/ketamine-iv"
    bad = write_variant(tmp_path, edit(REFERENCE.read_text(), ("    value: 48h", "    value: 48 parsecs")))
    assert main(["export-fhir", str(bad)]) == 1
    out = capsys.readouterr()
    assert out.out == "" and str(bad) in out.err and "Traceback" not in out.err
