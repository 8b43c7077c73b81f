"""Hostile and mistaken input, and a hostile machine: one case per attack.

Each case asserts what a user sees: an exit code from the contract (0 ok, 1 invalid
input, 2 bad command line, 69 a service did not answer; 70 only for a bug), a message
that says what to change, and that the valid rest of the input is still planned.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "examples" / "demo"
PATHWAY = ROOT / "pathways" / "ketamine-iv.yaml"
AS_OF = "2026-03-05T17:00:00+00:00"

pytestmark = pytest.mark.slow  # `carepath` subprocesses, Prefect servers, a loaded machine


def carepath(*args: str, env: dict[str, str] | None = None, timeout: float = 300,
             stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "carepath.cli.main", *args], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=timeout, input=stdin)


def clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The user's environment without a Prefect server configured, Prefect's home in tmp."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env["PREFECT_HOME"] = str(tmp_path / "prefect-home")
    env.update(extra)
    return env


def run_args(out: Path, *extra: str) -> list[str]:
    return ["run", str(PATHWAY), "--patients", str(DEMO / "patients.jsonl"), "--events",
            str(DEMO / "events.jsonl"), "--out", str(out), "--as-of", AS_OF, "--no-pdf", *extra]


# --- 1. the command line and Prefect's server -------------------------------------------


@pytest.mark.parametrize("extra, word", [
    (["--shard-size", "-5"], "--shard-size"),
    (["--shard-size", "0"], "--shard-size"),
    (["--workers", "-3"], "--workers"),
    (["--as-of", "9999-12-30T00:00:00+00:00"], "out of range"),
    (["--as-of", "0001-01-01T00:00:00+05:00"], "out of range"),
])
def test_bad_numbers_on_the_command_line_are_exit_2_before_anything_starts(tmp_path: Path, extra, word) -> None:
    args = run_args(tmp_path / "out")
    if extra[0] == "--as-of":
        args = args[:args.index("--as-of")] + args[args.index("--as-of") + 2:]
    result = carepath(*args, *extra, env=clean_env(tmp_path))
    assert result.returncode == 2, result.stderr
    assert word in result.stderr
    # Prefect's home untouched: no server was started.
    assert not (tmp_path / "out").exists() and not (tmp_path / "prefect-home").exists()


def test_plan_with_an_as_of_that_cannot_be_planned_is_exit_2(tmp_path: Path) -> None:
    result = carepath("plan", str(PATHWAY), "--patients", str(DEMO / "patients.jsonl"), "--events",
                      str(DEMO / "events.jsonl"), "--as-of", "9999-12-30T00:00:00+00:00")
    assert result.returncode == 2
    assert "between 1900 and 2999" in result.stderr


def test_an_unreachable_prefect_api_url_is_exit_69_naming_the_server_and_setting(tmp_path: Path) -> None:
    env = clean_env(tmp_path, PREFECT_API_URL="http://127.0.0.1:9/api")
    result = carepath(*run_args(tmp_path / "out"), env=env)
    assert result.returncode == 69, result.stderr
    assert "http://127.0.0.1:9/api" in result.stderr and "PREFECT_API_URL" in result.stderr
    assert "internal error" not in result.stderr


def test_a_temporary_server_that_does_not_start_in_time_is_exit_69_naming_the_setting(tmp_path: Path) -> None:
    # The user's own (here: impossible) budget is honoured, and running out of it is a
    # service failure with the setting to change, not a bug.
    env = clean_env(tmp_path, PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="0")
    result = carepath(*run_args(tmp_path / "out"), env=env)
    assert result.returncode == 69, result.stderr
    assert "temporary local server" in result.stderr
    assert "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS" in result.stderr
    assert "prefect server start --background" in result.stderr
    assert not (tmp_path / "out" / ".carepath-work").exists()


def test_the_temporary_server_gets_a_budget_for_a_loaded_machine_unless_the_user_set_one(tmp_path: Path) -> None:
    def budget(**env: str) -> int:
        code = "from carepath.runtime.server import startup_budget; print(startup_budget())"
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                              env=clean_env(tmp_path, **env), timeout=120)
        return int(done.stdout)

    assert budget() >= 120  # Prefect's own default is 20 s; a loaded 2-core machine needs 30-60 s
    assert budget(PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="45") == 45


def test_a_temporary_server_that_dies_while_starting_is_noticed_at_once() -> None:
    from carepath.runtime.server import _Watched

    process = _Watched(subprocess.Popen(["sh", "-c", "exit 5"]))
    process.wait(timeout=30)
    with pytest.raises(RuntimeError, match="exited with code 5"):
        process.poll()  # Prefect's start-up loop would otherwise poll until its budget ran out
    port_taken = _Watched(subprocess.Popen(["sh", "-c", "exit 3"]))
    port_taken.wait(timeout=30)
    assert port_taken.poll() == 3  # Prefect retries this one on another port


def test_a_child_server_dies_with_a_run_killed_by_sigkill(tmp_path: Path) -> None:
    # The same launch wrapper Prefect's server goes through; a `sleep` stands in for it.
    script = textwrap.dedent(f"""
        import subprocess, sys, time
        from carepath.runtime.server import _children_die_with_us
        with _children_die_with_us():
            child = subprocess.Popen(["sleep", "120"])
        open({str(tmp_path / "pid")!r}, "w").write(str(child.pid))
        time.sleep(120)
    """)
    parent = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "pid").exists() or not (tmp_path / "pid").read_text():
            assert time.monotonic() < deadline, "the parent never started its child"
            time.sleep(0.1)
        child = int((tmp_path / "pid").read_text())
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(timeout=10)
        deadline = time.monotonic() + 10
        while _alive(child):
            assert time.monotonic() < deadline, "the child outlived its killed parent"
            time.sleep(0.1)
    finally:
        parent.kill()
        parent.wait()


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


@pytest.mark.integration
def test_the_temporary_prefect_server_dies_with_a_run_killed_by_sigkill(tmp_path: Path) -> None:
    run = subprocess.Popen([sys.executable, "-m", "carepath.cli.main", *run_args(tmp_path / "out")], cwd=ROOT,
                           env=clean_env(tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while not (servers := _children(run.pid)):
            assert run.poll() is None and time.monotonic() < deadline, "no server was started"
            time.sleep(0.1)
        os.kill(run.pid, signal.SIGKILL)
        run.wait(timeout=30)
        deadline = time.monotonic() + 30
        while any(_alive(pid) for pid in servers):
            assert time.monotonic() < deadline, "the temporary server outlived its killed run"
            time.sleep(0.1)
    finally:
        run.kill()
        run.wait()


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_scratch_files_are_removed_when_the_run_is_interrupted(tmp_path: Path) -> None:
    from carepath.runtime.flows import WORK_DIR, _one_run_per_folder

    @_one_run_per_folder
    def body(out: str) -> None:
        scratch = Path(out) / WORK_DIR / "shards"
        scratch.mkdir(parents=True)
        (scratch / "0.jsonl").write_text('{"given_name": "Ada"}\n')
        raise KeyboardInterrupt  # what SIGTERM and Ctrl-C become in `carepath run`

    with pytest.raises(KeyboardInterrupt):
        body(str(tmp_path))
    assert not (tmp_path / WORK_DIR).exists()


def _busy_loops(seconds: int) -> list[subprocess.Popen]:
    """Two busy processes per core, as on a shared or loaded machine; they end by themselves."""
    loop = f"import time\nt = time.time()\nwhile time.time() - t < {seconds}: pass"
    return [subprocess.Popen([sys.executable, "-c", loop]) for _ in range(2 * (os.cpu_count() or 1))]


@pytest.mark.integration
def test_the_quick_start_main_job_succeeds_on_a_saturated_cpu(tmp_path: Path) -> None:
    """`carepath run` on the demo cohort (Prefect's temporary server, as the Quick start
    uses it) while every core is busy: a slow start is waited for, not an exit 70.
    Letters as text and HTML only, so the time goes to the start-up under test."""
    loops = _busy_loops(900)
    try:
        result = carepath(*run_args(tmp_path / "out", "--export"), env=clean_env(tmp_path), timeout=600)
    finally:
        for loop in loops:
            loop.kill()
            loop.wait()
    assert result.returncode == 0, result.stderr[-2000:]
    lines = (tmp_path / "out" / "tasks.jsonl").read_text().splitlines()
    assert lines and all(json.loads(line)["patient"] for line in lines)
    assert "Prefect flow run" in result.stdout


# --- 2. the PHI boundary under failure --------------------------------------------------


def pathway_copy(tmp_path: Path, templates: dict[str, str] | None = None, edit=None) -> Path:
    """The reference pathway and its letter templates copied into tmp (pathways/ beside
    templates/letters/, as in the repository), some templates replaced."""
    import shutil

    shutil.copytree(ROOT / "templates" / "letters", tmp_path / "templates" / "letters",
                    ignore=shutil.ignore_patterns("esketamine-spravato"))
    for name, text in (templates or {}).items():
        (tmp_path / "templates" / "letters" / f"{name}.md.j2").write_text(text)
    (tmp_path / "pathways").mkdir()
    target = tmp_path / "pathways" / "ketamine-iv.yaml"
    source = PATHWAY.read_text()
    target.write_text(edit(source) if edit else source)
    return target


def demo_names() -> set[str]:
    names = set()
    for line in (DEMO / "patients.jsonl").read_text().splitlines():
        patient = json.loads(line)
        names |= {patient["given_name"], patient["family_name"]}
    return {n for n in names if len(n) >= 4}  # short names could match unrelated bytes


@pytest.mark.integration
def test_a_letter_that_fails_on_a_patients_name_fails_alone_and_leaves_no_name_in_prefect(tmp_path: Path) -> None:
    # The template error quotes the value it could not use: the family name.
    pathway = pathway_copy(tmp_path, {"welcome": "Dear {{ params[patient.family_name] }}\n"})
    args = run_args(tmp_path / "out")
    args[1] = str(pathway)
    env = clean_env(tmp_path)
    result = carepath(*args, env=env, timeout=600)
    # One patient's letter is that patient's problem: each welcome letter fails alone,
    # recorded with a reason that names the template, not the value; the run goes on.
    assert result.returncode == 0, result.stderr[-2000:]
    assert "letters not delivered:" in result.stdout and "failed this run" in result.stdout
    worklist = (tmp_path / "out" / "worklist.html").read_text()
    assert "its template &#39;welcome&#39; could not be rendered" in worklist \
        or "its template 'welcome' could not be rendered" in worklist
    stored = b"".join(p.read_bytes() for p in (tmp_path / "prefect-home").rglob("*") if p.is_file())
    assert b"carepath-sweep" in stored  # the scan sees the run's records
    leaked = sorted(n for n in demo_names() if n.encode() in stored or n in worklist)
    assert not leaked, f"patient names in Prefect's database or the worklist: {leaked}"


# --- 3. whole-input robustness: one hostile line is one rejected line -------------------


GOOD = {"id": "ok-1", "patient": "p-2", "type": "enrolled", "at": "2026-03-01T10:00:00-05:00", "data": {}}


def _both_readers(path: Path) -> tuple[tuple, tuple]:
    """(events, rejections) from the reference reader and as `carepath plan` reads them
    (through its event store, one patient at a time)."""
    from carepath.api import load_pathway
    from carepath.orchestrator.planning import read_cohort
    from carepath.records import read_events

    compiled = load_pathway(Path(__file__).resolve().parents[1] / "pathways" / "ketamine-iv.yaml")
    events, rejected = read_events(path, event_types=compiled.event_fields, patients={"p-1", "p-2"})
    reference = ([(e.line, e.id) for e in events], [(r.line, r.reason) for r in rejected])
    patients = path.with_name("patients.jsonl")
    patients.write_text("".join(json.dumps({"patient": ref, "given_name": "A", "family_name": "B"}) + "\n"
                                for ref in ("p-1", "p-2")))
    cohort = read_cohort(compiled, patients, path, group_size=1)
    planned_events, planned_rejected = [], [r for r in cohort.rejected if r.file == "events"]
    for _, found, bad in cohort.groups():
        planned_events += [e for group in found.values() for e in group]
        planned_rejected += bad
    planned = (sorted((e.line, e.id) for e in planned_events), sorted((r.line, r.reason) for r in planned_rejected))
    return reference, planned


@pytest.mark.parametrize("line, reason", [
    ('{"id": "x", "patient": "p-1", "type": "enrolled", "at": "0001-01-01T00:30:00+05:00", "data": {}}',
     "out of range"),
    ('{"id": "x", "patient": "p-1", "type": "enrolled", "at": "9999-12-31T23:30:00-05:00", "data": {}}',
     "out of range"),
    ('{"id": "x", "patient": "p-1", "type": "session_scheduled", "at": "2026-03-01T10:00:00-05:00", '
     '"data": {"session": "s-1", "start": "9999-12-31T10:00:00+00:00"}}', "data.start is out of range"),
    ('{"id": "x", "patient": "p-1", "type": "assessment_recorded", "at": "2026-03-01T10:00:00-05:00", '
     '"data": {"instrument": "phq9", "items": [3,0,0,0,0,0,0,0,0], "items": [0,0,0,0,0,0,0,0,0]}}',
     "field 'items' twice"),
    ('{"id": "x", "patient": "p-1", "patient": "p-2", "type": "enrolled", "at": "2026-03-01T10:00:00-05:00"}',
     "field 'patient' twice"),
    ('{"id": "x", "patient": "p-1", "type": "enrolled", "at": "2026-03-01T10:00:00-05:00", "data": {}, '
     '"id": "\\u0078"}', "field 'id' twice"),
    ('{"id": "x", "patient": "p-1", "type": "screening_recorded", "at": "2026-03-01T10:00:00-05:00", '
     '"data": {"trd_trials": -2}}', "data.trd_trials must not be negative"),
    ('{"id": "x\\u0000y", "patient": "p-1", "type": "enrolled", "at": "2026-03-01T10:00:00-05:00", "data": {}}',
     "'id' holds a control character"),
    ('{"id": "x\\ny", "patient": "p-1", "type": "enrolled", "at": "2026-03-01T10:00:00-05:00", "data": {}}',
     "'id' holds a control character"),
    ('{"id": "x", "patient": "p-1", "type": "vitals_recorded", "at": "2026-03-01T10:00:00-05:00", '
     '"data": {"systolic": -120, "diastolic": 80, "phase": "pre_dose"}}', "data.systolic must not be negative"),
])
def test_a_hostile_event_line_is_rejected_by_both_readers_and_the_rest_is_read(tmp_path: Path, line, reason) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text(line + "\n" + json.dumps(GOOD) + "\n")
    reference, streamed = _both_readers(path)
    assert reference == streamed
    events, rejected = reference
    assert events == [(2, "ok-1")]
    assert [n for n, _ in rejected] == [1] and reason in rejected[0][1], rejected


@pytest.mark.parametrize("first, second", [
    ({"patient": "p-1"}, {"patient": "p-2"}),                               # other patient (other shard)
    ({"at": "2026-03-01T10:00:00-05:00"}, {"at": "2026-03-01T15:00:00+00:00"}),  # same instant, other offset
    ({"type": "enrolled"}, {"type": "discharged"}),
    ({}, {"id": "\\u0065-1", "type": "discharged"}),                       # the same id written with an escape
])
def test_a_reused_event_id_with_other_content_is_rejected_in_every_position(tmp_path: Path, first, second) -> None:
    base = {"id": "e-1", "patient": "p-1", "type": "enrolled", "at": "2026-03-01T10:00:00-05:00", "data": {}}
    a, b = dict(base, **first), dict(base, **second)
    lines = [json.dumps(a), json.dumps(b).replace("\\\\u", "\\u")]
    for order in (lines, lines[::-1], [lines[0], json.dumps(GOOD), lines[1]]):
        path = tmp_path / "events.jsonl"
        path.write_text("\n".join(order) + "\n")
        reference, streamed = _both_readers(path)
        assert reference == streamed
        events, rejected = reference
        assert [i for _, i in events].count("e-1") == 1
        assert len(rejected) == 1 and "already used" in rejected[0][1]


@pytest.mark.parametrize("patient, reason", [
    ({"timezone": "localtime"}, "this computer's own setting"),
    ({"timezone": "posix/America/New_York"}, "this computer's own setting"),
    ({"timezone": "Factory"}, "this computer's own setting"),
    ({"given_name": "Ada\nDear Sir"}, "'given_name' holds a control character or line break at character 4"),
    ({"family_name": "By\u0000ron"}, "'family_name' holds a control character"),
    ({"family_name": "Byron\u0007"}, "'family_name' holds a control character"),
    ({"given_name": "Ada\u2028- bullet"}, "'given_name' holds a control character"),
    ({"email": "a@example.org\r\nBcc: x@example.org"}, "'email' holds a control character"),
    ({"patient": "p-1\u0007"}, "'patient' holds a control character"),
])
def test_a_hostile_patient_line_is_rejected_and_the_rest_is_read(tmp_path: Path, patient, reason) -> None:
    from carepath.records import read_patients

    path = tmp_path / "patients.jsonl"
    bad = dict({"patient": "p-1", "given_name": "Ada", "family_name": "Byron"}, **patient)
    path.write_text(json.dumps(bad) + "\n" + json.dumps({"patient": "p-2", "given_name": "B", "family_name": "C"})
                    + "\n")
    patients, rejected = read_patients(path, default_timezone="America/New_York")
    assert list(patients) == ["p-2"]
    assert [r.line for r in rejected] == [1] and reason in rejected[0].reason
    assert "Dear Sir" not in rejected[0].reason and "Byron" not in rejected[0].reason  # names are never echoed


def test_one_hostile_line_does_not_stop_the_cohorts_plan(tmp_path: Path) -> None:
    """An instant near datetime's limits used to stop `plan` for everyone (OverflowError)."""
    patients = tmp_path / "patients.jsonl"
    patients.write_text("\n".join(json.dumps({"patient": p, "given_name": "A", "family_name": "B"})
                                  for p in ("p-1", "p-2")) + "\n")
    events = tmp_path / "events.jsonl"
    lines = [
        {"id": "e-1", "patient": "p-1", "type": "enrolled", "at": "0001-01-01T00:30:00+05:00", "data": {}},
        {"id": "e-2", "patient": "p-2", "type": "enrolled", "at": "2026-03-01T10:00:00-05:00", "data": {}},
        {"id": "e-3", "patient": "p-2", "type": "assessment_recorded", "at": "2026-03-02T10:00:00-05:00",
         "data": {"instrument": "phq9", "items": [0, 0, 0, 0, 0, 0, 0, 0, 2]}},
        {"id": "e-4", "patient": "p-1", "type": "session_scheduled", "at": "2026-03-01T10:00:00-05:00",
         "data": {"session": "s-1", "start": "9999-12-31T10:00:00+00:00"}},
    ]
    events.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    result = carepath("plan", str(PATHWAY), "--patients", str(patients), "--events", str(events), "--as-of", AS_OF)
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    assert sorted(r["line"] for r in plan["rejected"]) == [1, 4]
    urgent = [t for p in plan["patients"] if p["patient"] == "p-2" for t in p["tasks"]]
    assert any(t["step"] == "suicide_risk_assessment" for t in urgent)


def test_a_name_is_data_in_a_letter_no_lines_no_markup_no_control_characters(tmp_path: Path) -> None:
    from carepath.sandbox import letter_environment
    from carepath.sinks.markup import to_html, to_text

    (tmp_path / "t.md.j2").write_text("# Hello {{ name }}\n\nDear {{ name }},\n\n- A real bullet.\n")
    name = "Ada\n\n- Call 555-0100 **now**\u0000\u0007\u2028# Subject"
    markup = letter_environment(tmp_path, html=False).get_template("t.md.j2").render(name=name)
    text, page = to_text(markup), to_html(markup)
    assert text.count("\n- ") == 1 and "- A real bullet." in text       # the name added no bullet ...
    assert "Dear Ada - Call 555-0100 **now** # Subject," in text        # ... and stayed one line, verbatim
    assert not any(c in text + page for c in "\u0000\u0007\u2028")
    assert "<strong>" not in page and page.count("<li>") == 1 and "**now**" in page


# --- 4. resource limits: validate refuses what would hang or explode, and never hangs ---


CONDITION = "when: event.data.contraindications | length > 0"


def _validate(path: Path) -> tuple[int, list[dict]]:
    result = carepath("validate", "--format", "json", str(path), timeout=60)
    assert "internal error" not in result.stderr and "Traceback" not in result.stderr, result.stderr
    return result.returncode, json.loads(result.stdout)


@pytest.mark.parametrize("condition, code", [
    ("10 ** (10 ** 8) > 1", "CP507"),
    ("'ab' * 99999999999 == 'x'", "CP507"),
    ("event.data.trd_trials * (2 ** 100000) > 1", "CP507"),
    ("(" * 3000 + "1" + ")" * 3000 + " > 0", "CP507"),
    ("(" * 120 + "1" + ")" * 120 + " > 0", "CP507"),
    ("event.data.trd_trials > " + "9" * 5000, "CP507"),
])
def test_validate_refuses_a_condition_that_would_hang_or_explode(tmp_path: Path, condition, code) -> None:
    pathway = pathway_copy(tmp_path, edit=lambda text: text.replace(CONDITION, f"when: {json.dumps(condition)}"))
    status, diagnostics = _validate(pathway)
    assert status == 1 and [d["code"] for d in diagnostics] == [code], diagnostics
    assert diagnostics[0]["line"] > 1


@pytest.mark.parametrize("duration", ["99999999999w", "600000w"])
def test_a_window_longer_than_a_century_is_a_coded_error_not_an_overflow(tmp_path: Path, duration) -> None:
    pathway = pathway_copy(tmp_path, edit=lambda text: text.replace("value: 48h", f"value: {duration}", 1))
    status, diagnostics = _validate(pathway)
    assert status == 1 and diagnostics and "longer than 100 years" in diagnostics[0]["message"]


def test_a_5000_digit_number_in_a_pathway_is_a_coded_error(tmp_path: Path) -> None:
    pathway = pathway_copy(tmp_path, edit=lambda text: text.replace("    value: 2\n", "    value: " + "9" * 5000 + "\n",
                                                                      1))
    status, diagnostics = _validate(pathway)
    assert status == 1 and diagnostics and all(d["code"].startswith("CP") for d in diagnostics)


@pytest.mark.parametrize("template, code", [
    ("{{ 10 ** (10 ** 8) }}", "CP605"),
    ("{{ 'a' * 10 ** 10 }}", "CP605"),
    ("{{ lipsum(10 ** 6) }}", "CP602"),
    ("{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}", "CP602"),
    ("{% include 'welcome.md.j2' %}", "CP605"),
    ("{{ patient.given_name | shout }}", "CP604"),
    ("{{ patient.given_name | center(1000000000) }}", "CP604"),
    ("{% if patient.given_name is shouting %}x{% endif %}", "CP601"),
    ("{% include patient.family_name %}", "CP603"),
    ("{{ " + "(" * 3000 + "1" + ")" * 3000 + " }}", "CP605"),
])
def test_validate_refuses_a_template_that_would_hang_or_explode(tmp_path: Path, template, code) -> None:
    pathway = pathway_copy(tmp_path, {"welcome": f"# Welcome\n\nDear {{{{ patient.given_name }}}},\n\n{template}\n"})
    started = time.monotonic()
    status, diagnostics = _validate(pathway)
    assert time.monotonic() - started < 60
    assert status == 1 and code in [d["code"] for d in diagnostics], diagnostics
    assert all(d["path"].endswith("welcome.md.j2") for d in diagnostics if d["code"] == code)


@pytest.mark.parametrize("source", [
    "{{ 10 ** (10 ** 8) }}", "{{ 'ab' * 99999999999 }}", "{{ '%0999999999d' % 1 }}", "{{ 'x'.center(10 ** 9) }}",
    "{{ 'x'.ljust(10 ** 9) }}", "{{ '{:>999999999}'.format(1) }}", "{% include 't.md.j2' %}",
    "{% macro m() %}{{ m() }}{% endmacro %}{{ m() }}", "{% for x in xs %}{% for y in xs %}" + "x" * 1000
    + "{% endfor %}{% endfor %}",
])
def test_a_letter_render_that_would_hang_or_explode_stops_with_a_template_error(tmp_path: Path, source) -> None:
    from jinja2 import TemplateError

    from carepath.sandbox import letter_environment

    (tmp_path / "t.md.j2").write_text(source)
    started = time.monotonic()
    with pytest.raises(TemplateError):
        letter_environment(tmp_path, html=False).get_template("t.md.j2").render(xs=list(range(2000)))
    assert time.monotonic() - started < 30


def test_a_condition_that_grows_past_the_bounds_at_run_time_is_a_condition_error() -> None:
    from carepath.compile.conditions import Condition, ConditionError

    condition = Condition.compile("event.data.n ** event.data.n > 1", "rules[0].when")
    with pytest.raises(ConditionError, match="too large"):
        condition({"event": {"data": {"n": 10 ** 8}}})
    assert Condition.compile("'ab' * n == 'x'", "w")({"n": 2}) is False
    with pytest.raises(ConditionError):
        Condition.compile("'ab' * n == 'x'", "w")({"n": 99999999999})


# --- 5. confinement: templates come from the pathway's repository only ------------------


def test_an_absolute_template_folder_is_refused(tmp_path: Path) -> None:
    pathway = pathway_copy(tmp_path, edit=lambda text: text.replace("id: ketamine-iv\n",
                                                                      f"id: ketamine-iv\ntemplates: {tmp_path}/templates/letters\n", 1))
    status, diagnostics = _validate(pathway)
    assert status == 1 and "CP606" in [d["code"] for d in diagnostics]
    assert [d for d in diagnostics if d["code"] == "CP606"][0]["path"].endswith("ketamine-iv.yaml")


def test_a_template_folder_climbing_out_of_the_repository_is_refused(tmp_path: Path) -> None:
    inner = tmp_path / "repo"
    inner.mkdir()
    pathway = pathway_copy(inner)
    (tmp_path / "elsewhere").mkdir()
    import shutil
    shutil.copytree(inner / "templates", tmp_path / "elsewhere" / "templates")
    pathway.write_text(pathway.read_text().replace("id: ketamine-iv\n",
                                                   "id: ketamine-iv\ntemplates: ../../elsewhere/templates/letters\n", 1))
    status, diagnostics = _validate(pathway)
    assert status == 1 and [d["code"] for d in diagnostics] == ["CP606"], diagnostics


def test_a_template_symlinked_out_of_the_repository_is_refused_by_validate_and_at_render(tmp_path: Path) -> None:
    from jinja2 import TemplateError

    from carepath.sandbox import letter_environment

    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / ".git").mkdir()
    pathway = pathway_copy(repo)
    secret = tmp_path / "secret.txt"
    secret.write_text("outside text that must never reach a letter\n")
    welcome = repo / "templates" / "letters" / "welcome.md.j2"
    welcome.unlink()
    welcome.symlink_to(secret)
    status, diagnostics = _validate(pathway)
    assert status == 1 and [d["code"] for d in diagnostics] == ["CP606"], diagnostics
    with pytest.raises(TemplateError):
        letter_environment(repo / "templates" / "letters", html=False).get_template("welcome.md.j2").render()


# --- 6. run faults ----------------------------------------------------------------------


def _first_run(tmp_path: Path) -> Path:
    out = tmp_path / "out"
    result = carepath(*run_args(out), env=clean_env(tmp_path), timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert any((out / "letters").rglob("*.txt"))
    return out


@pytest.mark.integration
def test_ledger_faults_are_clear_messages_and_never_resend_letters(tmp_path: Path) -> None:
    out = _first_run(tmp_path)
    ledger = out / "ledger.sqlite"
    before = {p: p.stat().st_mtime_ns for p in (out / "letters").rglob("*") if p.is_file()}

    for sidecar in out.glob("ledger.sqlite*"):
        sidecar.unlink()  # deleted: the letters on disk are the evidence
    result = carepath(*run_args(out), env=clean_env(tmp_path))
    assert result.returncode == 1 and str(ledger) in result.stderr and "written again" in result.stderr

    ledger.write_bytes(b"this is not a database" * 100)  # corrupt
    result = carepath(*run_args(out), env=clean_env(tmp_path))
    assert result.returncode == 1 and str(ledger) in result.stderr and "not a usable carepath ledger" in result.stderr

    after = {p: p.stat().st_mtime_ns for p in (out / "letters").rglob("*") if p.is_file()}
    assert after == before  # no letter was written again


def test_an_unreachable_ledger_database_is_exit_69_before_prefect_starts(tmp_path: Path) -> None:
    env = clean_env(tmp_path)
    env.pop("PGPASSWORD", None)
    result = carepath(*run_args(tmp_path / "out", "--ledger", "postgresql+psycopg://carepath@127.0.0.1:9/carepath"),
                      env=env)
    assert result.returncode == 69, result.stderr
    assert "the ledger database postgresql+psycopg://carepath@127.0.0.1:9/carepath did not answer" in result.stderr
    assert "PGPASSWORD" in result.stderr and "flow run" not in result.stderr
    assert not list((tmp_path / "prefect-home").rglob("*.db"))  # Prefect's server never started


def test_a_second_run_on_one_folder_waits_for_the_first_and_says_so(tmp_path: Path) -> None:
    from carepath.outlock import FolderBusy, output_lock

    notes: list[str] = []
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from carepath.outlock import output_lock
        with output_lock(Path({str(tmp_path)!r})):
            print("locked", flush=True)
            time.sleep(float(sys.stdin.readline()))
    """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(FolderBusy, match=f"process {holder.pid}"), output_lock(tmp_path, wait=0.5,
                                                                                  note=notes.append):
            pass
        assert notes and str(tmp_path) in notes[0] and "waiting" in notes[0]
        holder.stdin.write("1\n")
        holder.stdin.flush()
        started = time.monotonic()
        with output_lock(tmp_path, wait=60):  # serialised: granted once the first run lets go
            assert time.monotonic() - started >= 0.5
        assert holder.wait(timeout=30) == 0
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.parametrize("which", ["--patients", "--events"])
@pytest.mark.parametrize("special", ["fifo", "/dev/zero"])
def test_inputs_that_are_not_regular_files_are_refused(tmp_path: Path, which, special) -> None:
    if special == "fifo":
        target = tmp_path / "input.jsonl"
        os.mkfifo(target)
    else:
        target = Path(special)
    args = {"--patients": str(DEMO / "patients.jsonl"), "--events": str(DEMO / "events.jsonl"), which: str(target)}
    for command in (["plan", str(PATHWAY), "--as-of", AS_OF], ["run", str(PATHWAY), "--out", str(tmp_path / "o")]):
        result = carepath(*command, "--patients", args["--patients"], "--events", args["--events"],
                          env=clean_env(tmp_path), timeout=60)
        assert result.returncode == 1, result.stderr
        assert str(target) in result.stderr and "not a file" in result.stderr


@pytest.mark.parametrize("special", ["fifo", "/dev/zero"])
def test_validate_refuses_a_pipe_or_a_device(tmp_path: Path, special) -> None:
    target = Path(special)
    if special == "fifo":
        target = tmp_path / "p.yaml"
        os.mkfifo(target)
    status, diagnostics = _validate(target)
    assert status == 1 and [d["code"] for d in diagnostics] == ["CP100"]


@pytest.mark.parametrize("stdin, reason", [
    (subprocess.DEVNULL, "not recorded"),
    ("x" * (2 * 1024 * 1024), "more than"),
    ("{}\n" * 10, "one event"),
])
def test_emit_from_stdin_is_bounded(tmp_path: Path, stdin, reason) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text("")
    command = [sys.executable, "-m", "carepath.cli.main", "emit", str(PATHWAY), "--patients",
               str(DEMO / "patients.jsonl"), "--events", str(events), "-"]
    kwargs = {"stdin": stdin} if stdin is subprocess.DEVNULL else {"input": stdin}
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, **kwargs)
    assert result.returncode == 1 and reason in result.stderr, result.stderr
    assert events.read_text() == ""


def test_emit_with_stdin_closed_is_a_clear_error(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text("")
    script = ("import os, sys; os.close(0); sys.stdin = None; from carepath.cli.main import main; "
              f"sys.exit(main(['emit', {str(PATHWAY)!r}, '--patients', {str(DEMO / 'patients.jsonl')!r}, "
              f"'--events', {str(events)!r}, '-']))")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "standard input is closed" in result.stderr


@pytest.mark.parametrize("command", ["letters", "run"])
def test_out_naming_an_existing_file_is_a_usage_error(tmp_path: Path, command) -> None:
    out = tmp_path / "file.txt"
    out.write_text("keep me")
    result = carepath(command, str(PATHWAY), "--patients", str(DEMO / "patients.jsonl"), "--events",
                      str(DEMO / "events.jsonl"), "--as-of", AS_OF, "--out", str(out), env=clean_env(tmp_path))
    assert result.returncode == 2 and "is an existing file" in result.stderr
    assert out.read_text() == "keep me"


# --- 7. review and docs defects ---------------------------------------------------------


def test_diff_names_a_letter_template_as_where_a_parameter_is_used(tmp_path: Path) -> None:
    param = ("parameters:\n", "parameters:\n  parking_fee:\n    value: 5\n    source: CLINIC\n"
                              "    note: Quoted in the welcome letter.\n")
    old = pathway_copy(tmp_path, {"welcome": "# Welcome\n\nParking costs {{ params.parking_fee }} dollars.\n"},
                       edit=lambda text: text.replace(*param, 1))
    new = old.with_name("new.yaml")
    new.write_text(old.read_text().replace("    value: 5\n", "    value: 7\n", 1))
    status, diagnostics = _validate(old)
    assert status == 0 and "CP311" not in [d["code"] for d in diagnostics]  # validate: used ...
    result = carepath("diff", str(old), str(new))
    assert result.returncode == 0, result.stderr
    assert "not used" not in result.stdout and "letter welcome (template)" in result.stdout, result.stdout  # diff too


def test_a_scenario_with_misspelt_names_fails_at_their_lines(tmp_path: Path) -> None:
    from carepath.testing.scenarios import run_scenario

    scenario = tmp_path / "typo.scenario.yaml"
    scenario.write_text(textwrap.dedent(f"""\
        pathway: {PATHWAY}
        events:
          - {{id: e-1, type: enrolled, at: "2026-03-02T09:00:00-05:00"}}
        as_of: "2026-03-05T17:00:00+00:00"
        expect:
          p-1:
            status: activ
            tasks:
              - {{stpe: records_request, status: opne}}
            no_tasks: [records_requst]
            no_letters: [welcom]
        """))
    outcome = run_scenario(scenario)
    assert not outcome.passed and not outcome.plans  # nothing was planned on a broken scenario
    text = "\n".join(outcome.failures)
    for line, needle in ((7, "unknown patient status 'activ'"), (9, "unknown key 'stpe'"),
                         (9, "unknown task status 'opne'"), (10, "unknown step 'records_requst'"),
                         (11, "unknown letter 'welcom'")):
        assert any(row.startswith(f"{scenario}:{line}:") and needle in row for row in text.splitlines()), text


def test_validate_text_output_says_which_lines_are_warnings(tmp_path: Path) -> None:
    pathway = pathway_copy(tmp_path, edit=lambda text: text.replace(
        "parameters:\n", "parameters:\n  spare:\n    value: 1\n    source: CLINIC\n    note: Nobody reads this.\n", 1))
    result = carepath("validate", str(pathway))
    assert result.returncode == 0  # a warning does not fail validate ...
    (line,) = [row for row in result.stdout.splitlines() if "CP311" in row]
    assert line.startswith(f"{pathway}:") and " CP311 warning: parameter 'spare' is not used" in line  # ... it says so
    assert "1 warning(s)" in result.stderr


def test_emit_to_an_unreachable_prefect_server_is_exit_69_and_keeps_the_event(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_bytes((DEMO / "events.jsonl").read_bytes())
    line = ('{"id": "e-000010-901", "patient": "p-000010", "type": "session_completed", '
            '"at": "2026-03-05T13:05:00-05:00", "data": {"session": "s-3"}}')
    result = carepath("emit", str(PATHWAY), "--patients", str(DEMO / "patients.jsonl"), "--events", str(events), line,
                      env=clean_env(tmp_path, PREFECT_API_URL="http://127.0.0.1:9/api"), timeout=120)
    assert result.returncode == 69, result.stderr
    assert "http://127.0.0.1:9/api" in result.stderr and "recorded in the events file" in result.stderr
    assert events.read_text().splitlines()[-1] == line


@pytest.mark.integration
def test_two_runs_started_together_on_one_folder_take_turns_and_both_succeed(tmp_path: Path) -> None:
    out = tmp_path / "out"
    runs = []
    for name in ("a", "b"):  # each its own temporary Prefect server, as two users' shells would have
        (tmp_path / name).mkdir()
        env = clean_env(tmp_path / name)
        runs.append(subprocess.Popen([sys.executable, "-m", "carepath.cli.main", *run_args(out)], cwd=ROOT, env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    try:
        results = [(run.wait(timeout=600), run.stdout.read(), run.stderr.read()) for run in runs]
    finally:
        for run in runs:
            run.kill()
            run.wait()
    assert [code for code, _, _ in results] == [0, 0], [err[-1500:] for _, _, err in results]
    letters = [p.name for p in (out / "letters").rglob("*.txt")]
    assert letters and len(letters) == len(set(letters))
    written = sorted(int(line.split()[1]) for _, text, _ in results for line in text.splitlines()
                     if line.startswith("letters:"))
    assert written == [0, len(letters)]  # one run wrote every letter, the other none
