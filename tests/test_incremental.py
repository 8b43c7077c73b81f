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

from carepath.orchestrator import sequence
from carepath.orchestrator.spec import RunSpec
from carepath.sinks.ledger import Ledger

ROOT = Path(__file__).resolve().parents[1]
COHORTS = {
    "ketamine-iv": (ROOT / "pathways" / "ketamine-iv.yaml", ROOT / "examples" / "demo"),
    "esketamine-spravato": (ROOT / "pathways" / "esketamine-spravato.yaml", ROOT / "examples" / "esketamine"),
}
DOCUMENTS = ("tasks.jsonl", "tasks.csv", "letters.jsonl", "rejected.jsonl", "worklist.html", "fhir/bundle.json")
SUMMARY = ("patients", "letters_planned", "letters_by_status", "open_tasks", "overdue", "patients_by_status",
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
            "extra": draw(st.lists(st.sampled_from(["duplicate", "conflict", "garbage", "unknown"]), max_size=3)),
            "late": draw(st.integers(0, 3)),    # how many patients are still missing from the patients file
            "edit": draw(st.booleans()),         # one patient's details change
        })
        moment = moment + draw(st.floats(0.0, 0.3))
    return name, steps


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@settings(max_examples=12, deadline=None, derandomize=True,
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
            summaries[mode] = sequence.sweep(spec, patients, events, full=mode == "full", shard_size=7).as_json()
        assert {k: summaries["incremental"][k] for k in SUMMARY} == {k: summaries["full"][k] for k in SUMMARY}, \
            f"step {number} as of {as_of}"
        incremental, full = _seen(work / "incremental"), _seen(work / "full")
        for key in full:
            assert incremental[key] == full[key], f"{key} differs at step {number} as of {as_of}"
    shutil.rmtree(work, ignore_errors=True)
