"""The email channel of the letters outbox: each due letter to the patient's address over SMTP.

One message per letter: the text as the body, the HTML as its alternative, the PDF
attached; its Message-ID is derived from the letter id, so a receiving system can tell a
resend. The SMTP server and its credentials come from settings (environment variables,
below) — never from the pathway and never from a flow parameter: Prefect stores and shows
parameters. Message bodies (they hold names) go from this process to the SMTP server
only, never through Prefect.

Exactly once: the delivery step records a letter as sent (ledger) right after the server
accepted it, one letter at a time, so a failure midway loses nothing and resends nothing
already accepted. A server that fails (cannot connect, drops the connection, answers
4xx) is retried here with back-off; when it keeps failing the delivery stops (the rest
of the sweep is already written) and the next run sends what is left. A recipient the
server refuses for good (5xx), or an address that is not exactly one plain ASCII
mailbox, is that letter's failure: reported (`on_failed`, a reason without the address)
and recorded by the delivery step, which tries it again while it is due; the other
letters go on. A patient without an email address gets the letter on the file channel.

Settings:
    CAREPATH_SMTP_HOST       the server (required for the email channel)
    CAREPATH_SMTP_PORT       default 587 (starttls), 465 (ssl), 25 (none)
    CAREPATH_SMTP_SECURITY   starttls (default) | ssl | none
    CAREPATH_SMTP_USERNAME, CAREPATH_SMTP_PASSWORD   optional login
    CAREPATH_SMTP_FROM       the sender address (required)
    CAREPATH_SMTP_ATTEMPTS   tries per message before the run fails (default 4)
    CAREPATH_SMTP_BLOCK      instead of host, port, security and login: the name of a
                             Prefect EmailServerCredentials block (prefect-email) holding them
"""

from __future__ import annotations

import os
import smtplib
import ssl
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate

from carepath.compile.compiled import CompiledPathway
from carepath.engine.result import PatientPlan
from carepath.records.fields import mailbox_problem
from carepath.sinks.base import Output, OutputKind
from carepath.sinks.letters import BATCH, LetterError, render_letter
from carepath.sinks.pdf import render_pdfs

SECURITY = ("starttls", "ssl", "none")
SMTP_BLOCK_ENV = "CAREPATH_SMTP_BLOCK"  # a prefect-email block's name; read by carepath.runtime.smtp_block
_DEFAULT_PORT = {"starttls": 587, "ssl": 465, "none": 25}


class SmtpSettingsError(ValueError):
    """The email channel is chosen but its settings are missing or wrong."""


class SmtpUnavailable(ConnectionError):
    """The SMTP server kept failing, or answered but refused carepath (`answered`: a
    login or sender refused, STARTTLS or AUTH not offered); what was not sent stays in
    the outbox."""

    def __init__(self, message: str, *, answered: bool = False) -> None:
        super().__init__(message)
        self.answered = answered

    def __reduce__(self):  # noqa: ANN204 - pickled across processes with `answered`
        return (_smtp_unavailable, (str(self), self.answered))


def _smtp_unavailable(message: str, answered: bool) -> SmtpUnavailable:
    return SmtpUnavailable(message, answered=answered)


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    security: str
    sender: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    attempts: int = 4
    timeout: float = 30.0
    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> SmtpSettings:
        """The settings CAREPATH_SMTP_* give. A Prefect block (CAREPATH_SMTP_BLOCK) is read by
        the runtime, which passes the settings down (`RunSpec.smtp`): Prefect stays there."""
        env = os.environ if env is None else env
        if env.get(SMTP_BLOCK_ENV):
            raise SmtpSettingsError(f"{SMTP_BLOCK_ENV} names a Prefect block, which only a Prefect run reads "
                                    "('carepath run', a deployment): set CAREPATH_SMTP_HOST and CAREPATH_SMTP_FROM "
                                    "for this command")
        host, sender = env.get("CAREPATH_SMTP_HOST", ""), env.get("CAREPATH_SMTP_FROM", "")
        missing = [name for name, value in (("CAREPATH_SMTP_HOST", host), ("CAREPATH_SMTP_FROM", sender))
                   if not value]
        if missing:
            raise SmtpSettingsError(f"the email channel needs {' and '.join(missing)} set (the SMTP server and "
                                    "the sender address); see docs/operations.md")
        security = env.get("CAREPATH_SMTP_SECURITY", "starttls").lower()
        if security not in SECURITY:
            raise SmtpSettingsError(f"CAREPATH_SMTP_SECURITY is {security!r}; use one of {', '.join(SECURITY)}")
        try:
            port = int(env.get("CAREPATH_SMTP_PORT") or _DEFAULT_PORT[security])
            attempts = int(env.get("CAREPATH_SMTP_ATTEMPTS") or 4)
        except ValueError as exc:
            raise SmtpSettingsError(f"CAREPATH_SMTP_PORT and CAREPATH_SMTP_ATTEMPTS must be numbers ({exc})") from None
        return cls(host, port, security, sender, env.get("CAREPATH_SMTP_USERNAME") or None,
                   env.get("CAREPATH_SMTP_PASSWORD") or None, max(1, attempts))


def message(settings: SmtpSettings, to: str, letter_id: str, subject: str, text: str, html: str,
            pdf: bytes | None) -> EmailMessage:
    msg = EmailMessage()
    msg["Subject"] = subject
    msg["From"] = settings.sender
    msg["To"] = to
    msg["Date"] = formatdate(localtime=False)
    domain = settings.sender.rpartition("@")[2] or "carepath.invalid"
    msg["Message-ID"] = f"<{letter_id}@{domain}>"
    msg.set_content(text)
    msg.add_alternative(html, subtype="html")
    if pdf is not None:
        msg.add_attachment(pdf, maintype="application", subtype="pdf", filename=f"{letter_id}.pdf")
    return msg


class Mailer:
    """One SMTP connection, reopened when the server drops it; retries with back-off."""

    def __init__(self, settings: SmtpSettings, sleep: Callable[[float], None] = time.sleep) -> None:
        self.settings, self.sleep = settings, sleep
        self.smtp: smtplib.SMTP | None = None
    def _connect(self) -> smtplib.SMTP:
        s = self.settings
        if s.security == "ssl":
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(s.host, s.port, timeout=s.timeout,
                                                  context=ssl.create_default_context())
        else:
            smtp = smtplib.SMTP(s.host, s.port, timeout=s.timeout)
            if s.security == "starttls":
                smtp.starttls(context=ssl.create_default_context())
        if s.username:
            smtp.login(s.username, s.password or "")
        return smtp

    def send(self, msg: EmailMessage) -> str | None:
        """None once the server accepted the message; why, when it refuses this message
        for good (free of the address: the server's text may echo it). Raises
        SmtpUnavailable when the server keeps failing."""
        problem = ""
        for attempt in range(self.settings.attempts):
            if attempt:
                self.sleep(min(0.5 * 2 ** (attempt - 1), 8.0))
            try:
                if self.smtp is None:
                    self.smtp = self._connect()
                self.smtp.send_message(msg)
                return None
            except smtplib.SMTPRecipientsRefused as exc:
                codes = [code for code, _ in exc.recipients.values()]
                if all(code >= 500 for code in codes):
                    return f"the mail server refused the recipient for good ({codes[0]})"
                problem = f"recipient deferred ({codes})"
            except (smtplib.SMTPAuthenticationError, smtplib.SMTPSenderRefused) as exc:
                # The server refuses us, not this letter: no point in trying the others.
                self.close()
                raise SmtpUnavailable(f"SMTP server {self.settings.host}:{self.settings.port} refused the "
                                      f"{'login' if isinstance(exc, smtplib.SMTPAuthenticationError) else 'sender'}"
                                      f" ({exc.smtp_code}); check the CAREPATH_SMTP_* settings",
                                      answered=True) from None
            except smtplib.SMTPNotSupportedError as exc:
                # It answered: it lacks what the settings ask of it. Retrying cannot help.
                self.close()
                wanted = "STARTTLS" if "STARTTLS" in str(exc) else "AUTH (login)"
                raise SmtpUnavailable(
                    f"SMTP server {self.settings.host}:{self.settings.port} answered but does not offer {wanted}: "
                    "check CAREPATH_SMTP_SECURITY (starttls, ssl, none) and CAREPATH_SMTP_USERNAME", answered=True,
                ) from None
            except smtplib.SMTPDataError as exc:
                if exc.smtp_code >= 500:  # this message refused for good; the next one may pass
                    return f"the mail server refused it for good ({exc.smtp_code})"
                problem = f"answered {exc.smtp_code}"  # its text may echo the address: not shown
                self.close()
            except smtplib.SMTPResponseException as exc:
                problem = f"answered {exc.smtp_code}"  # its text may echo the address: not shown
                self.close()
            except smtplib.SMTPException as exc:
                problem = type(exc).__name__  # its text may echo the address: not shown
                self.close()
            except OSError as exc:
                problem = f"{type(exc).__name__}: {exc}"
                self.close()
        # The message names the server, never the patient or the address: it may reach logs.
        raise SmtpUnavailable(f"SMTP server {self.settings.host}:{self.settings.port} failed "
                              f"{self.settings.attempts} time(s) ({problem}); unsent letters stay in the outbox")

    def close(self) -> None:
        if self.smtp is not None:
            try:
                self.smtp.quit()
            except (smtplib.SMTPException, OSError):
                pass
            self.smtp = None


class EmailLetters:
    """The email channel: built per shard, where names and addresses are at hand."""

    name = "email"
    kinds = frozenset({OutputKind.LETTER})
    marks_each = True  # calls `on_sent` per letter, so the ledger records each as it goes

    def __init__(self, compiled: CompiledPathway, patients: Mapping, plans: Mapping[str, PatientPlan],
                 fallback, *, pdf: bool = True, settings: SmtpSettings | None = None) -> None:  # noqa: ANN001
        self.compiled, self.patients, self.plans, self.pdf = compiled, patients, plans, pdf
        self.fallback = fallback  # the file channel, for patients without an email address
        self.settings = settings or SmtpSettings.from_env()
        self.refused = 0

    def write(self, outputs: Iterable[Output], on_sent: Callable[[str, Sequence[Output]], None] | None = None,
              on_failed: Callable[[Output, str], None] | None = None) -> int:
        """Mail each letter, `on_sent` as each is accepted; a letter that cannot be rendered
        or addressed, or that the server refuses for good, goes to `on_failed` with a
        reason free of patient data, and the others go on."""
        def failed(output: Output, reason: str) -> None:
            self.refused += 1
            if on_failed is not None:
                on_failed(output, reason)

        outputs = list(outputs)
        mailed = [o for o in outputs if getattr(self.patients[o.patient], "email", None)]
        posted = [o for o in outputs if not getattr(self.patients[o.patient], "email", None)]
        count = 0
        if posted:
            count += self.fallback.write(posted, on_sent=on_sent, on_failed=on_failed)
        mailer = Mailer(self.settings)
        try:
            for start in range(0, len(mailed), BATCH):
                chunk, rendered = [], []
                for o in mailed[start:start + BATCH]:
                    if (problem := address_problem(self.patients[o.patient].email)) is not None:
                        failed(o, problem)
                        continue
                    plan = self.plans[o.patient]
                    letter = next(l for l in plan.letters if l.id == o.id)
                    try:
                        rendered.append(render_letter(self.compiled, self.patients[o.patient], plan, letter))
                    except LetterError as exc:
                        failed(o, exc.reason)
                        continue
                    chunk.append(o)
                pdfs = render_pdfs([r.html for r in rendered], self.compiled.clinic.paper) if self.pdf \
                    else [None] * len(rendered)
                for o, r, data in zip(chunk, rendered, pdfs):
                    msg = message(self.settings, self.patients[o.patient].email, o.id, r.subject, r.text, r.html,
                                  data)
                    if (refused := mailer.send(msg)) is not None:
                        failed(o, refused)
                        continue
                    count += 1
                    if on_sent:
                        on_sent(self.name, [o])
        finally:
            mailer.close()
        return count




def address_problem(address: str) -> str | None:
    """Why a letter cannot be mailed to `address` (None: it can). One plain ASCII mailbox
    only: a list of addresses would also send the letter to a third party, and an address
    the server cannot take without SMTPUTF8 would fail every attempt. The reason does not
    quote the address. The patients reader refuses such a line already (the same check);
    this guards a record that reached delivery another way."""
    if mailbox_problem(address) is not None:
        return "the patient's email address is not exactly one plain ASCII mailbox"
    return None
