"""What a run can be refused for before it starts (before Prefect, which costs seconds):
the pathway is valid, both records files can be opened, the letter channel's settings are
there, the migration names steps of this version, the ledger URL and the documents
location can be used. `carepath run` checks all of it; a deployment's run checks the
settings part in its first step."""

from __future__ import annotations

import os
from pathlib import Path

from carepath.codes import Code
from carepath.compile.compiled import CompiledPathway
from carepath.diagnostics import Diagnostic
from carepath.loading import InvalidInput, load_pathway
from carepath.orchestrator.emission import channel_of
from carepath.orchestrator.pinning import check_against, read_migration
from carepath.records.readers import not_regular
from carepath.sinks.email import SMTP_BLOCK_ENV, SmtpSettings
from carepath.sinks.ledger import url_problem
from carepath.sinks.storage import DOCUMENTS_ENV, location_problem


class RunRefused(Exception):
    """A setting or option a run cannot start with; the message names it."""


def check_run_inputs(pathway: str | Path, patients: str | Path, events: str | Path) -> CompiledPathway:
    """The pathway is valid and both records files can be opened; InvalidInput otherwise."""
    compiled = load_pathway(pathway)
    problems = []
    for path in (patients, events):
        if (problem := not_regular(path)) is not None:
            problems.append(Diagnostic(str(path), 1, 1, str(Code.FILE_UNREADABLE), problem))
            continue
        try:
            with open(path, "rb"):
                pass
        except OSError as exc:
            problems.append(Diagnostic(str(path), 1, 1, str(Code.FILE_UNREADABLE),
                                       f"cannot be read ({exc.strerror or exc})"))
    if problems:
        raise InvalidInput(problems)
    return compiled


def letter_channel_problem(compiled: CompiledPathway) -> str | None:
    """Why the run's letter channel cannot work (a bad CAREPATH_LETTER_CHANNEL, email
    settings missing), or None. A Prefect block named by CAREPATH_SMTP_BLOCK is read only
    by the runtime, when the run starts."""
    try:
        if channel_of(compiled) == "email" and not os.environ.get(SMTP_BLOCK_ENV):
            SmtpSettings.from_env()
    except ValueError as exc:
        return str(exc)
    return None


def check_run(pathway: str | Path, patients: str | Path, events: str | Path, *, migration: str | None = None,
              ledger_url: str | None = None) -> CompiledPathway:
    """Everything `carepath run` checks before starting Prefect: InvalidInput (with
    diagnostics) or RunRefused (a setting or option, named in the message)."""
    compiled = check_run_inputs(pathway, patients, events)
    if problem := letter_channel_problem(compiled):
        raise RunRefused(f"letters: {problem}")
    if migration:  # its step map must name steps of this version (the old ones: checked in the run)
        check_against(read_migration(migration), migration, set(compiled.steps), None)
    if ledger_url and (problem := url_problem(ledger_url)):
        raise RunRefused(f"--ledger: {problem}")
    if (documents := os.environ.get(DOCUMENTS_ENV)) and (problem := location_problem(documents)):
        raise RunRefused(f"{DOCUMENTS_ENV}: {problem}")
    return compiled
