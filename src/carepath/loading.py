"""A pathway file read, checked and compiled for the engine; `InvalidInput` when it cannot be.

Below the orchestrator, the runtime, the review tools and the scenario runner, which all
load pathways: `carepath.api` re-exports these names for callers outside the package and
nothing inside imports the facade.
"""

from __future__ import annotations

import copy
from pathlib import Path

from carepath.check.runner import Checked, check_file
from carepath.codes import Code
from carepath.compile.compiled import CompiledPathway
from carepath.compile.compiler import compile_pathway
from carepath.diagnostics import Diagnostic
from carepath.source.dumper import dump_yaml


class InvalidInput(Exception):
    """Input that cannot be used at all, with a diagnostic per problem."""

    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        super().__init__(f"{len(diagnostics)} problem(s)")
        self.diagnostics = diagnostics


class InvalidPathway(InvalidInput):
    """Raised by `load_pathway` with every diagnostic of the file."""

    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        super().__init__(diagnostics)


def load_pathway(path: str | Path, overrides: dict[str, object] | None = None) -> CompiledPathway:
    """A pathway ready for the engine, or InvalidPathway with all its problems.

    `overrides` replaces parameter values (scenario tests try both policies this way);
    the result is checked like a file, so a misfit override is reported, not run.
    """
    checked = check_file(path)
    if checked.ok and overrides:
        checked = _with_overrides(checked, overrides, path)
    if not checked.ok or checked.pathway is None:
        raise InvalidPathway(checked.diagnostics)
    return compile_pathway(checked.pathway, Path(path).parent)


def load_pathway_text(path: str | Path, text: bytes, display: str) -> CompiledPathway:
    """A pathway compiled from `text` (e.g. a version archived in the ledger) as if it were
    the file at `path`: its templates and relative paths resolve beside that file."""
    checked = check_file(path, display=display, text=text)
    if not checked.ok or checked.pathway is None:
        raise InvalidPathway(checked.diagnostics)
    return compile_pathway(checked.pathway, Path(path).parent)


def _with_overrides(checked: Checked, overrides: dict[str, object], path: str | Path) -> Checked:
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
