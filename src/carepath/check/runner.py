"""Validate pathway files: source → model → semantic checks, every problem reported."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from carepath.check.conditions import check_conditions
from carepath.check.context import CheckContext
from carepath.check.escalation import check_escalation
from carepath.check.references import check_references
from carepath.check.safety import check_safety
from carepath.check.shape import validate_model
from carepath.check.structure import check_structure
from carepath.check.templates import check_templates
from carepath.check.timing import check_timing
from carepath.codes import Code
from carepath.diagnostics import Diagnostic, has_errors
from carepath.model.pathway import Pathway
from carepath.source.loader import LoadedSource, load_source

PATHWAY_SUFFIXES = (".yaml", ".yml")
CHECKS = (check_references, check_structure, check_timing, check_conditions, check_templates, check_safety,
          check_escalation)


@dataclass
class Checked:
    """One file's outcome: the model when it loaded, and every diagnostic."""

    path: str
    pathway: Pathway | None
    source: LoadedSource
    diagnostics: list[Diagnostic] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.pathway is not None and not has_errors(self.diagnostics)


def check_file(path: str | Path, *, display: str | None = None, text: bytes | None = None) -> Checked:
    shown = display or str(path)
    source = load_source(path, display=shown, text=text)
    result = Checked(shown, None, source, list(source.diagnostics))
    if source.data is None or has_errors(source.diagnostics):
        return result
    pathway, problems = validate_model(source)
    result.diagnostics.extend(problems)
    if pathway is None:
        return result
    result.pathway = pathway
    ctx = CheckContext(pathway, source, Path(path).parent)
    for check in CHECKS:
        check(ctx)
    result.diagnostics.extend(ctx.diagnostics)
    result.diagnostics.sort(key=lambda d: (d.path != shown, d.path, d.line, d.col, d.code))
    return result


def expand(paths: Iterable[str]) -> Iterator[tuple[str, Diagnostic | None]]:
    """Files named, and pathway files inside directories named (sorted, recursive)."""
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found = sorted(q for q in p.rglob("*") if q.suffix in PATHWAY_SUFFIXES and q.is_file())
            if not found:
                yield raw, Diagnostic(raw, 1, 1, str(Code.FILE_UNREADABLE),
                                      "directory holds no pathway files (*.yaml, *.yml)")
            for q in found:
                yield str(q), None
        elif p.exists():
            yield raw, None
        else:
            yield raw, Diagnostic(raw, 1, 1, str(Code.FILE_UNREADABLE), "no such file or directory")


def check_paths(paths: Iterable[str]) -> list[Checked]:
    results = []
    for path, problem in expand(paths):
        if problem is not None:
            results.append(Checked(path, None, LoadedSource(path, None), [problem]))
        else:
            results.append(check_file(path))
    return results
