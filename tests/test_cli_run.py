"""`carepath run` and `carepath emit` refuse bad input before Prefect starts (seconds
saved, and no half-made flow run for a typo): positioned messages and contract exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PATHWAY = str(ROOT / "pathways" / "ketamine-iv.yaml")
PATIENTS = str(ROOT / "examples" / "patients.jsonl")
EVENTS = str(ROOT / "examples" / "events.jsonl")


def carepath(*args: str, stdin: str | None = None,
             env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "carepath.cli.main", *args], capture_output=True, text=True,
                          timeout=120, input=stdin, env=env)


def without_prefect_server(tmp_path: Path) -> dict[str, str]:
    """No Prefect server configured, Prefect's home in tmp: a run that got as far as Prefect
    would start its temporary server there, and that server leaves its database behind."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env["PREFECT_HOME"] = str(tmp_path / "prefect-home")
    return env


def prefect_started(tmp_path: Path) -> bool:
    return any((tmp_path / "prefect-home").rglob("*.db"))


def test_run_with_an_invalid_pathway_prints_diagnostics_and_exits_1_without_prefect(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("id: x\nversion: 1.0.0\nid: twice\n")
    proc = carepath("run", str(bad), "--patients", PATIENTS, "--events", EVENTS, "--out", str(tmp_path / "o"),
                    env=without_prefect_server(tmp_path))
    assert proc.returncode == 1
    assert f"{bad}:3:1:" in proc.stderr and "Traceback" not in proc.stderr
    assert not prefect_started(tmp_path)
    assert not (tmp_path / "o").exists()


def test_run_with_a_missing_events_file_exits_1(tmp_path: Path) -> None:
    proc = carepath("run", PATHWAY, "--patients", PATIENTS, "--events", str(tmp_path / "nope.jsonl"),
                    "--out", str(tmp_path / "o"))
    assert proc.returncode == 1
    assert "nope.jsonl:1:1: CP100" in proc.stderr


def test_run_with_a_naive_as_of_is_a_usage_error(tmp_path: Path) -> None:
    proc = carepath("run", PATHWAY, "--patients", PATIENTS, "--events", EVENTS, "--out", str(tmp_path),
                    "--as-of", "2026-03-03T17:00:00")
    assert proc.returncode == 2 and "no UTC offset" in proc.stderr


def test_run_with_a_bad_migration_file_exits_1(tmp_path: Path) -> None:
    migration = tmp_path / "m.yaml"
    migration.write_text("pathway: ketamine-iv\nfrom: '1.0.0'\n")
    proc = carepath("run", PATHWAY, "--patients", PATIENTS, "--events", EVENTS, "--out", str(tmp_path / "o"),
                    "--migration", str(migration))
    assert proc.returncode == 1 and "'to' is missing" in proc.stderr


@pytest.mark.slow  # six `carepath emit` subprocesses, each importing Prefect
def test_emit_appends_a_valid_event_and_refuses_a_bad_one(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text(Path(EVENTS).read_text())
    new = {"id": "e-new", "patient": "p-001", "type": "session_completed", "at": "2026-03-04T10:00:00-05:00",
           "data": {"session": "s-2"}}
    proc = carepath("emit", PATHWAY, "--patients", PATIENTS, "--events", str(events), "-", stdin=json.dumps(new))
    assert proc.returncode == 0, proc.stderr
    assert "no Prefect server configured" in proc.stdout
    assert json.loads(events.read_text().splitlines()[-1]) == new

    again = carepath("emit", PATHWAY, "--patients", PATIENTS, "--events", str(events), json.dumps(new))
    assert again.returncode == 0 and events.read_text().count('"e-new"') == 1  # re-announced, not duplicated

    clash = dict(new, type="session_missed")
    proc = carepath("emit", PATHWAY, "--patients", PATIENTS, "--events", str(events), json.dumps(clash))
    assert proc.returncode == 1 and "already used" in proc.stderr
    naive = dict(new, id="e-naive", at="2026-03-04T10:00:00")
    proc = carepath("emit", PATHWAY, "--patients", PATIENTS, "--events", str(events), json.dumps(naive))
    assert proc.returncode == 1 and "no UTC offset" in proc.stderr
    unknown = dict(new, id="e-who", patient="p-999")
    proc = carepath("emit", PATHWAY, "--patients", PATIENTS, "--events", str(events), json.dumps(unknown))
    assert proc.returncode == 1
    assert events.read_text().count("\n") == Path(EVENTS).read_text().count("\n") + 1


def test_run_with_the_email_channel_but_no_smtp_server_set_exits_1_before_prefect(tmp_path: Path) -> None:
    env = {k: v for k, v in without_prefect_server(tmp_path).items() if not k.startswith("CAREPATH_SMTP_")}
    for channel, expected in (("email", "CAREPATH_SMTP_HOST and CAREPATH_SMTP_FROM"), ("fax", "file, email, print")):
        proc = subprocess.run([sys.executable, "-m", "carepath.cli.main", "run", PATHWAY, "--patients", PATIENTS,
                               "--events", EVENTS, "--out", str(tmp_path / "o")], capture_output=True, text=True,
                              timeout=120, env={**env, "CAREPATH_LETTER_CHANNEL": channel})
        assert proc.returncode == 1 and expected in proc.stderr and "Traceback" not in proc.stderr
        assert not prefect_started(tmp_path) and not (tmp_path / "o").exists()
