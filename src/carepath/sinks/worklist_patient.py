"""One patient's worklist page (`carepath worklist --patient`, the per-patient record of an
event-triggered run): the patient's whole plan rather than a cohort's top rows — every task,
no horizon and no per-band cap — with its letters and what closed each withdrawn item.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from zoneinfo import ZoneInfo

from carepath.sinks.base import Output
from carepath.sinks.documents import instant
from carepath.sinks.worklist_text import long_moment

# A patient's page lists everything: a horizon and a cap no plan reaches.
PATIENT_HORIZON = timedelta(days=36500)
PATIENT_ROWS = 1 << 62


def letter_entry(output: Output, zone: ZoneInfo, closures: Mapping[str, str]) -> dict[str, object]:
    """One letter of the patient's page: which, when (in clinic time, as the whole page),
    its status and what withdrew it. No names: the letter's text is not shown."""
    body, owner = output.body, f"letter {output.id}"
    send_at, expires_at = instant(body, "send_at", owner), instant(body, "expires_at", owner)
    if send_at is None:
        raise ValueError(f"{owner} has no send time")
    return {"id": output.id, "letter": str(body.get("letter")), "template": str(body.get("template")),
            "send": long_moment(send_at.astimezone(zone)), "send_iso": send_at.isoformat(),
            "expires": long_moment(expires_at.astimezone(zone)) if expires_at is not None else "",
            "status": str(body.get("status")), "trigger": str(body.get("trigger")),
            "closed_by": closures.get(output.id, "")}
