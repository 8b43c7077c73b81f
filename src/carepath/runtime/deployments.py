"""The deployments of one pathway, built in code for `serve` (the same ones prefect.yaml
declares for workers): an hourly sweep on the clinic's zone, a re-plan of one patient
triggered by each `carepath.event.recorded` event for that pathway, and a nightly export
of the whole-cohort documents."""

from __future__ import annotations

from pathlib import Path

from prefect.deployments.runner import RunnerDeployment
from prefect.events.schemas.deployment_triggers import DeploymentEventTrigger
from prefect.schedules import Cron

from carepath.loading import load_pathway
from carepath.runtime.events import EVENT_NAME
from carepath.runtime.flows import export, patient_replan, sweep

HOURLY = "0 * * * *"
NIGHTLY = "30 2 * * *"  # the export: the whole-cohort documents, after the clinic's day


def event_trigger(pathway_id: str) -> DeploymentEventTrigger:
    return DeploymentEventTrigger(
        expect={EVENT_NAME},
        match={"prefect.resource.id": "carepath.patient.*", "carepath.pathway": pathway_id},
        for_each={"prefect.resource.id"},
        parameters={"patient": "{{ event.payload.patient }}", "event_id": "{{ event.payload.event_id }}"},
    )


def deployments_for(pathway: str, patients: str, events: str, out: str) -> list[RunnerDeployment]:
    compiled = load_pathway(pathway)
    params = {"pathway": str(Path(pathway).resolve()), "patients": str(Path(patients).resolve()),
              "events": str(Path(events).resolve()), "out": str(Path(out).resolve())}
    return [
        sweep.to_deployment(name=f"{compiled.id}-hourly-sweep", parameters=params,
                            schedules=[Cron(HOURLY, timezone=compiled.clinic.zone.key)],
                            tags=["carepath", compiled.id],
                            description=f"Hourly: re-plan the patients of {compiled.id} whose plan may have "
                                        "changed and emit what is new."),
        patient_replan.to_deployment(name=f"{compiled.id}-on-event", parameters=params,
                                     triggers=[event_trigger(compiled.id)], tags=["carepath", compiled.id],
                                     description=f"Re-plan one {compiled.id} patient when an event is recorded."),
        export.to_deployment(name=f"{compiled.id}-nightly-export",
                             parameters={"pathway": params["pathway"], "out": params["out"]},
                             schedules=[Cron(NIGHTLY, timezone=compiled.clinic.zone.key)],
                             tags=["carepath", compiled.id],
                             description=f"Nightly: {compiled.id}'s whole-cohort documents from the ledger, "
                                         "without re-planning."),
    ]
