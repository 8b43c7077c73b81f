"""`carepath serve` as staff and intruders meet it (Starlette's TestClient, no browser):
sign-in, the live worklist, acting on tasks (each an event re-planned at once), the
patient page, and the security rules: anonymous requests refused everywhere, a role
acting only on its own steps, CSRF on every POST, names shown as text, idle sessions
ended, sign-ins rate-limited, every action in the append-only audit table."""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
import warnings
from datetime import timedelta
from pathlib import Path

import pytest

with warnings.catch_warnings():  # starlette 1.10 prefers httpx2 (not in the lock); httpx works
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from carepath.cli.main import main
from carepath.serve.app import Settings
from serve_site import PASSWORD, PATHWAY, Served, serve_copy, swept, with_accounts


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = swept(tmp_path_factory.mktemp("served") / "site")
    with_accounts(folder)
    return folder


@pytest.fixture
def served(template: Path, tmp_path: Path) -> Served:
    s = serve_copy(template, tmp_path / "site")
    yield s
    s.site.close()


def client(s: Served) -> TestClient:
    return TestClient(s.app, base_url="http://testserver", follow_redirects=False)


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "the page has a form with a CSRF token"
    return found.group(1)


def signed_in(s: Served, user: str) -> tuple[TestClient, str]:
    c = client(s)
    form = c.get("/login")
    r = c.post("/login", data={"username": user, "password": PASSWORD, "csrf": csrf_of(form.text)})
    assert r.status_code == 303 and r.headers["location"] == "/", r.text
    page = c.get("/")
    assert page.status_code == 200
    return c, csrf_of(page.text)


def rows(html: str) -> list[tuple[str, str]]:
    """(task id, patient) of the worklist's rows, in page order."""
    return re.findall(r'<tr class="task[^"]*" data-task="([^"]+)" data-status="[^"]+">\s*<td[^>]*><a href="/patients/([^"]+)"',
                      html)


def audit(s: Served) -> list[tuple[str, str, str | None, dict]]:
    return [(r.user, r.action, r.patient, r.detail) for r in s.access.audit_rows()]


def lines(path: Path) -> list[dict]:
    """The file's JSON lines (the demo's deliberately broken ones left out)."""
    found = []
    for line in path.read_text().splitlines():
        try:
            found.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return found


def test_every_page_refuses_an_anonymous_request(served: Served) -> None:
    c = client(served)
    task = next(iter(served.site.boards["ketamine-iv"].entries))
    for path in ("/", "/?role=prescriber", "/patients/p-000001", "/patients/nobody"):
        r = c.get(path)
        assert r.status_code == 303 and r.headers["location"] == "/login", path
    for path in (f"/tasks/{task}/complete", f"/tasks/{task}/decide", f"/tasks/{task}/acknowledge", "/logout"):
        r = c.post(path, data={"patient": "p-000001", "csrf": "x"})
        assert r.status_code == 403, path
    assert c.get("/healthz").text == "ok"
    assert c.get("/login").status_code == 200
    assert "data-task" not in c.get("/login").text


def test_a_signed_in_prescriber_sees_safety_work_first_in_worklist_order(served: Served) -> None:
    c, _ = signed_in(served, "pat")
    html = c.get("/").text
    first = html.index('id="band-')
    assert html[first:].startswith('id="band-safety"'), "the safety band comes first"
    listed = rows(html)
    board = served.site.boards["ketamine-iv"]
    expected = [e.id for e in board.rows("safety", role="prescriber")]
    assert [t for t, _ in listed][:len(expected)] == expected
    assert all(board.entries[t].role == "prescriber" for t, _ in listed), "filtered to the prescriber's role"
    everyone = rows(c.get("/?role=all").text)
    assert len(everyone) > len(listed)
    assert ("pat", "sign_in", None) in [(u, a, p) for u, a, p, _ in audit(served)]
    start = html.index('<tr class="task', html.index('id="band-safety"'))
    first = html[start:html.index("</tr>", start)]
    assert "escalated to" in first, "urgent work unacknowledged past its delay shows the tier it reached"


def _open_task(s: Served, role: str, completable: bool | None = None) -> tuple[str, str]:
    board = s.site.boards["ketamine-iv"]
    for band in ("safety", "overdue", "today", "upcoming", "no-due"):
        for e in board.rows(band, role=role):
            step = board.compiled.steps[e.step]
            if completable is None or ("task_completed" in step.done_by) == completable:
                return e.id, e.patient
    raise AssertionError(f"no open task for {role}")


def test_completing_a_task_records_the_event_and_replans_at_once(served: Served) -> None:
    c, csrf = signed_in(served, "cora")
    task, ref = _open_task(served, "care_coordinator", completable=True)
    r = c.post(f"/tasks/{task}/complete", data={"csrf": csrf, "patient": ref, "back": "/", "note": "rang, all well"})
    assert r.status_code == 303
    page = c.get("/").text
    assert "marked done" in page and task not in [t for t, _ in rows(page)]
    last = lines(served.events)[-1]
    assert (last["type"], last["patient"], last["data"]) == ("task_completed", ref, {"task": task})
    assert "rang" not in served.events.read_text(), "a note stays in the audit table, not the events file"
    patient = c.get(f"/patients/{ref}").text
    done_row = re.search(rf'<tr data-task="{task}" data-status="done">.*?</tr>', patient, re.S)
    assert done_row and "Done:" in done_row.group(0) and "by cora" in done_row.group(0), \
        "the patient page says what closed it, and who"
    (user, action, who, detail), = [a for a in audit(served) if a[1] == "complete"]
    assert (user, who, detail["task"], detail["event"], detail["note"]) == ("cora", ref, task, last["id"],
                                                                              "rang, all well")


def test_refused_actions_are_messages_on_the_page_never_errors(served: Served) -> None:
    c, csrf = signed_in(served, "cora")
    task, ref = _open_task(served, "care_coordinator", completable=True)
    assert c.post(f"/tasks/{task}/complete", data={"csrf": csrf, "patient": ref}).status_code == 303
    size = served.events.stat().st_size
    again = c.post(f"/tasks/{task}/complete", data={"csrf": csrf, "patient": ref})
    assert again.status_code == 303
    assert "already done" in c.get("/").text
    other_task, other = _open_task(served, "care_coordinator", completable=True)
    wrong = next(p for p in ("p-000001", "p-000002", "p-000003") if p != other)
    c.post(f"/tasks/{other_task}/complete", data={"csrf": csrf, "patient": wrong})
    assert "belongs to another patient" in c.get("/").text
    c.post("/tasks/no-such-task/decide", data={"csrf": csrf, "patient": ref, "decision": "x"})
    assert "no such task" in c.get("/").text
    assert served.events.stat().st_size == size, "nothing refused reaches the events file"
    refused = [a for a in audit(served) if a[1].endswith("_refused")]
    assert len(refused) == 3


def test_a_psychotherapist_cannot_record_a_prescribers_decision(served: Served) -> None:
    c, csrf = signed_in(served, "theo")
    task, ref = _open_task(served, "prescriber")
    before = served.events.read_bytes()
    c.post(f"/tasks/{task}/decide", data={"csrf": csrf, "patient": ref, "decision": "reviewed", "back": "/"})
    page = c.get("/").text
    assert "Not recorded" in page and "prescriber role" in page
    assert served.events.read_bytes() == before
    assert any(a[:2] == ("theo", "decide_refused") for a in audit(served))
    # the prescriber may
    c2, csrf2 = signed_in(served, "pat")
    c2.post(f"/tasks/{task}/decide", data={"csrf": csrf2, "patient": ref, "decision": "reviewed"})
    last = lines(served.events)[-1]
    assert (last["type"], last["data"]) == ("decision_recorded", {"task": task, "decision": "reviewed"})
    assert task not in served.site.boards["ketamine-iv"].entries, "the decision settled it; the board knows"


def test_a_post_without_the_csrf_token_is_refused(served: Served) -> None:
    c, csrf = signed_in(served, "cora")
    task, ref = _open_task(served, "care_coordinator", completable=True)
    before = served.events.read_bytes()
    for data in ({"patient": ref}, {"patient": ref, "csrf": "forged"}):
        assert c.post(f"/tasks/{task}/complete", data=data).status_code == 403
    assert c.post("/logout", data={}).status_code == 403
    assert served.events.read_bytes() == before
    login = client(served)
    assert login.post("/login", data={"username": "cora", "password": PASSWORD}).status_code == 403


def test_a_name_with_markup_is_shown_as_text(served: Served) -> None:
    people = lines(served.patients)
    people[0]["given_name"] = "<script>alert('x')</script>"
    served.patients.write_text("".join(json.dumps(p) + "\n" for p in people))
    c, _ = signed_in(served, "ada")
    page = c.get(f"/patients/{people[0]['patient']}")
    assert page.status_code == 200
    assert "&lt;script&gt;alert(" in page.text and "<script>" not in page.text
    assert "script-src" not in page.headers["content-security-policy"]  # default-src 'none': no script runs
    assert ("ada", "patient_viewed", people[0]["patient"]) in [a[:3] for a in audit(served)]


def test_a_session_idle_past_its_limit_is_signed_out(served: Served) -> None:
    c, _ = signed_in(served, "pat")
    served.clock.advance(timedelta(minutes=14))
    assert c.get("/").status_code == 200, "used within the limit: still signed in (and the idle clock restarts)"
    served.clock.advance(timedelta(minutes=14))
    assert c.get("/").status_code == 200
    served.clock.advance(timedelta(minutes=15, seconds=1))
    r = c.get("/")
    assert r.status_code == 303 and r.headers["location"] == "/login"
    assert ("pat", "session_expired") in [a[:2] for a in audit(served)]


def test_sign_ins_are_rate_limited(served: Served) -> None:
    c = client(served)
    for _ in range(5):
        r = c.post("/login", data={"username": "pat", "password": "wrong password!!", "csrf": csrf_of(c.get("/login").text)})
        assert r.status_code == 401
    r = c.post("/login", data={"username": "pat", "password": PASSWORD, "csrf": csrf_of(c.get("/login").text)})
    assert r.status_code == 429 and "too many" in r.text, "even the right password waits"
    served.clock.advance(timedelta(minutes=16))
    r = c.post("/login", data={"username": "pat", "password": PASSWORD, "csrf": csrf_of(c.get("/login").text)})
    assert r.status_code == 303
    assert [a[1] for a in audit(served)].count("sign_in_refused") == 5


def test_cookies_are_http_only_and_same_site_and_secure_behind_tls(served: Served) -> None:
    c = client(served)
    form = c.get("/login")
    r = c.post("/login", data={"username": "pat", "password": PASSWORD, "csrf": csrf_of(form.text)})
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Secure" not in cookie
    tls = TestClient(served.app, base_url="https://testserver", follow_redirects=False)
    form = tls.get("/login")
    r = tls.post("/login", data={"username": "pat", "password": PASSWORD, "csrf": csrf_of(form.text)})
    assert "Secure" in r.headers["set-cookie"]


def test_the_audit_table_is_append_only_and_carepath_audit_prints_it(served: Served,
                                                                    capsys: pytest.CaptureFixture) -> None:
    c, csrf = signed_in(served, "cora")
    task, ref = _open_task(served, "care_coordinator", completable=True)
    c.post(f"/tasks/{task}/complete", data={"csrf": csrf, "patient": ref})
    c.get(f"/patients/{ref}")
    db = served.folder / "out" / "access.sqlite"
    assert db.stat().st_mode & 0o777 == 0o600
    conn = sqlite3.connect(db)
    for statement in ("UPDATE audit SET user = 'x'", "DELETE FROM audit"):
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            conn.execute(statement)
    conn.close()
    capsys.readouterr()
    assert main(["audit", "--access-db", str(db)]) == 0
    out = capsys.readouterr().out
    assert re.search(rf"\tcora\tcomplete\t{ref}\t.*task={task}", out)
    assert re.search(rf"\tcora\tpatient_viewed\t{ref}\t", out)
    assert "\tcora\tsign_in\t-\t" in out


def test_users_add_reads_the_password_from_stdin_and_disable_signs_out(served: Served, monkeypatch,
                                                                         capsys: pytest.CaptureFixture) -> None:
    import io

    ledger = f"sqlite:///{served.folder / 'out' / 'ledger.sqlite'}"
    monkeypatch.setattr("sys.stdin", io.StringIO("another long password\n"))
    assert main(["users", "add", "rhea", "--role", "nurse", "--ledger", ledger,
                 "--pathway", "pathways/ketamine-iv.yaml"]) == 0
    monkeypatch.setattr("sys.stdin", io.StringIO("another long password\n"))
    assert main(["users", "add", "bob", "--role", "surgeon", "--ledger", ledger,
                 "--pathway", "pathways/ketamine-iv.yaml"]) == 1
    assert "unknown role" in capsys.readouterr().err
    c = client(served)
    r = c.post("/login", data={"username": "rhea", "password": "another long password",
                               "csrf": csrf_of(c.get("/login").text)})
    assert r.status_code == 303 and c.get("/").status_code == 200
    assert main(["users", "disable", "rhea", "--ledger", ledger]) == 0
    assert c.get("/").status_code == 303, "disabling ends the account's sessions"


@pytest.mark.parametrize("header", ["X-Forwarded-User"])
def test_a_trusted_sso_header_signs_in_only_when_configured(template: Path, tmp_path: Path, header: str) -> None:
    plain = serve_copy(template, tmp_path / "plain")
    assert client(plain).get("/", headers={header: "pat"}).status_code == 303, "off by default"
    sso = serve_copy(template, tmp_path / "sso", Settings(user_header=header))
    c = client(sso)
    assert c.get("/", headers={header: "pat"}).status_code == 200
    assert client(sso).get("/", headers={header: "nobody"}).status_code == 303, "unknown accounts are refused"
    plain.site.close(), sso.site.close()


def test_acknowledging_a_safety_task_keeps_it_open_and_shows_whose_it_is(served: Served) -> None:
    c, csrf = signed_in(served, "pat")
    board = served.site.boards["ketamine-iv"]
    first = next(board.rows("safety", role="prescriber"))
    c.post(f"/tasks/{first.id}/acknowledge", data={"csrf": csrf, "patient": first.patient, "back": "/"})
    page = c.get("/").text
    assert "acknowledged" in page and "acknowledged by pat" in page
    last = lines(served.events)[-1]
    assert (last["type"], last["data"]) == ("task_acknowledged", {"task": first.id, "by": "pat"})
    assert first.id in [t for t, _ in rows(page)], "acknowledging is not doing: the task stays open"
    mine = c.get("/?mine=1").text
    assert [t for t, _ in rows(mine)] == [first.id]
    c.post(f"/tasks/{first.id}/acknowledge", data={"csrf": csrf, "patient": first.patient})
    assert "already acknowledged by pat" in c.get("/").text


def test_the_board_moves_tasks_between_bands_as_time_passes_like_a_fresh_load(served: Served) -> None:
    """Re-banding only the tasks whose moment came gives the bands a fresh load gives."""
    from carepath.serve.board import BAND_KEYS, Board

    site = served.site
    board = site.boards["ketamine-iv"]
    start = served.clock.now
    # The horizon is a wall-clock week and 8 March 2026 changes the clocks: a task's moment
    # computed in absolute time would lie in the past and be re-banded on every page.
    assert all(moment > board.as_of for moment, _ in board.wakes), "every band change lies ahead"
    moved = False
    for hours in (1, 7, 24, 30, 72, 24 * 6, 24 * 9, 24 * 40):
        now = start + timedelta(hours=hours)
        before = {b: [e.id for e in board.rows(b)] for b in BAND_KEYS}
        board.advance(now)
        fresh = Board(board.compiled)
        fresh.load(site._open_work("ketamine-iv"), now)
        got = {b: [e.id for e in board.rows(b)] for b in BAND_KEYS}
        assert got == {b: [e.id for e in fresh.rows(b)] for b in BAND_KEYS}, hours
        assert board.beyond_total() == fresh.beyond_total()
        moved = moved or got != before
    assert moved, "some task changed band over forty days"


def test_the_patient_page_charts_phq9_with_item_9_marked_and_shows_the_episode(served: Served) -> None:
    c, _ = signed_in(served, "ada")
    board = served.site.boards["ketamine-iv"]
    ref = next(e.patient for e in board.rows("safety") if e.step == "suicide_risk_assessment")
    page = c.get(f"/patients/{ref}").text
    assert '<svg role="img" aria-label="PHQ-9 totals over time"' in page
    assert 'class="item9"' in page, "an item-9 answer above 0 is marked on the chart"
    for heading in ("Open work", "Blood pressure", "Sessions", "Timeline", "All tasks", "Letters"):
        assert f"<h2>{heading}</h2>" in page
    assert "PHQ-9 item 9 answered" in page, "events in clinical words"
    assert re.search(r'class="tag attention">flag: [^<]+</span> \w', page), "a flag says what it means"
    person = next(p for p in lines(served.patients) if p["patient"] == ref)
    assert person["family_name"] in page, "signed-in staff see the name on the patient's page"
    assert person["family_name"] not in c.get("/?role=all").text, "the worklist shows refs only"


def test_a_step_names_its_decisions_from_the_pathway() -> None:
    from carepath import api
    from carepath.serve.episode import step_decisions

    compiled = api.load_pathway(Path(__file__).resolve().parents[1] / "pathways" / "esketamine-spravato.yaml")
    assert step_decisions(compiled, "end_of_induction_review") == ("weekly", "every_2_weeks")
    assert step_decisions(compiled, "safety_review") == ()


def test_the_commands_say_what_is_missing_with_the_contract_exit_codes(tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture) -> None:
    demo = Path(__file__).resolve().parents[1] / "examples" / "demo"
    assert main(["serve", "pathways/ketamine-iv.yaml", "--ledger", f"sqlite:///{tmp_path}/ledger.sqlite",
                 "--patients", str(demo / "patients.jsonl"), "--events", str(demo / "events.jsonl")]) == 1
    assert "run a sweep first" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--help"])
    listed = capsys.readouterr().out
    assert all(re.search(rf"^\s+{c}\s", listed, re.M) for c in ("serve", "users", "audit"))


def test_serving_never_imports_prefect() -> None:
    import subprocess
    import sys

    code = ("import sys, carepath.serve.app, carepath.serve.site, carepath.serve.server, carepath.cli.serve; "
            "sys.exit('prefect' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


@pytest.mark.parametrize("back", ["//evil.example/", "/\\evil.example/", "https://evil.example/", "javascript:x"])
def test_an_action_returns_only_to_a_page_of_this_site(served: Served, back: str) -> None:
    c, csrf = signed_in(served, "cora")
    r = c.post("/tasks/no-such-task/complete", data={"csrf": csrf, "patient": "p-000001", "back": back})
    assert r.status_code == 303 and r.headers["location"] == "/"


def test_work_another_process_closed_leaves_the_worklist_after_a_background_rebuild(served: Served) -> None:
    """An event recorded and re-planned elsewhere (`carepath emit` and its flow, or a
    sweep) moves the ledger's generation: the board is rebuilt without blocking pages."""
    from dataclasses import replace

    from carepath.orchestrator import sequence
    from carepath.recording import record_event

    site = served.site
    task, ref = _open_task(served, "care_coordinator", completable=True)
    spec = site.specs["ketamine-iv"]
    line = json.dumps({"id": "elsewhere-1", "patient": ref, "type": "task_completed",
                       "at": served.clock.now.isoformat(), "data": {"task": task}})
    record_event(spec.compiled, served.patients, served.events, line)
    sequence.replan_patient(replace(spec, as_of=served.clock.now, run="elsewhere"), served.patients,
                            served.events, ref)
    assert task in site.boards["ketamine-iv"].entries, "nothing told this process yet"
    c, _ = signed_in(served, "cora")      # a page: it notices the generation moved
    site.wait_for_rebuilds()
    assert task not in site.boards["ketamine-iv"].entries
    assert task not in [t for t, _ in rows(c.get("/").text)]


def test_a_task_enters_the_horizon_at_the_wall_clock_moment_across_a_clock_change() -> None:
    """The horizon is a week of clinic wall-clock time; 8 March 2026 moves New York's
    clocks forward, so a task due 12 March 12:30 EDT comes within it on 5 March at 12:30
    EST (17:30 UTC), not an hour earlier (then it would be looked at again on every page)."""
    from datetime import datetime

    from carepath import api
    from carepath.serve.board import Board
    from carepath.sinks.base import Output, OutputKind

    compiled = api.load_pathway(Path(__file__).resolve().parents[1] / "pathways" / "ketamine-iv.yaml")
    body = {"id": "t-1", "step": "records_request", "title": "Request records", "role": "care_coordinator",
            "priority": "routine", "status": "open", "earliest": "2026-03-11T12:00:00-04:00",
            "due": "2026-03-12T12:30:00-04:00"}
    board = Board(compiled)
    as_of = datetime.fromisoformat("2026-03-05T17:00:00+00:00")
    board.load([Output("t-1", OutputKind.TASK, "p-1", body, "d")], as_of)
    assert board.beyond_total() == 1 and [m for m, _ in board.wakes] == [
        datetime.fromisoformat("2026-03-05T17:30:00+00:00")]
    board.advance(datetime.fromisoformat("2026-03-05T17:29:00+00:00"))
    assert board.beyond_total() == 1
    board.advance(datetime.fromisoformat("2026-03-05T17:31:00+00:00"))
    assert [e.id for e in board.rows("upcoming")] == ["t-1"] and board.beyond_total() == 0


def test_serving_a_changed_pathway_under_an_old_version_number_is_refused_at_start(template: Path,
                                                                                   tmp_path: Path) -> None:
    """The ledger ran this version with other rules (here: its archived digest differs)."""
    import shutil

    from carepath.orchestrator.pinning import VersionReused
    from carepath.serve.server import clock_from
    from carepath.serve.site import Site
    from serve_site import AS_OF, PATHWAY

    shutil.copytree(template, tmp_path / "site")
    ledger = tmp_path / "site" / "out" / "ledger.sqlite"
    conn = sqlite3.connect(ledger)
    conn.execute("UPDATE pathway_versions SET digest = 'other rules'")
    conn.commit()
    conn.close()
    with pytest.raises(VersionReused, match="give the changed pathway a new version"):
        Site([PATHWAY], f"sqlite:///{ledger}", tmp_path / "site" / "cohort" / "patients.jsonl",
             tmp_path / "site" / "cohort" / "events.jsonl", tmp_path / "site" / "out", clock_from(AS_OF), pdf=False)


def test_users_add_as_the_contract_writes_it_creates_an_account_serve_finds(template: Path, tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """`carepath users add USER --role ROLE` with nothing else: the account lands in the
    machine's accounts database, and a served ledger with none of its own signs it in."""
    import io

    from carepath.serve.server import ServeOptions, build

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.delenv("CAREPATH_ACCESS_DB", raising=False)
    monkeypatch.setattr("sys.stdin", io.StringIO("a password long enough\n"))
    assert main(["users", "add", "vera", "--role", "prescriber"]) == 0
    assert (tmp_path / "data" / "carepath" / "access.sqlite").stat().st_mode & 0o777 == 0o600
    shutil.copytree(template, tmp_path / "site")
    (tmp_path / "site" / "out" / "access.sqlite").unlink()
    site = tmp_path / "site"
    app, served_site, store, warnings = build(ServeOptions(
        [str(PATHWAY)], f"sqlite:///{site / 'out' / 'ledger.sqlite'}", str(site / "cohort" / "patients.jsonl"),
        str(site / "cohort" / "events.jsonl"), pdf=False))
    try:
        assert store.path == tmp_path / "data" / "carepath" / "access.sqlite"
        assert not any("no accounts" in w for w in warnings)
        c = TestClient(app, base_url="http://testserver", follow_redirects=False)
        r = c.post("/login", data={"username": "vera", "password": "a password long enough",
                                   "csrf": csrf_of(c.get("/login").text)})
        assert r.status_code == 303 and c.get("/").status_code == 200
    finally:
        served_site.close()
