"""Every broken pathway in tests/corpus/ is rejected with exactly its expected code and line.

Each file's first line states the expectation:
    # expect: CP104 line 6
    # expect: CP602 bad_templates/welcome.md.j2 line 3
    # expect: CP311 line 20 warning
    # expect: valid
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from carepath.check.runner import check_file
from carepath.codes import Code
from carepath.diagnostics import Severity

CORPUS = Path(__file__).parent / "corpus"
CASES = sorted(p for p in CORPUS.glob("*.yaml"))
EXPECT = re.compile(r"^# expect: (?:(valid)|(CP\d{3})(?: (\S+))? line (\d+)( warning)?)\s*$")


def _expectation(path: Path) -> re.Match[str]:
    first = path.read_bytes().split(b"\n", 1)[0].decode("utf-8", "replace")
    match = EXPECT.match(first)
    assert match, f"{path.name}: first line must be '# expect: CODE line N' or '# expect: valid'"
    return match


@pytest.mark.parametrize("case", CASES, ids=[p.name for p in CASES])
def test_corpus_case(case: Path) -> None:
    expect = _expectation(case)
    result = check_file(case, display=case.name)
    if expect.group(1):
        assert result.diagnostics == [], [d.render() for d in result.diagnostics]
        return
    code, where, line, warning = expect.group(2), expect.group(3), int(expect.group(4)), expect.group(5)
    severity = Severity.WARNING if warning else Severity.ERROR
    found = [d for d in result.diagnostics if d.severity is severity]
    rendered = [d.render() for d in result.diagnostics]
    assert len(found) == 1, f"expected exactly one {severity} diagnostic, got: {rendered}"
    (d,) = found
    assert (d.code, d.line) == (code, line), rendered
    if where:
        assert Path(d.path).resolve() == (CORPUS / where).resolve(), rendered
    else:
        assert d.path == case.name
    assert d.message and d.col >= 1
    if not warning:
        assert not result.ok


def test_corpus_covers_every_code() -> None:
    covered = {_expectation(p).group(2) for p in CASES}
    # CP701 compares a file with its Git history: tests/test_releases.py builds one.
    missing = {c.value for c in Code} - covered - {Code.FILE_UNREADABLE.value, Code.VERSION_NOT_BUMPED.value}
    assert not missing, f"no corpus case for: {sorted(missing)}"
    assert len(CASES) >= 31  # 30 broken pathways plus the valid base
