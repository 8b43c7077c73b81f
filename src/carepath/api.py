"""The library API the CLI is a thin shell over: a facade over the packages below, which
nothing inside carepath imports (the flows and the orchestrator use those packages)."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from carepath.check.runner import Checked, check_paths
from carepath.codes import Code
from carepath.diagnostics import Diagnostic
from carepath.loading import InvalidInput, InvalidPathway, load_pathway, load_pathway_text
from carepath.records import RecordsFileError
from carepath.review.version_check import version_not_bumped

if TYPE_CHECKING:
    from carepath.orchestrator.preflight import RunRefused, check_run, check_run_inputs, letter_channel_problem

# The run and export machinery (the orchestrator, SQLAlchemy: about a second to import) is
# imported when first used, so `carepath validate` and `--help` start without it.
_LATER = {name: "carepath.orchestrator.preflight"
          for name in ("RunRefused", "check_run", "check_run_inputs", "letter_channel_problem")}


def __getattr__(name: str) -> Any:
    if name in _LATER:
        return getattr(importlib.import_module(_LATER[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# Defined below the orchestrator (nothing inside carepath imports this facade); named here
# for the CLI and for callers outside the package.
__all__ = [
    "Checked", "ExportRefused", "InvalidInput", "InvalidPathway",
    "RunRefused", "ServiceDown", "check_run", "check_run_inputs", "export", "letter_channel_problem",
    "load_cohort", "load_pathway", "load_pathway_text", "validate",
]


def validate(paths: list[str], *, against_git: bool = True) -> list[Checked]:
    """Check files and directories of pathways; every problem, none raised. In a Git work
    tree (`against_git`), a file changed since HEAD with the same version is CP701."""
    results = check_paths(paths)
    if against_git:
        for checked in results:
            if (problem := version_not_bumped(checked)) is not None:
                checked.diagnostics.append(problem)
    return results


def load_cohort(pathway: str | Path, patients: str | Path, events: str | Path):
    """The compiled pathway and the cohort read from files; bad lines are rejections, not errors."""
    from carepath.orchestrator.planning import read_cohort  # see _LATER

    compiled = load_pathway(pathway)
    try:
        return compiled, read_cohort(compiled, patients, events)
    except RecordsFileError as exc:
        raise InvalidInput([Diagnostic(exc.path, 1, 1, str(Code.FILE_UNREADABLE), exc.message)]) from None


class ExportRefused(Exception):
    """An export that cannot be written as asked (no sweep in the ledger, a bundle too large,
    a ledger that cannot be used): the message says what to do."""


class ServiceDown(Exception):
    """The ledger's database server did not answer."""


def export(pathway: str | Path, out: str | Path, *, ledger_url: str | None = None, source: str | Path | None = None,
           bundle: bool = False, since: str | None = None) -> dict[str, int | None]:
    """`carepath export`: the whole-cohort documents from the ledger (`ledger_url`, or the
    one in the sweeps' folder `source`) into `out`, as of the pathway's last sweep; with
    `since` (a sweep stamp or an ISO instant) only `fhir/` with what changed after it."""
    from carepath.orchestrator.export import (  # see _LATER
        BundleTooLarge,
        NothingToExport,
        SinceOverWholeExport,
        UnknownSince,
        export_documents,
        export_since,
        since_generation,
    )
    from carepath.sinks.ledger import Ledger, LedgerProblem, LedgerUnavailable, check_ledger, default_url, url_problem

    compiled = load_pathway(pathway)
    if ledger_url is None:
        folder = Path(source or out).resolve()
        if not (folder / "ledger.sqlite").is_file():
            raise ExportRefused(f"{folder} holds no ledger.sqlite: give the --out folder of the sweeps, or --ledger URL")
        ledger_url = default_url(folder)
    elif problem := url_problem(ledger_url):
        raise ExportRefused(f"--ledger: {problem}")
    try:
        check_ledger(ledger_url, Path(out).resolve())
        ledger = Ledger(ledger_url)
    except LedgerProblem as exc:
        raise ExportRefused(str(exc)) from None
    except LedgerUnavailable as exc:
        raise ServiceDown(str(exc)) from None
    try:
        if since is not None:
            if bundle:
                raise ExportRefused("--bundle is for the whole cohort: leave it out with --since")
            since_generation(ledger, compiled.id, since)  # a bad stamp is refused before --out is made
            Path(out).mkdir(parents=True, exist_ok=True)
            return export_since(compiled, ledger, Path(out).resolve(), since)
        Path(out).mkdir(parents=True, exist_ok=True)
        return export_documents(compiled, ledger, Path(out).resolve(), bundle=bundle)
    except (BundleTooLarge, NothingToExport, UnknownSince, SinceOverWholeExport) as exc:
        raise ExportRefused(str(exc)) from None
    finally:
        ledger.close()
