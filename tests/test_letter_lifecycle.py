"""A letter's own `expires`: the earlier of it and its session's start for a booking's
letter, otherwise after its send time instead of the pathway's letter_expiry."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from carepath import api
from carepath.engine import plan
from carepath.records.types import Event, Patient
from pathway_variants import REFERENCE, edit, write_variant

NY = "America/New_York"


def ev(id_: str, type_: str, at: str, **data: object) -> Event:
    return Event(id_, "p-1", type_, datetime.fromisoformat(at), data, 1)


def test_a_letter_states_its_own_expiry(tmp_path: Path) -> None:
    text = edit(REFERENCE.read_text(),
                ("  welcome:\n    template: welcome\n", "  welcome:\n    template: welcome\n    expires: 1d\n"),
                ("    anchor: data.start\n    send: $pre_session_letter_lead before\n",
                 "    anchor: data.start\n    send: $pre_session_letter_lead before\n    expires: 36h\n"))
    compiled = api.load_pathway(write_variant(tmp_path, text))
    start = datetime.fromisoformat("2026-04-10T10:00:00-04:00")
    events = [ev("e-1", "enrolled", "2026-04-06T09:00:00-04:00"),
              ev("e-2", "screening_recorded", "2026-04-06T10:00:00-04:00", trd_trials=2, contraindications=[],
                 cautions=[]),
              ev("b-1", "session_scheduled", "2026-04-06T11:00:00-04:00", session="s-1", start=start)]
    result = plan(compiled, Patient("p-1", "Test", "Patient", NY), events,
                  datetime.fromisoformat("2026-04-07T12:00:00-04:00"))
    letters = {l.letter: l for l in result.letters}
    assert letters["welcome"].expires_at.isoformat() == "2026-04-07T09:00:00-04:00"
    assert letters["welcome"].status == "expired"  # a day after its send time
    assert letters["screening_eligible"].expires_at.isoformat() == "2026-04-13T10:00:00-04:00"  # the pathway's 7 days
    assert letters["screening_eligible"].status == "due"
    # sent 48 h before the session; its own 36 h end before the session starts
    pre = letters["pre_session_instructions"]
    assert (pre.send_at.isoformat(), pre.expires_at.isoformat(), pre.status) == (
        "2026-04-08T10:00:00-04:00", "2026-04-09T22:00:00-04:00", "scheduled")


def test_a_bookings_letter_never_outlives_its_session(tmp_path: Path) -> None:
    text = edit(REFERENCE.read_text(),
                ("    anchor: data.start\n    send: $pre_session_letter_lead before\n",
                 "    anchor: data.start\n    send: $pre_session_letter_lead before\n    expires: 5d\n"))
    compiled = api.load_pathway(write_variant(tmp_path, text))
    events = [ev("e-1", "enrolled", "2026-04-06T09:00:00-04:00"),
              ev("b-1", "session_scheduled", "2026-04-06T11:00:00-04:00", session="s-1",
                 start=datetime.fromisoformat("2026-04-10T10:00:00-04:00"))]
    result = plan(compiled, Patient("p-1", "Test", "Patient", NY), events,
                  datetime.fromisoformat("2026-04-10T10:00:00-04:00"))
    (pre,) = [l for l in result.letters if l.letter == "pre_session_instructions"]
    assert (pre.expires_at.isoformat(), pre.status) == ("2026-04-10T10:00:00-04:00", "expired")
