"""The worklist built from the stored per-patient rows (`carepath.sinks.worklist_rows`)
is the page a pass over every stored output writes, at any as-of and under any caps; a
sweep or an event run writes it without a pass over the cohort; a ledger whose rows are
missing or were made under other rules gets them rebuilt once."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from carepath.compile.compiled import WorklistView
from carepath.orchestrator import emission, sequence
from carepath.orchestrator.spec import RunSpec
from carepath.sinks.ledger import Ledger
from carepath.sinks.worklist import Worklist
from carepath.sinks.worklist_rows import READY, WorklistRows, patients_table, tasks_table

ROOT = Path(__file__).resolve().parents[1]
PATHWAY = str(ROOT / "pathways" / "ketamine-iv.yaml")
DEMO = ROOT / "examples" / "demo"
AS_OF = datetime.fromisoformat("2026-03-05T17:00:00+00:00")


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory) -> RunSpec:
    """The demo cohort (40 patients) swept once."""
    out = tmp_path_factory.mktemp("swept")
    spec = RunSpec.resolve(PATHWAY, out, AS_OF, "sweep-1", pdf=False)
    sequence.sweep(spec, DEMO / "patients.jsonl", DEMO / "events.jsonl")
    return spec


def _by_one_pass(ledger: Ledger, spec: RunSpec, folder: Path) -> bytes:
    page = Worklist(folder, spec.compiled, spec.as_of)
    page.write(ledger.current(spec.compiled.id, page.kinds))
    return (folder / page.name).read_bytes()


def _from_rows(ledger: Ledger, spec: RunSpec, folder: Path) -> bytes:
    page = Worklist(folder, spec.compiled, spec.as_of)
    page.write_from(WorklistRows(ledger.engine, spec.compiled.id).read(spec.compiled, spec.as_of))
    return (folder / page.name).read_bytes()


@pytest.mark.parametrize("later", [timedelta(0), timedelta(hours=7), timedelta(days=1), timedelta(days=6),
                                   timedelta(days=40), -timedelta(days=20)])
@pytest.mark.parametrize("rows", [300, 4, 1])
def test_the_page_from_stored_rows_is_the_page_of_every_output(swept: RunSpec, tmp_path: Path,
                                                               later: timedelta, rows: int) -> None:
    # Caps as small as one row per band make the stored rows choose exactly the page's rows.
    compiled = replace(swept.compiled, worklist=WorklistView(swept.compiled.worklist.horizon, rows))
    spec = replace(swept, compiled=compiled, as_of=AS_OF + later)
    ledger = Ledger(swept.ledger_url)
    try:
        if rows != 300:  # the stored closed rows are capped by the page's caps: rebuilt under these
            ledger.mark_snapshot(compiled.id, READY, "other rules", "test")
            emission.write_documents(replace(spec, out=tmp_path / "sweep"), ledger)
        reference = _by_one_pass(ledger, spec, tmp_path / "pass")
        assert _from_rows(ledger, spec, tmp_path / "rows") == reference
        assert b'id="band-safety"' in reference or later < timedelta(0)  # the demo has safety work to rank
    finally:
        if rows != 300:
            ledger.mark_snapshot(compiled.id, READY, "other rules", "test")
            emission.write_documents(replace(swept, out=tmp_path / "restore", as_of=swept.as_of), ledger)
        ledger.close()


def test_an_event_run_writes_the_worklist_without_a_pass_over_the_cohort(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out"
    events = tmp_path / "events.jsonl"
    events.write_bytes((DEMO / "events.jsonl").read_bytes())
    spec = RunSpec.resolve(PATHWAY, out, AS_OF, "sweep-1", pdf=False)
    sequence.sweep(spec, DEMO / "patients.jsonl", events)
    ref = "p-000008"
    with events.open("a") as handle:  # item 9 answered 3: urgent work the worklist must show at once
        handle.write('{"id": "e-test-item9", "patient": "p-000008", "type": "assessment_recorded", '
                     '"at": "2026-03-05T21:10:00+00:00", "data": {"instrument": "phq9", '
                     '"items": [1, 1, 1, 1, 1, 1, 1, 1, 3]}}\n')

    def no_pass(*_args, **_kwargs):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("the worklist read every stored output")

    monkeypatch.setattr(Ledger, "document_rows", no_pass)
    monkeypatch.setattr(Ledger, "current", no_pass)
    later = replace(spec, as_of=datetime.fromisoformat("2026-03-05T21:15:00+00:00"), run="event-1")
    sequence.replan_patient(later, DEMO / "patients.jsonl", events, ref)
    page = (out / "worklist.html").read_text()
    monkeypatch.undo()
    ledger = Ledger(spec.ledger_url)
    try:
        assert page.encode() == _by_one_pass(ledger, later, tmp_path / "pass")
    finally:
        ledger.close()
    assert ref in page.split('id="band-safety"', 1)[1].split("</section>", 1)[0]


def test_rows_missing_from_an_older_ledger_are_rebuilt_once(swept: RunSpec, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    ledger = Ledger(swept.ledger_url)
    try:
        reference = _by_one_pass(ledger, swept, tmp_path / "pass")
        with ledger.engine.begin() as conn:  # as a ledger upgraded to revision 0007 holds them
            conn.execute(tasks_table.delete())
            conn.execute(patients_table.delete())
            conn.execute(ledger_snapshots_delete(READY))
        first = replace(swept, out=tmp_path / "first")
        emission.write_documents(first, ledger)
        assert (tmp_path / "first" / "worklist.html").read_bytes() == reference
        # Complete now: the next worklist (another as-of) reads no output but those it lists.
        calls: list[object] = []
        real = Ledger.document_rows
        monkeypatch.setattr(Ledger, "document_rows", lambda *a, **k: calls.append(a) or real(*a, **k))
        emission.write_documents(replace(first, out=tmp_path / "second", as_of=AS_OF + timedelta(hours=1)), ledger)
        assert calls == []
    finally:
        ledger.close()


def ledger_snapshots_delete(sink: str):  # noqa: ANN201 - a DELETE statement
    from carepath.sinks.ledger import snapshots_table

    return snapshots_table.delete().where(snapshots_table.c.sink == sink)


def test_a_new_ledger_needs_no_rebuilding_pass(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def rebuild(*_args, **_kwargs):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("the worklist rows were rebuilt from every output")

    monkeypatch.setattr(WorklistRows, "rebuild", rebuild)
    spec = RunSpec.resolve(PATHWAY, tmp_path / "out", AS_OF, "sweep-1", pdf=False)
    sequence.sweep(spec, DEMO / "patients.jsonl", DEMO / "events.jsonl")
    monkeypatch.undo()
    ledger = Ledger(spec.ledger_url)
    try:
        assert (tmp_path / "out" / "worklist.html").read_bytes() == _by_one_pass(ledger, spec, tmp_path / "pass")
    finally:
        ledger.close()
