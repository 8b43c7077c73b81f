"""The library API the CLI and the Prefect flows are thin shells over."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from carepath.check.runner import Checked, check_file, check_paths
from carepath.diagnostics import Diagnostic

if TYPE_CHECKING:
    from carepath.compile.compiled import CompiledPathway


class InvalidInput(Exception):
    """Input that cannot be used at all, with a diagnostic per problem."""

    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        super().__init__(f"{len(diagnostics)} problem(s)")
        self.diagnostics = diagnostics


class InvalidPathway(InvalidInput):
    """Raised by `load_pathway` with every diagnostic of the file."""

    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        super().__init__(diagnostics)


def validate(paths: list[str], *, against_git: bool = True) -> list[Checked]:
    """Check files and directories of pathways; every problem, none raised. In a Git work
    tree (`against_git`), a file changed since HEAD with the same version is CP701."""
    results = check_paths(paths)
    if against_git:
        from carepath.review.version_check import version_not_bumped

        for checked in results:
            if (problem := version_not_bumped(checked)) is not None:
                checked.diagnostics.append(problem)
    return results


def load_pathway(path: str | Path, overrides: dict[str, object] | None = None) -> CompiledPathway:
    """A pathway ready for the engine, or InvalidPathway with all its problems.

    `overrides` replaces parameter values (scenario tests try both policies this way);
    the result is checked like a file, so a misfit override is reported, not run.
    """
    from carepath.compile.compiler import compile_pathway

    checked = check_file(path)
    if checked.ok and overrides:
        checked = _with_overrides(checked, overrides, path)
    if not checked.ok or checked.pathway is None:
        raise InvalidPathway(checked.diagnostics)
    return compile_pathway(checked.pathway, Path(path).parent)


def load_pathway_text(path: str | Path, text: bytes, display: str) -> CompiledPathway:
    """A pathway compiled from `text` (e.g. a version archived in the ledger) as if it were
    the file at `path`: its templates and relative paths resolve beside that file."""
    from carepath.compile.compiler import compile_pathway

    checked = check_file(path, display=display, text=text)
    if not checked.ok or checked.pathway is None:
        raise InvalidPathway(checked.diagnostics)
    return compile_pathway(checked.pathway, Path(path).parent)


def _with_overrides(checked: Checked, overrides: dict[str, object], path: str | Path) -> Checked:
    import copy

    from carepath.codes import Code
    from carepath.source.dumper import dump_yaml

    data = copy.deepcopy(checked.source.data)
    assert isinstance(data, dict)
    parameters = data.get("parameters", {})
    unknown = [name for name in overrides if name not in parameters]
    if unknown:
        return Checked(checked.path, None, checked.source, [
            Diagnostic(str(path), 1, 1, str(Code.UNKNOWN_PARAMETER), f"override of unknown parameter {name!r}")
            for name in unknown
        ])
    for name, value in overrides.items():
        parameters[name]["value"] = value
    # Checked in place of the file so templates and relative paths resolve the same way.
    return check_file(path, display=f"{path} (with overrides)", text=dump_yaml(data).encode())


def load_cohort(pathway: str | Path, patients: str | Path, events: str | Path):
    """The compiled pathway and the cohort read from files; bad lines are rejections, not errors."""
    from carepath.codes import Code
    from carepath.orchestrator.planning import read_cohort
    from carepath.records import RecordsFileError

    compiled = load_pathway(pathway)
    try:
        return compiled, read_cohort(compiled, patients, events)
    except RecordsFileError as exc:
        raise InvalidInput([Diagnostic(exc.path, 1, 1, str(Code.FILE_UNREADABLE), exc.message)]) from None


def check_run_inputs(pathway: str | Path, patients: str | Path, events: str | Path) -> CompiledPathway:
    """Everything `carepath run` can check before starting Prefect (which costs seconds):
    the pathway is valid and both records files can be opened."""
    from carepath.codes import Code

    compiled = load_pathway(pathway)
    problems = []
    from carepath.records.readers import not_regular

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
    settings missing), or None: checked before Prefect starts, like the inputs. A Prefect
    block named by CAREPATH_SMTP_BLOCK is read only by the run itself."""
    import os

    from carepath.orchestrator.emission import channel_of

    try:
        channel = channel_of(compiled)
        if channel == "email" and not os.environ.get("CAREPATH_SMTP_BLOCK"):
            from carepath.sinks.email import SmtpSettings

            SmtpSettings.from_env()
    except ValueError as exc:
        return str(exc)
    return None


class ExportRefused(Exception):
    """An export that cannot be written as asked (no sweep in the ledger, a bundle too large,
    a ledger that cannot be used): the message says what to do."""


class ServiceDown(Exception):
    """The ledger's database server did not answer."""


def export(pathway: str | Path, out: str | Path, *, ledger_url: str | None = None, source: str | Path | None = None,
           bundle: bool = False) -> dict[str, int | None]:
    """`carepath export`: the whole-cohort documents from the ledger (`ledger_url`, or the
    one in the sweeps' folder `source`) into `out`, as of the pathway's last sweep."""
    from carepath.orchestrator.export import BundleTooLarge, NothingToExport, export_documents
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
        Path(out).mkdir(parents=True, exist_ok=True)
        return export_documents(compiled, ledger, Path(out).resolve(), bundle=bundle)
    except (BundleTooLarge, NothingToExport) as exc:
        raise ExportRefused(str(exc)) from None
    finally:
        ledger.close()
