"""Calendar series: week-by-week schedules counted from the first dose (a language feature
any pathway may use; the esketamine pathway's induction is one)."""

from __future__ import annotations

import shutil
from datetime import datetime
from pathlib import Path
from types import MappingProxyType
from zoneinfo import ZoneInfo

from carepath.api import load_pathway
from carepath.compile.compiled import CalendarBlock
from carepath.engine import plan
from carepath.engine.slots import calendar_slots
from carepath.records import Event, Patient

NY = ZoneInfo("America/New_York")
CORPUS_TEMPLATES = Path(__file__).parent / "corpus" / "templates"

PATHWAY = """\
id: calendar-demo
version: 1.0.0
title: Calendar demo
templates: templates
clinic:
  name: Test Clinic
  phone: "555-0100"
  timezone: America/New_York
  hours: {mon: "08:00-18:00", tue: "08:00-18:00", wed: "08:00-18:00", thu: "08:00-18:00", fri: "08:00-18:00"}
roles:
  nurse: Nurse.
start: treatment
stages:
  treatment:
    series:
      step: slot
      calendar:
        - {weeks: [1, 1], per_week: 3}
        - {weeks: [2, 2], per_week: 1}
    transitions:
      - to: paused
        on: session_missed
  paused:
    description: Treatment paused.
steps:
  slot:
    title: Dosing session
    role: nurse
    window: {}
"""


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _event(n: int, kind: str, at: str, **data: object) -> Event:
    return Event(f"e-{n}", "p-1", kind, _at(at), MappingProxyType(data), n)


def test_days_are_shared_out_in_order_and_boundaries_stay_at_local_midnight() -> None:
    blocks = (CalendarBlock(1, 1, 3), CalendarBlock(2, 3, 1))
    slots = list(calendar_slots(blocks, _at("2026-03-04T15:00:00-05:00"), NY))
    assert [s.number for s in slots] == [1, 2, 3, 4, 5]
    assert [s.week for s in slots] == [1, 1, 1, 2, 3]
    assert [(s.opens.isoformat(), s.closes.isoformat()) for s in slots] == [
        ("2026-03-04T00:00:00-05:00", "2026-03-06T00:00:00-05:00"),  # 3 a week: 2 + 2 + 3 days
        ("2026-03-06T00:00:00-05:00", "2026-03-08T00:00:00-05:00"),
        ("2026-03-08T00:00:00-05:00", "2026-03-11T00:00:00-04:00"),  # the spring-forward day
        ("2026-03-11T00:00:00-04:00", "2026-03-18T00:00:00-04:00"),
        ("2026-03-18T00:00:00-04:00", "2026-03-25T00:00:00-04:00"),
    ]


def test_the_first_dose_day_is_the_clinic_local_day() -> None:
    # 23:30 in Los Angeles is already the next day in the clinic's zone.
    first = datetime(2026, 3, 2, 23, 30, tzinfo=ZoneInfo("America/Los_Angeles"))
    (slot,) = calendar_slots((CalendarBlock(1, 1, 1),), first, NY)
    assert slot.opens.isoformat() == "2026-03-03T00:00:00-05:00"


def test_seven_a_week_gives_each_day_its_own_slot() -> None:
    slots = list(calendar_slots((CalendarBlock(1, 1, 7),), _at("2026-03-02T10:00:00-05:00"), NY))
    assert [s.opens.day for s in slots] == [2, 3, 4, 5, 6, 7, 8]
    assert all((s.closes.date() - s.opens.date()).days == 1 for s in slots)


def _compiled(tmp_path: Path):
    # A copy beside the pathway: templates must resolve inside the pathway's repository.
    shutil.copytree(CORPUS_TEMPLATES, tmp_path / "templates")
    path = tmp_path / "calendar-demo.yaml"
    path.write_text(PATHWAY)
    return load_pathway(path)


def test_nth_dose_fills_slot_n_and_a_repeated_completion_fills_nothing(tmp_path: Path) -> None:
    compiled = _compiled(tmp_path)
    events = [
        _event(1, "session_completed", "2026-03-02T10:00:00-05:00", session="s-1"),
        _event(2, "session_completed", "2026-03-02T10:05:00-05:00", session="s-1"),  # the same session again
        _event(3, "session_completed", "2026-03-05T10:00:00-05:00", session="s-2"),
    ]
    result = plan(compiled, Patient("p-1", "T", "P", "America/New_York"), events, _at("2026-03-06T09:00:00-05:00"))
    slots = [t for t in result.tasks if t.step == "slot"]
    assert [t.status for t in slots] == ["done", "done", "open", "open"]
    assert {t.trigger for t in slots} == {"e-1"}
    assert slots[1].completed_at == _at("2026-03-05T10:00:00-05:00")


def test_leaving_the_stage_withdraws_open_slots(tmp_path: Path) -> None:
    compiled = _compiled(tmp_path)
    events = [
        _event(1, "session_completed", "2026-03-02T10:00:00-05:00", session="s-1"),
        _event(2, "session_missed", "2026-03-05T10:00:00-05:00", session="s-2"),
    ]
    result = plan(compiled, Patient("p-1", "T", "P", "America/New_York"), events, _at("2026-03-06T09:00:00-05:00"))
    assert result.stage == "paused"
    assert [t.status for t in result.tasks if t.step == "slot"] == ["done", "cancelled", "cancelled", "cancelled"]

