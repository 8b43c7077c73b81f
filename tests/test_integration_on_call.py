"""On-call paging end to end, on a real Prefect server started here.

The set-up a clinic follows in docs/operations.md: `prefect server start`, the `carepath`
process pool and a worker, the `ketamine-iv-on-event` deployment from prefect.yaml, one
CustomWebhookNotificationBlock per line of automations/on-call.yaml pointing at a local
HTTP receiver (127.0.0.1), `carepath automations` + `prefect automation create
--from-file`. The pathway is the reference one with its [CLINIC] escalation delays cut to
`DELAY` so the ladder climbs within the test.

Then: an item-9 answer recorded with `carepath emit` pages the first line; a second,
identical re-plan pages no one; left unacknowledged, the on-call prescriber is paged at the
escalation's due instant (its lateness is printed: BENCHMARKS.md); an acknowledgement
recorded with `carepath emit` stops the ladder (the medical director is never paged); no
page holds a name from the patients file.
"""

from __future__ import annotations

import json
import re
import shutil
import threading
import time
import urllib.error
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from test_integration_server import BIN, ROOT, Stack, _free_port  # the same server set-up

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # a Prefect server, a worker, minutes of escalation delays

DELAY = timedelta(minutes=2)   # escalation_delay_in_hours and _out_of_hours in the test's pathway
PAGE_S = 120                   # a fact → its page at the receiver (trigger run on the worker, event, automation)
LATE_S = 60                    # an escalation's page after its due instant: the target
ON_EVENT = "ketamine-iv-on-event"
PATIENT, OTHER = "oc-p-1", "oc-p-2"
PATIENTS = [
    {"patient": PATIENT, "given_name": "Wilhelmina", "family_name": "Octavianus",
     "email": "wilhelmina.octavianus@example.org"},
    {"patient": OTHER, "given_name": "Cornelius", "family_name": "Zebediah", "email": "c.zebediah@example.org"},
]
PHI = [p[k] for p in PATIENTS for k in ("given_name", "family_name", "email")]
BLOCKS = {"carepath-on-call-first-line": "/first-line", "carepath-on-call-prescriber": "/on-call-prescriber",
          "carepath-medical-director": "/medical-director", "carepath-operations": "/operations"}
SERVE_URL = "https://worklist.clinic.example"
AHEAD = timedelta(seconds=150)  # an event dated this far ahead: known only once its instant comes


@dataclass
class Receiver:
    """An HTTP endpoint on 127.0.0.1 keeping every request it gets: (path, body, time)."""

    port: int = field(default_factory=_free_port)
    got: list[tuple[str, str, float]] = field(default_factory=list)

    def start(self) -> ThreadingHTTPServer:
        got = self.got

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode(errors="replace")
                got.append((self.path, body, time.time()))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server

    def pages(self, path: str, ref: str = PATIENT) -> list[tuple[str, str, float]]:
        """The pages to `path` about the patient `ref`."""
        return [g for g in self.got if g[0] == path and f"patient {ref} " in g[1]]

    def wait_for(self, stack: Stack, path: str, count: int, until: float,
                 ref: str = PATIENT) -> list[tuple[str, str, float]]:
        while time.time() < until:
            if len(self.pages(path, ref)) >= count:
                return self.pages(path, ref)
            for name, proc in stack.procs.items():
                if proc.poll() is not None:
                    pytest.fail(f"{name} exited with {proc.returncode}" + stack.tails())
            time.sleep(0.25)
        pytest.fail(f"{count} page(s) to {path} expected; got {[(p, b[:200]) for p, b, _ in self.got]}"
                    + stack.tails())


def _pathways(home: Path) -> None:
    """The shipped pathways, the reference one with escalation delays of DELAY."""
    shutil.copytree(ROOT / "pathways", home / "pathways")
    path = home / "pathways" / "ketamine-iv.yaml"
    text, n = re.subn(r"(escalation_delay_(?:in|out_of)_hours:[^\n]*\n\s+value: )\S+",
                      rf"\g<1>{int(DELAY.total_seconds() // 60)}m", path.read_text())
    assert n == 2, "the reference pathway's escalation delays were not found"
    path.write_text(text)


_MAKE_BLOCKS = """
import json, sys
from prefect.blocks.notifications import CustomWebhookNotificationBlock
base, names = sys.argv[1], json.loads(sys.argv[2])
for name, path in names.items():
    CustomWebhookNotificationBlock(name=name, url=base + path,
                                   json_data={"subject": "{{subject}}", "body": "{{body}}"}).save(name)
"""


@pytest.fixture(scope="module")
def on_call(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, Receiver]]:
    tmp = tmp_path_factory.mktemp("on-call")
    home = tmp / "carepath-home"
    demo = home / "examples" / "demo"
    demo.mkdir(parents=True)
    for name in ("src", "automations"):
        (home / name).symlink_to(ROOT / name, target_is_directory=True)
    # Copies: a pathway's templates must sit in the pathway's own repository.
    shutil.copytree(ROOT / "templates", home / "templates")
    _pathways(home)
    shutil.copy2(ROOT / "prefect.yaml", home / "prefect.yaml")
    now = datetime.now(UTC).replace(microsecond=0)
    (demo / "patients.jsonl").write_text("".join(json.dumps(p) + "\n" for p in PATIENTS))
    history = [
        {"id": "oc-e-1", "patient": PATIENT, "type": "enrolled", "at": (now - timedelta(days=3)).isoformat(), "data": {}},
        {"id": "oc-e-2", "patient": PATIENT, "type": "screening_recorded", "at": (now - timedelta(days=2)).isoformat(),
         "data": {"trd_trials": 3, "contraindications": [], "cautions": []}},
        {"id": "oc-e-3", "patient": OTHER, "type": "enrolled", "at": (now - timedelta(days=1)).isoformat(), "data": {}},
    ]
    (demo / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in history))
    prefect_home = tmp / "prefect-home"
    prefect_home.mkdir()
    port = _free_port()
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "CAREPATH_"))}
    env.update({
        "PREFECT_HOME": str(prefect_home),
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_WORKER_QUERY_SECONDS": "2",
        "CAREPATH_SERVE_URL": SERVE_URL,
        "PYTHONDONTWRITEBYTECODE": "1",
        "NO_COLOR": "1",
        "COLUMNS": "200",
    })
    s = Stack(tmp, port, home, prefect_home, env)
    receiver = Receiver()
    http = receiver.start()
    prefect = str(BIN / "prefect")
    try:
        s.start("server", [prefect, "server", "start", "--host", "127.0.0.1", "--port", str(port)], cwd=tmp)
        s.wait_healthy()
        s.run([prefect, "work-pool", "create", "carepath", "--type", "process"], cwd=home)
        s.start("worker", [prefect, "worker", "start", "--pool", "carepath"], cwd=tmp)
        # The deployments' data, as a clinic points them at its own (docs/operations.md, Deploy).
        for name, value in (("patients", "examples/demo/patients.jsonl"), ("events", "examples/demo/events.jsonl"),
                            ("out", "out/ketamine-iv")):
            s.run([prefect, "variable", "set", f"carepath_ketamine_iv_{name}", value], cwd=home)
        s.run([prefect, "--no-prompt", "deploy", "--name", ON_EVENT], cwd=home,
              extra_env={"CAREPATH_HOME": str(home)})
        s.run([str(BIN / "python"), "-c", _MAKE_BLOCKS, f"http://127.0.0.1:{receiver.port}", json.dumps(BLOCKS)],
              cwd=home)
        made = s.run([str(BIN / "carepath"), "automations", "automations/on-call.yaml", "--out", str(tmp / "oc.json")],
                     cwd=home)
        assert "prefect automation create --from-file" in made.stdout
        s.run([prefect, "automation", "create", "--from-file", str(tmp / "oc.json")], cwd=home)
        s.mark("stack ready")
        yield s, receiver
    finally:
        s.stop_all()
        http.shutdown()


def _emit(stack: Stack, event: dict) -> None:
    out = stack.run([str(BIN / "carepath"), "emit", "pathways/ketamine-iv.yaml", "--patients",
                     "examples/demo/patients.jsonl", "--events", "examples/demo/events.jsonl", json.dumps(event)],
                    cwd=stack.home)
    assert "sent carepath.event.recorded" in out.stdout, out.stdout


def _call(stack: Stack, method: str, path: str, body: object | None = None) -> dict:
    """The API, waiting out SQLite's "database is locked" (503) on a loaded machine."""
    for _ in range(60):
        try:
            return stack.call(method, path, body)  # type: ignore[return-value]
        except urllib.error.HTTPError as exc:
            if exc.code != 503:
                raise
            time.sleep(1)
    pytest.fail(f"{method} {path} answered 503 for a minute" + stack.tails())


def _replan_again(stack: Stack) -> None:
    """One more run of the patient deployment for the patient, as a trigger would start it."""
    deployment = _call(stack, "GET", f"/deployments/name/carepath-patient/{ON_EVENT}")
    run = _call(stack, "POST", f"/deployments/{deployment['id']}/create_flow_run",
                {"parameters": {"patient": PATIENT}})
    deadline = time.monotonic() + PAGE_S
    while time.monotonic() < deadline:
        state = _call(stack, "GET", f"/flow_runs/{run['id']}")["state_type"]
        if state == "COMPLETED":
            return
        if state in ("FAILED", "CRASHED", "CANCELLED"):
            pytest.fail(f"the repeated re-plan ended {state}" + stack.tails())
        time.sleep(0.5)
    pytest.fail(f"the repeated re-plan did not complete within {PAGE_S} s" + stack.tails())


def _no_names(receiver: Receiver) -> None:
    everything = "\n".join(body for _, body, _ in receiver.got).lower()
    assert everything
    for value in PHI:
        assert value.lower() not in everything, f"{value!r} in a page"


def test_an_item9_answer_pages_the_first_line_once(on_call: tuple[Stack, Receiver]) -> None:
    stack, receiver = on_call
    raised = datetime.now(UTC).replace(microsecond=0)
    _emit(stack, {"id": "oc-e-9", "patient": PATIENT, "type": "assessment_recorded", "at": raised.isoformat(),
                  "data": {"instrument": "phq9", "items": [0, 0, 0, 0, 0, 0, 0, 0, 2]}})
    [(_, body, at)] = receiver.wait_for(stack, "/first-line", 1, time.time() + PAGE_S)
    print(f"emit: first line paged {at - raised.timestamp():.1f} s after the answer was recorded")
    page = json.loads(body)
    assert "suicide_risk_assessment" in page["body"] and PATIENT in page["body"]
    assert f"{SERVE_URL}/patients/{PATIENT}" in page["body"]
    _replan_again(stack)
    time.sleep(10)  # an event, had one been sent, reaches the receiver in well under this
    assert len(receiver.pages("/first-line")) == 1, "a second identical run paged again"
    _no_names(receiver)


def test_unacknowledged_work_escalates_on_time_and_an_acknowledgement_stops_the_ladder(
        on_call: tuple[Stack, Receiver]) -> None:
    stack, receiver = on_call
    [(_, first, _)] = receiver.pages("/first-line")
    body = json.loads(first)["body"]
    task = re.search(r"Task (\S+)\.", body).group(1)  # type: ignore[union-attr]
    since = re.search(r"since (\S+)\.", body).group(1)  # type: ignore[union-attr]
    due = datetime.fromisoformat(since) + DELAY
    [(_, page, at)] = receiver.wait_for(stack, "/on-call-prescriber", 1, due.timestamp() + PAGE_S)
    late = at - due.timestamp()
    print(f"escalation paged {late:.1f} s after its due instant {due.isoformat()}")
    assert "on_call_prescriber" in json.loads(page)["body"]
    assert late <= LATE_S, f"the escalation was paged {late:.0f} s late"
    _emit(stack, {"id": "oc-e-ack", "patient": PATIENT, "type": "task_acknowledged",
                  "at": datetime.now(UTC).replace(microsecond=0).isoformat(), "data": {"task": task, "by": "staff-7"}})
    next_tier = due + DELAY
    assert time.time() < next_tier.timestamp(), "acknowledged too late for the test to show the ladder stop"
    wait = next_tier.timestamp() + LATE_S + 15 - time.time()
    time.sleep(max(0.0, wait))
    assert receiver.pages("/medical-director") == [], "the ladder went on after the acknowledgement"
    _replan_again(stack)
    time.sleep(10)
    assert [len(receiver.pages(p)) for p in ("/first-line", "/on-call-prescriber")] == [1, 1]
    _no_names(receiver)


def test_a_fact_dated_ahead_pages_at_its_instant_through_a_timer(on_call: tuple[Stack, Receiver]) -> None:
    """The timer an escalation relies on, measured without waiting for the ladder: an
    item-9 answer dated ahead is not yet known to the run its emission triggers, whose
    plan wakes at its instant; the run scheduled for that instant (not the hourly sweep)
    re-plans, and the first line is paged. Its lateness is what BENCHMARKS.md reports."""
    stack, receiver = on_call
    at = datetime.now(UTC).replace(microsecond=0) + AHEAD
    _emit(stack, {"id": "oc-e-ahead", "patient": OTHER, "type": "assessment_recorded", "at": at.isoformat(),
                  "data": {"instrument": "phq9", "items": [0, 0, 0, 0, 0, 0, 0, 0, 1]}})
    [(_, body, arrived)] = receiver.wait_for(stack, "/first-line", 1, at.timestamp() + PAGE_S, ref=OTHER)
    late = arrived - at.timestamp()
    print(f"timer: first line paged {late:.1f} s after the fact's instant {at.isoformat()}")
    assert late >= 0, "paged before the fact was true"
    assert late <= LATE_S, f"paged {late:.0f} s after the fact's instant"
    timers = _call(stack, "POST", "/flow_runs/filter", {"flow_runs": {"tags": {"all_": ["carepath-timer"]}}})
    mine = [r for r in timers if r["parameters"].get("patient") == OTHER]  # type: ignore[union-attr]
    assert mine and {r["state_type"] for r in mine} <= {"RUNNING", "COMPLETED"}, timers  # it ran (it paged)
    assert datetime.fromisoformat(mine[0]["expected_start_time"]) == at
    _no_names(receiver)


def test_a_failed_patient_replan_notifies_operations(on_call: tuple[Stack, Receiver]) -> None:
    """A re-plan of a patient the patients file does not have fails; operations hear of it."""
    stack, receiver = on_call
    deployment = _call(stack, "GET", f"/deployments/name/carepath-patient/{ON_EVENT}")
    _call(stack, "POST", f"/deployments/{deployment['id']}/create_flow_run", {"parameters": {"patient": "oc-nobody"}})
    deadline = time.time() + PAGE_S
    while time.time() < deadline:
        notices = [body for path, body, _ in receiver.got if path == "/operations"]
        if notices:
            break
        time.sleep(0.5)
    else:
        pytest.fail("operations were not notified of the failed run" + stack.tails())
    assert "patient-ketamine-iv-oc-nobody" in notices[0] and "Failed" in notices[0]
