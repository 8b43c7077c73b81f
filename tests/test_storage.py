"""The output location of the documents: a folder, a `file://` URL (the same folder) or
another fsspec URL (`memory://` here), each replacing a document in one step."""

from __future__ import annotations

import stat
from pathlib import Path

import fsspec
import pytest

from carepath.sinks.storage import FsspecStorage, LocalStorage, storage_for


@pytest.fixture
def memory():
    fs = fsspec.filesystem("memory")
    yield "memory://carepath-storage-test"
    if fs.exists("/carepath-storage-test"):
        fs.rm("/carepath-storage-test", recursive=True)


def test_a_path_and_a_file_url_are_the_same_local_folder(tmp_path: Path) -> None:
    assert isinstance(storage_for(tmp_path), LocalStorage)
    assert isinstance(storage_for(str(tmp_path)), LocalStorage)
    by_url = storage_for(tmp_path.as_uri())
    assert isinstance(by_url, LocalStorage) and by_url.root == tmp_path
    with by_url.writer("fhir/a.ndjson", mode=0o600) as handle:
        handle.write(b"{}\n")
    written = tmp_path / "fhir" / "a.ndjson"
    assert written.read_bytes() == b"{}\n"
    assert stat.S_IMODE(written.stat().st_mode) == 0o600  # local disks keep file modes
    assert by_url.url("fhir/a.ndjson") == written.resolve().as_uri()


def test_fsspec_url_writes_replace_in_one_step(memory: str) -> None:
    store = storage_for(memory)
    assert isinstance(store, FsspecStorage)
    with store.writer("fhir/a.ndjson") as handle:
        handle.write(b"old\n")
    with pytest.raises(RuntimeError):
        with store.writer("fhir/a.ndjson") as handle:
            handle.write(b"half of the new")
            raise RuntimeError("killed midway")
    assert store.read_bytes("fhir/a.ndjson") == b"old\n"
    fs = fsspec.filesystem("memory")
    assert fs.ls("/carepath-storage-test/fhir", detail=False) == ["/carepath-storage-test/fhir/a.ndjson"]
    with store.writer("fhir/a.ndjson") as handle:
        handle.write(b"new\n")
    assert store.read_bytes("fhir/a.ndjson") == b"new\n" and store.exists("fhir/a.ndjson")
    assert not store.exists("fhir/b.ndjson")
    assert store.url("fhir/a.ndjson") == f"{memory}/fhir/a.ndjson"


@pytest.mark.parametrize("name", ["", "/etc/passwd", "../x", "a/../../x", "a//b", "./a"])
def test_names_stay_inside_the_location(tmp_path: Path, memory: str, name: str) -> None:
    for store in (storage_for(tmp_path), storage_for(memory)):
        with pytest.raises(ValueError, match="relative path"):
            with store.writer(name) as handle:
                handle.write(b"x")


def test_run_refuses_a_documents_location_it_cannot_write_before_prefect(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    # No Prefect server configured: a run that got as far as Prefect would start its
    # temporary server in this home, and leave its database there.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env["PREFECT_HOME"] = str(tmp_path / "prefect-home")
    proc = subprocess.run([sys.executable, "-m", "carepath.cli.main", "run", str(root / "pathways" / "ketamine-iv.yaml"),
                           "--patients", str(root / "examples" / "patients.jsonl"),
                           "--events", str(root / "examples" / "events.jsonl"), "--out", str(tmp_path / "o")],
                          capture_output=True, text=True, timeout=120,
                          env={**env, "CAREPATH_DOCUMENTS_URL": "nosuchprotocol://bucket/carepath"})
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "CAREPATH_DOCUMENTS_URL" in proc.stderr and "nosuchprotocol" in proc.stderr
    assert not (tmp_path / "o").exists()
    assert not any((tmp_path / "prefect-home").rglob("*.db"))  # Prefect's server never started


def test_the_run_summary_says_where_the_documents_are(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from types import SimpleNamespace

    from carepath.runtime.console import summary_text

    summary = {"pathway": "ketamine-iv", "version": "1.0.0", "as_of": "2026-03-03T17:00:00+00:00", "patients": 2,
               "events": 5, "rejected_lines": 0, "letters_written": 1, "letters_planned": 1, "overdue": 0, "open_tasks": [],
               "patients_needing_attention": 0, "letters_by_status": {"scheduled": 1, "due": 0, "expired": 0,
                                                                      "withdrawn": 0},
               "outputs": {"new": 1, "changed": 0, "unchanged": 0, "retired": 0}}
    result = SimpleNamespace(summary=summary, out=tmp_path, flow_run_id="run-1", api_url=None)
    local = summary_text(result)
    assert f"worklist: {tmp_path / 'worklist.html'}" in local
    assert f"letters: 1 sent this run under {tmp_path / 'letters'}" in local
    monkeypatch.setenv("CAREPATH_DOCUMENTS_URL", "memory://shared/ketamine-iv")
    shared = summary_text(result)
    assert "worklist: memory://shared/ketamine-iv/worklist.html" in shared
    assert "FHIR Bulk Data NDJSON: memory://shared/ketamine-iv/fhir/manifest.json" in shared
    assert "(see memory://shared/ketamine-iv/letters.jsonl)" in shared
    assert f"under {tmp_path / 'letters'}" in shared  # the letters stay on the local disk


def test_a_sweep_clears_temporaries_a_killed_writer_left_on_the_shared_store(tmp_path: Path, memory: str,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from carepath.orchestrator.emission import clear_leftovers

    fs = fsspec.filesystem("memory")
    store = storage_for(memory)
    with store.writer("fhir/bundle.json") as handle:
        handle.write(b"{}")
    for left in ("/carepath-storage-test/.tasks.jsonl.1.tmp", "/carepath-storage-test/fhir/.Task.ndjson.2.tmp"):
        fs.pipe_file(left, b"half")
    monkeypatch.setenv("CAREPATH_DOCUMENTS_URL", memory)
    assert clear_leftovers(tmp_path) == 2
    assert sorted(fs.find("/carepath-storage-test")) == ["/carepath-storage-test/fhir/bundle.json"]


def test_both_kinds_of_location_are_storages(tmp_path: Path, memory: str) -> None:
    from carepath.sinks.storage import Storage

    local, shared = storage_for(tmp_path), storage_for(memory)
    assert isinstance(local, Storage) and isinstance(shared, Storage)
    assert local.local_path("tasks.jsonl") == tmp_path / "tasks.jsonl" and shared.local_path("tasks.jsonl") is None
    assert local.shown("tasks.jsonl") == str(tmp_path / "tasks.jsonl")
    assert shared.shown("tasks.jsonl") == f"{memory}/tasks.jsonl"
