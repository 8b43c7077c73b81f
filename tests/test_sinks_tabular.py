"""tasks.jsonl and tasks.csv: what a downstream tool or a spreadsheet user sees."""

from __future__ import annotations

import csv
import io
import json
import os
from datetime import datetime
from pathlib import Path

import pytest

from carepath.sinks.base import Output, OutputKind, Sink
from carepath.sinks.tabular import CSV_COLUMNS, TasksCsv, TasksJsonl
from sink_cohort import Planned, contains_name, planned_cohort, with_body


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Planned:
    return planned_cohort(tmp_path_factory.mktemp("cohort"))


def stream(outputs: list[Output]):
    """A single-pass iterator, as the ledger hands outputs over."""
    yield from outputs


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_sinks_are_task_document_sinks(tmp_path: Path, cohort: Planned) -> None:
    for sink in (TasksJsonl(tmp_path), TasksCsv(tmp_path, cohort.compiled)):
        assert isinstance(sink, Sink)
        assert sink.kinds == frozenset({OutputKind.TASK})
    assert TasksJsonl(tmp_path).name != TasksCsv(tmp_path, cohort.compiled).name


def test_jsonl_lines_are_the_plan_task_objects_plus_patient(tmp_path: Path, cohort: Planned) -> None:
    written = TasksJsonl(tmp_path).write(stream(cohort.outputs))

    lines = (tmp_path / "tasks.jsonl").read_text(encoding="utf-8").splitlines()
    expected = [{**task.as_json(cohort.compiled.version), "patient": plan.patient}
                for plan in cohort.plans for task in plan.tasks]
    # 11 before DOMAIN 11 added screening_completion (7 enrolments) and pre_dose_check (2 bookings)
    assert written == len(lines) == len(expected) == 20
    assert [json.loads(line) for line in lines] == expected
    # Stable key order: the patient, then the task object exactly as `carepath plan` prints it.
    plan_keys = list(cohort.plans[0].tasks[0].as_json(cohort.compiled.version))
    assert all(list(json.loads(line)) == ["patient", *plan_keys] for line in lines)


def test_jsonl_key_order_does_not_depend_on_how_the_body_was_stored(tmp_path: Path, cohort: Planned) -> None:
    tasks = cohort.of_kind(OutputKind.TASK)
    shuffled = [Output(o.id, o.kind, o.patient, dict(sorted(o.body.items()))) for o in tasks]
    TasksJsonl(tmp_path / "a").write(stream(tasks))
    TasksJsonl(tmp_path / "b").write(stream(shuffled))
    assert (tmp_path / "a" / "tasks.jsonl").read_bytes() == (tmp_path / "b" / "tasks.jsonl").read_bytes()


def test_csv_round_trips_with_the_csv_module(tmp_path: Path, cohort: Planned) -> None:
    written = TasksCsv(tmp_path, cohort.compiled).write(stream(cohort.outputs))

    raw = (tmp_path / "tasks.csv").read_bytes()
    assert raw.startswith(b"patient,id,step,title,")
    assert raw.count(b"\r\n") == written + 1 and b"\n" not in raw.replace(b"\r\n", b"")  # RFC 4180 CRLF
    rows = read_csv(tmp_path / "tasks.csv")
    assert list(rows[0]) == list(CSV_COLUMNS)
    tasks = [(plan.patient, t) for plan in cohort.plans for t in plan.tasks]
    assert written == len(rows) == len(tasks)
    zone = cohort.compiled.clinic.zone
    for row, (patient, task) in zip(rows, tasks, strict=True):
        assert row["patient"] == patient and row["id"] == task.id and row["title"] == task.title
        assert row["step"] == task.step and row["role"] == task.role and row["status"] == task.status
        assert row["out_of_window"] == ("true" if task.out_of_window else "false")
        assert datetime.fromisoformat(row["earliest"]) == task.earliest
        assert datetime.fromisoformat(row["due"]) == task.due
        assert datetime.fromisoformat(row["earliest"]).utcoffset() == task.earliest.astimezone(zone).utcoffset()
        assert row["completed_at"] == (task.completed_at.astimezone(zone).isoformat() if task.completed_at else "")
    assert {r["status"] for r in rows} == {"open", "overdue", "done", "cancelled"}


def test_csv_times_are_in_the_clinic_zone_whatever_the_body_carries(tmp_path: Path, cohort: Planned) -> None:
    task = cohort.of_kind(OutputKind.TASK)[0]
    utc = with_body(task, earliest="2026-03-03T15:00:00+00:00", due="2026-03-04T15:00:00Z")
    TasksCsv(tmp_path, cohort.compiled).write(stream([utc]))
    (row,) = read_csv(tmp_path / "tasks.csv")
    assert row["earliest"] == "2026-03-03T10:00:00-05:00"
    assert row["due"] == "2026-03-04T10:00:00-05:00"


@pytest.mark.parametrize("dangerous", ["=HYPERLINK(\"http://x\",\"click\")", "+1+2", "-2+3", "@SUM(A1)",
                                       "\t=1", "\r=1"])
def test_csv_defuses_formula_cells(tmp_path: Path, cohort: Planned, dangerous: str) -> None:
    task = cohort.of_kind(OutputKind.TASK)[0]
    TasksCsv(tmp_path, cohort.compiled).write(stream([with_body(task, title=dangerous, source=dangerous)]))
    (row,) = read_csv(tmp_path / "tasks.csv")
    assert row["title"] == "'" + dangerous
    assert row["source"] == "'" + dangerous
    # Times are not text: a formula lead there would be a bug upstream, and is not mangled.
    assert row["earliest"] == task.body["earliest"]


def test_csv_quotes_commas_quotes_and_newlines(tmp_path: Path, cohort: Planned) -> None:
    task = cohort.of_kind(OutputKind.TASK)[0]
    title = 'Call back, then "confirm"\nsecond line'
    TasksCsv(tmp_path, cohort.compiled).write(stream([with_body(task, title=title)]))
    raw = (tmp_path / "tasks.csv").read_bytes().decode()
    assert '"Call back, then ""confirm""\nsecond line"' in raw
    (row,) = read_csv(tmp_path / "tasks.csv")
    assert row["title"] == title


def test_csv_refuses_a_field_it_has_no_column_for(tmp_path: Path, cohort: Planned) -> None:
    task = cohort.of_kind(OutputKind.TASK)[0]
    with pytest.raises(ValueError, match="does not know: session"):
        TasksCsv(tmp_path, cohort.compiled).write(stream([with_body(task, session="s-1")]))
    assert not (tmp_path / "tasks.csv").exists()


def test_only_tasks_are_listed_and_no_names(tmp_path: Path, cohort: Planned) -> None:
    jsonl, tcsv = TasksJsonl(tmp_path), TasksCsv(tmp_path, cohort.compiled)
    jsonl.write(stream(cohort.outputs))
    tcsv.write(stream(cohort.outputs))
    for name in ("tasks.jsonl", "tasks.csv"):
        text = (tmp_path / name).read_text(encoding="utf-8")
        assert contains_name(text, cohort.names) == []
    task_ids = {o.id for o in cohort.of_kind(OutputKind.TASK)}
    assert {json.loads(line)["id"] for line in (tmp_path / "tasks.jsonl").read_text().splitlines()} == task_ids
    assert {row["id"] for row in read_csv(tmp_path / "tasks.csv")} == task_ids


def test_empty_cohort_gives_empty_list_and_header_only_csv(tmp_path: Path, cohort: Planned) -> None:
    assert TasksJsonl(tmp_path).write(stream([])) == 0
    assert TasksCsv(tmp_path, cohort.compiled).write(stream([])) == 0
    assert (tmp_path / "tasks.jsonl").read_bytes() == b""
    assert (tmp_path / "tasks.csv").read_bytes() == (",".join(CSV_COLUMNS) + "\r\n").encode()


def test_deterministic_bytes(tmp_path: Path, cohort: Planned) -> None:
    for sink_of in (lambda d: TasksJsonl(d), lambda d: TasksCsv(d, cohort.compiled)):
        first, second = sink_of(tmp_path / "1"), sink_of(tmp_path / "2")
        first.write(stream(cohort.outputs))
        second.write(stream(cohort.outputs))
        assert first.path.read_bytes() == second.path.read_bytes()
        before = first.path.read_bytes()
        first.write(stream(cohort.outputs))
        assert first.path.read_bytes() == before


@pytest.mark.parametrize("make", [lambda d, c: TasksJsonl(d), lambda d, c: TasksCsv(d, c)], ids=["jsonl", "csv"])
def test_a_failed_write_leaves_the_previous_file_whole(tmp_path: Path, cohort: Planned,
                                                       monkeypatch: pytest.MonkeyPatch, make) -> None:
    sink = make(tmp_path, cohort.compiled)
    sink.write(stream(cohort.outputs))
    before = sink.path.read_bytes()
    fewer = cohort.outputs[: len(cohort.outputs) // 2]

    def broken_stream():
        yield from fewer
        raise RuntimeError("ledger went away")

    with pytest.raises(RuntimeError, match="ledger went away"):
        sink.write(broken_stream())
    assert sink.path.read_bytes() == before

    def refuse(*args: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OSError, match="disk full"):
        sink.write(stream(fewer))
    assert sink.path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [sink.path.name]  # no temporary file left


def test_naive_times_in_a_body_are_refused(tmp_path: Path, cohort: Planned) -> None:
    task = cohort.of_kind(OutputKind.TASK)[0]
    naive = datetime(2026, 3, 3, 10).isoformat()
    with pytest.raises(ValueError, match="timezone-aware"):
        TasksCsv(tmp_path, cohort.compiled).write(stream([with_body(task, due=naive)]))


def test_csv_cells_read_back_with_a_plain_reader(tmp_path: Path, cohort: Planned) -> None:
    TasksCsv(tmp_path, cohort.compiled).write(stream(cohort.outputs))
    records = list(csv.reader(io.StringIO((tmp_path / "tasks.csv").read_bytes().decode(), newline="")))
    assert all(len(r) == len(CSV_COLUMNS) for r in records)
