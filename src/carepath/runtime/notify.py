"""The facts of urgent and safety work as Prefect events, which the clinic's automations
(automations/on-call.yaml) turn into pages.

`carepath.task.raised`, `carepath.task.escalated`, `carepath.task.acknowledged`,
`carepath.hold.breached`: the resource is the task (`carepath.task.<id>`) labelled with
pathway, version, patient ref, task id, step, role, tier and whether this fact pages
(`carepath.page`: "true" for the first raise or escalation of its patient, tier and
episode; see carepath.orchestrator.notices); the patient is a related resource; the
payload repeats them with the fact's instant, the due time and the link to the patient's
page in `carepath serve` (CAREPATH_SERVE_URL, when set). Never a name, an answer or a
note: what a page says is enough to open the worklist, and no more.

Each event's id is derived from the fact, so an announcement repeated after a run died
between sending and recording is the same event.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Sequence

from prefect.events import Event as PrefectEvent
from prefect.events.clients import get_events_client

from carepath.orchestrator.notices import FIRST_TIER, Fact, link_to

SERVE_URL = "CAREPATH_SERVE_URL"  # where `carepath serve` answers, e.g. https://worklist.clinic.example
_NAMESPACE = uuid.UUID("6f1c2a44-52c1-4b0e-9a57-0c5a4d0f7e21")


def event_name(fact: Fact) -> str:
    return f"carepath.{fact.kind}"


def tier_label(fact: Fact) -> str:
    """The tier an automation matches on: the escalation tier, or `raised` before any."""
    return fact.tier or FIRST_TIER


def as_event(fact: Fact, serve_url: str | None = None) -> PrefectEvent:
    link = link_to(serve_url, fact.patient)
    labels = {"carepath.pathway": fact.pathway, "carepath.version": fact.version, "carepath.patient": fact.patient,
              "carepath.task": fact.task, "carepath.step": fact.step, "carepath.role": fact.role,
              "carepath.tier": tier_label(fact), "carepath.page": "true" if fact.page else "false"}
    return PrefectEvent(
        id=uuid.uuid5(_NAMESPACE, f"{fact.pathway}|{fact.key}"),
        event=event_name(fact),
        resource={"prefect.resource.id": f"carepath.task.{fact.task}", **labels},
        related=[{"prefect.resource.id": f"carepath.patient.{fact.patient}", "prefect.resource.role": "patient"}],
        payload={**fact.as_json(), "tier": tier_label(fact), "link": link},
    )


async def _send(events: Sequence[PrefectEvent]) -> None:
    # The client's context exit waits until the server has the events.
    async with get_events_client() as client:
        for event in events:
            await client.emit(event)


def announce_facts(facts: Sequence[Fact]) -> None:
    """Send the facts' events to the Prefect server of the run (raises when it cannot:
    the facts stay pending in the ledger and the next run sends them)."""
    serve_url = os.environ.get(SERVE_URL) or None
    events = [as_event(f, serve_url) for f in facts]
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(_send(events))
        return
    # Called where a loop runs already: send from a thread of its own, and wait for it.
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, _send(events)).result()
