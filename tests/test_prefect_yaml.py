"""prefect.yaml stays true to the pathways and the flows: every shipped pathway has its
hourly sweep (in its clinic's zone), its event trigger and its nightly export, entrypoints resolve to the
module-level flows, and the trigger matches what `carepath emit` sends."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from carepath import api
from carepath.runtime import deployments, events, flows

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
    for d in (sweep, on_event):
        for key in ("patients", "events"):
            assert (ROOT / d["parameters"][key]).exists(), d["parameters"][key]
    # The whole-cohort documents on their own (nightly) schedule, from the sweep's folder.
    export = BY_NAME[f"{compiled.id}-nightly-export"]
    assert export["entrypoint"].endswith(":export")
    assert export["schedules"][0]["cron"] == deployments.NIGHTLY
    assert export["schedules"][0]["timezone"] == compiled.clinic.zone.key
    assert export["parameters"] == {"pathway": sweep["parameters"]["pathway"], "out": sweep["parameters"]["out"]}
    assert {d.name for d in deployments.deployments_for(str(path), str(ROOT / sweep["parameters"]["patients"]),
                                                        str(ROOT / sweep["parameters"]["events"]), "out")} \
        == {f"{compiled.id}-hourly-sweep", f"{compiled.id}-on-event", f"{compiled.id}-nightly-export"}


def test_entrypoints_name_the_module_level_flows() -> None:
    for d in CONFIG["deployments"]:
        file, name = d["entrypoint"].split(":")
        assert (ROOT / file).resolve() == Path(flows.__file__).resolve()
        assert getattr(flows, name).name in ("carepath-sweep", "carepath-sweep-parallel", "carepath-patient",
                                             "carepath-export")
