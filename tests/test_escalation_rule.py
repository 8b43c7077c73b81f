"""engine/escalation.py on hand-made plans: the corners scenarios reach only with long histories."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from carepath.api import load_pathway
from carepath.engine.escalation import settle
from carepath.engine.result import PlannedTask

ROOT = Path(__file__).resolve().parents[1]
COMPILED = load_pathway(ROOT / "pathways" / "ketamine-iv.yaml")
NY = ZoneInfo("America/New_York")


def task(task_id: str, step: str, earliest: datetime, due: datetime | None, as_of: datetime,
         done: datetime | None = None) -> PlannedTask:
    status = "done" if done is not None and done <= as_of else "overdue" if due is not None and as_of > due else "open"
    return PlannedTask(task_id, step, step, "prescriber", "urgent", earliest, due, status, "e-1", False, "rule:x",
                       completed_at=done if status == "done" else None)


def test_an_overdue_stretch_that_ended_keeps_its_last_escalation_while_the_episode_runs_on() -> None:
    start = datetime(2026, 1, 5, 9, 0, tzinfo=NY)   # a Monday, in opening hours
    done = datetime(2026, 2, 3, 12, 0, tzinfo=NY)
    as_of = datetime(2026, 3, 5, 12, 0, tzinfo=NY)
    tasks = [task("t-a", "hold_breach_review", start, start.replace(hour=18), as_of, done),
             task("t-b", "relapse_review", start + timedelta(minutes=5), start + timedelta(days=1), as_of)]
    closed = {"t-a": done}
    out, wake = settle(COMPILED, tasks, {}, closed.get, as_of)
    (b,) = [t for t in out if t.id == "t-b"]
    # The breach review was overdue from Mon 5 Jan 18:00 until done on Tue 3 Feb: its last
    # daily escalation was Mon 2 Feb 18:00. The unacknowledged relapse review keeps the
    # patient's episode running, at the last tier, with nothing further due on its own.
    assert b.escalation is not None
    assert (b.escalation.tier, b.escalation.since, b.escalation.next_at) == (
        "medical_director", datetime(2026, 2, 2, 18, 0, tzinfo=NY), None)
    assert out[0].escalation is None and wake is None


def test_work_opening_later_joins_the_running_escalation_and_the_wake_says_when() -> None:
    raised = datetime(2026, 1, 6, 9, 0, tzinfo=NY)
    later = raised + timedelta(hours=2)
    due = raised.replace(hour=23, minute=59)

    def plan_at(as_of: datetime) -> tuple[list[PlannedTask], datetime | None]:
        tasks = [task("t-a", "suicide_risk_assessment", raised, due, as_of),
                 task("t-c", "relapse_review", later, later + timedelta(days=1), as_of)]
        return settle(COMPILED, tasks, {}, lambda _: None, as_of)

    out, wake = plan_at(raised + timedelta(hours=1))
    assert out[0].escalation is not None and out[0].escalation.tier == "medical_director"
    assert out[1].escalation is None and wake == later
    out, _ = plan_at(later + timedelta(minutes=1))
    assert out[1].escalation == out[0].escalation   # one escalation for the patient, not a new ladder


def test_shipped_pathways_escalate_with_the_clinic_parameters_domain_names() -> None:
    from datetime import timedelta as td

    from carepath.check.runner import check_file

    for name in ("ketamine-iv", "esketamine-spravato"):
        checked = check_file(ROOT / "pathways" / f"{name}.yaml")
        assert checked.ok and checked.pathway is not None
        p = checked.pathway
        assert p.escalation is not None
        assert (p.escalation.delay_in_hours, p.escalation.delay_out_of_hours, p.escalation.repeat) == (
            "$escalation_delay_in_hours", "$escalation_delay_out_of_hours", "$escalation_repeat")
        for parameter in ("escalation_delay_in_hours", "escalation_delay_out_of_hours", "escalation_repeat"):
            assert p.parameters[parameter].source == "CLINIC"
        compiled = load_pathway(ROOT / "pathways" / f"{name}.yaml")
        assert compiled.escalation is not None
        assert (compiled.escalation.delay_in_hours, compiled.escalation.delay_out_of_hours,
                compiled.escalation.repeat) == (td(minutes=15), td(minutes=60), td(hours=24))
        assert all(tier in p.roles for tier in compiled.escalation.tiers)
