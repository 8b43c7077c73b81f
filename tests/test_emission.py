"""Exactly-once emission through the outbox ledger: the run sequence the Prefect flows
call (carepath.orchestrator.sequence), run in this process: re-runs, a failing sink
retried, a later as-of."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import pytest

from carepath.orchestrator import emission, sequence
from carepath.orchestrator.spec import RunSpec
from carepath.sinks.letters import LetterFiles

ROOT = Path(__file__).resolve().parents[1]
PATHWAY = str(ROOT / "pathways" / "ketamine-iv.yaml")
PATIENTS = ROOT / "examples" / "patients.jsonl"
EVENTS = ROOT / "examples" / "events.jsonl"
AS_OF = datetime.fromisoformat("2026-03-03T17:00:00+00:00")
LATER = datetime.fromisoformat("2026-03-20T17:00:00+00:00")


def sweep(out: Path, as_of: datetime = AS_OF, run: str = "run-1", pdf: bool = False, shard_size: int = 1,
          events: Path = EVENTS) -> emission.RunSummary:
    """The sweep flow's sequence, in this process."""
    return sequence.sweep(RunSpec.resolve(PATHWAY, out, as_of, run, pdf=pdf), PATIENTS, events, shard_size=shard_size,
                          export=True, bundle=True)


def snapshot(out: Path) -> dict[str, tuple[bytes, int]]:
    """Every output file's bytes and mtime (the ledger and scratch space excluded)."""
    return {str(p.relative_to(out)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(out.rglob("*")) if p.is_file() and "ledger" not in p.name and "work" not in p.parts}


def test_first_run_emits_tasks_letters_and_documents(tmp_path: Path) -> None:
    reports = sweep(tmp_path)
    assert reports.recorded.new > 0
    # Seven letters are planned; four expired before this as-of (p-001's enrolment letters
    # and pre-session instructions): only the three due ones are sent.
    assert reports.letters_written == 3
    tasks = [json.loads(line) for line in (tmp_path / "tasks.jsonl").read_text().splitlines()]
    assert {t["patient"] for t in tasks} == {"p-001", "p-002"}
    outbox = letters_jsonl(tmp_path)
    sent = {i for i, l in outbox.items() if l["status"] == "sent"}
    assert len(outbox) == 7 and len(sent) == 3
    assert {l["status"] for i, l in outbox.items() if i not in sent} == {"expired"}
    assert all(l["sent_at"] == AS_OF.isoformat() for i, l in outbox.items() if i in sent)
    # filed by send date (the patient's calendar), named by letter id
    files = letter_files(tmp_path)
    assert {f.stem for f in files if f.suffix == ".txt"} == sent
    for f in files:
        send_at = outbox[f.stem]["send_at"]
        assert f.parent.relative_to(tmp_path / "letters").parts == (send_at[:4], send_at[5:7], send_at[8:10])
        assert (f.stat().st_mode & 0o777) == 0o600
    for name in ("tasks.csv", "worklist.html", "fhir/bundle.json"):
        assert (tmp_path / name).stat().st_size > 0


def letters_jsonl(out: Path) -> dict[str, dict]:
    rows = [json.loads(line) for line in (out / "letters.jsonl").read_text().splitlines()]
    assert all(set(r) <= {"id", "patient", "template", "send_at", "expires_at", "status", "sent_at"} for r in rows)
    return {r["id"]: r for r in rows}


def letter_files(out: Path) -> list[Path]:
    return sorted(p for p in (out / "letters").rglob("*") if p.is_file())


def test_each_sweep_sends_what_became_due_since_and_nothing_twice(tmp_path: Path) -> None:
    early = datetime.fromisoformat("2026-03-02T14:30:00+00:00")  # p-002 enrolled 30 min ago
    first = sweep(tmp_path, as_of=early)
    outbox = letters_jsonl(tmp_path)
    # p-002's welcome, and three of p-001's letters whose week is not yet over
    assert first.letters_written == 4
    assert {(l["patient"], l["template"]): l["status"] for l in outbox.values() if l["patient"] == "p-002"} == {
        ("p-002", "welcome"): "sent"}  # the screening that calls for records_pending comes at 10:00 EST
    written = {p: p.stat().st_mtime_ns for p in letter_files(tmp_path)}
    later = sweep(tmp_path, run="run-2")  # the next sweep: records_pending is due now
    assert later.letters_written == 1
    outbox_later = letters_jsonl(tmp_path)
    newly = {i for i, l in outbox_later.items() if l["status"] == "sent" and i not in outbox}
    assert [outbox_later[i]["template"] for i in newly] == ["records_pending"]
    assert outbox_later[newly.pop()]["sent_at"] == AS_OF.isoformat()
    # what was sent before keeps its file untouched and its first sent_at
    assert {p: m for p, m in ((p, p.stat().st_mtime_ns) for p in letter_files(tmp_path)) if p in written} == written
    assert all(outbox_later[i]["sent_at"] == early.isoformat() for i, l in outbox.items() if l["status"] == "sent")
    assert sweep(tmp_path, run="run-3").letters_written == 0


def test_a_rerun_with_the_same_inputs_writes_nothing(tmp_path: Path) -> None:
    sweep(tmp_path)
    before = snapshot(tmp_path)
    reports = sweep(tmp_path, run="run-2")
    assert reports.recorded.new + reports.recorded.changed == 0
    assert reports.letters_written == 0
    assert snapshot(tmp_path) == before  # same bytes, and not even touched


def test_a_failing_letter_sink_retried_does_not_duplicate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clean = tmp_path / "clean"
    sweep(clean)
    real_write = LetterFiles.write
    calls = {"n": 0}

    def flaky(self: LetterFiles, outputs, **callbacks) -> int:  # noqa: ANN001, ANN003
        calls["n"] += 1
        if calls["n"] == 1:  # the first batch fails after writing one letter (and recording it)
            real_write(self, list(outputs)[:1], **callbacks)
            raise OSError("disk full")
        return real_write(self, outputs, **callbacks)

    monkeypatch.setattr(LetterFiles, "write", flaky)
    out = tmp_path / "retried"
    with pytest.raises(OSError, match="disk full"):
        sweep(out)
    sweep(out, run="retry")  # what Prefect's task retry (or a re-run) does
    names = lambda d: sorted(str(p.relative_to(d)) for p in letter_files(d))  # noqa: E731
    assert names(out) == names(clean)
    assert (out / "tasks.jsonl").read_bytes() == (clean / "tasks.jsonl").read_bytes()
    assert (out / "letters.jsonl").read_bytes() == (clean / "letters.jsonl").read_bytes()


def test_a_later_as_of_adds_only_what_is_new_and_updates_status_in_place(tmp_path: Path) -> None:
    sweep(tmp_path)
    first = {json.loads(l)["id"]: json.loads(l) for l in (tmp_path / "tasks.jsonl").read_text().splitlines()}
    letters_before = {p.name: p.stat().st_mtime_ns for p in letter_files(tmp_path)}
    reports = sweep(tmp_path, as_of=LATER, run="run-later")
    later = {json.loads(l)["id"]: json.loads(l) for l in (tmp_path / "tasks.jsonl").read_text().splitlines()}
    assert set(first) <= set(later)  # nothing lost, one line per id
    assert len(later) == len((tmp_path / "tasks.jsonl").read_text().splitlines())
    changed = {i for i in first if first[i]["status"] != later[i]["status"]}
    assert changed, "two weeks on, some open task must have become overdue"
    assert all(later[i]["status"] == "overdue" for i in changed)
    assert reports.recorded.changed >= len(changed)
    # letters already written are left alone
    assert {n: m for n, m in ((p.name, p.stat().st_mtime_ns) for p in letter_files(tmp_path))
            if n in letters_before} == letters_before


def test_a_new_event_adds_its_task_once(tmp_path: Path) -> None:
    sweep(tmp_path)
    events = tmp_path / "events.jsonl"
    events.write_text(EVENTS.read_text() + json.dumps(
        {"id": "e-new", "patient": "p-001", "type": "session_completed", "at": "2026-03-03T11:00:00-05:00",
         "data": {"session": "s-1"}}) + "\n")
    spec = RunSpec.resolve(PATHWAY, tmp_path, AS_OF, "evt")
    report = sequence.replan_patient(spec, PATIENTS, events, "p-001")
    again = sequence.replan_patient(replace(spec, run="evt-2"), PATIENTS, events, "p-001")
    assert report.recorded.new + report.recorded.changed > 0
    assert again.recorded.new == again.recorded.changed == 0
    # The event run writes the patient's record and the worklist (the new task is on it);
    # the next export rebuilds tasks.jsonl.
    (record,) = [name for name in again.documents if name.startswith("patients/")]
    assert "worklist.html" in report.as_json()["documents_rewritten"]
    tasks = json.loads((tmp_path / record).read_text())["tasks"]
    integration = [t for t in tasks if t["patient"] == "p-001" and t["trigger"] == "e-new"
                   and t["step"] == "integration_psychotherapy"]
    assert len(integration) == 1
    assert report.pathway == "ketamine-iv"
    sweep(tmp_path, run="run-2", events=events)
    tasks = [json.loads(l) for l in (tmp_path / "tasks.jsonl").read_text().splitlines()]
    assert [t["id"] for t in tasks if t["trigger"] == "e-new" and t["step"] == "integration_psychotherapy"] \
        == [integration[0]["id"]]


def test_ledger_and_documents_hold_refs_never_names(tmp_path: Path) -> None:
    sweep(tmp_path)
    names = set()
    for line in PATIENTS.read_text().splitlines():
        p = json.loads(line)
        names |= {p["given_name"], p["family_name"]}
    for path in [tmp_path / "ledger.sqlite", tmp_path / "tasks.jsonl", tmp_path / "tasks.csv",
                 tmp_path / "worklist.html", tmp_path / "fhir" / "bundle.json", tmp_path / "rejected.jsonl",
                 tmp_path / "letters.jsonl"]:
        data = path.read_bytes()
        assert not any(n.encode() in data for n in names), path
