"""The plan's wake is what the planning compared the as-of with (engine/clock.py).

Incremental sweeps re-plan a patient only once its wake has come, so a wake that is late
serves a stale plan silently. Over both shipped pathways and generated histories (visits
booked, attended, missed and cancelled, PHQ-9 scores, vitals, screenings, work ticked
off, decided or acknowledged, discharges and returns):

- planning at any instant in [as_of, wake) gives the same plan as at as_of, with the same
  wake (`test_a_plan_holds_until_its_wake`);
- at the wake, or one microsecond after it (a comparison `as_of > t` turns just after
  t), the plan reads differently in most cases: a wake that came early for nothing
  would make sweeps re-plan for nothing (`test_the_plan_moves_at_its_wake_in_most_cases`:
  every wake time alone brings moves the plan; of all wakes, with an event dated ahead,
  91 % here, at least 80 % required).

The test can fail: `test_a_comparison_bypassing_the_as_of_breaks_the_property` takes
the letters' comparisons out of the wake (the mutation: `settle_letters` compares with a
`Moment`, which notes nothing, instead of the plan's `AsOf`), as a hand-kept list that
forgot letters would, and hypothesis finds a history whose plan changes before its wake
(a letter falls due or expires unnoticed).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from types import MappingProxyType
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, find, given, settings
from hypothesis import strategies as st

from carepath.api import load_pathway
from carepath.compile.compiled import CompiledPathway
from carepath.engine import letter_lifecycle, plan, projection
from carepath.engine.clock import Moment
from carepath.engine.result import PatientPlan
from carepath.records import Event, Patient

ROOT = Path(__file__).resolve().parents[1]
PATHWAYS = {name: load_pathway(ROOT / "pathways" / f"{name}.yaml") for name in ("ketamine-iv", "esketamine-spravato")}
NY = ZoneInfo("America/New_York")
START = datetime(2026, 1, 5, 9, 0, tzinfo=NY)
SPAN = 240 * 24 * 60  # minutes of history from START, across both 2026 DST changes
TICK = timedelta(microseconds=1)

minutes = st.integers(min_value=0, max_value=SPAN)
zones = st.sampled_from(["America/New_York", "America/Los_Angeles", "Europe/London", "Asia/Kolkata"])
phq9 = st.lists(st.integers(0, 3), min_size=9, max_size=9)


@st.composite
def histories(draw: st.DrawFn) -> tuple[CompiledPathway, Patient, list[Event]]:
    """A pathway, a patient and a history: events on generated instants, then work ticked
    off, decided or acknowledged by id at some instant after it opened."""
    compiled = PATHWAYS[draw(st.sampled_from(sorted(PATHWAYS)))]
    patient = Patient("p-1", "Test", "Patient", draw(zones))
    events: list[Event] = []

    def add(kind: str, at: datetime, data: dict) -> None:
        events.append(Event(f"e-{len(events) + 1:03d}", "p-1", kind, at, MappingProxyType(data), len(events) + 1))

    add("enrolled", START, {})
    if draw(st.booleans()):
        add("screening_recorded", START + timedelta(hours=draw(st.integers(1, 72))),
            {"trd_trials": draw(st.integers(0, 4)),
             "contraindications": draw(st.sampled_from([[], [], ["aneurysm"]])),
             "cautions": draw(st.sampled_from([[], [], ["hypertension"]]))})
    sessions = 0
    for at in sorted(START + timedelta(minutes=m) for m in draw(st.lists(minutes, max_size=14))):
        kind = draw(st.sampled_from(["session_scheduled", "session_completed", "session_completed",
                                     "session_missed", "session_cancelled", "assessment_recorded",
                                     "vitals_recorded", "discharged", "enrolled"]))
        if kind == "assessment_recorded":
            add(kind, at, {"instrument": "phq9", "items": draw(phq9)})
        elif kind == "vitals_recorded":
            add(kind, at, {"systolic": draw(st.integers(100, 190)), "diastolic": draw(st.integers(60, 110)),
                           "phase": draw(st.sampled_from(["pre_dose", "post_dose"]))})
        elif kind in ("discharged", "enrolled"):
            add(kind, at, {})
        elif kind == "session_scheduled":
            sessions += 1
            add(kind, at, {"session": f"s-{sessions}", "start": at + timedelta(hours=draw(st.integers(20, 24 * 9)))})
        else:
            known = draw(st.integers(1, sessions)) if sessions and draw(st.booleans()) else None
            if known is None:
                sessions += 1
            add(kind, at, {"session": f"s-{known or sessions}"})
    # Clinicians act on work the plan showed: tick off, decide or acknowledge some of it.
    shown = plan(compiled, patient, events, START + timedelta(minutes=SPAN)).tasks
    for task in draw(st.lists(st.sampled_from(shown), max_size=4, unique_by=lambda t: t.id)) if shown else []:
        at = task.earliest + timedelta(minutes=draw(st.integers(0, 10 * 24 * 60)))
        step = compiled.steps[task.step]
        if step.decisions:
            add("decision_recorded", at, {"task": task.id, "decision": draw(st.sampled_from(step.decisions))})
        elif task.priority == "urgent" and draw(st.booleans()):
            add("task_acknowledged", at, {"task": task.id, "by": "staff-1"})
        else:
            add("task_completed", at, {"task": task.id})
    return compiled, patient, events


def _json(result: PatientPlan) -> str:
    return json.dumps(result.as_json("v"), sort_keys=True)


# Inside the history (the wake is often an event dated ahead) or after all of it (the
# wake is time-driven: a due, a letter, recurring work, an escalation).
as_of_minutes = st.one_of(minutes, st.integers(SPAN, SPAN + 120 * 24 * 60))


def _as_of(data: st.DataObject) -> datetime:
    return START + timedelta(minutes=data.draw(as_of_minutes, label="as_of minutes"))


def _holds_until_wake(compiled: CompiledPathway, patient: Patient, events: list[Event], as_of: datetime,
                      fraction: float) -> bool:
    """Planning at as_of, at a point `fraction` of the way to the wake and just before the
    wake gives the same plan and the same wake."""
    first = plan(compiled, patient, events, as_of)
    assert first.wake is None or first.wake >= as_of
    horizon = first.wake if first.wake is not None else as_of + timedelta(days=400)
    last = max(as_of, horizon - TICK)  # (a float fraction of a span may round up to its end)
    laters = {min(as_of + (horizon - as_of) * fraction, last), last}
    for later in laters:
        again = plan(compiled, patient, events, later)
        if _json(again) != _json(first) or again.wake != first.wake:
            return False
    return True


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories(), st.data())
def test_a_plan_holds_until_its_wake(history, data) -> None:
    compiled, patient, events = history
    fraction = data.draw(st.floats(0, 1, exclude_max=True), label="fraction of the way to the wake")
    assert _holds_until_wake(compiled, patient, events, _as_of(data), fraction)


_moved: list[tuple[bool, bool]] = []  # (the wake is an event dated ahead, the plan moved at it)


@settings(max_examples=200, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(histories(), st.data())
def _sample_moves(history, data) -> None:
    compiled, patient, events = history
    as_of = _as_of(data)
    first = plan(compiled, patient, events, as_of)
    if first.wake is None:
        return
    moved = any(_json(plan(compiled, patient, events, at)) != _json(first) for at in (first.wake, first.wake + TICK))
    _moved.append((any(e.at == first.wake for e in events), moved))


def test_the_plan_moves_at_its_wake_in_most_cases() -> None:
    """A wake is not just safe but meant: at it (or a microsecond after) the plan reads
    differently. Every wake that time alone brings (a due, a letter, recurring work, an
    escalation) must move the plan; one that is an event dated ahead need not (an event
    may change nothing a plan shows: vitals in range, a second acknowledgement)."""
    _moved.clear()
    _sample_moves()
    timed = [moved for ahead, moved in _moved if not ahead]
    share = sum(moved for _, moved in _moved) / len(_moved)
    print(f"\nplans with a wake: {len(_moved)}, moved at it: {share:.1%}; "
          f"time-driven wakes: {len(timed)}, moved at it: {sum(timed) / len(timed):.1%}")
    assert len(_moved) >= 100 and len(timed) >= 30
    assert share >= 0.8
    assert all(timed)


def test_a_comparison_bypassing_the_as_of_breaks_the_property(monkeypatch: pytest.MonkeyPatch) -> None:
    """The mutation: the letters' comparisons bypass the plan's `AsOf` (a `Moment` at the
    same instant answers the same and notes nothing), so the wake misses a letter falling
    due or expiring. The property above must find a history it breaks."""
    real: Callable = letter_lifecycle.settle_letters

    def bypassing(compiled, letters, sessions, as_of, *args, **kwargs):
        return real(compiled, letters, sessions, Moment(as_of._at), *args, **kwargs)

    monkeypatch.setattr(projection, "settle_letters", bypassing)
    broken = find(st.tuples(histories(), as_of_minutes, st.floats(0, 1, exclude_max=True)),
                  lambda case: not _holds_until_wake(*case[0], START + timedelta(minutes=case[1]), case[2]),
                  settings=settings(max_examples=300, deadline=None, database=None,
                                    suppress_health_check=[HealthCheck.too_slow]))
    compiled, patient, events = broken[0]
    assert plan(compiled, patient, events, START + timedelta(minutes=broken[1])).letters
