"""Why a run failed, as a code and, when it cannot quote patient data, its message.

Prefect keeps a failed run's state message, logs and traceback in its database, and the
worker prints them in its log: an operator with only the Prefect UI and the worker log
must be able to tell why a run failed, and neither may ever hold a patient's name,
address or answers. So every failure gets a code from `CATALOGUE`; a code is *safe*
when carepath words every message of its kind itself, from settings, file paths,
pseudonymous refs, counts and pathway text (never from a patient's record), and then
the message is shown. Any other failure (a letter template that failed on a patient's
data, a bug) shows its code and type only; its message stays with the process that
started the run (`carepath run` prints it).

docs/operations.md lists the catalogue; `tests/test_failures.py` checks both agree.
Kinds are matched by the exception's class (and its bases) by dotted name, so this
module imports nothing it classifies.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FailureCode:
    code: str
    safe: bool                 # the message is shown (it cannot quote patient data)
    kinds: tuple[str, ...]     # exception classes, `module.QualName`
    meaning: str               # what it means and what to do


CATALOGUE: tuple[FailureCode, ...] = (
    FailureCode("CP-SETTING", True, ("carepath.settings.SettingMissing",),
                "a setting the run needs is missing or invalid; the message names it (environment variable, "
                "deployment job variable or Prefect variable)"),
    FailureCode("CP-DOCUMENTS", True, ("carepath.sinks.storage.LocationRefused",),
                "CAREPATH_DOCUMENTS_URL names a location documents cannot be written to (a scheme not allowed, "
                "credentials in the URL, its package missing)"),
    FailureCode("CP-SMTP", True, ("carepath.sinks.email.SmtpUnavailable",),
                "the mail server did not answer, or answered but refused carepath (login, sender, no STARTTLS "
                "or AUTH); the message names the server, never a recipient; unsent letters stay in the outbox"),
    FailureCode("CP-SMTP-SETTINGS", True, ("carepath.sinks.email.SmtpSettingsError",),
                "the e-mail channel's settings are missing or wrong (CAREPATH_SMTP_*)"),
    FailureCode("CP-INPUT-FILE", True, ("carepath.records.types.RecordsFileError",),
                "the patients or events file cannot be read (missing, a directory, no permission)"),
    FailureCode("CP-ALL-REJECTED", True, ("carepath.orchestrator.sequence.AllLinesRejected",),
                "every line of the patients or events file was rejected: probably the wrong file (e.g. the "
                "events file given as --patients); rejected.jsonl says why line by line"),
    FailureCode("CP-MIGRATION-REJECTED", True, ("carepath.orchestrator.sequence.MigrationRejectedLines",),
                "a migration moved patients to rules that reject event lines their old rules accepted; the "
                "message gives the line numbers, rejected.jsonl the reasons: correct the lines or the pathway"),
    FailureCode("CP-PATHWAY", True, ("carepath.loading.InvalidInput",),
                "the pathway file or the migration file is not valid; the message lists the problems"),
    FailureCode("CP-VERSION-REUSED", True, ("carepath.orchestrator.pinning.VersionReused",),
                "a pathway version that was run before now has different rules: give the changed file a new "
                "version"),
    FailureCode("CP-LEDGER", True, ("carepath.sinks.ledger.problems.LedgerProblem",
                                    "carepath.sinks.ledger_migrations.NewerLedger"),
                "the ledger cannot be used as it is (corrupt, missing while letters exist, written by a newer "
                "carepath); the message names it, without its password"),
    FailureCode("CP-LEDGER-UNAVAILABLE", True, ("carepath.sinks.ledger.problems.LedgerUnavailable",),
                "the ledger's database server did not answer"),
    FailureCode("CP-FOLDER-BUSY", True, ("carepath.outlock.FolderBusy",),
                "another run kept the output folder longer than this run would wait"),
    FailureCode("CP-PATIENT-UNKNOWN", True, ("carepath.orchestrator.emission.PatientNotFound",),
                "an event-triggered run names a patient ref that has no valid line in the patients file"),
    FailureCode("CP-DISK", True, ("builtins.FileNotFoundError", "builtins.PermissionError",
                                  "builtins.IsADirectoryError", "builtins.NotADirectoryError",
                                  "builtins.FileExistsError"),
                "a file or folder carepath needs is missing or not writable; the message names the path (folders "
                "and pseudonymous refs, never names)"),
    FailureCode("CP-LETTER", False, ("carepath.sinks.letters.LetterError",),
                "a letter could not be rendered; its message can quote the patient's data, so it is withheld: "
                "run `carepath validate` on the pathway, then `carepath run` by hand to read it"),
    FailureCode("CP-UNEXPECTED", False, (),
                "anything else (a bug: please report it); its message is withheld, as it may quote patient "
                "data: `carepath run` on the same inputs prints it"),
)

_BY_KIND = {kind: entry for entry in CATALOGUE for kind in entry.kinds}
UNEXPECTED = CATALOGUE[-1]


def classify(exc: BaseException) -> FailureCode:
    """The catalogue entry of an exception: its class's, else its nearest base's."""
    for cls in type(exc).__mro__:
        entry = _BY_KIND.get(f"{cls.__module__}.{cls.__qualname__}")
        if entry is not None:
            return entry
    return UNEXPECTED


def safe_message(exc: BaseException) -> str | None:
    """The exception's message when its code is safe, else None (withheld)."""
    if not classify(exc).safe:
        return None
    diagnostics = getattr(exc, "diagnostics", None)
    if diagnostics:  # InvalidInput: its own message is only a count
        shown = "; ".join(d.render() for d in diagnostics[:5])
        return shown + (f"; and {len(diagnostics) - 5} more" if len(diagnostics) > 5 else "")
    return str(exc)


def explain(exc: BaseException, where: str) -> str:
    """One line for Prefect and the worker log: code, kind, step, and the message or why
    it is withheld."""
    entry = classify(exc)
    head = f"[{entry.code}] {type(exc).__name__} in {where}"
    message = safe_message(exc)
    if message is not None:
        return f"{head}: {message}"
    return (f"{head} (its message is withheld from Prefect and logs: it may quote patient data; "
            f"{entry.meaning})")
