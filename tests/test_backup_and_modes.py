"""Files protect what they hold (owner-only), and a ledger backup taken while a sweep
writes is consistent and restores by copying it back."""

from __future__ import annotations

import shutil
import stat
import subprocess
import sys
import threading
from datetime import datetime
from pathlib import Path

import pytest

from carepath.orchestrator import sequence
from carepath.orchestrator.spec import RunSpec
from carepath.sinks.ledger import Ledger, LedgerProblem
from carepath.sinks.ledger_backup import backup_ledger

ROOT = Path(__file__).resolve().parents[1]
PATHWAY = ROOT / "pathways" / "ketamine-iv.yaml"
DEMO = ROOT / "examples" / "demo"
AS_OF = datetime.fromisoformat("2026-03-05T17:00:00+00:00")


def _sweep(out: Path, run: str = "first", export: bool = False) -> dict:
    spec = RunSpec.resolve(PATHWAY, out, AS_OF, run, pdf=False)
    return sequence.sweep(spec, DEMO / "patients.jsonl", DEMO / "events.jsonl", export=export,
                          bundle=export).as_json()


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("modes") / "out"
    _sweep(out, export=True)  # the export's documents too: every kind of file a run writes
    ref = "p-000003"
    spec = RunSpec.resolve(PATHWAY, out, AS_OF, "event", pdf=False)
    sequence.replan_patient(spec, DEMO / "patients.jsonl", DEMO / "events.jsonl", ref)
    return out


def test_every_file_a_run_writes_is_owner_only(swept: Path) -> None:
    files = [p for p in swept.rglob("*") if p.is_file()]
    names = {p.relative_to(swept).as_posix() for p in files}
    for expected in ("ledger.sqlite", "tasks.jsonl", "tasks.csv", "worklist.html", "letters.jsonl",
                     "rejected.jsonl", "fhir/bundle.json", "fhir/Task.0001.ndjson", "fhir/manifest.json"):
        assert expected in names, sorted(names)
    assert any(n.startswith("patients/") for n in names)  # the event run's patient record
    assert any(n.startswith("changes/") for n in names)  # a sweep's change feed
    open_to_others = sorted(n for p, n in ((p, p.relative_to(swept).as_posix()) for p in files)
                            if stat.S_IMODE(p.stat().st_mode) & 0o077)
    assert open_to_others == []


def test_an_existing_ledger_readable_by_others_is_tightened(tmp_path: Path) -> None:
    out = tmp_path / "out"
    Ledger(f"sqlite:///{out / 'ledger.sqlite'}").close()
    (out / "ledger.sqlite").chmod(0o644)
    Ledger(f"sqlite:///{out / 'ledger.sqlite'}").close()
    assert stat.S_IMODE((out / "ledger.sqlite").stat().st_mode) == 0o600


def _outputs(ledger_file: Path) -> list[tuple]:
    ledger = Ledger(f"sqlite:///{ledger_file}")
    try:
        with ledger.engine.connect() as conn:
            return sorted(tuple(r) for r in conn.exec_driver_sql("SELECT pathway, id, kind, patient, digest FROM outputs"))
    finally:
        ledger.close()


def test_a_backup_taken_while_a_writer_commits_is_consistent_and_restores(swept: Path, tmp_path: Path) -> None:
    source = swept / "ledger.sqlite"
    before = _outputs(source)
    batch = 250
    writer = Ledger(f"sqlite:///{source}")
    with writer.engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE IF NOT EXISTS backup_probe (n INTEGER NOT NULL)")
    stop = threading.Event()

    def write() -> None:  # transactions of `batch` rows each, as fast as they go
        while not stop.is_set():
            with writer.engine.begin() as conn:
                conn.exec_driver_sql("INSERT INTO backup_probe (n) VALUES " + ",".join(["(1)"] * batch))

    thread = threading.Thread(target=write)
    thread.start()
    try:
        copies = []
        for n in range(3):
            done = backup_ledger(f"sqlite:///{source}", tmp_path / f"ledger-{n}.sqlite")
            copies.append(done.target)
    finally:
        stop.set()
        thread.join()
        writer.close()
    for copy in copies:
        assert stat.S_IMODE(copy.stat().st_mode) == 0o600
        import sqlite3

        with sqlite3.connect(copy) as db:
            (rows,) = db.execute("SELECT COUNT(*) FROM backup_probe").fetchone()
        assert rows % batch == 0  # whole transactions only
        assert _outputs(copy) == before  # opens as a ledger (migrations current), holding what was recorded

    # Restore: copy the backup back as the ledger of a folder holding the letters; the next
    # run finds every letter recorded and sends none again.
    restored = tmp_path / "restored"
    shutil.copytree(swept, restored, ignore=shutil.ignore_patterns("ledger.sqlite*"))
    shutil.copy(copies[-1], restored / "ledger.sqlite")
    again = _sweep(restored, "after-restore")
    assert again["letters_written"] == 0 and again["outputs"]["new"] == 0


def test_backup_refuses_postgresql_and_a_missing_ledger_in_words(tmp_path: Path) -> None:
    with pytest.raises(LedgerProblem, match="pg_dump"):
        backup_ledger("postgresql+psycopg://carepath@db.example/carepath", tmp_path / "x")
    with pytest.raises(LedgerProblem, match="no ledger at"):
        backup_ledger(str(tmp_path / "nowhere.sqlite"), tmp_path / "x")
    result = subprocess.run([sys.executable, "-m", "carepath.cli.main", "backup", "--ledger",
                             "postgresql://carepath:secret@db.example/carepath", "--to", str(tmp_path / "x")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "pg_dump" in result.stderr and "secret" not in result.stderr
