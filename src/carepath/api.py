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


def validate(paths: list[str]) -> list[Checked]:
    """Check files and directories of pathways; every problem, none raised."""
    return check_paths(paths)


def load_pathway(path: str | Path) -> CompiledPathway:
    """A pathway ready for the engine, or InvalidPathway with all its problems."""
    from carepath.compile.compiler import compile_pathway

    checked = check_file(path)
    if not checked.ok or checked.pathway is None:
        raise InvalidPathway(checked.diagnostics)
    return compile_pathway(checked.pathway, Path(path).parent)


def load_cohort(pathway: str | Path, patients: str | Path, events: str | Path):
    """The compiled pathway and the cohort read from files; bad lines are rejections, not errors."""
    from carepath.codes import Code
    from carepath.planning import read_cohort
    from carepath.records import RecordsFileError

    compiled = load_pathway(pathway)
    try:
        return compiled, read_cohort(compiled, patients, events)
    except RecordsFileError as exc:
        raise InvalidInput([Diagnostic(exc.path, 1, 1, str(Code.FILE_UNREADABLE), exc.message)]) from None
