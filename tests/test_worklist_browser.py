"""The worklist in a real browser: headless Chromium loads it over HTTP from 127.0.0.1.

Driven by command-line flags only (no WebDriver, no new dependency): `--dump-dom` gives
the DOM after load, `--screenshot` a PNG, and `--enable-logging=stderr` prints every
console message as an `INFO:CONSOLE` line, which is how errors are caught (a canary page
proves that capture works on this Chromium). The role filter is exercised by a small
harness page that frames the worklist (same origin), picks a role and reports what is still
visible; the worklist itself runs no script. Screenshots are kept under test-output/.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.request import urlopen

import pytest

from carepath.compile.compiled import CompiledPathway
from carepath.sinks.base import Output, outputs_of
from carepath.sinks.worklist import Worklist
from sink_cohort import AS_OF, ROOT, Planned, planned_cohort, read_worklist

CHROMIUM = Path("/usr/bin/chromium")
TIMEOUT = 60  # seconds, per browser run; a cold start here takes about one

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="headless browser test needs /usr/bin/chromium (Debian package `chromium`; .ci/run installs it)")

CANARY = "<!DOCTYPE html><html lang=en><title>canary</title><script>console.error('canary-7f3a')</script></html>"


@dataclass
class Site:
    base: str              # http://127.0.0.1:PORT
    requests: list[str]    # paths the server was asked for
    cohort: Planned
    root: Path             # the folder it serves


class _Handler(SimpleHTTPRequestHandler):
    requests: list[str]

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        self.requests.append(self.path)


# Loads the worklist in a same-origin frame, picks a role in its selector, and writes what
# the frame then shows (rows by data-role, in order) into this page for --dump-dom to read.
# The worklist itself runs no script: this harness is the test's "user".
HARNESS = """<!DOCTYPE html><html lang=en><title>role filter</title>
<pre id=result>pending</pre>
<script>
function check(frame) {
  const doc = frame.contentDocument;
  const visible = () => [...doc.querySelectorAll("main tr.task")]
    .filter(r => r.closest("details") === null && doc.defaultView.getComputedStyle(r).display !== "none")
    .map(r => r.dataset.role + " " + r.dataset.task);
  const before = visible();
  doc.getElementById("role-ROLE").click();
  const after = visible();
  const bands = [...doc.querySelectorAll("section.band")]
    .filter(s => doc.defaultView.getComputedStyle(s).display !== "none").map(s => s.dataset.group);
  document.getElementById("result").textContent = JSON.stringify({before, after, bands});
}
</script>
<iframe src="PAGE" width=1200 height=800 onload="check(this)"></iframe></html>"""


def demo_outputs() -> tuple[CompiledPathway, list[Output], datetime]:
    """The demo cohort (`python3 dev.py demo`) planned as the demo runs it."""
    from carepath.api import load_cohort
    from carepath.orchestrator.planning import plan_cohort

    sys.path.insert(0, str(ROOT))
    try:
        import dev
    finally:
        sys.path.remove(str(ROOT))
    as_of = datetime.fromisoformat(dev.DEMO_AS_OF)
    compiled, cohort = load_cohort(ROOT / "pathways" / "ketamine-iv.yaml", ROOT / "examples" / "demo" / "patients.jsonl",
                                   ROOT / "examples" / "demo" / "events.jsonl")
    plans = list(plan_cohort(compiled, cohort, as_of))
    return compiled, [o for p in plans for o in outputs_of(p, compiled.version)], as_of


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    cohort = planned_cohort(tmp_path_factory.mktemp("cohort"))
    root = tmp_path_factory.mktemp("site")
    Worklist(root, cohort.compiled, AS_OF).write(iter(cohort.outputs))
    compiled, outputs, as_of = demo_outputs()
    Worklist(root / "demo", compiled, as_of).write(iter(outputs))
    (root / "demo" / "outputs.json").write_text(json.dumps([[o.kind, o.patient, o.body] for o in outputs]))
    (root / "canary.html").write_text(CANARY)
    requests: list[str] = []
    handler = type("Handler", (_Handler,), {"requests": requests})
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(handler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, name="worklist-http", daemon=True)
    thread.start()
    try:
        yield Site(f"http://127.0.0.1:{server.server_port}", requests, cohort, root)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def chromium(*args: str) -> tuple[str, list[str]]:
    """Run headless Chromium with a throw-away profile; its stdout and console messages."""
    with tempfile.TemporaryDirectory(prefix="carepath-chromium-") as profile:
        command = [
            str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--disable-quic", "--no-first-run", "--no-default-browser-check", "--disable-extensions",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", *args,
        ]
        # Own process group: on a timeout the renderer and GPU children die with the browser.
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                   start_new_session=True)
        try:
            stdout, stderr = process.communicate(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            raise
    assert process.returncode == 0, stderr[-3000:]
    return stdout, [line for line in stderr.splitlines() if ":CONSOLE" in line]


def test_console_capture_works(site: Site) -> None:
    base = site.base
    _, console = chromium("--dump-dom", f"{base}/canary.html")
    assert any("canary-7f3a" in line for line in console), console


def test_worklist_renders_safety_first_with_zones_and_no_console_errors(site: Site) -> None:
    base, requests, cohort = site.base, site.requests, site.cohort
    requests.clear()
    dom, console = chromium("--dump-dom", f"{base}/worklist.html")

    assert console == [], "console messages:\n" + "\n".join(console)
    assert requests == ["/worklist.html"], "the page fetched something besides itself"
    page = read_worklist(dom)
    assert page.html_lang == "en" and page.problems == []
    assert "<title>Worklist: IV ketamine with integration psychotherapy" in dom

    rows = [r for r in page.rows if r.attrs["data-group"] != "closed"]
    assert len(rows) == sum(1 for p in cohort.plans for t in p.tasks if t.status in ("open", "overdue"))
    assert page.groups == ["safety", "overdue", "upcoming"]
    assert rows[0].attrs["data-step"] == "suicide_risk_assessment" and rows[0].attrs["data-priority"] == "urgent"
    for group in page.groups[1:]:  # the safety band: by patient, unseen and newest first (below)
        due = [datetime.fromisoformat(r.attrs["data-due"]) for r in rows if r.attrs["data-group"] == group]
        assert due == sorted(due), f"{group}: not by due time"
    raised = [datetime.fromisoformat(r.attrs["data-earliest"]) for r in rows if r.attrs["data-group"] == "safety"]
    assert raised == sorted(raised, reverse=True), "safety: not the most recently raised first"

    for row in page.rows:
        due = datetime.fromisoformat(row.attrs["data-due"])
        zone = due.astimezone(cohort.compiled.clinic.zone).tzname()
        assert re.search(f" {zone}( |$)", row.window), row.window
    assert re.search(r"Tue 3 Mar 2026 12:00 EST", dom)


def test_demo_worklist_opens_on_the_newest_unacknowledged_safety_work_grouped_by_patient(
        site: Site) -> None:
    base = site.base
    dom, console = chromium("--dump-dom", f"{base}/demo/worklist.html")
    assert console == [], "console messages:\n" + "\n".join(console)
    page = read_worklist(dom)
    assert page.problems == [] and page.groups[0] == "safety"
    outputs = json.loads((urlopen(f"{base}/demo/outputs.json", timeout=10)).read())
    assessments = [body for kind, _, body in outputs if kind == "task"
                   and body["step"] == "suicide_risk_assessment" and body["status"] in ("open", "overdue")]
    assert len(assessments) >= 3   # the demo has several, weeks apart
    safety = [r for r in page.rows if r.attrs["data-group"] == "safety"]
    assert {t["id"] for t in assessments} <= {r.attrs["data-task"] for r in safety}
    # Grouped by patient: one patient's rows are never split by another's.
    patients = [r.attrs["data-patient"] for r in safety]
    assert patients == sorted(patients, key=patients.index)
    # Unseen danger first: the group whose unacknowledged work was raised last leads.
    unseen = [body for kind, _, body in outputs if kind == "task" and body["acknowledged_at"] is None
              and body["id"] in {r.attrs["data-task"] for r in safety}]
    newest = max(unseen, key=lambda t: datetime.fromisoformat(t["earliest"]))
    first = page.rows[0]
    assert first.attrs["data-patient"] == next(p for kind, p, body in outputs if body.get("id") == newest["id"])
    assert "open for " in first.cells[4] and "not acknowledged" in first.cells[4]


@pytest.mark.parametrize("role", ["prescriber", "psychotherapist"])
def test_role_filter_shows_one_role_in_the_same_order(site: Site, role: str) -> None:
    base = site.base
    harness = HARNESS.replace("ROLE", role).replace("PAGE", "worklist.html")
    name = f"filter-{role}.html"
    # Served from the site's folder, so the frame is same-origin.
    (site.root / "demo" / name).write_text(harness)
    dom, console = chromium("--virtual-time-budget=5000", "--dump-dom", f"{base}/demo/{name}")
    assert console == [], "console messages:\n" + "\n".join(console)
    result = json.loads(html.unescape(re.search(r'<pre id="result">(.*?)</pre>', dom, re.S).group(1)))
    before, after = result["before"], result["after"]
    assert len({r.split()[0] for r in before}) > 1
    assert after and all(r.split()[0] == role for r in after)
    assert after == [r for r in before if r.split()[0] == role], "filtering changed the order"
    assert result["bands"] and result["bands"] == sorted(result["bands"], key=["safety", "overdue", "today",
                                                                               "upcoming", "no-due"].index)


def test_screenshot(site: Site, tmp_path: Path) -> None:
    base = site.base
    keep = ROOT / "test-output"
    keep.mkdir(exist_ok=True)
    for name, path in (("worklist.png", "worklist.html"), ("demo-worklist.png", "demo/worklist.html")):
        shot = tmp_path / name
        _, console = chromium("--hide-scrollbars", "--window-size=1280,2000", f"--screenshot={shot}",
                              f"{base}/{path}")
        assert console == []
        data = shot.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
        shutil.copyfile(shot, keep / name)
        print(f"screenshot kept: {keep / name}")
