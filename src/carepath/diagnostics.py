"""The one error type a user can cause: a positioned, coded diagnostic.

Every layer (source, model, check, readers) reports problems as `Diagnostic`s and keeps
going, so a user sees every problem in one run rather than one per run.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import StrEnum


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True, slots=True, order=True)
class Diagnostic:
    path: str
    line: int
    col: int
    code: str
    message: str
    hint: str = ""
    severity: Severity = Severity.ERROR

    def render(self) -> str:
        """`path:line:col: CODE message` — the contract's one-line form; a warning (which
        does not fail `validate`) says so: `path:line:col: CODE warning: message`."""
        label = "warning: " if self.severity is Severity.WARNING else ""
        text = f"{self.path}:{self.line}:{self.col}: {self.code} {label}{self.message}"
        if self.hint:
            text += f" (hint: {self.hint})"
        return text

    def as_json(self) -> dict[str, object]:
        data = asdict(self)
        data["severity"] = str(self.severity)
        return data


def has_errors(diagnostics: list[Diagnostic]) -> bool:
    return any(d.severity is Severity.ERROR for d in diagnostics)
