"""Telling Prefect that a patient has a new event, so the deployment's event trigger
re-plans that patient. The Prefect event names the pathway, the pseudonymous patient ref,
the event id and type; the event's data stays in the events file."""

from __future__ import annotations

import asyncio

from prefect.events import Event as PrefectEvent
from prefect.events.clients import get_events_client
from prefect.settings import PREFECT_API_URL
from websockets.exceptions import WebSocketException

from carepath.runtime.server import ServiceUnavailable

EVENT_NAME = "carepath.event.recorded"


def resource_id(ref: str) -> str:
    return f"carepath.patient.{ref}"


def announcement(pathway: str, ref: str, event_id: str, event_type: str) -> PrefectEvent:
    return PrefectEvent(
        event=EVENT_NAME,
        resource={"prefect.resource.id": resource_id(ref), "carepath.pathway": pathway},
        payload={"patient": ref, "event_id": event_id, "type": event_type},
    )


async def _send(event: PrefectEvent) -> None:
    # The client's context exit waits until the server has the event: drained before exit.
    async with get_events_client() as client:
        await client.emit(event)


def announce(pathway: str, ref: str, event_id: str, event_type: str) -> str | None:
    """Send the event; its id, or None when no server is configured (nothing to tell)."""
    if not PREFECT_API_URL.value():
        return None
    event = announcement(pathway, ref, event_id, event_type)
    try:
        asyncio.run(_send(event))
    except (OSError, TimeoutError, WebSocketException) as exc:  # ConnectionRefusedError is an OSError
        raise ServiceUnavailable(
            f"the Prefect server at {PREFECT_API_URL.value()}",
            f"{type(exc).__name__}: {exc}. The event is recorded in the events file (the next sweep plans it); "
            "start the server or correct PREFECT_API_URL, then emit the same event again to announce it") from None
    return str(event.id)
