"""An event-triggered re-plan writes that patient's record, not the cohort-wide documents;
the next sweep rebuilds those. Without Prefect: the patient flow calls exactly these."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import fsspec

from carepath.orchestrator import sequence
from carepath.orchestrator.spec import RunSpec
from carepath.sinks.patient_record import record_name
from carepath.sinks.storage import DOCUMENTS_ENV
from test_emission import AS_OF, EVENTS, PATHWAY, PATIENTS, snapshot, sweep

# The export's documents (an event run writes the bounded worklist, not these).
COHORT_DOCUMENTS = ("tasks.jsonl", "tasks.csv", "letters.jsonl", "fhir/bundle.json",
                    "fhir/Task.0001.ndjson", "fhir/CarePlan.0001.ndjson", "fhir/CommunicationRequest.0001.ndjson",
                    "fhir/manifest.json")


def with_new_session(tmp_path: Path) -> Path:
    events = tmp_path / "events.jsonl"
    events.write_text(EVENTS.read_text() + json.dumps(
        {"id": "e-new", "patient": "p-001", "type": "session_completed", "at": "2026-03-03T11:00:00-05:00",
         "data": {"session": "s-2"}}) + "\n")  # a new session (s-1 again would be one reminder)
    return events


@contextmanager
def documents_at(location: Path | str | None) -> Iterator[None]:
    before = os.environ.get(DOCUMENTS_ENV)
    if location is not None:
        os.environ[DOCUMENTS_ENV] = str(location)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(DOCUMENTS_ENV, None)
        else:
            os.environ[DOCUMENTS_ENV] = before


def replan(out: Path | str, events: Path, ledger_out: Path, run: str = "evt") -> str:
    """What the patient flow does (the orchestrator's one-patient sequence): re-plan one
    patient, then write its record; the record's name. Documents go to `out` when it is not
    the run's folder (a shared location)."""
    with documents_at(out if str(out) != str(ledger_out) else None):  # read once, when the run is resolved
        spec = RunSpec.resolve(PATHWAY, ledger_out, AS_OF, run, pdf=False)
        summary = sequence.replan_patient(spec, PATIENTS, events, "p-001")
    (name,) = [n for n in summary.documents if n.startswith("patients/")]
    return name


def test_a_one_patient_replan_leaves_cohort_documents_alone(tmp_path: Path) -> None:
    out = tmp_path / "out"
    sweep(out)
    before = snapshot(out)
    assert all(name in before for name in COHORT_DOCUMENTS)
    name = replan(out, with_new_session(tmp_path), out)
    after = snapshot(out)
    for document in COHORT_DOCUMENTS:
        assert after[document] == before[document], f"{document} was rewritten by a one-patient re-plan"
    assert name == record_name("p-001") and name.startswith("patients/") and name in after
    # Besides the record, only the letter the new session made due (its own file).
    added = set(after) - set(before)
    assert {n for n in added if not n.startswith("letters/")} == {name}

    record = json.loads((out / name).read_text())
    assert record["patient"] == "p-001" and record["as_of"] == AS_OF.isoformat()
    assert record["pathway"]["id"] == "ketamine-iv" and record["plan"]["status"]
    new = [t for t in record["tasks"] if t["trigger"] == "e-new" and t["step"] == "integration_psychotherapy"]
    assert len(new) == 1 and new[0]["patient"] == "p-001"
    assert all(t["patient"] == "p-001" for t in record["tasks"])
    # Letters as letters.jsonl lists them, with their outbox status.
    outbox = {json.loads(line)["id"]: json.loads(line) for line in (out / "letters.jsonl").read_text().splitlines()}
    sent_now = {Path(n).stem for n in added if n.startswith("letters/")}
    assert sent_now and sent_now <= {l["id"] for l in record["letters"] if l["status"] == "sent"}
    for letter in record["letters"]:
        if letter["id"] in outbox and outbox[letter["id"]]["status"] == "sent":
            assert letter["status"] == "sent" and letter["sent_at"] == outbox[letter["id"]]["sent_at"]
    # No names in it.
    text = (out / name).read_text()
    for line in PATIENTS.read_text().splitlines():
        patient = json.loads(line)
        assert patient["given_name"] not in text and patient["family_name"] not in text

    # The next sweep rebuilds the cohort-wide documents with the new task.
    sweep(out, run="run-2", events=tmp_path / "events.jsonl")
    tasks = [json.loads(line) for line in (out / "tasks.jsonl").read_text().splitlines()]
    assert [t["id"] for t in tasks if t["trigger"] == "e-new" and t["step"] == "integration_psychotherapy"] \
        == [new[0]["id"]]
    assert snapshot(out)["fhir/bundle.json"] != before["fhir/bundle.json"]


def test_a_second_event_updates_the_same_record(tmp_path: Path) -> None:
    sweep(tmp_path)
    events = with_new_session(tmp_path)
    name = replan(tmp_path, events, tmp_path)
    first = json.loads((tmp_path / name).read_text())
    events.write_text(events.read_text() + json.dumps(
        {"id": "e-done", "patient": "p-001", "type": "task_completed", "at": "2026-03-03T11:30:00-05:00",
         "data": {"task": next(t["id"] for t in first["tasks"] if t["trigger"] == "e-new")}}) + "\n")
    assert replan(tmp_path, events, tmp_path, run="evt-2") == name
    second = json.loads((tmp_path / name).read_text())
    done = {t["id"]: t["status"] for t in second["tasks"]}
    assert done[next(t["id"] for t in first["tasks"] if t["trigger"] == "e-new")] == "done"
    assert len(list((tmp_path / "patients").rglob("*.json"))) == 1


def test_record_written_to_a_shared_fsspec_location(tmp_path: Path) -> None:
    sweep(tmp_path)
    url = "memory://carepath-records-test/out"
    name = replan(url, with_new_session(tmp_path), tmp_path)
    fs = fsspec.filesystem("memory")
    record = json.loads(fs.cat_file(f"/carepath-records-test/out/{name}"))
    assert record["patient"] == "p-001"
    assert not (tmp_path / name).exists()
    fs.rm("/carepath-records-test", recursive=True)


def test_record_names_spread_refs_over_folders_and_stay_safe() -> None:
    folders = {record_name(f"p-{i:05d}").split("/")[1] for i in range(2000)}
    assert len(folders) == 256
    folder, bucket, leaf = record_name("../etc/passwd").split("/")
    assert folder == "patients" and len(bucket) == 2 and leaf == "..%2Fetc%2Fpasswd.json"


def test_documents_go_to_the_shared_location_letters_stay_local(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    url = "memory://carepath-shared-test/documents"
    monkeypatch.setenv("CAREPATH_DOCUMENTS_URL", url)
    out = tmp_path / "out"
    sweep(out)
    fs = fsspec.filesystem("memory")
    shared = "/carepath-shared-test/documents"
    for document in COHORT_DOCUMENTS:
        assert fs.exists(f"{shared}/{document}"), document
        assert not (out / document).exists(), document
    assert list((out / "letters").rglob("*.txt"))  # letters and their 0600 files stay on the local disk
    tasks = [json.loads(line) for line in fs.cat_file(f"{shared}/tasks.jsonl").decode().splitlines()]
    assert {t["patient"] for t in tasks} == {"p-001", "p-002"}
    name = replan(out, with_new_session(tmp_path), out)
    assert fs.exists(f"{shared}/{name}") and not (out / name).exists()
    fs.rm("/carepath-shared-test", recursive=True)


def test_a_file_url_location_gets_the_same_documents_as_the_output_folder(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    sweep(tmp_path / "plain")
    shared = tmp_path / "shared"
    monkeypatch.setenv("CAREPATH_DOCUMENTS_URL", shared.as_uri())
    sweep(tmp_path / "out")
    for document in COHORT_DOCUMENTS:
        assert (shared / document).read_bytes() == (tmp_path / "plain" / document).read_bytes(), document
        assert not (tmp_path / "out" / document).exists()
