"""A changed pathway whose version did not change, caught before a sweep refuses it.

A sweep archives each pathway version's source in the ledger and refuses the same
version with other rules (`VersionReused`): the version is what reviewers signed off.
`carepath validate` in a Git work tree compares each pathway file with its text at HEAD
(as `carepath diff git:HEAD:path path` does) and reports `CP701` at the `version:` key
when the text differs and the version does not. Outside Git, for a file Git does not
track at HEAD, or when the file is unchanged, nothing is reported; a HEAD text that does
not parse is not compared.

It is an error, not a warning: any change of the source is what the sweep refuses (a
comment included), and the pre-commit hook runs `validate` on the staged file, so the
commit that forgot the bump is the one stopped.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from carepath.check.runner import Checked
from carepath.codes import Code
from carepath.diagnostics import Diagnostic
from carepath.source.loader import load_source


def _git(cwd: Path, *args: str) -> bytes | None:
    try:
        proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None  # no git, or it does not answer: nothing to compare with
    return proc.stdout if proc.returncode == 0 else None


def head_text(path: Path) -> bytes | None:
    """The file's text at HEAD of the Git work tree it sits in, or None."""
    resolved = path.resolve()
    top = _git(resolved.parent, "rev-parse", "--show-toplevel")
    if top is None:
        return None
    try:
        relative = resolved.relative_to(Path(top.decode().strip()).resolve())
    except ValueError:
        return None
    return _git(resolved.parent, "show", f"HEAD:{relative.as_posix()}")


def version_not_bumped(checked: Checked) -> Diagnostic | None:
    """CP701 when the file changed since HEAD and its version did not."""
    if checked.pathway is None:
        return None
    path = Path(checked.path)
    if not path.is_file():
        return None
    before = head_text(path)
    if before is None or before == path.read_bytes():
        return None
    old = load_source(path, display=f"git:HEAD:{checked.path}", text=before)
    if not isinstance(old.data, dict) or str(old.data.get("version")) != checked.pathway.version:
        return None
    pos = checked.source.locate(("version",))
    version = checked.pathway.version
    return Diagnostic(
        checked.path, pos.line, pos.col, str(Code.VERSION_NOT_BUMPED),
        f"the pathway changed since HEAD but its version is still {version}: a sweep refuses a version it has "
        f"run with other rules (VersionReused), so every sweep would stop",
        hint=f"give the changed pathway a new version (e.g. after {version}); "
             f"'carepath diff git:HEAD:{checked.path} {checked.path}' shows what changed")
