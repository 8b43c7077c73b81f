"""The worklist in a real browser: headless Chromium loads it over HTTP from 127.0.0.1.

Driven by command-line flags only (no WebDriver, no new dependency): `--dump-dom` gives
the DOM after load, `--screenshot` a PNG, and `--enable-logging=stderr` prints every
console message as an `INFO:CONSOLE` line, which is how errors are caught (a canary page
proves that capture works on this Chromium).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from datetime import datetime
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from carepath.sinks.worklist import Worklist
from sink_cohort import AS_OF, ROOT, Planned, planned_cohort, read_worklist

CHROMIUM = Path("/usr/bin/chromium")
TIMEOUT = 60  # seconds, per browser run; a cold start here takes about one

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="headless browser test needs /usr/bin/chromium (Debian package `chromium`; .ci/run installs it)")

RANK = {"urgent": 0, "high": 1, "routine": 2}
CANARY = "<!DOCTYPE html><html lang=en><title>canary</title><script>console.error('canary-7f3a')</script></html>"


class _Handler(SimpleHTTPRequestHandler):
    requests: list[str]

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        self.requests.append(self.path)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, list[str], Planned]]:
    cohort = planned_cohort(tmp_path_factory.mktemp("cohort"))
    root = tmp_path_factory.mktemp("site")
    Worklist(root, cohort.compiled, AS_OF).write(iter(cohort.outputs))
    (root / "canary.html").write_text(CANARY)
    requests: list[str] = []
    handler = type("Handler", (_Handler,), {"requests": requests})
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(handler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, name="worklist-http", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", requests, cohort
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


def test_console_capture_works(site: tuple[str, list[str], Planned]) -> None:
    base, _, _ = site
    _, console = chromium("--dump-dom", f"{base}/canary.html")
    assert any("canary-7f3a" in line for line in console), console


def test_worklist_renders_urgent_first_with_zones_and_no_console_errors(
        site: tuple[str, list[str], Planned], tmp_path: Path) -> None:
    base, requests, cohort = site
    requests.clear()
    dom, console = chromium("--dump-dom", f"{base}/worklist.html")

    assert console == [], "console messages:\n" + "\n".join(console)
    assert requests == ["/worklist.html"], "the page fetched something besides itself"
    page = read_worklist(dom)
    assert page.html_lang == "en" and page.problems == []
    assert "<title>Worklist: IV ketamine with integration psychotherapy" in dom

    rows = [r for r in page.rows if r.attrs["data-group"] != "closed"]
    assert len(rows) == sum(1 for p in cohort.plans for t in p.tasks if t.status in ("open", "overdue"))
    assert page.groups[0] == "overdue" and rows[0].attrs["data-group"] == "overdue"
    # Within each role urgent work comes first (checked below); the overdue group holds some.
    assert any(r.attrs["data-priority"] == "urgent" for r in rows if r.attrs["data-group"] == "overdue")
    for group in page.groups:
        for role in dict.fromkeys(r.attrs["data-role"] for r in rows if r.attrs["data-group"] == group):
            members = [r for r in rows if (r.attrs["data-group"], r.attrs["data-role"]) == (group, role)]
            ranks = [RANK[r.attrs["data-priority"]] for r in members]
            assert ranks == sorted(ranks), f"{group}/{role}: urgent work is not first"
            urgent_due = [r.attrs["data-due"] for r in members if r.attrs["data-priority"] == "urgent"]
            assert urgent_due == sorted(urgent_due, key=datetime.fromisoformat)

    for row in page.rows:
        due = datetime.fromisoformat(row.attrs["data-due"])
        zone = due.astimezone(cohort.compiled.clinic.zone).tzname()
        assert row.window.endswith(f" {zone}"), row.window
    assert re.search(r"Tue 3 Mar 2026 12:00 EST", dom)


def test_screenshot(site: tuple[str, list[str], Planned], tmp_path: Path) -> None:
    base, _, _ = site
    shot = tmp_path / "worklist.png"
    _, console = chromium("--hide-scrollbars", "--window-size=1280,2000", f"--screenshot={shot}",
                          f"{base}/worklist.html")
    assert console == []
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
    keep = ROOT / "test-output"
    keep.mkdir(exist_ok=True)
    shutil.copyfile(shot, keep / "worklist.png")
