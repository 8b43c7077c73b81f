"""What closed each withdrawn task or letter (engine/closure.py), for one patient's page."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from carepath.api import load_pathway
from carepath.engine import plan
from carepath.engine.closure import closures
from carepath.records.readers import read_events, read_patients

ROOT = Path(__file__).resolve().parents[1]
AS_OF = datetime.fromisoformat("2026-03-05T17:00:00+00:00")


def test_every_cancelled_task_and_withdrawn_letter_of_the_demo_says_what_closed_it() -> None:
    compiled = load_pathway(ROOT / "pathways" / "ketamine-iv.yaml")
    patients, _ = read_patients(ROOT / "examples" / "demo" / "patients.jsonl", default_timezone="America/New_York")
    events, _ = read_events(ROOT / "examples" / "demo" / "events.jsonl", event_types=compiled.event_fields,
                            patients=patients)
    kinds = set()
    for ref, patient in sorted(patients.items()):
        mine = [e for e in events if e.patient == ref]
        result = plan(compiled, patient, mine, AS_OF)
        closed = closures(compiled, patient, mine, AS_OF)
        # Only closed work is explained, and all of it is.
        expected = ({t.id for t in result.tasks if t.status == "cancelled" and t.source != f"step:{t.step}:overdue"}
                    | {letter.id for letter in result.letters if letter.status == "withdrawn"})
        assert set(closed) == expected, ref
        kinds.update(text.split(" ")[0] + " " + text.split(" ")[1] for text in closed.values())
        assert not any(patient.given_name in text or patient.family_name in text for text in closed.values())
    # The demo has work withdrawn by a stage change, superseded windows and withdrawn letters.
    assert {"withdrawn when", "superseded: the"} <= kinds
