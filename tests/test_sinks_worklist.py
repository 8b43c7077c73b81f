"""worklist.html: what a clinician notices on the page."""

from __future__ import annotations

import os
import re
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from carepath.sinks.base import Delivery, Output, OutputKind, Sink
from carepath.sinks.worklist import Worklist, window_text
from sink_cohort import AS_OF, Planned, contains_name, planned_cohort, read_worklist, with_body

RANK = {"urgent": 0, "high": 1, "routine": 2}
NEW_YORK = ZoneInfo("America/New_York")


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Planned:
    return planned_cohort(tmp_path_factory.mktemp("cohort"))


@pytest.fixture(scope="module")
def page(cohort: Planned, tmp_path_factory: pytest.TempPathFactory) -> str:
    out = tmp_path_factory.mktemp("worklist")
    Worklist(out, cohort.compiled, AS_OF).write(iter(cohort.outputs))
    return (out / "worklist.html").read_text(encoding="utf-8")


def test_is_a_snapshot_sink_of_patients_and_tasks(tmp_path: Path, cohort: Planned) -> None:
    sink = Worklist(tmp_path, cohort.compiled, AS_OF)
    assert isinstance(sink, Sink) and sink.delivery is Delivery.SNAPSHOT
    assert sink.kinds == frozenset({OutputKind.PATIENT, OutputKind.TASK})
    assert sink.write(iter(cohort.outputs)) == len(cohort.of_kind(OutputKind.PATIENT)) + len(cohort.of_kind(OutputKind.TASK))


def test_days_in_order_overdue_first_then_today_tomorrow_and_later(page: str) -> None:
    assert read_worklist(page).groups == ["overdue", "2026-03-03", "2026-03-04", "2026-03-05"]
    headings = re.findall(r'<h2 id="heading-[^"]+">([^<]+)', page)
    assert [h.strip() for h in headings] == ["Overdue", "Today, Tuesday 3 March", "Tomorrow, Wednesday 4 March",
                                             "Thursday 5 March"]


def test_every_open_task_once_and_closed_ones_folded_away(page: str, cohort: Planned) -> None:
    rows = read_worklist(page).rows
    tasks = {o.id: o.body for o in cohort.of_kind(OutputKind.TASK)}
    main = [r for r in rows if r.attrs["data-group"] != "closed"]
    closed = [r for r in rows if r.attrs["data-group"] == "closed"]
    assert sorted(r.attrs["data-task"] for r in main) == sorted(
        tid for tid, t in tasks.items() if t["status"] in ("open", "overdue"))
    assert sorted(r.attrs["data-task"] for r in closed) == sorted(
        tid for tid, t in tasks.items() if t["status"] in ("done", "cancelled"))
    assert all(r.attrs["data-status"] == "overdue" for r in main if r.attrs["data-group"] == "overdue")
    assert re.search(r"<details id=\"closed\">\s*<summary>Done \(1\) and cancelled \(2\) tasks</summary>", page)


def test_within_a_day_by_role_then_urgent_first_then_due_time(page: str) -> None:
    rows = [r for r in read_worklist(page).rows if r.attrs["data-group"] != "closed"]
    runs: list[tuple[str, str]] = []
    for row in rows:
        key = (row.attrs["data-group"], row.attrs["data-role"])
        if not runs or runs[-1] != key:
            assert key not in runs, f"role {key} split in two"
            runs.append(key)
    for group in dict.fromkeys(g for g, _ in runs):
        roles = [r for g, r in runs if g == group]
        assert roles == sorted(roles)
    for group, role in runs:
        members = [r for r in rows if (r.attrs["data-group"], r.attrs["data-role"]) == (group, role)]
        keys = [(RANK[r.attrs["data-priority"]], datetime.fromisoformat(r.attrs["data-due"])) for r in members]
        assert keys == sorted(keys), (group, role)
    overdue = [r for r in rows if r.attrs["data-group"] == "overdue"]
    # p-001's weekend integration conflict is superseded once its window has passed
    # (cancelled, not overdue): the overdue urgent work left is the prescriber's.
    prescriber = [r.attrs["data-priority"] for r in overdue if r.attrs["data-role"] == "prescriber"]
    assert prescriber == ["urgent"]


def test_windows_are_in_clinic_time_with_the_zone(page: str) -> None:
    rows = read_worklist(page).rows
    assert rows and all(re.fullmatch(r".+ (EST|EDT)", r.window) for r in rows)
    windows = {(r.attrs["data-patient"], r.attrs["data-status"]): r.window for r in rows}
    assert windows["p-101", "open"] == "Tue 3 Mar 10:00 – Wed 4 Mar 10:00 EST"   # after the second session
    assert windows["p-102", "open"] == "Tue 3 Mar 09:00 – 23:59 EST"             # same day: the day once
    assert windows["p-105", "open"] == "Wed 4 Mar 11:30 – Thu 5 Mar 11:30 EST"
    assert all(r.attrs["data-due"].endswith("-05:00") for r in rows)


def test_each_row_says_what_who_and_why(page: str, cohort: Planned) -> None:
    rows = {r.attrs["data-task"]: r for r in read_worklist(page).rows}
    for output in cohort.of_kind(OutputKind.TASK):
        row = rows[output.id]
        body = output.body
        window, task, patient, priority, status, why = row.cells
        assert body["title"] in task and body["step"] in task
        assert patient == output.patient
        assert priority == body["priority"] and status.startswith(str(body["status"]))
        assert why == f"{body['source']} event {body['trigger']}"
        assert row.attrs["data-role"] == body["role"]


def test_header_names_pathway_as_of_and_counts(page: str, cohort: Planned) -> None:
    assert "<h1>IV ketamine with integration psychotherapy</h1>" in page
    assert "<code>ketamine-iv</code> version <code>1.0.0</code>" in page
    assert '<time datetime="2026-03-03T12:00:00-05:00" id="as-of">Tue 3 Mar 2026 12:00 EST</time>' in page
    actionable = [o.body for o in cohort.of_kind(OutputKind.TASK) if o.body["status"] in ("open", "overdue")]
    for role in {str(t["role"]) for t in actionable}:
        counts = [sum(1 for t in actionable if t["role"] == role and t["priority"] == p)
                  for p in ("urgent", "high", "routine")]
        cells = "".join(f"<td>{n}</td>" for n in [*counts, sum(counts)])
        assert re.search(rf'<tr data-role="{role}"><th scope="row">[^<]+</th>{cells}</tr>', page), role
    overdue = sum(1 for t in actionable if t["status"] == "overdue")
    assert f"{len(actionable)} open tasks, {overdue} overdue; 1 done, 2 cancelled." in page


def test_no_patient_names(page: str, cohort: Planned) -> None:
    assert len(cohort.names) >= 10
    assert contains_name(page, cohort.names) == []


def test_patients_needing_attention_are_listed_the_rest_counted(page: str, cohort: Planned) -> None:
    plans = {p.patient: p for p in cohort.plans}
    listed = re.findall(r'<tr data-patient="([^"]+)"><th scope="row">', page)
    expected = sorted(ref for ref, p in plans.items()
                      if p.status in ("pending_eligibility", "blocked") or p.flags or p.holds)
    assert listed == expected and {"p-002", "p-104", "p-001"} <= set(listed)
    assert f"{len(plans) - len(expected)} other patients are active or discharged" in page
    row = re.search(r'<tr data-patient="p-001">(.*?)</tr>', page).group(1)
    assert "integration_window_unmet" in row and "dosing" in row


def test_every_text_is_escaped(tmp_path: Path, cohort: Planned) -> None:
    task = cohort.of_kind(OutputKind.TASK)[0]
    hostile = with_body(task, title='<script>alert("x")</script>', source='rule:"><img src=x onerror=alert(1)>',
                        trigger="e-<b>1</b>", role='nurse" data-x="1')
    sink = Worklist(tmp_path, cohort.compiled, AS_OF)
    sink.write(iter([*cohort.of_kind(OutputKind.PATIENT), hostile]))
    html = sink.path.read_text(encoding="utf-8")
    assert "<script" not in html and "<img" not in html and "<b>1" not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html
    reader = read_worklist(html)
    assert reader.problems == []
    (row,) = reader.rows
    assert row.attrs["data-role"] == 'nurse" data-x="1' and "data-x" not in row.attrs
    assert row.cells[1].startswith('<script>alert("x")</script>')


def test_page_is_self_contained_structured_and_accessible(page: str) -> None:
    reader = read_worklist(page)
    assert page.startswith("<!DOCTYPE html>\n<html lang=\"en\">")
    assert reader.html_lang == "en" and reader.problems == []
    assert '<meta charset="utf-8">' in page and "<title>Worklist: " in page
    assert "Content-Security-Policy" in page and "default-src 'none'" in page
    assert not re.search(r"""(src|href)=["'](https?:)?//""", page), "external asset"
    assert "<script" not in page and "@import" not in page
    assert page.count("<table") == page.count("<thead>") == page.count("<caption")
    assert page.count('<th scope="col">Window</th>') == 5  # four days and the closed tasks
    assert "@media print" in page


def test_out_of_window_is_marked(tmp_path: Path, cohort: Planned) -> None:
    task = next(o for o in cohort.of_kind(OutputKind.TASK) if o.body["status"] == "open")
    sink = Worklist(tmp_path, cohort.compiled, AS_OF)
    sink.write(iter([with_body(task, out_of_window=True)]))
    (row,) = read_worklist(sink.path.read_text(encoding="utf-8")).rows
    assert row.attrs["data-out-of-window"] == "true" and "out of window" in row.cells[4]


def test_window_text_across_a_dst_change_names_both_zones() -> None:
    start = datetime(2026, 3, 7, 10, tzinfo=NEW_YORK)
    end = datetime(2026, 3, 9, 10, tzinfo=NEW_YORK)
    assert window_text(start, end, NEW_YORK) == "Sat 7 Mar 10:00 EST – Mon 9 Mar 10:00 EDT"
    assert window_text(start, None, NEW_YORK) == "from Sat 7 Mar 10:00 EST (no due time)"
    utc = datetime.fromisoformat("2026-03-03T15:00:00+00:00")
    assert window_text(utc, utc.replace(hour=20), NEW_YORK) == "Tue 3 Mar 10:00 – 15:00 EST"


def test_deterministic_and_independent_of_input_order(tmp_path: Path, cohort: Planned) -> None:
    a, b, c = (Worklist(tmp_path / n, cohort.compiled, AS_OF) for n in "abc")
    a.write(iter(cohort.outputs))
    b.write(iter(cohort.outputs))
    c.write(iter(reversed(cohort.outputs)))
    assert a.path.read_bytes() == b.path.read_bytes() == c.path.read_bytes()


def test_empty_worklist_says_so(tmp_path: Path, cohort: Planned) -> None:
    sink = Worklist(tmp_path, cohort.compiled, AS_OF)
    assert sink.write(iter([])) == 0
    html = sink.path.read_text(encoding="utf-8")
    assert "No open or overdue tasks." in html and read_worklist(html).problems == []


def test_naive_as_of_is_refused(tmp_path: Path, cohort: Planned) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        Worklist(tmp_path, cohort.compiled, datetime(2026, 3, 3, 12))


def test_a_failed_write_leaves_the_previous_page_whole(tmp_path: Path, cohort: Planned,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    sink = Worklist(tmp_path, cohort.compiled, AS_OF)
    sink.write(iter(cohort.outputs))
    before = sink.path.read_bytes()

    def broken():
        yield cohort.outputs[0]
        raise RuntimeError("ledger went away")

    with pytest.raises(RuntimeError):
        sink.write(broken())
    bad = Output("t-bad", OutputKind.TASK, "p-001", {**cohort.of_kind(OutputKind.TASK)[0].body, "earliest": None})
    with pytest.raises(ValueError, match="no earliest"):
        sink.write(iter([bad]))

    def refuse(*args: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OSError):
        sink.write(iter(cohort.outputs[:3]))
    assert sink.path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["worklist.html"]


def test_closed_work_is_capped_to_the_most_recent(tmp_path: Path, cohort: Planned,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import carepath.sinks.worklist as worklist

    monkeypatch.setattr(worklist, "CLOSED_SHOWN", 1)
    sink = Worklist(tmp_path, cohort.compiled, AS_OF)
    sink.write(iter(cohort.outputs))
    html = sink.path.read_text(encoding="utf-8")
    closed = [r for r in read_worklist(html).rows if r.attrs["data-group"] == "closed"]
    assert [r.attrs["data-patient"] for r in closed] == ["p-103"]  # cancelled, due 4 Mar: later than the done task of 27 Feb
    assert "The 1 most recently closed of 3" in html
    assert "Done (1) and cancelled (2) tasks" in html
