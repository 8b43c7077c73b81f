"""`carepath serve` in a real browser: headless Chromium, driven over the DevTools
protocol (websockets is in the lock; no WebDriver), against the application served by
uvicorn on 127.0.0.1. A clinician signs in, sees the first safety row, acknowledges it,
completes a task, records a decision, watches the page change and opens the patient's
page. The pages run no script: the test clicks buttons and types as a person would."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from itertools import count
from pathlib import Path
from urllib.request import urlopen

import pytest

from serve_site import PASSWORD, Served, serve_copy, swept, with_accounts

CHROMIUM = Path("/usr/bin/chromium")
TIMEOUT = 60

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="headless browser test needs /usr/bin/chromium (Debian package `chromium`; .ci/run installs it)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Served]]:
    import uvicorn

    folder = swept(tmp_path_factory.mktemp("browser") / "template")
    with_accounts(folder)
    served = serve_copy(folder, tmp_path_factory.mktemp("browser") / "site")
    port = _free_port()
    config = uvicorn.Config(served.app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + TIMEOUT
    while not uv.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", served
    uv.should_exit = True
    thread.join(10)
    served.site.close()


class Browser:
    """One headless Chromium page over the DevTools protocol."""

    def __init__(self, profile: str) -> None:
        from websockets.sync.client import connect

        self.proc = subprocess.Popen(
            [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--no-first-run", "--no-default-browser-check", "--disable-extensions",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}", "--remote-debugging-port=0", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        port_file = Path(profile) / "DevToolsActivePort"
        deadline = time.monotonic() + TIMEOUT
        while not (port_file.exists() and port_file.read_text().strip()):
            assert self.proc.poll() is None, "chromium exited"
            assert time.monotonic() < deadline, "chromium did not open its DevTools port"
            time.sleep(0.1)
        port = port_file.read_text().split()[0]
        pages = json.load(urlopen(f"http://127.0.0.1:{port}/json/list", timeout=TIMEOUT))
        page = next(p for p in pages if p["type"] == "page")
        self.ws = connect(page["webSocketDebuggerUrl"], max_size=None, open_timeout=TIMEOUT)
        self.ids = count(1)
        self.console: list[str] = []
        self.call("Runtime.enable")
        self.call("Log.enable")

    def call(self, method: str, **params: object) -> dict:
        ident = next(self.ids)
        self.ws.send(json.dumps({"id": ident, "method": method, "params": params}))
        deadline = time.monotonic() + TIMEOUT
        while True:
            message = json.loads(self.ws.recv(timeout=max(deadline - time.monotonic(), 0.1)))
            if message.get("method") in ("Runtime.consoleAPICalled", "Log.entryAdded", "Runtime.exceptionThrown"):
                self.console.append(json.dumps(message["params"])[:500])
            if message.get("id") == ident:
                assert "error" not in message, message
                return message["result"]

    def js(self, expression: str) -> object:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        assert "exceptionDetails" not in result, result
        return result["result"].get("value")

    def wait_for(self, path: str) -> str:
        """Wait until the page at `path` has loaded; its HTML."""
        deadline = time.monotonic() + TIMEOUT
        while True:
            state = self.js("[location.pathname, document.readyState]")
            if state == [path, "complete"]:
                return str(self.js("document.documentElement.outerHTML"))
            assert time.monotonic() < deadline, f"still at {state}, waiting for {path}"
            time.sleep(0.05)

    def goto(self, url: str, path: str) -> str:
        self.call("Page.navigate", url=url)
        return self.wait_for(path)

    def press(self, selector: str) -> None:
        """Click the element as a person would: the mouse at its centre."""
        self.js(f"document.querySelector({json.dumps(selector)}).scrollIntoView({{block: 'center'}})")
        box = self.js(f"(() => {{ const r = document.querySelector({json.dumps(selector)}).getBoundingClientRect();"
                      " return [r.x + r.width / 2, r.y + r.height / 2]; })()")
        x, y = box  # type: ignore[misc]
        for kind in ("mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)

    def click(self, selector: str, then: str) -> str:
        """Click the element, then wait for the page at `then` to load."""
        marker = self.js("document.title + '|' + performance.timeOrigin")
        self.press(selector)
        deadline = time.monotonic() + TIMEOUT
        while self.js("document.title + '|' + performance.timeOrigin") == marker:  # a new document loaded
            assert time.monotonic() < deadline, f"clicking {selector} loaded no page"
            time.sleep(0.05)
        return self.wait_for(then)

    def screenshot(self, name: str) -> None:
        """Kept under test-output/ for a person to look at (CI keeps them as artifacts)."""
        import base64

        metrics = self.call("Page.getLayoutMetrics")["cssContentSize"]
        self.call("Emulation.setDeviceMetricsOverride", width=1280, height=min(int(metrics["height"]), 4000),
                  deviceScaleFactor=1, mobile=False)
        shot = self.call("Page.captureScreenshot", format="png")["data"]
        self.call("Emulation.clearDeviceMetricsOverride")
        folder = Path(__file__).resolve().parents[1] / "test-output"
        folder.mkdir(exist_ok=True)
        (folder / name).write_bytes(base64.b64decode(shot))

    def type(self, selector: str, text: str) -> None:
        self.js(f"document.querySelector({json.dumps(selector)}).focus()")
        self.call("Input.insertText", text=text)

    def close(self) -> None:
        self.ws.close()
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@pytest.fixture
def browser() -> Iterator[Browser]:
    with tempfile.TemporaryDirectory(prefix="carepath-serve-chromium-") as profile:
        b = Browser(profile)
        try:
            yield b
        finally:
            b.close()


def _first_row(html: str, band: str = "safety") -> tuple[str, str]:
    section = html[html.index(f'id="band-{band}"'):]
    found = re.search(r'data-task="([^"]+)" data-status="[^"]+">\s*<td[^>]*><a href="/patients/([^"]+)"', section)
    assert found, f"a row in the {band} band"
    return found.group(1), found.group(2)


def test_a_clinician_signs_in_acts_on_the_first_safety_row_and_sees_the_plan_change(
        server: tuple[str, Served], browser: Browser) -> None:
    base, served = server
    browser.goto(f"{base}/patients/p-000001", "/login")  # signed out: sent to sign in
    browser.type("#username", "pat")
    browser.type("#password", PASSWORD)
    page = browser.click("form[action='/login'] button", "/")
    assert "Safety-critical" in page
    browser.screenshot("serve-worklist.png")
    task, ref = _first_row(page)
    assert page.index(f'data-task="{task}"') < page.index('id="band-overdue"') if 'id="band-overdue"' in page else True

    # acknowledge the first safety row: it stays, now owned
    page = browser.click(f"tr[data-task='{task}'] form[action$='/acknowledge'] button", "/")
    assert "acknowledged" in page
    row = re.search(rf'<tr class="task[^"]*" data-task="{task}".*?</tr>', page, re.S)
    assert row and "acknowledged by pat" in row.group(0)

    # record the prescriber's decision on it: it leaves the worklist
    browser.press(f"tr[data-task='{task}'] details summary")
    browser.type(f"tr[data-task='{task}'] form[action$='/decide'] input[name='decision']", "assessed_low_risk")
    page = browser.click(f"tr[data-task='{task}'] form[action$='/decide'] button", "/")
    assert "decision 'assessed_low_risk' recorded" in page
    assert f'data-task="{task}"' not in page

    # the patient's page: the decision on the timeline, the task closed by it
    patient = browser.goto(f"{base}/patients/{ref}", f"/patients/{ref}")
    assert "Timeline" in patient and "PHQ-9" in patient
    browser.screenshot("serve-patient.png")
    assert "Decision &#39;assessed low risk&#39;" in patient or "Decision 'assessed low risk'" in patient
    closed = re.search(rf'<tr data-task="{task}" data-status="done">.*?</tr>', patient, re.S)
    assert closed and "assessed low risk" in closed.group(0)
    assert browser.console == [], browser.console


def test_a_coordinator_completes_a_task_in_the_browser(server: tuple[str, Served], browser: Browser) -> None:
    base, served = server
    browser.goto(f"{base}/login", "/login")
    browser.type("#username", "cora")
    browser.type("#password", PASSWORD)
    page = browser.click("form[action='/login'] button", "/")
    done = re.search(r'data-task="([^"]+)"[^>]*>(?:(?!</tr>).)*?/complete', page, re.S)
    assert done, "a care-coordinator task that can be marked done"
    task = done.group(1)
    page = browser.click(f"tr[data-task='{task}'] form[action$='/complete'] button", "/")
    assert "marked done" in page and f'data-task="{task}"' not in page
    assert [a.action for a in served.access.audit_rows() if a.user == "cora"][-1] == "complete"
