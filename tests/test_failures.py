"""Failures explained without PHI: every failure gets a code; the message reaches Prefect
and the worker log when it cannot quote patient data, and only then."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import socket
import subprocess
import sys
from email.message import EmailMessage
from pathlib import Path

import pytest

from carepath import failures
from carepath.diagnostics import Diagnostic

ROOT = Path(__file__).resolve().parents[1]
PATHWAY = ROOT / "pathways" / "ketamine-iv.yaml"
DEMO = ROOT / "examples" / "demo"


def _safe_cases() -> list[tuple[BaseException, str, str]]:
    from carepath.api import InvalidInput
    from carepath.orchestrator.pinning import VersionReused
    from carepath.orchestrator.sequence import AllLinesRejected, MigrationRejectedLines
    from carepath.records.types import RecordsFileError
    from carepath.settings import SettingMissing
    from carepath.sinks.email import SmtpUnavailable
    from carepath.sinks.storage import LocationRefused

    return [
        (SmtpUnavailable("SMTP server mail.clinic.example:587 failed 4 time(s) (ConnectionRefusedError)"),
         "CP-SMTP", "mail.clinic.example:587"),
        (RecordsFileError("/srv/feed/events.jsonl", "file not found"), "CP-INPUT-FILE", "/srv/feed/events.jsonl"),
        (FileNotFoundError(2, "No such file or directory", "/srv/out/ketamine-iv/letters"), "CP-DISK",
         "/srv/out/ketamine-iv/letters"),
        (VersionReused("ketamine-iv version 1.2.0 was run before with different rules"), "CP-VERSION-REUSED",
         "version 1.2.0"),
        (SettingMissing("the run's parameter 'patients' is empty"), "CP-SETTING", "'patients'"),
        (LocationRefused("CAREPATH_DOCUMENTS_URL: the scheme ftp:// is not one"), "CP-DOCUMENTS", "ftp://"),
        (AllLinesRejected("every line of the patients file (212) was rejected"), "CP-ALL-REJECTED", "(212)"),
        (MigrationRejectedLines("the migration to ketamine-iv 1.1.0 rejected 2 event line(s) (line(s) 7, 9)"),
         "CP-MIGRATION-REJECTED", "line(s) 7, 9"),
        (InvalidInput([Diagnostic("ketamine-iv.yaml", 12, 3, "CP200", "unknown key 'wen'")]), "CP-PATHWAY",
         "ketamine-iv.yaml:12:3"),
    ]


def test_a_failure_that_cannot_quote_patient_data_is_shown_with_its_code() -> None:
    for exc, code, shown in _safe_cases():
        text = failures.explain(exc, "plan-and-emit-shard-0003")
        assert text.startswith(f"[{code}] {type(exc).__name__} in plan-and-emit-shard-0003: "), text
        assert shown in text, text


@pytest.mark.parametrize("exc", [
    "letter", RuntimeError("cannot render 'Philippa Quennell'"), KeyError("Philippa"),
    UnicodeEncodeError("ascii", "Żaneta", 0, 1, "ordinal not in range"),
])
def test_a_failure_that_may_quote_patient_data_is_withheld_but_coded(exc) -> None:  # noqa: ANN001
    from carepath.sinks.letters import LetterError

    if exc == "letter":
        exc = LetterError("letter l-1 (template 'welcome'): 'Philippa' is undefined")
    text = failures.explain(exc, "plan-and-emit-shard-0001")
    assert "Philippa" not in text and "Żaneta" not in text and "withheld" in text
    code = "CP-LETTER" if type(exc).__name__ == "LetterError" else "CP-UNEXPECTED"
    assert text.startswith(f"[{code}] {type(exc).__name__} in plan-and-emit-shard-0001")


def test_what_prefect_records_carries_the_reason_across_processes() -> None:
    from carepath.runtime.flows import Withheld, _withheld

    with pytest.raises(Withheld) as caught:
        with _withheld("write-documents"):
            raise FileNotFoundError(2, "No such file or directory", "/srv/out/fhir")
    withheld = caught.value
    assert isinstance(withheld.original, FileNotFoundError) and withheld.code == "CP-DISK"
    again = pickle.loads(pickle.dumps(withheld))
    assert str(again) == str(withheld) and "/srv/out/fhir" in str(again) and again.original is None
    with pytest.raises(Withheld) as caught:
        with _withheld("plan-and-emit-shard-0001"):
            raise TypeError("can only concatenate str (not 'int') to str: 'Quennell'")
    assert "Quennell" not in str(caught.value) and "[CP-UNEXPECTED] TypeError" in str(caught.value)


def test_the_catalogue_is_documented_code_by_code() -> None:
    codes = [entry.code for entry in failures.CATALOGUE]
    assert len(codes) == len(set(codes))
    operations = (ROOT / "docs" / "operations.md").read_text()
    for entry in failures.CATALOGUE:
        row = next((line for line in operations.splitlines() if line.startswith(f"| `{entry.code}`")), None)
        assert row is not None, f"{entry.code} is not in docs/operations.md's failure codes"
        assert ("| shown |" in row) == entry.safe, row


def test_a_deployment_missing_a_setting_is_refused_at_its_first_step_naming_it(tmp_path: Path) -> None:
    from carepath.runtime.flows import Withheld, run_sweep

    cases = [({"patients": ""}, "'patients' is empty"),
             ({"out": ""}, "Prefect variable carepath_ketamine_iv_out"),
             ({"events": "{{ $CLINIC_FEED }}/events.jsonl"}, "'events' is the template"),
             ({"patients": str(tmp_path / "nowhere.jsonl")}, "'patients' names")]
    for change, words in cases:
        given = {"pathway": str(PATHWAY), "patients": str(DEMO / "patients.jsonl"),
                 "events": str(DEMO / "events.jsonl"), "out": str(tmp_path / "out"), **change}
        with pytest.raises(Withheld) as caught:
            run_sweep(given["pathway"], given["patients"], given["events"], given["out"], None, 2000, None, False,
                      None)
        assert str(caught.value).startswith("[CP-SETTING] SettingMissing in sweep") and words in str(caught.value)
        assert not (tmp_path / "out").exists()  # refused before anything was locked or written


def test_two_pathways_never_share_a_documents_location(tmp_path: Path) -> None:
    from carepath.sinks.storage import LocationRefused, claim_location, storage_for

    shared = storage_for(tmp_path / "shared")
    claim_location(shared, "ketamine-iv")
    claim_location(shared, "ketamine-iv")  # its own again: fine
    with pytest.raises(LocationRefused, match="holds the documents of pathway ketamine-iv, not esketamine-spravato"):
        claim_location(shared, "esketamine-spravato")
    claim_location(storage_for(tmp_path / "shared" / "esketamine-spravato"), "esketamine-spravato")


def test_two_pathways_never_share_an_output_folder(tmp_path: Path) -> None:
    """Two deployments given one `out` (a copied parameter) would overwrite each other's
    worklist and task lists: the second pathway's run is refused before it writes."""
    from prefect.runtime import flow_run  # noqa: F401 - the flow's id is read outside a run as a fresh one

    from carepath.runtime.flows import _spec

    out = tmp_path / "out"
    _spec(str(PATHWAY), str(out), "2026-03-05T17:00:00+00:00", None, False, None)
    other = ROOT / "pathways" / "esketamine-spravato.yaml"
    with pytest.raises(Exception, match="output folder .* holds the documents of pathway ketamine-iv"):
        _spec(str(other), str(out), "2026-03-05T17:00:00+00:00", None, False, None)
    assert sorted(p.name for p in out.iterdir()) == [".carepath-pathway"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_mail_server_that_answers_without_starttls_is_not_called_silent() -> None:
    from aiosmtpd.controller import Controller

    from carepath.runtime.runner import service_failure
    from carepath.sinks.email import Mailer, SmtpSettings, SmtpUnavailable

    class Sink:
        async def handle_DATA(self, server, session, envelope) -> str:  # noqa: ANN001
            return "250 OK"

    port = _free_port()
    controller = Controller(Sink(), hostname="127.0.0.1", port=port)  # plain SMTP: no STARTTLS offered
    controller.start()
    try:
        mailer = Mailer(SmtpSettings("127.0.0.1", port, "starttls", "letters@clinic.example", attempts=4),
                        sleep=lambda _s: None)
        msg = EmailMessage()
        msg["From"], msg["To"], msg["Subject"] = "letters@clinic.example", "someone@example.org", "x"
        msg.set_content("x")
        with pytest.raises(SmtpUnavailable) as caught:
            mailer.send(msg)
    finally:
        controller.stop()
    assert caught.value.answered and "does not offer STARTTLS" in str(caught.value)
    assert "someone@example.org" not in str(caught.value)
    told = str(service_failure(caught.value, "run-1"))
    assert "did not answer" not in told and "refused" in told and "CAREPATH_SMTP_SECURITY" in told


def _cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CAREPATH_", "PREFECT_API_URL"))}
    return subprocess.run([sys.executable, "-m", "carepath.cli.main", *args], capture_output=True, text=True,
                          timeout=600, env=env, cwd=cwd)


@pytest.mark.slow  # three `carepath emit` subprocesses, each importing Prefect
def test_emit_of_an_exact_duplicate_says_it_was_not_appended(tmp_path: Path) -> None:
    patients, events = tmp_path / "patients.jsonl", tmp_path / "events.jsonl"
    shutil.copy(DEMO / "patients.jsonl", patients)
    shutil.copy(DEMO / "events.jsonl", events)
    line = json.dumps({"id": "e-dup-1", "patient": "p-000003", "type": "session_completed",
                       "at": "2026-03-05T16:00:00+00:00", "data": {"session": "s-dup"}})
    first = _cli("emit", str(PATHWAY), "--patients", str(patients), "--events", str(events), line)
    if first.returncode != 0:  # the event type's data differ: any accepted event will do
        line = json.dumps({"id": "e-dup-1", "patient": "p-000003", "type": "enrolled",
                           "at": "2026-03-05T16:00:00+00:00"})
        first = _cli("emit", str(PATHWAY), "--patients", str(patients), "--events", str(events), line)
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("recorded event e-dup-1")
    size = events.stat().st_size
    second = _cli("emit", str(PATHWAY), "--patients", str(patients), "--events", str(events), line)
    assert second.returncode == 0 and "not appended again" in second.stdout
    assert "recorded event" not in second.stdout and events.stat().st_size == size


@pytest.mark.slow  # `carepath run`: Prefect's temporary server
def test_a_run_that_rejected_every_line_fails_and_says_so(tmp_path: Path) -> None:
    result = _cli("run", str(PATHWAY), "--patients", str(DEMO / "events.jsonl"), "--events",
                  str(DEMO / "events.jsonl"), "--out", str(tmp_path / "out"), "--no-pdf",
                  "--as-of", "2026-03-05T17:00:00+00:00")
    assert result.returncode == 1, result.stderr[-2000:]
    assert "every line of the patients file" in result.stderr and "rejected.jsonl" in result.stderr
    assert "Traceback" not in result.stderr
    assert (tmp_path / "out" / "rejected.jsonl").stat().st_size > 0
