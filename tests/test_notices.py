"""What on-call is told, without Prefect: each fact of urgent or safety work is recorded
once, and repeats collapse to one page per patient, tier and episode of open safety work
(nine breach reviews while one suicide-risk assessment is open page once)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from carepath.api import load_pathway
from carepath.engine import plan
from carepath.orchestrator import sequence
from carepath.orchestrator.executor import InProcess
from carepath.orchestrator.notices import (
    ACKNOWLEDGED,
    BREACHED,
    ESCALATED,
    RAISED,
    Fact,
    Notices,
    decide_pages,
    episode_of,
    facts_of,
    link_to,
)
from carepath.orchestrator.spec import RunSpec
from carepath.records import Patient
from carepath.records.types import new_event
from carepath.sinks.ledger import Ledger

ROOT = Path(__file__).resolve().parents[1]
PATHWAY = ROOT / "pathways" / "ketamine-iv.yaml"
T0 = datetime.fromisoformat("2026-03-02T10:00:00-05:00")
NAMES = ("Philomena", "Quillfeather", "philomena@example.org")
PATIENT = Patient("n-1", NAMES[0], NAMES[1], "America/New_York", NAMES[2])


def _events(doses_after_item9: int) -> list:
    """Enrolled, eligible, an item-9 answer, then doses given while dosing is held."""
    rows = [("e-1", "enrolled", 0, {}),
            ("e-2", "screening_recorded", 1, {"trd_trials": 3, "contraindications": [], "cautions": []}),
            ("e-3", "assessment_recorded", 2, {"instrument": "phq9", "items": [1, 1, 1, 1, 1, 1, 1, 1, 2]})]
    for n in range(doses_after_item9):
        start = 24 + 48 * n
        rows.append((f"e-s{n}", "session_scheduled", start - 20, {"session": f"s-{n}",
                                                                   "start": T0 + timedelta(hours=start)}))
        rows.append((f"e-c{n}", "session_completed", start + 1, {"session": f"s-{n}"}))
    return [new_event(i, PATIENT.ref, kind, T0 + timedelta(hours=h), data, line)
            for line, (i, kind, h, data) in enumerate(rows, 1)]


@pytest.fixture(scope="module")
def compiled():  # noqa: ANN201
    return load_pathway(PATHWAY)


def _plan(compiled, doses: int, hours_after: float = 24 * 30):  # noqa: ANN001, ANN202
    events = _events(doses)
    return plan(compiled, PATIENT, events, max(e.at for e in events) + timedelta(hours=hours_after))


def test_an_item9_answer_is_one_raised_fact_that_pages(compiled) -> None:  # noqa: ANN001
    p = _plan(compiled, 0, hours_after=0.05)  # three minutes later: nothing has escalated yet
    facts = decide_pages(facts_of(compiled, compiled.version, p), set(), {})
    assert [(f.kind, f.step, f.page) for f in facts] == [(RAISED, "suicide_risk_assessment", True)]
    f = facts[0]
    assert (f.pathway, f.patient, f.role, f.tier) == ("ketamine-iv", "n-1", "prescriber", None)
    assert f.episode == f.task


def test_nine_breach_reviews_in_one_episode_page_once(compiled) -> None:  # noqa: ANN001
    p = _plan(compiled, 9)
    facts = decide_pages(facts_of(compiled, compiled.version, p), set(), {})
    breaches = [f for f in facts if f.kind == BREACHED]
    raised = [f for f in facts if f.kind == RAISED]
    escalated = [f for f in facts if f.kind == ESCALATED]
    assert len(breaches) == 9 and len(raised) == 10  # nine reviews and the assessment
    assert len(escalated) == 10 and {f.tier for f in escalated} == {"medical_director"}  # the patient's ladder
    assert len({f.episode for f in facts}) == 1
    # One page for the episode's raise, one for the tier it reached: not ten, not twenty.
    assert [(f.kind, f.step) for f in facts if f.page] == [(RAISED, "suicide_risk_assessment"),
                                                           (ESCALATED, "suicide_risk_assessment")]


def test_a_new_episode_pages_again_after_the_safety_work_was_done(compiled) -> None:  # noqa: ANN001
    first = _plan(compiled, 0, hours_after=0.05)
    task = first.tasks[[t.step for t in first.tasks].index("suicide_risk_assessment")]
    done_at = T0 + timedelta(hours=5)
    events = [*_events(0),
              new_event("e-d", PATIENT.ref, "task_completed", done_at, {"task": task.id}, 4),
              new_event("e-r", PATIENT.ref, "assessment_recorded", done_at + timedelta(days=10),
                        {"instrument": "phq9", "items": [1, 1, 1, 1, 1, 1, 1, 1, 3]}, 5)]
    later = plan(compiled, PATIENT, events, done_at + timedelta(days=10, minutes=3))
    known: set[str] = set()
    paged: dict[str, str] = {}
    assert [f.page for f in decide_pages(facts_of(compiled, compiled.version, first), known, paged)] == [True]
    second = decide_pages(facts_of(compiled, compiled.version, later), known, paged)
    assert [(f.kind, f.page) for f in second] == [(RAISED, True)]
    assert second[0].episode != task.id


def test_no_open_safety_work_states_no_fact(compiled) -> None:  # noqa: ANN001
    events = _events(0)[:2]
    p = plan(compiled, PATIENT, events, T0 + timedelta(days=2))
    assert episode_of(compiled, p) is None and facts_of(compiled, compiled.version, p) == []


def test_escalations_page_once_per_tier_and_acknowledgements_never(compiled) -> None:  # noqa: ANN001
    """The engine's escalation and acknowledgement fields, as the plan contract states them."""
    base = facts_of(compiled, compiled.version, _plan(compiled, 2))
    raised = [f for f in base if f.kind == RAISED]

    def escalated(f: Fact, tier: str, since: str) -> Fact:
        return replace(f, kind=ESCALATED, tier=tier, at=since)

    facts = [*raised,
             escalated(raised[0], "on_call_prescriber", "2026-03-02T13:15:00-05:00"),
             escalated(raised[1], "on_call_prescriber", "2026-03-03T11:15:00-05:00"),
             escalated(raised[0], "medical_director", "2026-03-02T13:30:00-05:00"),
             replace(raised[0], kind=ACKNOWLEDGED)]
    paged: dict[str, str] = {}
    decided = decide_pages(facts, set(), paged, timedelta(hours=24))
    assert [(f.kind, f.tier) for f in decided if f.page] == [
        (RAISED, None), (ESCALATED, "on_call_prescriber"), (ESCALATED, "medical_director")]
    # The same facts again are not new.
    assert decide_pages(facts, {f.key for f in decided}, paged, timedelta(hours=24)) == []
    # Open past its due, the last tier repeats a day later: paged again, once for both tasks.
    repeats = [escalated(raised[0], "medical_director", "2026-03-03T13:30:00-05:00"),
               escalated(raised[1], "medical_director", "2026-03-03T14:00:00-05:00"),
               escalated(raised[1], "medical_director", "2026-03-03T20:00:00-05:00")]
    again = decide_pages(repeats, {f.key for f in decided}, paged, timedelta(hours=24))
    assert [f.page for f in again] == [True, False, False]


def test_the_link_is_the_patients_page_when_serve_runs_somewhere() -> None:
    assert link_to(None, "p-1") is None
    assert link_to("https://worklist.clinic.example/", "p 1/x") == "https://worklist.clinic.example/patients/p%201%2Fx"


def _spec(tmp: Path, events: list) -> tuple[RunSpec, Path, Path]:
    patients = tmp / "patients.jsonl"
    patients.write_text(json.dumps({"patient": PATIENT.ref, "given_name": NAMES[0], "family_name": NAMES[1],
                                    "email": NAMES[2]}) + "\n")
    path = tmp / "events.jsonl"
    path.write_text("".join(json.dumps({"id": e.id, "patient": e.patient, "type": e.type, "at": e.at.isoformat(),
                                        "data": {k: v.isoformat() if isinstance(v, datetime) else v for k, v in e.data.items()}}) + "\n"
                            for e in events))
    as_of = max(e.at for e in events) + timedelta(days=1)
    return RunSpec.resolve(str(PATHWAY), str(tmp / "out"), as_of, "run-1", pdf=False), patients, path


def test_a_sweep_announces_each_fact_once_and_a_second_run_announces_nothing(tmp_path: Path) -> None:
    spec, patients, events = _spec(tmp_path, _events(9))
    told: list[Fact] = []
    notify: Callable = told.extend
    sequence.sweep(spec, patients, events, InProcess(), notify=notify)
    assert sum(f.kind == RAISED for f in told) == 10 and sum(f.kind == BREACHED for f in told) == 9
    assert sum(f.kind == ESCALATED for f in told) == 10  # a day on, the patient's ladder reached a tier
    assert [(f.kind, f.page) for f in told if f.page] == [(RAISED, True), (ESCALATED, True)]
    bodies = json.dumps([f.as_json() for f in told])
    assert all(name not in bodies for name in NAMES)
    again = RunSpec.resolve(str(PATHWAY), str(tmp_path / "out"), spec.as_of, "run-2", pdf=False)
    sequence.sweep(again, patients, events, InProcess(), notify=told.extend, full=True)
    assert len(told) == 29  # nothing new: every fact was announced once


def test_a_notifier_that_fails_leaves_the_facts_to_announce_next_time(tmp_path: Path) -> None:
    spec, patients, events = _spec(tmp_path, _events(0))

    def down(_facts: object) -> None:
        raise ConnectionError("prefect is down")

    with pytest.raises(ConnectionError):
        sequence.sweep(spec, patients, events, InProcess(), notify=down)
    ledger = Ledger(spec.ledger_url)
    try:
        assert sorted(f.kind for f in Notices(ledger.engine, "ketamine-iv").pending()) == [ESCALATED, RAISED]
    finally:
        ledger.close()
    told: list[Fact] = []
    sequence.sweep(RunSpec.resolve(str(PATHWAY), str(tmp_path / "out"), spec.as_of, "run-2", pdf=False),
                   patients, events, InProcess(), notify=told.extend)
    assert sorted((f.kind, f.page) for f in told) == [(ESCALATED, True), (RAISED, True)]
