"""Which channel sends a pathway's letters (files, e-mail, a print batch), as a sink."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from carepath.compile.compiled import CompiledPathway
from carepath.engine.result import PatientPlan
from carepath.sinks.email import EmailLetters, SmtpSettings
from carepath.sinks.letters import LetterFiles

CHANNELS = ("file", "email", "print")


def channel_of(compiled: CompiledPathway) -> str:
    """The letter channel: CAREPATH_LETTER_CHANNEL for this run, else the pathway's `letter_channel`."""
    import os

    chosen = os.environ.get("CAREPATH_LETTER_CHANNEL") or compiled.letter_channel
    if chosen not in CHANNELS:
        raise ValueError(f"CAREPATH_LETTER_CHANNEL is {chosen!r}; use one of {', '.join(CHANNELS)}")
    return chosen


def letter_channel(compiled: CompiledPathway, out: Path, patients: dict, plans: dict[str, PatientPlan], pdf: bool,
                   as_of: datetime, smtp: SmtpSettings | None = None):  # noqa: ANN201 - a letters sink
    """The run's letter sink; `smtp`: the email channel's settings as the runtime resolved
    them (`RunSpec.smtp`), else CAREPATH_SMTP_*."""
    files = LetterFiles(out / "letters", compiled, patients, plans, pdf=pdf)
    channel = channel_of(compiled)
    if channel == "email":
        return EmailLetters(compiled, patients, plans, files, pdf=pdf, settings=smtp)
    if channel == "print":
        from carepath.sinks.print_batch import PrintBatch

        return PrintBatch(out, compiled, patients, plans, as_of.astimezone(compiled.clinic.zone).date().isoformat())
    return files
