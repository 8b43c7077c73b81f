"""The on-call automations kept in the repository: valid for the pinned Prefect, one page
per escalation tier each shipped pathway names, operations told of failed runs; and the
events they react to carry refs, ids and roles, never a name."""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import pytest

from carepath.api import load_pathway
from carepath.orchestrator.notices import ESCALATED, RAISED, Fact
from carepath.runtime.automations import block_refs, read, substitute
from carepath.runtime.flows import patient_replan, sweep
from carepath.runtime.notify import as_event

ROOT = Path(__file__).resolve().parents[1]
FILE = ROOT / "automations" / "on-call.yaml"


def _automations() -> list[dict]:
    automations = read(FILE)
    return substitute(automations, {ref: str(uuid.uuid4()) for ref in block_refs(automations)})


def _pages(automations: list[dict]) -> dict[tuple[str, str], dict]:
    return {(event, a["trigger"]["match"]["carepath.tier"]): a for a in automations
            for event in a["trigger"]["expect"] if a["trigger"]["match"].get("carepath.page") == "true"}


@pytest.mark.parametrize("pathway", ["ketamine-iv", "esketamine-spravato"])
def test_every_tier_a_shipped_pathway_escalates_to_pages_someone(pathway: str) -> None:
    compiled = load_pathway(ROOT / "pathways" / f"{pathway}.yaml")
    assert compiled.escalation is not None and compiled.escalation.tiers
    pages = _pages(_automations())
    assert ("carepath.task.raised", "raised") in pages
    for tier in compiled.escalation.tiers:
        page = pages[("carepath.task.escalated", tier)]
        assert page["enabled"] and page["actions"][0]["type"] == "send-notification"


def test_a_failed_sweep_or_patient_replan_notifies_operations() -> None:
    ops = [a for a in _automations() if "prefect.flow-run.Failed" in a["trigger"]["expect"]]
    assert len(ops) == 1
    assert set(ops[0]["trigger"]["match_related"]["prefect.resource.name"]) == {sweep.name, patient_replan.name}
    assert "prefect.flow-run.Crashed" in ops[0]["trigger"]["expect"]


def test_each_page_block_is_named_for_review() -> None:
    refs = block_refs(read(FILE))
    assert refs and all(ref.startswith("block:") and "/" in ref for ref in refs)


def test_the_event_of_a_fact_carries_what_to_open_and_nothing_about_the_person() -> None:
    fact = Fact(RAISED, "ketamine-iv", "1.0.0", "p-7", "t-abc", "suicide_risk_assessment", "prescriber", "urgent",
                None, "2026-03-02T21:10:00-05:00", "2026-03-02T23:59:00-05:00", "t-abc", page=True)
    event = as_event(fact, "https://worklist.clinic.example")
    assert event.event == "carepath.task.raised"
    assert event.resource.id == "carepath.task.t-abc"
    assert event.resource["carepath.tier"] == "raised" and event.resource["carepath.page"] == "true"
    assert event.payload["link"] == "https://worklist.clinic.example/patients/p-7"
    assert set(event.payload) == {"kind", "pathway", "version", "patient", "task", "step", "role", "priority",
                                  "tier", "at", "due", "episode", "page", "link"}
    # The same fact is the same event (a repeated announcement is recognisable).
    assert as_event(fact).id == event.id
    escalated = as_event(Fact(**{**fact.__dict__, "kind": ESCALATED, "tier": "medical_director", "page": False}))
    assert escalated.event == "carepath.task.escalated" and escalated.resource["carepath.tier"] == "medical_director"
    assert escalated.id != event.id


def _carepath(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([str(ROOT / ".venv" / "bin" / "carepath"), *args], capture_output=True, text=True,
                          timeout=120, env=env)


def test_the_command_refuses_a_broken_file_and_names_the_missing_server(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API_URL")}
    env["PREFECT_HOME"] = str(tmp_path / "prefect-home")
    broken = tmp_path / "on-call.yaml"
    broken.write_text("automations:\n  - name: no trigger\n    actions: []\n")
    proc = _carepath("automations", str(broken), "--out", str(tmp_path / "out.json"), env=env)
    assert proc.returncode == 1 and "'no trigger' is not valid for Prefect" in proc.stderr, proc.stderr
    assert not (tmp_path / "out.json").exists()
    proc = _carepath("automations", str(FILE), "--out", str(tmp_path / "out.json"), env=env)
    assert proc.returncode == 69 and "PREFECT_API_URL" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
