"""A pathway to review, from a file or from a version in Git (`git:REF:path`).

Review tools need both forms of a pathway: the model keeps what the author wrote
(parameter source tags, role and flag meanings, `$parameter` texts) and the compiled
form holds the values the engine will act on, which is what "changed" is judged by.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from carepath.check.runner import check_file
from carepath.codes import Code
from carepath.compile.compiled import CompiledPathway
from carepath.compile.compiler import compile_pathway
from carepath.diagnostics import Diagnostic
from carepath.loading import InvalidPathway
from carepath.model.pathway import Pathway

GIT_PREFIX = "git:"
_GIT_FORM = "write git:REF:path, e.g. git:HEAD~1:pathways/ketamine-iv.yaml"


@dataclass(frozen=True)
class Reviewed:
    label: str  # as the user named it: a path, or git:REF:path
    model: Pathway
    compiled: CompiledPathway


def load_reviewed(spec: str, *, cwd: Path | None = None) -> Reviewed:
    """The pathway `spec` names, checked and compiled, or InvalidPathway with every problem."""
    if spec.startswith(GIT_PREFIX):
        path, text = _from_git(spec, cwd or Path.cwd())
    else:
        path, text = Path(spec), None
    checked = check_file(path, display=spec, text=text)
    if not checked.ok or checked.pathway is None:
        raise InvalidPathway(checked.diagnostics)
    return Reviewed(spec, checked.pathway, compile_pathway(checked.pathway, path.parent))


def _from_git(spec: str, cwd: Path) -> tuple[Path, bytes]:
    """The file's bytes at REF, and where it would sit in the work tree.

    Templates are resolved against the work tree beside that place: Git holds the
    pathway's old text, not a checkout of its whole directory.
    """
    ref, sep, path = spec[len(GIT_PREFIX):].partition(":")
    if not sep or not ref or not path:
        _fail(spec, f"{spec!r} is not a Git source; {_GIT_FORM}")
    if ref.startswith("-"):
        _fail(spec, f"{ref!r} is not a Git revision")  # never let a ref become a git option
    top = _git(spec, cwd, "rev-parse", "--show-toplevel",
               problem=f"{cwd} is not inside a Git repository, so {spec} cannot be read")
    _git(spec, cwd, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}",
         problem=f"Git revision {ref!r} does not exist in this repository")
    kind = _git(spec, cwd, "cat-file", "-t", f"{ref}:{path}",
                problem=f"{path!r} does not exist at revision {ref!r} "
                        "(paths are relative to the repository root; start with ./ for the current directory)")
    if kind.strip() != b"blob":
        _fail(spec, f"{path!r} at revision {ref!r} is a {kind.decode().strip()}, not a file")
    text = _git(spec, cwd, "show", f"{ref}:{path}", problem=f"cannot read {path!r} at revision {ref!r}")
    base = cwd if path.startswith(("./", "../")) else Path(top.decode().strip())
    return base / path, text


def _git(spec: str, cwd: Path, *args: str, problem: str) -> bytes:
    try:
        proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, timeout=60)
    except FileNotFoundError:
        _fail(spec, "git is not installed or not on PATH")
    except subprocess.TimeoutExpired:
        _fail(spec, f"git {args[0]} did not answer within 60 s")
    if proc.returncode != 0:
        _fail(spec, problem)
    return proc.stdout


def _fail(spec: str, message: str) -> NoReturn:
    raise InvalidPathway([Diagnostic(spec, 1, 1, str(Code.FILE_UNREADABLE), message)])
