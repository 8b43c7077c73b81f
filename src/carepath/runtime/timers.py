"""Timers as scheduled flow runs: a patient whose plan changes before the next sweep gets
one run of its pathway's patient deployment (`<pathway id>-on-event`), scheduled at that
instant (see carepath.orchestrator.timers for which and when).

Each run's idempotency key is the timer's (pathway, patient, instant), so a second run
asking for the same timer gets the same flow run. A timer left behind by a plan that
changed first (an event re-planned the patient) still runs and changes nothing.
Parameters carry the pseudonymous ref only.

Without that deployment (`carepath run` on the temporary server, or no `prefect deploy`
yet) no timer can run later: they are skipped, with a note, and the hourly sweep meets
the deadlines as before.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from carepath.orchestrator.timers import Timer

PATIENT_FLOW = "carepath-patient"
TAG = "carepath-timer"


def deployment_name(pathway_id: str) -> str:
    return f"{PATIENT_FLOW}/{pathway_id}-on-event"


def schedule(pathway_id: str, timers: Sequence[Timer], note: Callable[[str], None]) -> int:
    """Schedule the timers' runs; how many were asked for (0 when none could be)."""
    if not timers:
        return 0
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import StateType
    from prefect.exceptions import ObjectNotFound
    from prefect.states import Scheduled

    with get_client(sync_client=True) as client:
        try:
            deployment = client.read_deployment_by_name(deployment_name(pathway_id))
        except ObjectNotFound:
            note(f"{len(timers)} re-plan(s) due before the next sweep not scheduled: no deployment "
                 f"{deployment_name(pathway_id)} on this Prefect server (the hourly sweep meets them)")
            return 0
        for timer in timers:
            parameters = {"patient": timer.patient, "event_id": None, "not_before": timer.at.isoformat()}
            run = client.create_flow_run_from_deployment(
                deployment.id, parameters=parameters,
                state=Scheduled(scheduled_time=timer.at), idempotency_key=timer.key(pathway_id), tags=[TAG])
            if run.state is not None and run.state.type not in (StateType.SCHEDULED, StateType.PENDING,
                                                                 StateType.RUNNING, StateType.COMPLETED):
                note(f"the re-plan timer of {timer.patient} at {timer.at.isoformat()} is {run.state.type.value}")
    return len(timers)
