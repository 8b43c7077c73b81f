"""End to end through Prefect: the sweep flow recorded by a Prefect API (one session-scoped
test harness: it costs ~14 s to start), re-runs, a SIGKILL midway, and the PHI boundary
(no patient name in Prefect's parameters, run names, logs or artifacts)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PATHWAY = ROOT / "pathways" / "ketamine-iv.yaml"
PATIENTS = ROOT / "examples" / "patients.jsonl"
EVENTS = ROOT / "examples" / "events.jsonl"
AS_OF = "2026-03-03T17:00:00+00:00"
CARE_PATH = str(Path(sys.executable).with_name("carepath"))

pytestmark = pytest.mark.slow  # a Prefect server and `carepath run` subprocesses


@pytest.fixture(scope="session")
def prefect_api():
    """A Prefect API for the whole session; yields its URL for subprocesses too."""
    from prefect.settings import PREFECT_API_URL, PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=60):
        with temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
            yield PREFECT_API_URL.value()


from test_delivery import smtp  # noqa: E402,F401 - the real local SMTP server fixture


def names_in(patients: Path) -> set[str]:
    found: set[str] = set()
    for line in patients.read_text().splitlines():
        p = json.loads(line)
        found |= {p["given_name"], p["family_name"]}
    return found


def run_sweep(out: Path, **extra):
    from carepath.runtime.flows import sweep

    return sweep(pathway=str(PATHWAY), patients=str(PATIENTS), events=str(EVENTS), out=str(out), as_of=AS_OF,
                 return_state=True, **extra)


def test_sweep_is_a_recorded_flow_run_that_emits_everything_once(prefect_api, tmp_path: Path) -> None:
    state = run_sweep(tmp_path, export=True)
    assert state.is_completed(), state.message
    summary = state.result()
    assert summary["patients"] == 2 and summary["letters_written"] == 3 and summary["rejected_lines"] == 1
    assert summary["letters_by_status"] == {"scheduled": 0, "due": 3, "expired": 4, "withdrawn": 0}
    for name in ("tasks.jsonl", "tasks.csv", "worklist.html", "fhir/manifest.json", "rejected.jsonl", "letters.jsonl"):
        assert (tmp_path / name).exists(), name
    assert not (tmp_path / ".carepath-work").exists(), "shard files hold names: removed after the run"

    again = run_sweep(tmp_path)
    assert again.result()["outputs"]["new"] == 0 and again.result()["letters_written"] == 0

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, LogFilter, LogFilterFlowRunId

    async def recorded(flow_run_id):
        async with get_client() as client:
            run = await client.read_flow_run(flow_run_id)
            tasks = await client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
            logs = await client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
            artifacts = await client.read_artifacts()
            return run, tasks, logs, artifacts

    run, tasks, logs, artifacts = asyncio.run(recorded(state.state_details.flow_run_id))
    assert run.name.startswith("sweep-ketamine-iv-as-of-")
    # announce-facts: the examples' urgent work was new, so the first sweep told on-call of it.
    assert sorted(t.name for t in tasks) == ["announce-facts", "archive-pathway-version", "choose-patients",
                                             "deliver-letters", "export-documents", "plan-and-emit-shard-0000",
                                             "report-cohort", "write-changes", "write-worklist"]
    keys = {a.key for a in artifacts}
    assert {"carepath-sweep-ketamine-iv-summary", "carepath-sweep-ketamine-iv-workload",
            "carepath-sweep-ketamine-iv-letters"} <= keys
    everything = json.dumps([run.model_dump(mode="json"), [t.model_dump(mode="json") for t in tasks],
                             [l.model_dump(mode="json") for l in logs], [a.model_dump(mode="json") for a in artifacts]])
    assert "p-001" in everything  # refs are allowed (the urgent table lists them) ...
    assert not [n for n in names_in(PATIENTS) if n in everything]  # ... names never


def cohort_of(n: int, folder: Path) -> tuple[Path, Path]:
    """n patients: copies of the two example patients (and their events) under new refs."""
    base_patients = [json.loads(l) for l in PATIENTS.read_text().splitlines()]
    base_events = [l for l in EVENTS.read_text().splitlines() if l.strip()]
    patients, events = [], []
    for i in range(n):
        p = dict(base_patients[i % 2], patient=f"k-{i:03d}")
        patients.append(json.dumps(p))
        for line in base_events:
            e = json.loads(line)
            if e["patient"] == base_patients[i % 2]["patient"]:
                events.append(json.dumps(dict(e, id=f"{e['id']}-{i:03d}", patient=p["patient"])))
    (folder / "patients.jsonl").write_text("\n".join(patients) + "\n")
    (folder / "events.jsonl").write_text("\n".join(events) + "\n")
    return folder / "patients.jsonl", folder / "events.jsonl"


def carepath_run(api_url: str, patients: Path, events: Path, out: Path) -> subprocess.Popen:
    env = dict(os.environ, PREFECT_API_URL=api_url)
    return subprocess.Popen([CARE_PATH, "run", str(PATHWAY), "--patients", str(patients), "--events", str(events),
                             "--out", str(out), "--as-of", AS_OF, "--shard-size", "4"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)


def outputs(out: Path) -> dict[str, bytes]:
    """What a clinician or a mailer sees (PDF bytes carry a creation time: names only)."""
    files = {}
    for p in sorted(out.rglob("*")):
        rel = str(p.relative_to(out))
        if p.is_file() and "ledger" not in rel and not rel.startswith(".carepath"):  # scratch, the run lock
            files[rel] = b"" if p.suffix == ".pdf" else p.read_bytes()
    return files


def test_a_run_killed_midway_and_run_again_equals_one_clean_run(prefect_api, tmp_path: Path) -> None:
    patients, events = cohort_of(24, tmp_path)
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    proc = carepath_run(prefect_api, patients, events, clean)
    assert proc.wait(timeout=300) == 0, proc.stderr.read().decode()[-2000:]
    expected = outputs(clean)
    # 12 copies of p-001 (one letter due) and 12 of p-002 (two due); expired ones are not sent
    assert sum(1 for k in expected if k.endswith(".pdf")) == 36

    proc = carepath_run(prefect_api, patients, events, killed)
    deadline = time.monotonic() + 240
    try:
        while len(list((killed / "letters").rglob("*.pdf"))) < 4:
            assert proc.poll() is None, "the run ended before it could be killed midway"
            assert time.monotonic() < deadline, "no letters appeared"
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert len(list((killed / "letters").rglob("*.pdf"))) < 36, "killed too late to prove anything"

    proc = carepath_run(prefect_api, patients, events, killed)
    assert proc.wait(timeout=300) == 0, proc.stderr.read().decode()[-2000:]
    assert outputs(killed) == expected


def test_the_parallel_sweep_emits_what_the_sweep_emits_one_task_per_shard(prefect_api, tmp_path: Path) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    from carepath.runtime.flows import sweep
    from carepath.runtime.parallel import pool_runner, sweep_parallel

    patients, events = cohort_of(12, tmp_path)
    common = dict(pathway=str(PATHWAY), patients=str(patients), events=str(events), as_of=AS_OF, shard_size=3,
                  pdf=False, return_state=True)
    one = sweep(out=str(tmp_path / "one"), **common)
    two = sweep_parallel.with_options(task_runner=pool_runner(2))(out=str(tmp_path / "two"), workers=2, **common)
    assert one.is_completed() and two.is_completed(), two.message
    assert two.result()["shards"] == 4 and two.result()["letters_written"] == one.result()["letters_written"] > 0
    assert outputs(tmp_path / "two") == outputs(tmp_path / "one")

    async def task_names(flow_run_id):
        async with get_client() as client:
            runs = await client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
            return sorted(t.name for t in runs)

    assert asyncio.run(task_names(two.state_details.flow_run_id)) == [
        "announce-facts", "archive-pathway-version", "choose-patients", "deliver-letters",
        *(f"plan-and-emit-shard-{i:04d}" for i in range(4)), "report-cohort", "write-changes", "write-worklist"]


def test_a_mail_server_stopped_mid_sweep_leaves_the_worklist_fresh_and_exits_69(
        prefect_api, smtp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """`carepath run` for real (Prefect's flow run): the server is stopped after the
    planning, before delivery; the run writes everything else and exits 69 naming it;
    the next run, the server back, delivers each letter once."""
    from aiosmtpd.controller import Controller

    from carepath.cli.main import main
    from carepath.orchestrator import delivery

    inbox, controller, port = smtp
    real = delivery.deliver_letters

    def server_stops_first(*args, **kwargs):  # noqa: ANN002, ANN003
        controller.stop()
        return real(*args, **kwargs)

    monkeypatch.setattr(delivery, "deliver_letters", server_stops_first)
    monkeypatch.setattr("carepath.orchestrator.sequence.deliver_letters", server_stops_first)
    args = ["run", str(PATHWAY), "--patients", str(PATIENTS), "--events", str(EVENTS), "--out", str(tmp_path),
            "--as-of", "2026-03-02T14:30:00+00:00"]
    assert main(args) == 69
    err = capsys.readouterr().err
    assert f"SMTP server 127.0.0.1:{port} failed" in err and "stay queued" in err and "Traceback" not in err
    assert inbox.messages == []
    worklist = (tmp_path / "worklist.html").read_text()
    assert "2026" in worklist and (tmp_path / "rejected.jsonl").exists()
    monkeypatch.setattr("carepath.orchestrator.sequence.deliver_letters", real)
    fresh = Controller(inbox, hostname="127.0.0.1", port=port)
    fresh.start()
    try:
        assert main(args) == 0
        assert main(args) == 0
    finally:
        fresh.stop()
    assert len(inbox.messages) == 3 and len({m["Message-ID"] for m in inbox.messages}) == 3
