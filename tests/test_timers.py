"""Which re-planned patients get a timer of their own before the next hourly sweep."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from carepath.orchestrator.timers import Timer, horizon, next_sweep, timers_before

NY = ZoneInfo("America/New_York")
AS_OF = datetime.fromisoformat("2026-03-02T21:10:00-05:00")


def test_the_next_sweep_is_the_next_full_hour_of_the_clinic() -> None:
    assert next_sweep(AS_OF, NY) == datetime.fromisoformat("2026-03-02T22:00:00-05:00")
    assert next_sweep(datetime.fromisoformat("2026-03-02T22:00:00-05:00"), NY) == \
        datetime.fromisoformat("2026-03-02T23:00:00-05:00")


def test_only_wakes_before_the_next_sweep_get_a_timer_earliest_first() -> None:
    escalation = datetime.fromisoformat("2026-03-02T21:25:00-05:00")
    letter = datetime.fromisoformat("2026-03-02T21:15:00-05:00")
    tomorrow = datetime.fromisoformat("2026-03-03T09:00:00-05:00")
    timers = timers_before([("p-1", escalation), ("p-2", tomorrow), ("p-3", letter)], AS_OF, next_sweep(AS_OF, NY))
    assert timers == [Timer(letter, "p-3"), Timer(escalation, "p-1")]


def test_a_timer_is_named_by_pathway_patient_and_instant_whatever_the_zone() -> None:
    at = datetime.fromisoformat("2026-03-02T21:25:00-05:00")
    same = Timer(at.astimezone(ZoneInfo("UTC")), "p-1")
    assert Timer(at, "p-1").key("ketamine-iv") == same.key("ketamine-iv") == \
        "carepath-timer|ketamine-iv|p-1|2026-03-03T02:25:00.000000+00:00"
    assert Timer(at, "p-1").key("ketamine-iv") != Timer(at, "p-2").key("ketamine-iv")


def test_timers_reach_past_the_next_sweep_which_re_plans_only_patients_whose_wake_has_come() -> None:
    """At 21:58 a wake at 22:00:30 is not met by the 22:00 sweep (not yet come then): it
    needs a timer now. The horizon is the sweep after next."""
    as_of = datetime.fromisoformat("2026-03-02T21:58:00-05:00")
    wake = datetime.fromisoformat("2026-03-02T22:00:30-05:00")
    assert horizon(as_of, NY) == datetime.fromisoformat("2026-03-02T23:00:00-05:00")
    assert timers_before([("p-1", wake)], as_of, horizon(as_of, NY)) == [Timer(wake, "p-1")]
