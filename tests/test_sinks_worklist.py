"""worklist.html: what a clinician notices on the page."""

from __future__ import annotations

import os
import re
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from carepath.compile.compiled import WorklistView
from carepath.sinks.base import Output, OutputKind, Sink
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
    assert isinstance(sink, Sink)
    assert sink.kinds == frozenset({OutputKind.PATIENT, OutputKind.TASK})
    assert sink.write(iter(cohort.outputs)) == len(cohort.of_kind(OutputKind.PATIENT)) + len(cohort.of_kind(OutputKind.TASK))


def test_bands_in_order_safety_first_then_overdue_then_upcoming(page: str) -> None:
    # The cohort has nothing due later today outside the safety band, so no "Due today".
    assert read_worklist(page).groups == ["safety", "overdue", "upcoming"]
    headings = re.findall(r'<h2 id="heading-[^"]+">([^<]+)', page)
    assert [h.strip() for h in headings] == ["Safety-critical", "Overdue", "Upcoming"]


def test_suicide_risk_assessments_come_first_newest_first_with_how_long_open(page: str) -> None:
    rows = [r for r in read_worklist(page).rows if r.attrs["data-group"] != "closed"]
    top = rows[:2]
    # Unseen danger is seen first: the most recently raised unacknowledged work leads.
    assert [(r.attrs["data-step"], r.attrs["data-patient"], r.attrs["data-status"]) for r in top] == [
        ("suicide_risk_assessment", "p-102", "open"),      # item 9 this morning, 09:00
        ("suicide_risk_assessment", "p-001", "overdue"),   # item 9 on Mon 2 Mar, 09:00
    ]
    assert "open for 3 h" in top[0].cells[4] and "open for 1 d 3 h" in top[1].cells[4]
    assert all("not acknowledged" in r.cells[4] for r in top)
    # A safety task never appears again lower down.
    assert all(r.attrs["data-step"] != "suicide_risk_assessment" for r in rows[2:])


def _safety_task(patient: str, task_id: str, step: str, raised: datetime, *, acknowledged: bool = False,
                 tier: str | None = None) -> Output:
    from carepath.engine.result import EscalationState, PlannedTask

    task = PlannedTask(task_id, step, step.replace("_", " ").capitalize(), "prescriber", "urgent", raised,
                       raised + timedelta(hours=8), "overdue" if raised + timedelta(hours=8) < AS_OF else "open",
                       "e-1", False, "rule:x", acknowledged_by="staff-3" if acknowledged else None,
                       acknowledged_at=raised + timedelta(minutes=5) if acknowledged else None,
                       escalation=EscalationState(tier, raised + timedelta(minutes=30), None) if tier else None)
    return Output(task_id, OutputKind.TASK, patient, task.as_json("1.0.0"))


def test_safety_band_groups_by_patient_unacknowledged_and_newest_first(tmp_path: Path, cohort: Planned) -> None:
    """One patient's nine breach reviews are one group, not nine rows above another
    patient's new suicide-risk assessment; acknowledged work comes after unseen work."""
    now = AS_OF.astimezone(NEW_YORK)
    many = [_safety_task("p-a", f"t-a{n}", "hold_breach_review", now - timedelta(days=20 - n)) for n in range(9)]
    new = _safety_task("p-b", "t-b1", "suicide_risk_assessment", now - timedelta(hours=1), tier="medical_director")
    seen = _safety_task("p-c", "t-c1", "suicide_risk_assessment", now - timedelta(minutes=30), acknowledged=True)
    older_seen = _safety_task("p-b", "t-b0", "hold_breach_review", now - timedelta(minutes=10), acknowledged=True)
    html, _ = Worklist(tmp_path, cohort.compiled, AS_OF).render(iter([*many, new, older_seen, seen]))
    rows = [r for r in read_worklist(html).rows if r.attrs["data-group"] == "safety"]
    assert [r.attrs["data-task"] for r in rows] == [
        "t-b1", "t-b0",                               # p-b: newest unseen work; its acknowledged work after
        *[f"t-a{n}" for n in reversed(range(9))],     # p-a: one group, newest first
        "t-c1",                                       # p-c: acknowledged only
    ]
    assert html.count('<tr class="patient-group">') == 3
    assert "escalated: Medical director since" in rows[0].cells[4] and "not acknowledged" in rows[0].cells[4]
    assert "acknowledged by staff-3, " in rows[1].cells[4] and "not acknowledged" not in rows[1].cells[4]


def test_no_good_flag_is_shown_beside_open_safety_work(tmp_path: Path, cohort: Planned) -> None:
    patient = next(o for o in cohort.of_kind(OutputKind.PATIENT) if o.patient == "p-101")
    calm = with_body(patient, flags=["remission"], holds=[])
    task = _safety_task("p-101", "t-x", "hold_breach_review", AS_OF - timedelta(hours=2))
    html, _ = Worklist(tmp_path, cohort.compiled, AS_OF).render(iter([calm, task]))
    row = re.search(r'<tr data-patient="p-101">(.*?)</tr>', html).group(1)
    assert "remission" not in row and "flag-good" not in row


def test_within_other_bands_by_due_time_then_urgency_whatever_the_role(page: str) -> None:
    rows = [r for r in read_worklist(page).rows if r.attrs["data-group"] != "closed"]
    for group in ("overdue", "upcoming"):  # the safety band has its own order (tests above)
        members = [r for r in rows if r.attrs["data-group"] == group]
        keys = [(datetime.fromisoformat(r.attrs["data-due"]), RANK[r.attrs["data-priority"]]) for r in members]
        assert keys == sorted(keys), group
    overdue = [r for r in rows if r.attrs["data-group"] == "overdue"]
    # The weekend conflict of Fri 27 Feb is superseded once its window passed (not overdue).
    assert [(r.attrs["data-role"], r.attrs["data-step"]) for r in overdue] == [
        ("care_coordinator", "missed_session_outreach"), ("psychotherapist", "integration_psychotherapy")]
    roles = [r.attrs["data-role"] for r in rows if r.attrs["data-group"] == "upcoming"]
    assert roles != sorted(roles), "rows are no longer grouped by role"


def test_role_selector_filters_without_regrouping(page: str) -> None:
    rows = [r for r in read_worklist(page).rows if r.attrs["data-group"] != "closed"]
    radios = re.findall(r'<input type="radio" name="role" id="role-([a-z_]*)" value="([a-z_]*)"( checked)?>', page)
    roles = sorted({r.attrs["data-role"] for r in rows})
    assert [r[0] for r in radios] == ["all", *roles] and radios[0][2] == " checked"
    for role in roles:
        shown = sum(1 for r in rows if r.attrs["data-role"] == role)
        assert f'<label for="role-{role}">{role.replace("_", " ").capitalize()} ({shown})</label>' in page
        # Pure CSS: picking a role hides the other roles' rows and bands left empty.
        assert f'body:has(#role-{role}:checked) tr.task:not([data-role="{role}"]) {{ display: none; }}' in page
    assert '<tr class="role">' not in page and '<th scope="rowgroup"' not in page   # no role groups


def test_why_is_in_clinical_words_with_the_ids_in_a_tooltip(page: str, cohort: Planned) -> None:
    rows = {r.attrs["data-task"]: r for r in read_worklist(page).rows}
    for output in cohort.of_kind(OutputKind.TASK):
        body = output.body
        why = rows[output.id].cells[5]
        assert str(body["trigger"]) not in why and str(body["source"]) not in why, why
        assert why.endswith(f"ketamine-iv {body['pathway_version']}")
        tip = re.search(rf'data-task="{output.id}".*?<td class="why" title="([^"]+)"', page, re.S).group(1)
        assert tip == f"{body['source']} · event {body['trigger']} · task {output.id}"
        assert f'<dt id="step-{body["step"]}">' in page   # the version link lands on the step
    safety = next(r for r in rows.values() if r.attrs["data-patient"] == "p-102"
                  and r.attrs["data-step"] == "suicide_risk_assessment")
    assert safety.cells[5].startswith("PHQ-9 item 9 answered 1 (total 9) on Tue 3 Mar, 09:00 PHQ-9 item 9 above 0")
    outreach = next(r for r in rows.values() if r.attrs["data-step"] == "missed_session_outreach")
    assert outreach.cells[5].startswith("Session s-1 missed on Wed 25 Feb, 11:00")
    blocked = next(r for r in rows.values() if r.attrs["data-patient"] == "p-104")
    assert "contraindication uncontrolled hypertension" in blocked.cells[5]


def test_a_due_time_outside_opening_hours_says_so(page: str) -> None:
    rows = read_worklist(page).rows
    safety = [r for r in rows if r.attrs["data-step"] == "suicide_risk_assessment"]
    assert safety and all("23:59 EST outside opening hours (08:00-18:00)" in r.window for r in safety)
    weekend = [r for r in rows if "clinic closed on Sunday" in r.window]
    assert [r.attrs["data-patient"] for r in weekend] == ["p-001"]   # the integration window of Fri 27 Feb
    assert all("outside" not in r.window and "closed" not in r.window
               for r in rows if r.attrs["data-step"] == "records_request")


def test_only_the_horizon_is_listed_and_the_rest_is_counted(tmp_path: Path, cohort: Planned) -> None:
    near = replace(cohort.compiled, worklist=WorklistView(timedelta(hours=23), 300))
    sink = Worklist(tmp_path, near, AS_OF)
    sink.write(iter(cohort.outputs))
    html = sink.path.read_text(encoding="utf-8")
    rows = [r for r in read_worklist(html).rows if r.attrs["data-group"] != "closed"]
    horizon = AS_OF + timedelta(hours=23)
    later = [o for o in cohort.of_kind(OutputKind.TASK) if o.body["status"] == "open"
             and datetime.fromisoformat(str(o.body["due"])) > horizon
             and o.body["step"] != "suicide_risk_assessment"]
    assert later and not {o.id for o in later} & {r.attrs["data-task"] for r in rows}
    assert f"Not listed: {len(later)} open tasks due later" in html
    assert "within 23 h (until" in html


def test_each_band_lists_at_most_its_rows_and_counts_the_rest(tmp_path: Path, cohort: Planned) -> None:
    short = replace(cohort.compiled, worklist=WorklistView(timedelta(days=7), 1))
    sink = Worklist(tmp_path, short, AS_OF)
    sink.write(iter(cohort.outputs))
    html = sink.path.read_text(encoding="utf-8")
    rows = [r for r in read_worklist(html).rows if r.attrs["data-group"] != "closed"]
    assert [(r.attrs["data-group"], r.attrs["data-patient"]) for r in rows] == [
        ("safety", "p-102"), ("overdue", "p-102"), ("upcoming", "p-101")]   # the first of each band
    assert '<p class="more" data-hidden="1">1 more in this band' in html
    assert '<p class="more" data-hidden="3">3 more in this band' in html


def test_page_size_does_not_grow_with_the_cohort(tmp_path: Path, cohort: Planned) -> None:
    def copies(n: int) -> list[Output]:
        return [Output(f"{o.id}-{k}", o.kind, f"{o.patient}-{k:04d}", {**o.body, "id": f"{o.id}-{k}"})
                for k in range(n) for o in cohort.outputs]

    small = replace(cohort.compiled, worklist=WorklistView(timedelta(days=7), 20))
    sizes = []
    for n in (10, 100):
        sink = Worklist(tmp_path / str(n), small, AS_OF)
        sink.write(iter(copies(n)))
        sizes.append(sink.path.stat().st_size)
    # Ten times the patients: bands, closed tasks and patients listed are all capped.
    assert sizes[1] < sizes[0] * 1.05, sizes


def test_flags_have_a_severity_and_good_news_is_not_attention(tmp_path: Path, cohort: Planned) -> None:
    assert cohort.compiled.flag_severity["remission"] == "good"
    assert cohort.compiled.flag_severity["relapse_risk"] == "attention"
    patient = next(o for o in cohort.of_kind(OutputKind.PATIENT) if o.patient == "p-101")
    assert patient.body["status"] == "active" and not patient.body["holds"]
    sink = Worklist(tmp_path, cohort.compiled, AS_OF)
    sink.write(iter([with_body(patient, flags=["remission"])]))
    html = sink.path.read_text(encoding="utf-8")
    assert '<tr data-patient="p-101">' not in html and "1 other patient is active" in html
    assert "good news such as remission does not count" in html
    sink.write(iter([with_body(patient, flags=["remission", "relapse_risk"])]))
    html = sink.path.read_text(encoding="utf-8")
    row = re.search(r'<tr data-patient="p-101">(.*?)</tr>', html).group(1)
    assert '<span class="badge flag-good" title="good">remission</span>' in row
    assert '<span class="badge flag-attention" title="attention">relapse_risk</span>' in row


def test_windows_are_in_clinic_time_with_the_zone(page: str) -> None:
    rows = read_worklist(page).rows
    assert rows and all(re.fullmatch(r".+ (EST|EDT)( (outside|clinic closed) .+)?", r.window) for r in rows)
    windows = {(r.attrs["data-patient"], r.attrs["data-status"]): r.window for r in rows}
    assert windows["p-101", "open"] == "Tue 3 Mar 10:00 – Wed 4 Mar 10:00 EST"   # after the second session
    assert windows["p-102", "open"].startswith("Tue 3 Mar 09:00 – 23:59 EST")   # same day: the day once
    assert windows["p-105", "open"] == "Wed 4 Mar 11:30 – Thu 5 Mar 11:30 EST"
    # New York time: EST, or EDT for work due after the 8 March clock change (a screening deadline)
    assert all(r.attrs["data-due"].endswith(("-05:00", "-04:00")) for r in rows)


def test_each_row_says_what_who_and_why(page: str, cohort: Planned) -> None:
    rows = {r.attrs["data-task"]: r for r in read_worklist(page).rows}
    for output in cohort.of_kind(OutputKind.TASK):
        row = rows[output.id]
        body = output.body
        window, task, patient, priority, status, why = row.cells
        assert task.startswith(str(body["title"])) and row.attrs["data-step"] == body["step"]
        assert patient == output.patient
        assert priority == body["priority"] and status.startswith(str(body["status"]))
        assert why.startswith(str(body["reason"]) + " on ")
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
    closed = [str(o.body["status"]) for o in cohort.of_kind(OutputKind.TASK)]
    done, cancelled = closed.count("done"), closed.count("cancelled")
    assert (done, cancelled) == (9, 3)  # 1 and 2 before the screening and pre-dose tasks of DOMAIN 11
    assert f"{len(actionable)} open tasks, {overdue} overdue; {done} done, {cancelled} cancelled." in page


def test_no_patient_names(page: str, cohort: Planned) -> None:
    assert len(cohort.names) >= 10
    assert contains_name(page, cohort.names) == []


def test_patients_needing_attention_are_listed_the_rest_counted(page: str, cohort: Planned) -> None:
    plans = {p.patient: p for p in cohort.plans}
    listed = re.findall(r'<tr data-patient="([^"]+)"><th scope="row">', page)
    expected = sorted(ref for ref, p in plans.items() if p.status in ("pending_eligibility", "blocked")
                      or set(p.flags) - {"remission"} or p.holds)
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
    assert page.count('<th scope="col">Due</th>') == 4  # three bands and the closed tasks
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
    assert "The 1 most recently closed of 12" in html
    assert "Done (9) and cancelled (3) tasks" in html   # the superseded weekend conflict is one


def test_prefect_artifact_lists_the_same_top_rows_refs_only(page: str, cohort: Planned) -> None:
    from types import SimpleNamespace

    from carepath.orchestrator.emission import workload
    from carepath.runtime.artifacts import urgent_rows

    half = len(cohort.plans) // 2
    # Shards are ranked separately and merged, as a run does.
    merged = workload(cohort.plans[:half], cohort.compiled, AS_OF) + workload(cohort.plans[half:], cohort.compiled, AS_OF)
    table = urgent_rows(SimpleNamespace(workload=merged))
    rows = [r for r in read_worklist(page).rows if r.attrs["data-group"] in ("safety", "overdue", "today")]
    assert [(t["band"], t["patient"], t["step"]) for t in table] == [
        (r.attrs["data-group"], r.attrs["data-patient"], r.attrs["data-step"]) for r in rows]
    assert table[0]["step"] == "suicide_risk_assessment"
    assert contains_name(repr(table), cohort.names) == []


def test_patient_view_lists_one_patients_whole_plan(tmp_path: Path, cohort: Planned) -> None:
    near = replace(cohort.compiled, worklist=WorklistView(timedelta(hours=1), 1))   # no horizon, no caps apply
    html, _ = Worklist(tmp_path, near, AS_OF, patient="p-101").render(iter(cohort.outputs))
    rows = read_worklist(html).rows
    mine = [o for o in cohort.of_kind(OutputKind.TASK) if o.patient == "p-101"]
    assert len(mine) >= 2 and sorted(r.attrs["data-task"] for r in rows) == sorted(o.id for o in mine)
    assert {r.attrs["data-patient"] for r in rows} == {"p-101"}
    assert "<h1>Patient <code>p-101</code>: whole plan</h1>" in html and "Done (2)" in html  # + screening


def test_patient_view_from_the_command_line(tmp_path: Path, cohort: Planned,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    from carepath.cli.main import main
    from sink_cohort import PATHWAY

    args = ["plan", str(PATHWAY), "--patients", str(cohort.directory / "patients.jsonl"),
            "--events", str(cohort.directory / "events.jsonl"), "--as-of", AS_OF.isoformat()]
    assert main([*args, "--format", "html", "--patient", "p-102"]) == 0
    page = read_worklist(capsys.readouterr().out)
    assert page.problems == [] and {r.attrs["data-patient"] for r in page.rows} == {"p-102"}
    assert page.rows[0].attrs["data-step"] == "suicide_risk_assessment"
    assert main([*args, "--format", "html", "--patient", "p-999"]) == 1
    assert "no patient 'p-999'" in capsys.readouterr().err
    assert main([*args, "--format", "html"]) == 2


def test_run_summary_counts_patients_needing_attention_as_the_page_lists_them(page: str, cohort: Planned) -> None:
    from carepath.engine.result import PatientPlan
    from carepath.orchestrator.emission import workload

    listed = re.findall(r'<tr data-patient="([^"]+)"><th scope="row">', page)
    assert workload(cohort.plans, cohort.compiled, AS_OF).attention == len(listed)
    calm = PatientPlan("p-900", "maintenance", "active", ("remission",), (), (), ())
    worried = PatientPlan("p-901", "maintenance", "active", ("remission", "relapse_risk"), (), (), ())
    assert workload([calm], cohort.compiled, AS_OF).attention == 0
    assert workload([calm, worried], cohort.compiled, AS_OF).attention == 1


def test_due_today_and_no_due_time_have_their_own_bands(tmp_path: Path, cohort: Planned) -> None:
    base = next(o for o in cohort.of_kind(OutputKind.TASK) if o.body["step"] == "records_request")
    today = with_body(base, due="2026-03-03T17:30:00-05:00", earliest="2026-03-03T08:00:00-05:00")
    never = Output("t-no-due", OutputKind.TASK, base.patient,
                   {**base.body, "id": "t-no-due", "due": None, "earliest": "2026-03-02T08:00:00-05:00"})
    sink = Worklist(tmp_path, cohort.compiled, AS_OF)
    sink.write(iter([today, never]))
    page = read_worklist(sink.path.read_text(encoding="utf-8"))
    assert page.groups == ["today", "no-due"]
    assert [r.attrs["data-task"] for r in page.rows] == [base.id, "t-no-due"]


def test_patient_page_shows_letters_and_what_closed_withdrawn_work(tmp_path: Path) -> None:
    """One patient's page lists the patient's letters with their status, and for every
    withdrawn task or letter what withdrew it."""
    import io
    import json

    from carepath.api import load_pathway
    from carepath.orchestrator.planning import read_cohort, write_patient_page

    root = Path(__file__).resolve().parents[1]
    compiled = load_pathway(root / "pathways" / "ketamine-iv.yaml")
    events = [
        {"id": "e-1", "type": "enrolled", "at": "2026-04-06T09:00:00-04:00", "data": {}},
        {"id": "e-2", "type": "screening_recorded", "at": "2026-04-06T10:00:00-04:00",
         "data": {"trd_trials": 2, "contraindications": [], "cautions": []}},
        {"id": "c-1", "type": "session_completed", "at": "2026-04-06T12:00:00-04:00", "data": {"session": "s-0"}},
        {"id": "b-1", "type": "session_scheduled", "at": "2026-04-06T13:00:00-04:00",
         "data": {"session": "s-1", "start": "2026-04-10T10:00:00-04:00"}},
        {"id": "x-1", "type": "session_cancelled", "at": "2026-04-07T09:00:00-04:00", "data": {"session": "s-1"}},
        {"id": "d-1", "type": "discharged", "at": "2026-04-07T10:00:00-04:00", "data": {}},
    ]
    (tmp_path / "patients.jsonl").write_text(json.dumps({"patient": "p-1", "given_name": "Ada",
                                                          "family_name": "Byron"}) + "\n")
    (tmp_path / "events.jsonl").write_text("".join(json.dumps({"patient": "p-1", **e}) + "\n" for e in events))
    cohort = read_cohort(compiled, tmp_path / "patients.jsonl", tmp_path / "events.jsonl")
    out = io.StringIO()
    assert write_patient_page(out, compiled, datetime(2026, 4, 8, 12, tzinfo=NEW_YORK), cohort, "p-1")
    html = out.getvalue()
    assert read_worklist(html).problems == []
    letters = re.findall(r'<tr data-letter="[^"]+" data-status="([a-z]+)">(.*?)</tr>', html)
    assert len(letters) >= 3 and {status for status, _ in letters} >= {"due", "withdrawn"}
    withdrawn = [row for status, row in letters if status == "withdrawn"]
    assert any("withdrawn by session cancelled (session s-1), event x-1" in row for row in withdrawn)
    integration = next(r for r in read_worklist(html).rows if r.attrs["data-step"] == "integration_psychotherapy")
    assert integration.attrs["data-status"] == "cancelled"
    assert "withdrawn by discharged, event d-1, Tue 7 Apr 2026, 10:00 EDT" in integration.cells[4]
    assert "Ada" not in html and "Byron" not in html
