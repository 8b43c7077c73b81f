"""prefect.yaml stays true to the pathways and the flows: every shipped pathway has its
hourly sweep (in its clinic's zone), its event trigger and its nightly export, entrypoints resolve to the
module-level flows, and the trigger matches what `carepath emit` sends."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from carepath import api
from carepath.runtime import deployments, events, flows
from carepath.settings import deployment_variable

ROOT = Path(__file__).resolve().parents[1]
CONFIG = yaml.safe_load((ROOT / "prefect.yaml").read_text())
BY_NAME = {d["name"]: d for d in CONFIG["deployments"]}
PATHWAYS = sorted((ROOT / "pathways").glob("*.yaml"))


@pytest.mark.parametrize("path", PATHWAYS, ids=lambda p: p.stem)
def test_every_shipped_pathway_has_a_sweep_and_an_event_trigger(path: Path) -> None:
    compiled = api.load_pathway(path)
    sweep = BY_NAME[f"{compiled.id}-hourly-sweep"]
    assert sweep["parameters"]["pathway"] == f"pathways/{path.name}"
    assert sweep["schedules"][0]["timezone"] == compiled.clinic.zone.key
    assert sweep["schedules"][0]["cron"] == deployments.HOURLY
    on_event = BY_NAME[f"{compiled.id}-on-event"]
    trigger = on_event["triggers"][0]
    assert trigger["expect"] == [events.EVENT_NAME]
    assert trigger["match"]["carepath.pathway"] == compiled.id
    coded = deployments.event_trigger(compiled.id)
    assert trigger["parameters"] == coded.parameters and set(trigger["for_each"]) == coded.for_each
    sent = events.announcement(compiled.id, "p-001", "e-1", "session_completed")
    assert sent.resource.id.startswith(trigger["match"]["prefect.resource.id"].rstrip("*"))
    assert sent.resource["carepath.pathway"] == compiled.id
    # The clinic's data come from Prefect variables, one set per pathway: no demo path to fork.
    for d in (sweep, on_event):
        for key in ("patients", "events", "out", "ledger_url"):
            assert d["parameters"][key] == f"{{{{ prefect.variables.{deployment_variable(path.name, key)} }}}}"
    # The whole-cohort documents on their own (nightly) schedule, from the sweep's folder.
    export = BY_NAME[f"{compiled.id}-nightly-export"]
    assert export["entrypoint"].endswith(":export")
    assert export["schedules"][0]["cron"] == deployments.NIGHTLY
    assert export["schedules"][0]["timezone"] == compiled.clinic.zone.key
    assert export["parameters"] == {key: sweep["parameters"][key] for key in ("pathway", "out", "ledger_url")}
    demo = ROOT / "examples" / ("demo" if compiled.id == "ketamine-iv" else "esketamine")
    assert {d.name for d in deployments.deployments_for(str(path), str(demo / "patients.jsonl"),
                                                        str(demo / "events.jsonl"), "out")} \
        == {f"{compiled.id}-hourly-sweep", f"{compiled.id}-on-event", f"{compiled.id}-nightly-export"}


def test_entrypoints_name_the_module_level_flows() -> None:
    for d in CONFIG["deployments"]:
        file, name = d["entrypoint"].split(":")
        assert (ROOT / file).resolve() == Path(flows.__file__).resolve()
        assert getattr(flows, name).name in ("carepath-sweep", "carepath-sweep-parallel", "carepath-patient",
                                             "carepath-export")


def test_each_deployment_takes_its_settings_from_its_own_prefect_variables() -> None:
    documents = {}
    for d in CONFIG["deployments"]:
        env = d["job_variables"]["env"]
        pathway = Path(d["parameters"]["pathway"]).stem.replace("-", "_")
        assert env["CAREPATH_DOCUMENTS_URL"] == f"{{{{ prefect.variables.carepath_{pathway}_documents_url }}}}"
        assert env["CAREPATH_LETTER_CHANNEL"] == f"{{{{ prefect.variables.carepath_{pathway}_letter_channel }}}}"
        documents.setdefault(pathway, set()).add(env["CAREPATH_DOCUMENTS_URL"])
    assert len(documents) == len(PATHWAYS) and all(len(v) == 1 for v in documents.values())
    assert len(set().union(*documents.values())) == len(PATHWAYS)  # no two pathways share one setting
    outs = {Path(d["parameters"]["pathway"]).stem: d["parameters"]["out"] for d in CONFIG["deployments"]}
    assert len(set(outs.values())) == len(PATHWAYS)  # nor one output folder


def _home_check(env: dict[str, str]) -> subprocess.CompletedProcess:
    (step,) = [s["prefect.deployments.steps.run_shell_script"] for s in CONFIG["build"]]
    assert step["shell"] is True
    return subprocess.run(["sh", "-c", step["script"]], capture_output=True, text=True, timeout=30,
                          env={"PATH": os.environ["PATH"], **env})


def test_prefect_deploy_without_carepath_home_is_refused_and_says_how(tmp_path: Path) -> None:
    missing = _home_check({})
    assert missing.returncode != 0 and "CAREPATH_HOME" in missing.stderr and "$PWD prefect deploy" in missing.stderr
    elsewhere = _home_check({"CAREPATH_HOME": str(tmp_path)})
    assert elsewhere.returncode != 0 and "prefect.yaml and pathways/" in elsewhere.stderr
    assert _home_check({"CAREPATH_HOME": str(ROOT)}).returncode == 0
