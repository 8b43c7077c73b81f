"""An incremental sweep gives exactly what a full re-plan gives.

Two output folders (each its own ledger) are swept over the same evolving inputs: one
the default way (ingest the appended event lines, re-plan the patients the wake index
names), one with `full=True` (every patient re-planned). Histories are random: the
events file grows by appended lines (exact duplicates, id conflicts and lines that are
not JSON among them), patients join the patients file late (their earlier lines are
rejected until then) or change their details, and the as-of moves forward by minutes to
weeks and sometimes back. After every sweep, everything a user sees must be equal.
"""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from carepath import api
from carepath.orchestrator import sequence
from carepath.orchestrator.spec import RunSpec
from carepath.sinks.ledger import Ledger

ROOT = Path(__file__).resolve().parents[1]
COHORTS = {
    "ketamine-iv": (ROOT / "pathways" / "ketamine-iv.yaml", ROOT / "examples" / "demo"),
    "esketamine-spravato": (ROOT / "pathways" / "esketamine-spravato.yaml", ROOT / "examples" / "esketamine"),
}
DOCUMENTS = ("tasks.jsonl", "tasks.csv", "letters.jsonl", "rejected.jsonl", "worklist.html", "fhir/bundle.json")
SUMMARY = ("patients", "outputs", "letters_planned", "letters_by_status", "open_tasks", "overdue", "patients_by_status",
           "patients_needing_attention", "rejected_lines")


def _lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def _record(line: bytes) -> dict | None:
    try:
        record = json.loads(line)
    except ValueError:
        return None  # the example feeds hold a few bad lines on purpose
    return record if isinstance(record, dict) and isinstance(record.get("at"), str) else None


def _seen(out: Path) -> dict[str, object]:
    """Everything a user of the folder sees: documents, letter files, the ledger's outputs and sends."""
    seen: dict[str, object] = {name: (out / name).read_bytes() for name in DOCUMENTS}
    seen["letters"] = {p.relative_to(out).as_posix(): p.read_bytes()
                       for p in sorted((out / "letters").rglob("*")) if p.is_file()}
    # The export's FHIR NDJSON parts and their manifest.
    seen["fhir"] = {p.relative_to(out).as_posix(): p.read_bytes()
                    for p in sorted((out / "fhir").rglob("*")) if p.is_file()}
    ledger = Ledger(f"sqlite:///{out / 'ledger.sqlite'}")
    try:
        with ledger.engine.connect() as conn:
            seen["outputs"] = sorted(tuple(r) for r in conn.exec_driver_sql(
                "SELECT pathway, id, kind, patient, digest, retired FROM outputs"))
            seen["sends"] = sorted(tuple(r) for r in conn.exec_driver_sql(
                "SELECT channel, output_id, sent_at FROM letter_sends"))
    finally:
        ledger.close()
    return seen


def _worklist_of_every_output(out: Path, spec: RunSpec, folder: Path) -> bytes:
    """worklist.html as a pass over every current output of the ledger writes it."""
    from carepath.sinks.worklist import Worklist

    ledger = Ledger(f"sqlite:///{out / 'ledger.sqlite'}")
    try:
        page = Worklist(folder, spec.compiled, spec.as_of)
        page.write(ledger.current(spec.compiled.id, page.kinds))
    finally:
        ledger.close()
    return (folder / page.name).read_bytes()


def _reference_rejections(pathway: Path, patients: Path, events: Path, as_of: datetime) -> bytes:
    """rejected.jsonl as `carepath plan` judges the same files (the whole-file readers)."""
    from carepath import api
    from carepath.orchestrator.planning import plan_cohort, read_cohort

    compiled = api.load_pathway(pathway)
    cohort = read_cohort(compiled, patients, events)
    for _ in plan_cohort(compiled, cohort, as_of):
        pass
    rows = sorted(cohort.rejected, key=lambda r: (r.file != "events", r.file, r.line, r.id or ""))
    return b"".join(json.dumps(r.as_json(), separators=(",", ":"), ensure_ascii=False).encode() + b"\n"
                    for r in rows)


@st.composite
def histories(draw: st.DrawFn) -> tuple[str, list[dict]]:
    """A pathway and a list of steps: how much of the feed is revealed, what is appended
    besides, which patients the patients file holds, and the as-of."""
    name = draw(st.sampled_from(sorted(COHORTS)))
    steps = []
    cut, moment = 0.0, draw(st.floats(0.05, 0.6))
    for _ in range(draw(st.integers(2, 5))):
        cut = min(1.0, cut + draw(st.floats(0.0, 0.5)))
        jump = draw(st.sampled_from([0.0, 1 / 24, 1.0, 3.0, 14.0, -2.0]))  # days
        steps.append({
            "cut": cut,
            "days": jump,
            "at": moment,
            "extra": draw(st.lists(st.sampled_from(["duplicate", "conflict", "garbage", "unknown", "shared-id"]),
                                   max_size=3)),
            "late": draw(st.integers(0, 3)),    # how many patients are still missing from the patients file
            "edit": draw(st.booleans()),         # one patient's details change
        })
        moment = moment + draw(st.floats(0.0, 0.3))
    return name, steps


@pytest.mark.slow  # 15 histories, two sweeps per step each: a quarter of the fast lane's time
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@settings(max_examples=15, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(history=histories())
def test_incremental_sweeps_equal_full_replans(tmp_path_factory: pytest.TempPathFactory,
                                               history: tuple[str, list[dict]]) -> None:
    name, steps = history
    pathway, cohort = COHORTS[name]
    work = tmp_path_factory.mktemp("incremental")
    feed, people = _lines(cohort / "events.jsonl"), _lines(cohort / "patients.jsonl")
    records = [r for r in map(_record, feed) if r is not None]
    times = [datetime.fromisoformat(r["at"]) for r in records]
    start, span = min(times), max(times) - min(times)
    events, patients = work / "events.jsonl", work / "patients.jsonl"
    events.write_bytes(b"")
    written = 0
    extra_id = 0
    for number, step in enumerate(steps):
        upto = int(len(feed) * step["cut"])
        appended = feed[written:upto]
        for kind in step["extra"]:
            extra_id += 1
            earlier = records[extra_id * 7 % upto] if upto else None
            if kind == "duplicate" and earlier:
                appended.append(json.dumps(earlier).encode() + b"\n")
            elif kind == "conflict" and earlier:
                appended.append(json.dumps({**earlier, "at": (datetime.fromisoformat(earlier["at"])
                                                              + timedelta(minutes=5)).isoformat()}).encode() + b"\n")
            elif kind == "shared-id" and earlier:
                # Another patient's line reusing this event's id: one of the two is refused,
                # which depends on which patients are known (see "late").
                other = json.loads(people[(extra_id * 5) % len(people)])["patient"]
                appended.append(json.dumps({**earlier, "patient": other}).encode() + b"\n")
            elif kind == "garbage":
                appended.append(b"{not json\n")
            elif kind == "unknown":
                appended.append(json.dumps({"id": f"x-{extra_id}", "patient": "p-nobody", "type": "enrolled",
                                            "at": start.isoformat(), "data": {}}).encode() + b"\n")
        with events.open("ab") as handle:
            handle.write(b"".join(appended))
        written = max(written, upto)
        roster = people[:len(people) - step["late"]]
        if step["edit"]:
            row = json.loads(roster[number % len(roster)])
            row["email"] = f"changed-{number}@example.org"
            roster = [*roster[:number % len(roster)], json.dumps(row).encode() + b"\n",
                      *roster[number % len(roster) + 1:]]
        patients.write_bytes(b"".join(roster))
        as_of = (start + span * step["at"] + timedelta(days=sum(s["days"] for s in steps[:number + 1]))).replace(
            microsecond=0)
        summaries = {}
        for mode in ("incremental", "full"):
            spec = RunSpec.resolve(pathway, work / mode, as_of, f"{mode}-{number}", pdf=False)
            summaries[mode] = sequence.sweep(spec, patients, events, full=mode == "full", shard_size=7,
                                             export=True, bundle=True).as_json()
        assert {k: summaries["incremental"][k] for k in SUMMARY} == {k: summaries["full"][k] for k in SUMMARY}, \
            f"step {number} as of {as_of}"
        incremental, full = _seen(work / "incremental"), _seen(work / "full")
        # The worklist is built from the stored per-patient rows: the same bytes as ranking
        # every stored output in one pass.
        assert full["worklist.html"] == _worklist_of_every_output(work / "full", spec, work / f"pass-{number}"), \
            f"the worklist from stored rows differs from a pass over the outputs at step {number}"
        for key in full:
            assert incremental[key] == full[key], f"{key} differs at step {number} as of {as_of}"
        # `carepath export` from each ledger into a fresh folder: the same bytes again.
        exported = {}
        for mode in ("incremental", "full"):
            api.export(pathway, work / f"export-{mode}-{number}", source=work / mode, bundle=True)
            folder = work / f"export-{mode}-{number}"
            exported[mode] = {p.relative_to(folder).as_posix(): p.read_bytes()
                              for p in sorted(folder.rglob("*")) if p.is_file()}
        assert exported["incremental"] == exported["full"], f"exports differ at step {number}"
        assert exported["full"]["tasks.jsonl"] == full["tasks.jsonl"]
        # Both read the event store: its verdicts must be the readers' (`carepath plan`).
        assert full["rejected.jsonl"] == _reference_rejections(pathway, patients, events, as_of), \
            f"rejections differ from carepath plan's at step {number}"
    shutil.rmtree(work, ignore_errors=True)


def _sweep(out: Path, patients: Path, events: Path, as_of: datetime, run: str, **options) -> dict:
    spec = RunSpec.resolve(COHORTS["ketamine-iv"][0], out, as_of, run, pdf=False)
    return sequence.sweep(spec, patients, events, **{"export": True, "bundle": True, **options}).as_json()


def _copy_demo(folder: Path) -> tuple[Path, Path]:
    folder.mkdir()
    shutil.copy(COHORTS["ketamine-iv"][1] / "patients.jsonl", folder / "patients.jsonl")
    shutil.copy(COHORTS["ketamine-iv"][1] / "events.jsonl", folder / "events.jsonl")
    return folder / "patients.jsonl", folder / "events.jsonl"


AS_OF = datetime.fromisoformat("2026-03-05T17:00:00+00:00")


def _append_phq9(events: Path, event_id: str, patient: str, at: str) -> None:
    """A PHQ-9 of all zeros, appended to the feed as a clinic system would."""
    with events.open("a") as handle:
        handle.write(json.dumps({"id": event_id, "patient": patient, "type": "assessment_recorded", "at": at,
                                 "data": {"instrument": "phq9", "items": [0] * 9, "total": 0}}) + "\n")


def test_a_replaced_events_file_is_read_again_and_everyone_is_replanned(tmp_path: Path) -> None:
    patients, events = _copy_demo(tmp_path / "in")
    _sweep(tmp_path / "out", patients, events, AS_OF, "first")
    _sweep(tmp_path / "reference", patients, events, AS_OF, "first", full=True)
    # An earlier line edited in place (not appended): what was read before is not what is there now.
    lines = events.read_bytes().splitlines(keepends=True)
    lines[3] = lines[3].replace(b"15:48:00", b"15:49:00")
    events.write_bytes(b"".join(lines))
    later = AS_OF + timedelta(hours=1)
    summary = _sweep(tmp_path / "out", patients, events, later, "again")
    assert summary["replanned"] == summary["patients"] == 40
    _sweep(tmp_path / "reference", patients, events, later, "again", full=True)
    assert _seen(tmp_path / "out") == _seen(tmp_path / "reference")


def test_an_unfinished_last_line_is_judged_as_plan_judges_it_until_its_newline(tmp_path: Path) -> None:
    """Half a line is what `carepath plan` would reject now: the sweep says the same (not
    silently deferred), and reads the line again once it is whole."""
    patients, events = _copy_demo(tmp_path / "in")
    first = _sweep(tmp_path / "out", patients, events, AS_OF, "first")
    line = json.dumps({"id": "e-late-1", "patient": "p-000001", "type": "assessment_recorded",
                       "at": "2026-03-05T16:00:00+00:00",
                       "data": {"instrument": "phq9", "items": [1, 1, 1, 1, 1, 1, 1, 1, 1], "total": 9}}).encode()
    with events.open("ab") as handle:
        handle.write(line[:40])  # a writer is half-way through the line
    half = _sweep(tmp_path / "out", patients, events, AS_OF + timedelta(minutes=1), "half")
    assert half["rejected_lines"] == first["rejected_lines"] + 1
    assert (tmp_path / "out" / "rejected.jsonl").read_bytes() == _reference_rejections(
        COHORTS["ketamine-iv"][0], patients, events, AS_OF + timedelta(minutes=1))
    with events.open("ab") as handle:
        handle.write(line[40:] + b"\n")
    whole = _sweep(tmp_path / "out", patients, events, AS_OF + timedelta(minutes=2), "whole")
    assert whole["replanned"] >= 1 and whole["rejected_lines"] == first["rejected_lines"]
    assert b"e-late-1" not in (tmp_path / "out" / "rejected.jsonl").read_bytes()


def test_a_same_length_edit_in_the_middle_replans_everyone_as_plan_sees_it(tmp_path: Path) -> None:
    """An item-9 answer corrected 0 -> 3 in place, far from the file's head and tail."""
    patients, events = _copy_demo(tmp_path / "in")
    _sweep(tmp_path / "out", patients, events, AS_OF, "first")
    _sweep(tmp_path / "reference", patients, events, AS_OF, "first", full=True)
    lines = events.read_bytes().splitlines(keepends=True)
    middle = next(n for n in range(len(lines) // 3, len(lines))
                  if b'"phq9"' in lines[n] and b'"items": [' in lines[n] and b"0]" in lines[n])
    edited = lines[middle][::-1].replace(b"]0", b"]3", 1)[::-1]  # the last item (item 9): 0 -> 3
    assert len(edited) == len(lines[middle]) and edited != lines[middle]
    lines[middle] = edited
    events.write_bytes(b"".join(lines))
    later = AS_OF + timedelta(minutes=5)
    summary = _sweep(tmp_path / "out", patients, events, later, "again")
    assert summary["replanned"] == summary["patients"]
    _sweep(tmp_path / "reference", patients, events, later, "again", full=True)
    assert _seen(tmp_path / "out") == _seen(tmp_path / "reference")


def test_patients_with_ingested_lines_stay_due_until_they_are_replanned(tmp_path: Path) -> None:
    """A run killed after reading new lines but before planning: the next sweep re-plans
    those patients although it finds no new line."""
    from carepath.orchestrator.event_store import EventStore
    from carepath.orchestrator.wake_index import WakeIndex

    patients, events = _copy_demo(tmp_path / "in")
    out = tmp_path / "out"
    _sweep(out, patients, events, AS_OF, "first")
    _append_phq9(events, "e-new-1", "p-000002", "2026-03-05T16:30:00+00:00")
    ledger = Ledger(f"sqlite:///{out / 'ledger.sqlite'}")
    try:  # what the killed run did: ingest, nothing after
        assert EventStore(ledger.engine, "ketamine-iv").ingest(
            events, on_new=WakeIndex(ledger.engine, "ketamine-iv").mark_dirty).lines == 1
    finally:
        ledger.close()
    summary = _sweep(out, patients, events, AS_OF, "after-the-crash")
    assert summary["replanned"] == 1
    assert _sweep(out, patients, events, AS_OF, "then")["replanned"] == 0


def test_an_event_run_reads_one_patient_not_the_cohort(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from carepath.records import readers

    patients, events = _copy_demo(tmp_path / "in")
    out = tmp_path / "out"
    _sweep(out, patients, events, AS_OF, "first")
    _append_phq9(events, "e-new-2", "p-000003", "2026-03-05T17:30:00+00:00")

    def whole_file(*_args, **_kwargs):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("the whole file was read")

    for name in ("read_patients", "read_events", "iter_event_lines"):
        monkeypatch.setattr(readers, name, whole_file)
    monkeypatch.setattr("carepath.orchestrator.emission.read_patients", whole_file)
    spec = RunSpec.resolve(COHORTS["ketamine-iv"][0], out, AS_OF + timedelta(hours=1), "event", pdf=False)
    summary = sequence.replan_patient(spec, patients, events, "p-000003")
    assert summary.workload.patients == 1 and summary.events > 0


def test_hostile_lines_get_the_readers_verdicts_and_line_numbers(tmp_path: Path) -> None:
    """Line breaks are b"\\n" only (a lone carriage return stays inside its line), CRLF
    endings, a line longer than a record may be, a BOM-less blank line: the sweep's
    `rejected.jsonl` names the same lines, for the same reasons, as `carepath plan`."""
    from carepath import api
    from carepath.orchestrator.planning import plan_cohort, read_cohort
    from carepath.records.readers import MAX_LINE_BYTES

    patients, events = _copy_demo(tmp_path / "in")
    good = json.dumps({"id": "e-crlf", "patient": "p-000004", "type": "assessment_recorded",
                       "at": "2026-03-05T16:00:00+00:00",
                       "data": {"instrument": "phq9", "items": [0] * 9, "total": 0}}).encode()
    with events.open("ab") as handle:
        handle.write(good + b"\r\n")
        handle.write(b'{"id": "e-cr", "patient": "p-000004",\r "type": "enrolled"}\n')
        handle.write(b"\n")
        handle.write(b'{"id": "e-long", "patient": "p-000004", "pad": "' + b"x" * (MAX_LINE_BYTES + 10) + b'"}\n')
        handle.write(good.replace(b"e-crlf", b"e-after") + b"\n")
    _sweep(tmp_path / "out", patients, events, AS_OF, "first")
    swept = [json.loads(line) for line in (tmp_path / "out" / "rejected.jsonl").read_bytes().splitlines()]
    compiled = api.load_pathway(COHORTS["ketamine-iv"][0])
    cohort = read_cohort(compiled, patients, events)
    for _ in plan_cohort(compiled, cohort, AS_OF):
        pass
    planned = sorted((r.as_json() for r in cohort.rejected), key=lambda r: (r["file"] != "events", r["file"], r["line"]))
    assert [r for r in swept if r["file"] == "events"] == [r for r in planned if r["file"] == "events"]
    assert len([r for r in swept if r["file"] == "events"]) >= 3


def test_a_file_replaced_before_an_event_run_still_replans_everyone_at_the_next_sweep(tmp_path: Path) -> None:
    """The event run reads the replaced file (its patient's plan is right), and the next
    sweep re-plans everyone: a patient whose lines are gone has no new line to mark them."""
    patients, events = _copy_demo(tmp_path / "in")
    _sweep(tmp_path / "out", patients, events, AS_OF, "first")
    _sweep(tmp_path / "reference", patients, events, AS_OF, "first", full=True)
    kept = [line for line in events.read_bytes().splitlines(keepends=True) if b'"p-000008"' not in line]
    events.write_bytes(b"".join(kept))  # p-000008's events withdrawn from the feed
    later = AS_OF + timedelta(hours=1)
    spec = RunSpec.resolve(COHORTS["ketamine-iv"][0], tmp_path / "out", later, "event", pdf=False)
    sequence.replan_patient(spec, patients, events, "p-000001")
    summary = _sweep(tmp_path / "out", patients, events, later, "sweep")
    assert summary["replanned"] == 39  # everyone but the patient the event run just planned
    _sweep(tmp_path / "reference", patients, events, later, "sweep", full=True)
    seen, reference = _seen(tmp_path / "out"), _seen(tmp_path / "reference")
    assert seen["tasks.jsonl"] == reference["tasks.jsonl"] and seen["outputs"] == reference["outputs"]
