"""Patient letters: context from the plan, one template rendered to text, HTML and PDF.

Times are written out in the patient's zone and say which zone. Files are named by
letter id (never by patient) and created with mode 0600: they hold names. Only letters
`due` at the plan's instant are rendered: a scheduled one is not yet, and an expired or
withdrawn one never, to be sent. The run files them by send date (`YYYY/MM/DD/`) so that
no folder holds a cohort's millions of letters.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from jinja2 import TemplateError

from carepath.compile.compiled import CompiledPathway
from carepath.engine.result import PatientPlan, PlannedLetter
from carepath.sandbox import letter_environment
from carepath.sinks.base import Output, OutputKind, write_atomic
from carepath.sinks.markup import parse, to_html, to_text


class LetterError(Exception):
    """A letter that could not be rendered (a template problem `validate` should have
    caught). `reason`: what went wrong without the template's message, which may quote
    the patient's data: safe for the ledger, the worklist and logs."""

    def __init__(self, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason or "it could not be rendered"


OnSent = Callable[[str, Sequence[Output]], None]   # (channel, letters it took)
OnFailed = Callable[[Output, str], None]           # (letter, PHI-free reason)


@dataclass(frozen=True)
class RenderedLetter:
    id: str
    text: str
    html: str
    subject: str = ""


class PatientInfo:  # the attributes the letters need; carepath.records.Patient has them
    ref: str
    given_name: str
    family_name: str
    timezone: str


def written_out(moment: datetime, zone: ZoneInfo) -> str:
    """'Monday, March 2, 2026 at 7:00 AM PST (Los Angeles time)'."""
    local = moment.astimezone(zone)
    hour = local.hour % 12 or 12
    city = zone.key.rsplit("/", 1)[-1].replace("_", " ")
    return (f"{local:%A, %B} {local.day}, {local.year} at {hour}:{local:%M} "
            f"{'AM' if local.hour < 12 else 'PM'} {local.tzname()} ({city} time)")


def letter_context(compiled: CompiledPathway, patient: PatientInfo, plan: PatientPlan,
                   letter: PlannedLetter) -> dict[str, object]:
    zone = ZoneInfo(patient.timezone)
    sessions = {s.id: s for s in plan.sessions}

    def session_view(session_id: str) -> dict[str, object] | None:
        s = sessions.get(session_id)
        if s is None:
            return None
        when = s.start or s.completed_at
        return {"id": s.id, "start": written_out(when, zone) if when else "a time we will confirm with you"}

    return {
        "patient": {"given_name": patient.given_name, "family_name": patient.family_name,
                    "timezone": patient.timezone},
        "clinic": {"name": compiled.clinic.name, "phone": compiled.clinic.phone,
                   "crisis_line": compiled.clinic.crisis_line, "timezone": compiled.clinic.zone.key},
        "letter": {"id": letter.id, "name": letter.letter, "send_at": written_out(letter.send_at, zone)},
        "session": session_view(letter.session) if letter.session else None,
        "scheduled_sessions": [session_view(s.id) for s in plan.sessions if s.status == "scheduled" and s.start],
        "params": dict(compiled.parameters),
        "pathway": {"id": compiled.id, "version": compiled.version, "title": compiled.title},
    }


@functools.lru_cache(maxsize=8)
def _environment(template_dir: str):  # noqa: ANN202
    # One environment per template folder: Jinja then compiles each template once, not
    # once per letter (a cohort's first run renders hundreds of thousands).
    return letter_environment(Path(template_dir), html=False)


def render_letter(compiled: CompiledPathway, patient: PatientInfo, plan: PatientPlan,
                  letter: PlannedLetter) -> RenderedLetter:
    env = _environment(compiled.template_dir)
    try:
        markup = env.get_template(f"{letter.template}.md.j2").render(
            letter_context(compiled, patient, plan, letter))
    except TemplateError as exc:
        # A template is the pathway author's code run on one patient's data: whatever it
        # raises is that letter's failure. The message names the template, never the patient.
        raise LetterError(f"letter {letter.id} (template {letter.template!r}): {exc}",
                          f"its template {letter.template!r} could not be rendered ({type(exc).__name__})") from None
    except (TypeError, ArithmeticError, ValueError, LookupError, AttributeError) as exc:
        # A value of the wrong type (`validate` renders sample values and should have said
        # so): the template's fault, worded without the value, which may be the patient's.
        raise LetterError(f"letter {letter.id} (template {letter.template!r}): {type(exc).__name__} while "
                          "rendering: run `carepath validate` on the pathway",
                          f"its template {letter.template!r} could not be rendered ({type(exc).__name__})") from None
    # Every letter shows its date: the day it is sent, in the patient's calendar.
    dated = written_date(letter.send_at, ZoneInfo(patient.timezone))
    html = to_html(markup).replace("<body>\n", f'<body>\n<p class="date">{dated}</p>\n', 1)
    return RenderedLetter(letter.id, f"{dated}\n\n{to_text(markup)}", html, parse(markup).subject.replace("**", ""))


def written_date(moment: datetime, zone: ZoneInfo) -> str:
    """'March 2, 2026'."""
    local = moment.astimezone(zone)
    return f"{local:%B} {local.day}, {local.year}"


def write_private(path: Path, data: bytes, *, durable: bool = True) -> None:
    """Write atomically with mode 0600 (a crash never leaves half a letter)."""
    write_atomic(path, data, mode=0o600, durable=durable)


def write_letter(out_dir: Path, rendered: RenderedLetter, *, pdf: bool = True, durable: bool = True,
                 paper: str = "a4", pdf_bytes: bytes | None = None) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for suffix, data in ((".txt", rendered.text.encode()), (".html", rendered.html.encode())):
        path = out_dir / f"{rendered.id}{suffix}"
        write_private(path, data, durable=durable)
        written.append(path)
    if pdf:
        path = out_dir / f"{rendered.id}.pdf"
        write_private(path, pdf_bytes if pdf_bytes is not None else html_to_pdf(rendered.html, paper),
                      durable=durable)
        written.append(path)
    return written


def html_to_pdf(document: str, paper: str = "a4") -> bytes:
    from carepath.sinks.pdf import html_to_pdf as render  # WeasyPrint costs ~0.5 s to import: only for PDFs

    return render(document, paper)


# Letters rendered (text, HTML, PDF) and held in memory at once: a batch for the PDF
# workers that still bounds memory on a cohort's first run.
BATCH = 256


def write_batch(jobs: Sequence[tuple[Path, RenderedLetter]], *, pdf: bool, paper: str, durable: bool = True) -> int:
    """Write rendered letters, their PDFs made in parallel worker processes."""
    count = 0
    for start in range(0, len(jobs), BATCH):
        chunk = jobs[start:start + BATCH]
        pdfs: list[bytes | None] = [None] * len(chunk)
        if pdf:
            from carepath.sinks.pdf import render_pdfs

            pdfs = list(render_pdfs([rendered.html for _, rendered in chunk], paper))
        for (folder, rendered), data in zip(chunk, pdfs):
            write_letter(folder, rendered, pdf=pdf, durable=durable, paper=paper, pdf_bytes=data)
            count += 1
    return count


DUE = "due"


def dated_folder(root: Path, send_at: str) -> Path:
    """`root/YYYY/MM/DD`: the send date as the letter states it (the patient's zone)."""
    return root / send_at[0:4] / send_at[5:7] / send_at[8:10]


def render_all(compiled: CompiledPathway, patients: dict[str, PatientInfo], plans: Iterable[PatientPlan],
               out_dir: Path, *, pdf: bool = True) -> int:
    """Render the letters due at the plans' instant into `out_dir/<letter-id>.*`."""
    count, jobs = 0, []
    for plan in plans:
        patient = patients[plan.patient]
        for letter in plan.letters:
            if letter.status != DUE:
                continue
            jobs.append((out_dir, render_letter(compiled, patient, plan, letter)))
            if len(jobs) >= BATCH:
                count += write_batch(jobs, pdf=pdf, paper=compiled.clinic.paper)
                jobs = []
    return count + write_batch(jobs, pdf=pdf, paper=compiled.clinic.paper)


class LetterFiles:
    """The file channel of the letters outbox: each letter handed to it rendered to
    `<dir>/YYYY/MM/DD/<letter-id>.{txt,html[,pdf]}` (its send date). Built per shard, where
    the patients' names and plans are at hand; the emission hands it only letters due
    and never sent."""

    name = "letters"
    kinds = frozenset({OutputKind.LETTER})

    def __init__(self, out_dir: Path, compiled: CompiledPathway, patients: Mapping[str, PatientInfo],
                 plans: Mapping[str, PatientPlan], *, pdf: bool = True) -> None:
        self.out_dir, self.compiled, self.patients, self.plans, self.pdf = out_dir, compiled, patients, plans, pdf

    def write(self, outputs: Iterable[Output], on_sent: OnSent | None = None,
              on_failed: OnFailed | None = None) -> int:
        """Render and file the letters; `on_sent` once for those filed, `on_failed` for
        each that could not be rendered (the others are filed all the same)."""
        jobs, done = [], []
        for output in outputs:
            plan = self.plans[output.patient]
            letter = next(l for l in plan.letters if l.id == output.id)
            try:
                rendered = render_letter(self.compiled, self.patients[output.patient], plan, letter)
            except LetterError as exc:
                if on_failed is None:
                    raise
                on_failed(output, exc.reason)
                continue
            jobs.append((dated_folder(self.out_dir, letter.send_at.isoformat()), rendered))
            done.append(output)
        count = write_batch(jobs, pdf=self.pdf, paper=self.compiled.clinic.paper, durable=False)
        if count:
            # One flush to disk for the batch instead of an fsync per file (~1 ms each): the
            # ledger records these letters as sent only after this returns.
            os.sync()
        if on_sent is not None and done:
            on_sent(self.name, done)
        return count
