"""Sweeps and exports are two jobs: a sweep writes the worklist, the outbox,
`rejected.jsonl` and a change feed of what it changed; `carepath export` writes the
whole-cohort documents from the ledger without re-planning, FHIR NDJSON in parts with a
Bulk Data manifest, and `fhir/bundle.json` only when asked (refused when too large)."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy

from carepath.cli.main import main
from carepath.orchestrator import export, sequence
from carepath.orchestrator.spec import RunSpec
from carepath.sinks.fhir import NAMESPACE
from carepath.sinks.ledger import Ledger

ROOT = Path(__file__).resolve().parents[1]
PATHWAY = str(ROOT / "pathways" / "ketamine-iv.yaml")
DEMO = ROOT / "examples" / "demo"
AS_OF = datetime.fromisoformat("2026-03-05T17:00:00+00:00")
EXPORTED = ("tasks.jsonl", "tasks.csv", "letters.jsonl", "fhir/manifest.json")


def sweep(out: Path, as_of: datetime = AS_OF, run: str = "sweep-1", events: Path = DEMO / "events.jsonl"):  # noqa: ANN201
    return sequence.sweep(RunSpec.resolve(PATHWAY, out, as_of, run, pdf=False), DEMO / "patients.jsonl", events)


def test_a_sweep_writes_the_worklist_and_its_change_feed_not_the_export(tmp_path: Path) -> None:
    out = tmp_path / "out"
    sweep(out)
    assert (out / "worklist.html").is_file() and (out / "rejected.jsonl").is_file()
    assert not any((out / name).exists() for name in EXPORTED) and not (out / "fhir").exists()
    [feed] = sorted((out / "changes").iterdir())
    assert feed.name.startswith("20260305T170000Z-")
    manifest = json.loads((feed / "manifest.json").read_text())
    assert manifest["transactionTime"] == AS_OF.isoformat()
    counts = {o["type"]: o["count"] for o in manifest["output"]}
    assert counts["CarePlan"] == 40 and counts["Task"] > 40  # the first sweep created everything
    for entry in manifest["output"]:
        lines = (feed / entry["url"]).read_text().splitlines()
        assert len(lines) == entry["count"] and all(json.loads(l)["resourceType"] == entry["type"] for l in lines)
    # A sweep that changed nothing adds no feed; one that changed a patient lists only what changed.
    sweep(out, run="sweep-2")
    assert len(list((out / "changes").iterdir())) == 1
    events = tmp_path / "events.jsonl"
    first = json.loads((DEMO / "patients.jsonl").read_text().splitlines()[0])["patient"]
    events.write_text((DEMO / "events.jsonl").read_text() + json.dumps(
        {"id": "e-feed-1", "patient": first, "type": "assessment_recorded", "at": "2026-03-05T16:00:00+00:00",
         "data": {"instrument": "phq9", "items": [3, 3, 3, 3, 3, 3, 3, 3, 3], "total": 27}}) + "\n")
    sweep(out, as_of=AS_OF + timedelta(minutes=30), run="sweep-3", events=events)
    feeds = sorted((out / "changes").iterdir())
    assert len(feeds) == 2
    changed = [json.loads(line) for part in sorted(feeds[1].glob("*.ndjson")) for line in part.read_text().splitlines()]
    assert changed and all(f'"Patient/{first}"' in json.dumps(r) for r in changed)


def test_export_writes_the_documents_from_the_ledger_in_parts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    from carepath.sinks import fhir_ndjson

    out = tmp_path / "out"
    sweep(out)
    monkeypatch.setattr(fhir_ndjson, "PART_SIZE", 50)  # several parts from the demo cohort
    target = tmp_path / "export"
    assert main(["export", PATHWAY, "--from", str(out), "--out", str(target)]) == 0
    assert all((target / name).is_file() for name in EXPORTED) and not (target / "fhir" / "bundle.json").exists()
    manifest = json.loads((target / "fhir" / "manifest.json").read_text())
    tasks = [o for o in manifest["output"] if o["type"] == "Task"]
    assert [o["url"] for o in tasks][:2] == ["Task.0001.ndjson", "Task.0002.ndjson"]
    assert all(o["count"] == 50 for o in tasks[:-1]) and 0 < tasks[-1]["count"] <= 50
    assert sum(o["count"] for o in tasks) == len((target / "tasks.jsonl").read_text().splitlines())
    assert "tasks.jsonl: " in capsys.readouterr().out
    # Again: nothing changed in the ledger, nothing is rewritten.
    before = {p: p.stat().st_mtime_ns for p in target.rglob("*") if p.is_file()}
    assert main(["export", PATHWAY, "--from", str(out), "--out", str(target)]) == 0
    assert {p: p.stat().st_mtime_ns for p in target.rglob("*") if p.is_file()} == before


def test_the_bundle_only_on_request_and_refused_when_too_large(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    sweep(out)
    assert main(["export", PATHWAY, "--from", str(out), "--out", str(tmp_path / "a"), "--bundle"]) == 0
    bundle = json.loads((tmp_path / "a" / "fhir" / "bundle.json").read_text())
    assert bundle["resourceType"] == "Bundle" and len(bundle["entry"]) > 100
    monkeypatch.setattr(export, "BUNDLE_MAX", 100)
    assert main(["export", PATHWAY, "--from", str(out), "--out", str(tmp_path / "b"), "--bundle"]) == 1
    err = capsys.readouterr().err
    assert "more than the 100 a FHIR server takes in one transaction" in err and "Traceback" not in err
    assert not (tmp_path / "b" / "fhir" / "bundle.json").exists()


def test_export_without_a_ledger_or_a_sweep_is_refused_clearly(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", PATHWAY, "--from", str(tmp_path / "nothing"), "--out", str(tmp_path / "x")]) == 1
    assert "holds no ledger.sqlite" in capsys.readouterr().err
    assert main(["export", PATHWAY, "--ledger", f"sqlite:///{tmp_path / 'empty.sqlite'}",
                 "--out", str(tmp_path / "x")]) == 1
    assert "holds no sweep of ketamine-iv" in capsys.readouterr().err
    with pytest.raises(SystemExit) as usage:  # --ledger or --from is required
        main(["export", PATHWAY, "--out", str(tmp_path / "x")])
    assert usage.value.code == 2


def _assessment(event_id: str, patient: str, at: str) -> str:
    return json.dumps({"id": event_id, "patient": patient, "type": "assessment_recorded", "at": at,
                       "data": {"instrument": "phq9", "items": [3, 3, 3, 3, 3, 3, 3, 3, 3], "total": 27}}) + "\n"


def _exported(folder: Path) -> dict[str, dict]:
    """The resources of an export's fhir/ folder, by `Type/id`, as its manifest lists them."""
    manifest = json.loads((folder / "fhir" / "manifest.json").read_text())
    found: dict[str, dict] = {}
    for entry in manifest["output"]:
        for line in (folder / "fhir" / entry["url"]).read_text().splitlines():
            resource = json.loads(line)
            found[f"{resource['resourceType']}/{resource['id']}"] = resource
    return found


def test_export_since_a_sweep_holds_exactly_what_later_sweeps_and_event_runs_changed(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    sweep(out)
    [first_feed] = sorted((out / "changes").iterdir())
    stamp = first_feed.name
    patients = [json.loads(line)["patient"] for line in (DEMO / "patients.jsonl").read_text().splitlines()]
    swept, replanned = patients[0], patients[1]
    # A later sweep re-plans one patient after an event line; an event-triggered run another.
    events = tmp_path / "events.jsonl"
    events.write_text((DEMO / "events.jsonl").read_text()
                      + _assessment("e-since-1", swept, "2026-03-05T16:00:00+00:00"))
    sweep(out, as_of=AS_OF + timedelta(minutes=30), run="sweep-2", events=events)
    with events.open("a") as handle:
        handle.write(_assessment("e-since-2", replanned, "2026-03-05T17:10:00+00:00"))
    spec = RunSpec.resolve(PATHWAY, out, AS_OF + timedelta(minutes=40), "event-1", pdf=False)
    sequence.replan_patient(spec, DEMO / "patients.jsonl", events, replanned)
    assert len(list((out / "changes").iterdir())) == 2  # the event run wrote no feed of its own

    whole, since = tmp_path / "whole", tmp_path / "since"
    assert main(["export", PATHWAY, "--from", str(out), "--out", str(whole)]) == 0
    assert main(["export", PATHWAY, "--from", str(out), "--out", str(since), "--since", stamp]) == 0
    everything, changed = _exported(whole), _exported(since)
    assert not (since / "tasks.jsonl").exists()
    # Exactly what changed after the first sweep: the two patients' changed resources (as the
    # whole export shows them now), and letters whose status a later send changed; nobody else.
    ledger = Ledger(f"sqlite:///{out / 'ledger.sqlite'}")
    try:
        with ledger.engine.connect() as conn:
            by_run = {r.id for r in conn.execute(sqlalchemy.text(
                "SELECT id FROM outputs WHERE retired = 0 AND updated_run IN ('sweep-2', 'event-1')"))}
            sent = {r.output_id for r in conn.execute(sqlalchemy.text(
                "SELECT output_id FROM letter_sends s JOIN outputs o ON o.id = s.output_id WHERE o.retired = 0"))}
    finally:
        ledger.close()
    fhir_ids = {str(uuid.uuid5(NAMESPACE, f"ketamine-iv/{output}")) for output in by_run | sent}
    expected = {key for key, resource in everything.items() if resource["id"] in fhir_ids}
    assert set(changed) == expected and len(changed) < len(everything)
    assert all(changed[key] == everything[key] for key in changed)
    patients_changed = {json.dumps(r).split('"Patient/')[1].split('"')[0] for r in changed.values()}
    assert {swept, replanned} <= patients_changed
    event_run = {str(uuid.uuid5(NAMESPACE, f"ketamine-iv/{output}")) for output in by_run} - {
        str(uuid.uuid5(NAMESPACE, f"ketamine-iv/{output}")) for output in sent}
    assert any(f'"Patient/{replanned}"' in json.dumps(r) and r["id"] in event_run for r in changed.values())
    manifest = json.loads((since / "fhir" / "manifest.json").read_text())
    assert manifest["request"].endswith(f"?_since={stamp}")
    assert manifest["transactionTime"] == (AS_OF + timedelta(minutes=30)).isoformat()  # the last sweep
    # An ISO instant stands for the last sweep at or before it: the same export.
    assert main(["export", PATHWAY, "--from", str(out), "--out", str(tmp_path / "iso"),
                 "--since", "2026-03-05T17:10:00+00:00"]) == 0
    assert _exported(tmp_path / "iso") == changed
    # The whole export over the folder a _since export wrote rewrites it whole.
    assert main(["export", PATHWAY, "--from", str(out), "--out", str(since)]) == 0
    assert _exported(since) == everything
    capsys.readouterr()


@pytest.mark.parametrize(("since", "message"), [
    ("yesterday", "neither a sweep stamp"),
    ("2026-03-05T17:00:00", "neither a sweep stamp"),  # no UTC offset
    ("20260305T170000Z-999999", "no sweep of ketamine-iv with that stamp"),
    ("2020-01-01T00:00:00+00:00", "no sweep of ketamine-iv at or before that instant"),
])
def test_export_since_an_unknown_or_malformed_stamp_is_refused(
        since: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    sweep(out)
    capsys.readouterr()
    assert main(["export", PATHWAY, "--from", str(out), "--out", str(tmp_path / "x"), "--since", since]) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and not (tmp_path / "x").exists()


def test_export_since_refuses_a_folder_holding_the_whole_export(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    sweep(out)
    [feed] = (out / "changes").iterdir()
    assert main(["export", PATHWAY, "--from", str(out), "--out", str(tmp_path / "e")]) == 0
    before = (tmp_path / "e" / "fhir" / "manifest.json").read_bytes()
    assert main(["export", PATHWAY, "--from", str(out), "--out", str(tmp_path / "e"), "--since", feed.name]) == 1
    assert "holds a whole-cohort export" in capsys.readouterr().err
    assert (tmp_path / "e" / "fhir" / "manifest.json").read_bytes() == before
