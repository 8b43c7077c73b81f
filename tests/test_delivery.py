"""Letters delivered for real: email through a real SMTP server on 127.0.0.1 (aiosmtpd),
exactly once across retries and re-runs, and the mail room's print batch."""

from __future__ import annotations

import contextlib
import email
import email.policy
import json
import socket
from datetime import datetime
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from carepath.orchestrator import emission, sequence
from carepath.orchestrator.spec import RunSpec
from carepath.records.readers import read_patients

ROOT = Path(__file__).resolve().parents[1]
PATHWAY = str(ROOT / "pathways" / "ketamine-iv.yaml")
PATIENTS = ROOT / "examples" / "patients.jsonl"  # p-001 has an email address, p-002 none
EVENTS = ROOT / "examples" / "events.jsonl"
AS_OF = datetime.fromisoformat("2026-03-03T17:00:00+00:00")
EARLY = datetime.fromisoformat("2026-03-02T14:30:00+00:00")


class Inbox:
    """An SMTP handler that keeps what arrived; `fail_next` answers 451 (try later) that often."""

    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self.fail_next = 0

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: ANN001
        if self.fail_next:
            self.fail_next -= 1
            return "451 4.3.0 try again later"
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        self.messages.append(email.message_from_bytes(envelope.content, policy=email.policy.default))
        return "250 OK"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free_port.last = s.getsockname()[1]
        return free_port.last


@pytest.fixture
def smtp(monkeypatch: pytest.MonkeyPatch):
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    monkeypatch.setenv("CAREPATH_LETTER_CHANNEL", "email")
    monkeypatch.setenv("CAREPATH_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("CAREPATH_SMTP_PORT", str(port))
    monkeypatch.setenv("CAREPATH_SMTP_SECURITY", "none")
    monkeypatch.setenv("CAREPATH_SMTP_FROM", "letters@clinic.example")
    monkeypatch.setattr("carepath.sinks.email.time.sleep", lambda s: None)  # back-off without waiting
    yield inbox, controller, port
    with contextlib.suppress(AssertionError, RuntimeError):  # a test may have stopped it (a server down)
        controller.stop()


def sweep(out: Path, as_of: datetime = AS_OF, run: str = "run-1") -> emission.RunSummary:
    """The sweep flow's sequence, in this process."""
    return sequence.sweep(RunSpec.resolve(PATHWAY, out, as_of, run), PATIENTS, EVENTS, shard_size=1, export=True, bundle=True)


def outbox(out: Path) -> dict[str, dict]:
    return {r["id"]: r for r in map(json.loads, (out / "letters.jsonl").read_text().splitlines())}


def test_due_letters_arrive_by_email_with_html_and_pdf_exactly_once(smtp, tmp_path: Path) -> None:
    inbox, _, _ = smtp
    sweep(tmp_path)
    # p-001's one due letter (the integration reminder) is mailed; p-002 has no address,
    # so their two due letters are filed for the post instead.
    assert len(inbox.messages) == 1
    msg = inbox.messages[0]
    assert inbox.envelopes == [("letters@clinic.example", ["ada@example.org"])]
    assert msg["To"] == "ada@example.org" and msg["From"] == "letters@clinic.example"
    letter_id = msg["Message-ID"].strip("<>").split("@")[0]
    assert outbox(tmp_path)[letter_id]["status"] == "sent"
    text = msg.get_body(preferencelist=("plain",)).get_content()
    html = msg.get_body(preferencelist=("html",)).get_content()
    assert "Dear Ada," in text and "Dear Ada," in html and "<html" in html
    assert msg["Subject"] and msg["Subject"] in text
    [pdf] = [part for part in msg.iter_attachments()]
    assert pdf.get_content_type() == "application/pdf" and pdf.get_content().startswith(b"%PDF-")
    assert pdf.get_filename() == f"{letter_id}.pdf"
    posted = [p for p in (tmp_path / "letters").rglob("*.txt")]
    assert len(posted) == 2 and all("Dear Ben," in p.read_text() for p in posted)
    assert sum(r["status"] == "sent" for r in outbox(tmp_path).values()) == 3

    sweep(tmp_path, run="run-2")  # the next sweep: nothing new is due
    assert len(inbox.messages) == 1


def test_a_failing_server_is_retried_and_nothing_is_lost_or_duplicated(smtp, tmp_path: Path) -> None:
    inbox, _, _ = smtp
    inbox.fail_next = 2  # two 451s, then the server takes it
    sweep(tmp_path, as_of=EARLY)  # p-001 has three letters due this early, p-002 one (no address)
    assert len(inbox.messages) == 3
    assert len({m["Message-ID"] for m in inbox.messages}) == 3


def test_a_server_that_is_down_leaves_a_fresh_worklist_and_the_next_run_sends_once(
        smtp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from carepath.sinks.email import SmtpUnavailable

    inbox, _, port = smtp
    monkeypatch.setenv("CAREPATH_SMTP_PORT", str(free_port()))  # nobody listens there
    with pytest.raises(SmtpUnavailable, match="failed 4 time") as raised:
        sweep(tmp_path, as_of=EARLY)
    assert f"127.0.0.1:{free_port.last}" in str(raised.value) and "stay queued" in str(raised.value)
    assert inbox.messages == []
    # Delivery comes after the documents: the worklist and task lists are fresh all the same.
    assert "as of" in (tmp_path / "worklist.html").read_text() and (tmp_path / "tasks.jsonl").exists()
    summary = raised.value.summary
    assert summary.letters_written == 1 and summary.letters_queued == 3  # p-002's posted letter went
    monkeypatch.setenv("CAREPATH_SMTP_PORT", str(port))  # the server is back
    sweep(tmp_path, as_of=EARLY, run="run-2")  # the next sweep delivers what waited
    sweep(tmp_path, as_of=EARLY, run="run-3")
    assert len(inbox.messages) == 3 and len({m["Message-ID"] for m in inbox.messages}) == 3
    assert sum(r["status"] == "sent" for r in outbox(tmp_path).values()) == 4


def test_a_server_failing_midway_resends_nothing_it_accepted(smtp, tmp_path: Path) -> None:
    inbox, _, _ = smtp
    real = inbox.handle_DATA
    calls = {"n": 0}

    async def second_fails_for_good(server, session, envelope) -> str:  # noqa: ANN001
        calls["n"] += 1
        if calls["n"] >= 2 and calls["n"] <= 5:  # the second message meets a server down for four tries
            return "421 4.3.2 shutting down"
        return await real(server, session, envelope)

    inbox.handle_DATA = second_fails_for_good
    from carepath.sinks.email import SmtpUnavailable

    with pytest.raises(SmtpUnavailable):
        sweep(tmp_path, as_of=EARLY)
    assert len(inbox.messages) == 1
    sweep(tmp_path, as_of=EARLY, run="run-2")
    assert len(inbox.messages) == 3 and len({m["Message-ID"] for m in inbox.messages}) == 3


def test_smtp_settings_come_from_the_environment_with_clear_errors() -> None:
    from carepath.sinks.email import SmtpSettings, SmtpSettingsError

    with pytest.raises(SmtpSettingsError, match="CAREPATH_SMTP_HOST and CAREPATH_SMTP_FROM"):
        SmtpSettings.from_env({})
    with pytest.raises(SmtpSettingsError, match="starttls, ssl, none"):
        SmtpSettings.from_env({"CAREPATH_SMTP_HOST": "h", "CAREPATH_SMTP_FROM": "f@x", "CAREPATH_SMTP_SECURITY": "tls"})
    s = SmtpSettings.from_env({"CAREPATH_SMTP_HOST": "mail.example", "CAREPATH_SMTP_FROM": "a@example"})
    assert (s.port, s.security) == (587, "starttls")


def test_the_print_channel_makes_one_pdf_of_the_days_letters(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAREPATH_LETTER_CHANNEL", "print")
    sweep(tmp_path, as_of=EARLY)  # four letters due
    batch = tmp_path / "print" / "2026-03-02.pdf"
    assert batch.read_bytes().startswith(b"%PDF-") and (batch.stat().st_mode & 0o777) == 0o600
    listed = (tmp_path / "print" / "2026-03-02.list").read_text().splitlines()
    assert len(listed) == 4
    from carepath.sinks.pdf import laid_out

    pages_of = lambda rel: len(laid_out((tmp_path / rel).read_text(), "letter").pages)  # noqa: E731
    first_pages = sum(pages_of(line.split("\t")[1]) for line in listed)
    batch_first = batch.read_bytes()
    # a later sweep the same day adds the newly due letter to the same batch, and re-runs add nothing
    later = datetime.fromisoformat("2026-03-02T20:00:00+00:00")
    sweep(tmp_path, as_of=later, run="run-2")
    sweep(tmp_path, as_of=later, run="run-3")
    listed = (tmp_path / "print" / "2026-03-02.list").read_text().splitlines()
    assert len(listed) == 5 and len({line.split("\t")[0] for line in listed}) == 5
    assert sum(r["status"] == "sent" for r in outbox(tmp_path).values()) == 5
    assert page_count(batch_first) == first_pages
    assert page_count(batch.read_bytes()) == sum(pages_of(line.split("\t")[1]) for line in listed) > first_pages


def page_count(pdf: bytes) -> int:
    """The page tree's /Count (WeasyPrint compresses its objects into streams)."""
    import re
    import zlib

    found = re.findall(rb"/Type\s*/Pages\b[^>]*?/Count (\d+)|/Count (\d+)[^>]*?/Type\s*/Pages\b", pdf)
    for chunk in re.findall(rb"stream\r?\n(.*?)\r?\nendstream", pdf, re.S):
        try:
            text = zlib.decompress(chunk)
        except zlib.error:
            continue
        found += re.findall(rb"/Type\s*/Pages\b[^>]*?/Count (\d+)|/Count (\d+)[^>]*?/Type\s*/Pages\b", text)
    counts = {int(a or b) for a, b in found}
    assert len(counts) == 1, counts
    return counts.pop()


def test_smtp_settings_from_a_prefect_email_credentials_block() -> None:
    from prefect_email import EmailServerCredentials

    from carepath.runtime.smtp_block import settings_from_credentials

    block = EmailServerCredentials(username="letters@clinic.example", password="s3cret",
                                   smtp_server="mail.clinic.example", smtp_type="SSL")
    s = settings_from_credentials(block, None)
    assert (s.host, s.port, s.security, s.sender, s.username, s.password) == (
        "mail.clinic.example", 465, "ssl", "letters@clinic.example", "letters@clinic.example", "s3cret")
    insecure = EmailServerCredentials(username="u", password="p", smtp_server="127.0.0.1", smtp_type="INSECURE",
                                      smtp_port=2525)
    assert (settings_from_credentials(insecure, "from@x").port, settings_from_credentials(insecure, "from@x").security) \
        == (2525, "none")


def test_the_settings_the_runtime_resolved_reach_the_email_channel_through_the_run_spec(
        smtp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import dataclasses

    from carepath.runtime import smtp_block
    from carepath.sinks.email import SmtpSettings, SmtpSettingsError

    inbox, _, port = smtp
    served = SmtpSettings("127.0.0.1", port, "none", "block@clinic.example", attempts=1)
    assert "s3cret" not in repr(dataclasses.replace(served, username="u", password="s3cret"))
    # A block named by CAREPATH_SMTP_BLOCK is read by the runtime alone (Prefect stays there)...
    monkeypatch.setenv("CAREPATH_SMTP_BLOCK", "clinic-mail")
    monkeypatch.setattr(smtp_block, "settings_from_block", lambda block, sender, attempts: served)
    monkeypatch.setenv("CAREPATH_SMTP_PORT", str(free_port()))  # nothing listens: the environment is not used
    spec = RunSpec.resolve(PATHWAY, tmp_path, AS_OF, "run-1")
    resolved = smtp_block.smtp_for_run(spec.compiled)
    assert resolved == served
    # ...the sinks refuse to read it themselves, naming the setting...
    with pytest.raises(SmtpSettingsError, match="CAREPATH_SMTP_BLOCK names a Prefect block"):
        SmtpSettings.from_env()
    # ...and the letters go through the settings the spec carries.
    sequence.sweep(dataclasses.replace(spec, smtp=resolved), PATIENTS, EVENTS, shard_size=1)
    assert inbox.messages and {sender for sender, _ in inbox.envelopes} == {"block@clinic.example"}


def test_a_refused_recipient_is_reported_failed_and_tried_again_by_the_next_run(smtp, tmp_path: Path) -> None:
    inbox, _, _ = smtp
    real = inbox.handle_DATA
    refuse = {"on": True}

    async def refused(server, session, envelope) -> str:  # noqa: ANN001
        if refuse["on"]:
            return "550 5.1.1 no such mailbox"
        return await real(server, session, envelope)

    inbox.handle_DATA = refused
    summary = sweep(tmp_path)  # refused for good this time: reported failed, the run goes on
    assert inbox.messages == []
    assert (summary.letters_written, summary.letters_failed, summary.letters_queued) == (2, 1, 1)
    assert sum(r["status"] == "due" for r in outbox(tmp_path).values()) == 1  # p-001's reminder still waits
    worklist = (tmp_path / "worklist.html").read_text()
    assert "Letters not delivered" in worklist and "refused it for good (550)" in worklist
    assert "ada@example.org" not in worklist
    refuse["on"] = False
    summary = sweep(tmp_path, run="run-2")  # the same plan: the letter is still tried
    assert len(inbox.messages) == 1 and (summary.letters_failed, summary.letters_queued) == (0, 0)
    assert "Letters not delivered" not in (tmp_path / "worklist.html").read_text()
    sweep(tmp_path, run="run-3")
    assert len(inbox.messages) == 1


def test_one_patients_bad_address_fails_only_their_letters(smtp, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A non-ASCII address, or two addresses in one field: the patients reader refuses
    the line (its reason quotes no address); and should such an address reach delivery
    anyway, that patient's letters are recorded failed (no address in the reason) while
    everyone else's go out."""
    inbox, _, _ = smtp
    lines = PATIENTS.read_text().splitlines()
    patients = tmp_path / "patients.jsonl"
    people = [json.loads(line) for line in lines]
    third = dict(people[0], patient="p-003", email="zoë@exämple.org")
    fourth = dict(people[0], patient="p-004", email="ada@example.org, eve@elsewhere.example")
    events = tmp_path / "events.jsonl"
    copies = []
    for line in EVENTS.read_text().splitlines():
        event = json.loads(line)
        if event.get("patient") == "p-001":
            for ref in ("p-003", "p-004"):
                copies.append(json.dumps(dict(event, patient=ref, id=f"{event['id']}-{ref}")))
    patients.write_text("\n".join([*lines, json.dumps(third), json.dumps(fourth)]) + "\n")
    events.write_text(EVENTS.read_text() + "\n".join(copies) + "\n")

    known, refused = read_patients(patients, default_timezone="America/New_York")
    assert set(known) == {p["patient"] for p in people}
    assert [r.line for r in refused] == [len(lines) + 1, len(lines) + 2]
    assert all(r.reason.startswith("'email'") and "exämple" not in r.reason and "eve" not in r.reason for r in refused)

    monkeypatch.setattr("carepath.records.readers.mailbox_problem", lambda address: None)
    out = tmp_path / "out"
    summary = sequence.sweep(RunSpec.resolve(PATHWAY, out, AS_OF, "run-1"), patients, events, shard_size=1)
    assert [rcpt for _, rcpt in inbox.envelopes] == [["ada@example.org"]]
    assert summary.letters_failed == 2 and summary.letters_written == 3
    worklist = (out / "worklist.html").read_text()
    assert worklist.count("not exactly one plain ASCII mailbox") == 2
    assert "eve@" not in worklist and "zo" not in worklist.split("Letters not delivered")[1].split("</table>")[0]


def test_a_letter_that_cannot_be_rendered_fails_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from carepath.sinks import letters

    real = letters.render_letter

    def breaks_for_ben(compiled, patient, plan, letter):  # noqa: ANN001, ANN202
        if patient.given_name == "Ben":
            raise letters.LetterError("boom with Ben's data", "its template 'x' could not be rendered (TypeError)")
        return real(compiled, patient, plan, letter)

    monkeypatch.setattr(letters, "render_letter", breaks_for_ben)
    summary = sweep(tmp_path, as_of=EARLY)  # p-001 three letters due, p-002 one
    assert (summary.letters_written, summary.letters_failed) == (3, 1)
    assert "could not be rendered (TypeError)" in (tmp_path / "worklist.html").read_text()
    assert "Ben" not in (tmp_path / "worklist.html").read_text()


def test_a_failing_server_never_puts_the_patients_address_in_the_error(smtp, tmp_path: Path) -> None:
    from carepath.sinks.email import SmtpUnavailable

    inbox, _, _ = smtp

    async def echoes_the_address(server, session, envelope) -> str:  # noqa: ANN001
        return f"451 4.3.0 <{envelope.rcpt_tos[0]}> try again later"

    inbox.handle_DATA = echoes_the_address
    with pytest.raises(SmtpUnavailable) as raised:
        sweep(tmp_path)
    assert "451" in str(raised.value) and "ada" not in str(raised.value)


def test_a_mail_server_that_keeps_failing_is_a_service_failure_naming_it() -> None:
    """`carepath run` maps it to exit 69 (a service did not answer), not 1 (bad input)."""
    from carepath.runtime.runner import service_failure
    from carepath.runtime.server import ServiceUnavailable
    from carepath.sinks.email import SmtpUnavailable

    failure = service_failure(SmtpUnavailable("SMTP server 127.0.0.1:2525 failed 4 times (421)"), "run-1")
    assert isinstance(failure, ServiceUnavailable)
    assert str(failure).startswith("the SMTP server did not answer: SMTP server 127.0.0.1:2525 failed 4 times")
    assert "CAREPATH_SMTP_HOST" in str(failure) and "outbox" in str(failure)
    assert service_failure(ValueError("a bad line"), "run-1") is None
