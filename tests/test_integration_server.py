"""End to end against a real Prefect server, the way a clinic runs carepath.

A `prefect server start` (its own PREFECT_HOME in a temporary directory), the process
work pool `carepath`, the `ketamine-iv-on-event` deployment from the repository's
`prefect.yaml` deployed with `prefect deploy` from a CAREPATH_HOME laid out like the
repository, a `prefect worker start --pool carepath`, and then `carepath emit` of a
`session_completed` event. The deployment's event trigger must start a flow run for that
patient (parameters templated from the Prefect event), the worker must run it from
CAREPATH_HOME (relative paths resolved by the pull step), and the integration
psychotherapy task for that session must appear in that patient's record,
`out/ketamine-iv/patients/<xx>/<ref>.json` (an event run leaves tasks.jsonl to the sweep).

Then the PHI boundary: no patient name or e-mail address from the patients file may
appear in the flow run's logs (read through the API), in the server's or worker's output,
or anywhere under PREFECT_HOME (the SQLite database and its WAL, read bytewise after the
server has stopped). The pseudonymous ref must appear there, so the scan is known to see
what the server stored.

Every process is started in its own process group and is terminated, then killed, when
the test ends, pass or fail; every wait and every command has a time limit.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from carepath.sinks.patient_record import record_name

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
_VENV_BIN = ROOT / ".venv" / "bin"
BIN = _VENV_BIN if (_VENV_BIN / "prefect").exists() else Path(sys.executable).parent

SERVER_READY_S = 120     # `prefect server start` answers /api/health in 9-30 s here (load)
COMMAND_S = 120          # one CLI command (work-pool create, deploy, emit)
FLOW_RUN_S = 120         # emit → triggered flow run completed and its task written
LOGS_S = 30              # flow run completed → its logs at the API
STOP_S = 15              # SIGTERM → exit, before SIGKILL

PATIENT = "it-p-1"
OTHER = "it-p-2"
# Names nobody else uses, so finding one anywhere in Prefect's files can only be a leak.
PATIENTS = [
    {"patient": PATIENT, "given_name": "Philomena", "family_name": "Quillfeather",
     "timezone": "America/Chicago", "email": "philomena.quillfeather@example.org"},
    {"patient": OTHER, "given_name": "Bartholomew", "family_name": "Xanthopoulos",
     "email": "b.xanthopoulos@example.org"},
]
PHI = [p[k] for p in PATIENTS for k in ("given_name", "family_name", "email") if k in p]
EVENT_ID = "it-e-5"
ON_EVENT, SWEEP = "ketamine-iv-on-event", "ketamine-iv-hourly-sweep"
NOW = datetime.now(UTC).replace(microsecond=0)  # the demo history is written relative to this
SCHEDULER_S = 60         # deployed → the scheduler has inserted the sweep's next runs
SCHEDULER_BROKEN = "Can't evaluate bulk DML statement"  # prefect 3.8.8's scheduler on SQLAlchemy 2.1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _history(now: datetime) -> list[dict]:
    """Enrolled, eligible, one session booked: the state before the session is done."""
    def at(hours_ago: float) -> str:
        return (now - timedelta(hours=hours_ago)).isoformat()

    return [
        {"id": "it-e-1", "patient": PATIENT, "type": "enrolled", "at": at(100), "data": {}},
        {"id": "it-e-2", "patient": PATIENT, "type": "screening_recorded", "at": at(99),
         "data": {"trd_trials": 3, "contraindications": [], "cautions": []}},
        {"id": "it-e-3", "patient": PATIENT, "type": "session_scheduled", "at": at(98),
         "data": {"session": "s-1", "start": at(6)}},
        {"id": "it-e-4", "patient": OTHER, "type": "enrolled", "at": at(50), "data": {}},
    ]


@dataclass
class Stack:
    """The processes and directories of one server + worker set-up."""

    tmp: Path
    port: int
    home: Path                      # CAREPATH_HOME, laid out like the repository
    prefect_home: Path
    env: dict[str, str]
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    logs: dict[str, Path] = field(default_factory=dict)
    phases: list[tuple[str, float]] = field(default_factory=list)
    _last: float = field(default_factory=time.monotonic)

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    # -- processes ---------------------------------------------------------------------

    def mark(self, phase: str) -> None:
        """Note the wall time of a phase (shown with `pytest -s`)."""
        now = time.monotonic()
        self.phases.append((phase, now - self._last))
        self._last = now

    def start(self, name: str, args: list[str], cwd: Path) -> subprocess.Popen:
        log = self.tmp / f"{name}.log"
        self.logs[name] = log
        with log.open("wb") as out:
            proc = subprocess.Popen(args, cwd=cwd, env=self.env, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        self.procs[name] = proc
        return proc

    def stop(self, name: str) -> None:
        proc = self.procs.pop(name, None)
        if proc is None:
            return
        _signal_group(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_S)
        except subprocess.TimeoutExpired:
            _signal_group(proc.pid, signal.SIGKILL)
            proc.wait(timeout=STOP_S)
        # Children that outlived their leader (a flow run under the worker, uvicorn under
        # the server) are still in its group.
        _signal_group(proc.pid, signal.SIGKILL)

    def stop_all(self) -> None:
        for name in ("worker", *[n for n in self.procs if n != "worker"]):
            try:
                self.stop(name)
            except Exception:  # noqa: BLE001 - keep stopping the others
                pass

    def run(self, args: list[str], cwd: Path, extra_env: dict[str, str] | None = None,
            timeout: float = COMMAND_S) -> subprocess.CompletedProcess:
        try:
            result = subprocess.run(args, cwd=cwd, env={**self.env, **(extra_env or {})}, stdin=subprocess.DEVNULL,
                                    capture_output=True, text=True, timeout=timeout, start_new_session=True)
        except subprocess.TimeoutExpired as exc:
            pytest.fail(f"{' '.join(args)} did not finish within {timeout} s:\n{exc.stdout}\n{exc.stderr}"
                        + self.tails())
        if result.returncode != 0:
            pytest.fail(f"{' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
                        + self.tails())
        return result

    def tails(self, chars: int = 4000) -> str:
        return "".join(f"\n--- {name}.log (tail) ---\n{path.read_text(errors='replace')[-chars:]}"
                       for name, path in self.logs.items() if path.exists())

    # -- the API -----------------------------------------------------------------------

    def call(self, method: str, path: str, body: object | None = None, timeout: float = 10) -> object:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.api + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read() or b"null")

    def wait_healthy(self) -> None:
        server = self.procs["server"]
        deadline = time.monotonic() + SERVER_READY_S
        while time.monotonic() < deadline:
            if server.poll() is not None:
                pytest.fail(f"prefect server exited with {server.returncode} before answering" + self.tails())
            try:
                if self.call("GET", "/health", timeout=2) is True:
                    return
            except (urllib.error.URLError, OSError, ValueError):
                pass
            time.sleep(0.25)
        pytest.fail(f"prefect server did not answer {self.api}/health within {SERVER_READY_S} s" + self.tails())


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A running server with the `carepath` process pool, a worker on it, and the
    ketamine-iv deployments (hourly sweep and on-event) from the repository's
    prefect.yaml, deployed from a CAREPATH_HOME holding this module's demo data."""
    assert (BIN / "prefect").exists() and (BIN / "carepath").exists(), \
        f"prefect and carepath CLIs not found in {BIN}: set up with `python3 dev.py test`"
    tmp = tmp_path_factory.mktemp("prefect-server")
    home = tmp / "carepath-home"
    demo = home / "examples" / "demo"
    demo.mkdir(parents=True)
    for name in ("src", "pathways", "templates"):
        (home / name).symlink_to(ROOT / name, target_is_directory=True)
    # A copy, not a link: `prefect deploy` may rewrite the prefect.yaml in its cwd.
    shutil.copy2(ROOT / "prefect.yaml", home / "prefect.yaml")
    (demo / "patients.jsonl").write_text("".join(json.dumps(p) + "\n" for p in PATIENTS))
    (demo / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in _history(NOW)))
    prefect_home = tmp / "prefect-home"
    prefect_home.mkdir()
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}  # none of the user's settings
    env.update({
        "PREFECT_HOME": str(prefect_home),
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_WORKER_QUERY_SECONDS": "2",  # default 10: poll faster so the test waits less
        "PYTHONDONTWRITEBYTECODE": "1",
        "NO_COLOR": "1",
        "COLUMNS": "200",
    })
    s = Stack(tmp, port, home, prefect_home, env)
    prefect = str(BIN / "prefect")
    try:
        s.start("server", [prefect, "server", "start", "--host", "127.0.0.1", "--port", str(port)], cwd=tmp)
        s.wait_healthy()
        s.mark("server healthy")
        s.run([prefect, "work-pool", "create", "carepath", "--type", "process"], cwd=home)
        s.mark("work pool created")
        # The worker needs only the pool: let it start while the deployments are made.
        s.start("worker", [prefect, "worker", "start", "--pool", "carepath"], cwd=tmp)
        # The deployments' data, as a clinic points them at its own (docs/operations.md, Deploy).
        for name, value in (("patients", "examples/demo/patients.jsonl"), ("events", "examples/demo/events.jsonl"),
                            ("out", "out/ketamine-iv")):
            s.run([prefect, "variable", "set", f"carepath_ketamine_iv_{name}", value], cwd=home)
        s.run([prefect, "--no-prompt", "deploy", "--name", ON_EVENT, "--name", SWEEP], cwd=home,
              extra_env={"CAREPATH_HOME": str(home)})
        s.mark("deployed")
        yield s
    finally:
        s.stop_all()


def _wait_for_flow_run(stack: Stack, deployment_id: str) -> dict:
    deadline = time.monotonic() + FLOW_RUN_S
    last: list = []
    while time.monotonic() < deadline:
        last = stack.call("POST", "/flow_runs/filter",
                          {"deployments": {"id": {"any_": [deployment_id]}}, "limit": 10})  # type: ignore[assignment]
        for run in last:
            if run["state_type"] == "COMPLETED":
                return run
            if run["state_type"] in ("FAILED", "CRASHED", "CANCELLED"):
                pytest.fail(f"triggered flow run {run['name']} ended {run['state_type']}: "
                            f"{(run.get('state') or {}).get('message')}" + stack.tails())
        for name, proc in stack.procs.items():
            if proc.poll() is not None:
                pytest.fail(f"{name} exited with {proc.returncode} while waiting for the flow run" + stack.tails())
        time.sleep(0.5)
    pytest.fail(f"no completed flow run of the on-event deployment within {FLOW_RUN_S} s "
                f"(runs: {[(r['name'], r['state_type']) for r in last]})" + stack.tails())


def _flow_run_logs(stack: Stack, flow_run_id: str, expected: str) -> str:
    """The run's log messages once `expected` is among them: a flow run process ships its
    logs in batches, so they may reach the server after the run's final state."""
    deadline = time.monotonic() + LOGS_S
    messages = ""
    while time.monotonic() < deadline:
        logs = stack.call("POST", "/logs/filter", {"logs": {"flow_run_id": {"any_": [flow_run_id]}}, "limit": 200})
        messages = "\n".join(entry["message"] for entry in logs)  # type: ignore[union-attr]
        if expected in messages:
            return messages
        time.sleep(0.5)
    pytest.fail(f"{expected!r} not in the flow run's logs within {LOGS_S} s:\n{messages}" + stack.tails())


def _task_written(record_file: Path, deadline: float) -> dict | None:
    """The session's task in the patient's record (what an event-triggered run writes)."""
    while time.monotonic() < deadline:
        if record_file.exists():
            for task in json.loads(record_file.read_text())["tasks"]:
                if (task.get("patient"), task.get("step"), task.get("trigger")) == \
                        (PATIENT, "integration_psychotherapy", EVENT_ID):
                    return task
        time.sleep(0.25)
    return None


def _sqlalchemy_version() -> tuple[int, ...]:
    from importlib.metadata import version

    return tuple(int(part) for part in version("sqlalchemy").split(".")[:2])


@pytest.mark.xfail(_sqlalchemy_version() >= (2, 1), strict=True, reason=(
    "prefect 3.8.8's scheduler cannot insert scheduled flow runs with SQLAlchemy 2.1 "
    f"({SCHEDULER_BROKEN}...): the hourly sweep never runs. Pin sqlalchemy<2.1."))
def test_the_hourly_sweep_is_scheduled_in_the_clinic_zone(stack: Stack) -> None:
    """The server's scheduler puts the sweep's next runs on the calendar: on the hour,
    New York time (runs first: the next test stops the stack)."""
    deployment = stack.call("GET", f"/deployments/name/carepath-sweep/{SWEEP}")
    assert [(s["schedule"]["cron"], s["schedule"]["timezone"], s["active"]) for s in deployment["schedules"]] == \
        [("0 * * * *", "America/New_York", True)]
    deadline = time.monotonic() + SCHEDULER_S
    runs: list = []
    while time.monotonic() < deadline:
        runs = stack.call("POST", "/flow_runs/filter", {  # type: ignore[assignment]
            "deployments": {"id": {"any_": [deployment["id"]]}},
            "flow_runs": {"state": {"type": {"any_": ["SCHEDULED"]}}},
            "sort": "EXPECTED_START_TIME_ASC", "limit": 3})
        if runs:
            break
        log = stack.logs["server"].read_text(errors="replace")
        if SCHEDULER_BROKEN in log:
            pytest.fail(f"the server's scheduler fails: {SCHEDULER_BROKEN}" + stack.tails())
        time.sleep(0.5)
    stack.mark("sweep scheduled")
    assert runs, f"no scheduled run of {SWEEP} within {SCHEDULER_S} s" + stack.tails()
    first = datetime.fromisoformat(runs[0]["expected_start_time"])
    local = first.astimezone(ZoneInfo("America/New_York"))
    assert (local.minute, local.second) == (0, 0)
    assert timedelta(0) < first - datetime.now(UTC) <= timedelta(hours=1)


def test_emitted_event_triggers_a_deployed_flow_run_on_a_real_server(stack: Stack) -> None:
    """carepath emit → the trigger's flow run on the worker → the task in tasks.jsonl;
    and nothing Prefect holds names a patient. Stops the stack (it reads the database
    files after the server has closed them), so it runs last in this module."""
    carepath = str(BIN / "carepath")
    demo = stack.home / "examples" / "demo"
    deployment = stack.call("GET", f"/deployments/name/carepath-patient/{ON_EVENT}")
    assert deployment["pull_steps"] == [
        {"prefect.deployments.steps.set_working_directory": {"directory": str(stack.home)}}]
    automations = stack.call("POST", "/automations/filter", {})
    assert [a["actions"][0]["deployment_id"] for a in automations] == [deployment["id"]]

    session_done = {"id": EVENT_ID, "patient": PATIENT, "type": "session_completed",
                    "at": (NOW - timedelta(hours=5)).isoformat(), "data": {"session": "s-1"}}
    emitted = stack.run([carepath, "emit", "pathways/ketamine-iv.yaml", "--patients", "examples/demo/patients.jsonl",
                         "--events", "examples/demo/events.jsonl", json.dumps(session_done)], cwd=stack.home)
    assert "sent carepath.event.recorded" in emitted.stdout, emitted.stdout
    stack.mark("emitted")
    assert json.loads((demo / "events.jsonl").read_text().splitlines()[-1])["id"] == EVENT_ID

    started = time.monotonic()
    run = _wait_for_flow_run(stack, deployment["id"])
    stack.mark("flow run completed")
    # The trigger's templated parameters reached the flow; the deployment's defaults stayed.
    assert run["parameters"]["patient"] == PATIENT
    assert run["parameters"]["event_id"] == EVENT_ID
    assert run["parameters"]["out"] == "out/ketamine-iv"
    # An event run writes that patient's record, not the cohort-wide tasks.jsonl (the next sweep's).
    record = stack.home / "out" / "ketamine-iv" / record_name(PATIENT)
    task = _task_written(record, started + FLOW_RUN_S)
    assert task is not None, f"no integration_psychotherapy task for the session in {record}" + stack.tails()
    assert task["status"] == "open" and task["role"] == "psychotherapist"
    # the session's integration reminder is due now: it was sent, into its send date's folder
    letters = [p for p in (stack.home / "out" / "ketamine-iv" / "letters").rglob("*") if p.is_file()]
    assert letters and all(p.stat().st_mode & 0o077 == 0 for p in letters)

    # PHI boundary, 1: the flow run's logs as the API serves them.
    messages = _flow_run_logs(stack, run["id"], f"patient {PATIENT} re-planned after event {EVENT_ID}")
    for value in PHI:
        assert value.lower() not in messages.lower(), f"{value!r} in the flow run's logs"

    # PHI boundary, 2: everything the server stored, and what the processes printed.
    stack.stop_all()
    stack.mark("server and worker stopped")
    stored = b"".join(p.read_bytes() for p in sorted(stack.prefect_home.rglob("*")) if p.is_file()).lower()
    assert PATIENT.encode() in stored and EVENT_ID.encode() in stored, "the scan does not see the server's records"
    printed = b"".join(p.read_bytes() for p in stack.logs.values()).lower()
    for value in PHI:
        needle = value.lower().encode()
        assert needle not in stored, f"{value!r} stored under PREFECT_HOME"
        assert needle not in printed, f"{value!r} printed by the server or the worker"
    print("phases: " + ", ".join(f"{phase} {seconds:.1f} s" for phase, seconds in stack.phases))
