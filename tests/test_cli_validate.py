"""`carepath validate` per the contract: exit codes, line format, JSON, no traceback."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from carepath.cli.main import main

LINE = re.compile(r"^(?P<path>.+?):(?P<line>\d+):(?P<col>\d+): (?P<code>CP\d{3}) .+$")


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "carepath.cli.main", *args], capture_output=True, text=True,
                          timeout=60)


def test_valid_pathways_exit_zero(root: Path) -> None:
    proc = run("validate", str(root / "pathways"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout == ""


def test_errors_print_one_positioned_line_each_and_exit_one(tmp_path: Path, reference_pathway: Path,
                                                           root: Path) -> None:
    shutil.copytree(root / "templates", tmp_path / "templates")
    (tmp_path / "pathways").mkdir()
    bad = tmp_path / "pathways" / "bad.yaml"
    text = reference_pathway.read_text().replace("role: psychotherapist\n", "role: psychotherapst\n", 1)
    text = text.replace("title: IV ketamine", "title: IV ketamine\ntitle: twice", 1)
    bad.write_text(text)
    proc = run("validate", str(bad))
    assert proc.returncode == 1
    lines = proc.stdout.splitlines()
    assert len(lines) == 1 and LINE.match(lines[0]) and " CP104 " in lines[0]  # duplicate key stops the file
    text = text.replace("title: IV ketamine\ntitle: twice", "title: IV ketamine", 1)
    bad.write_text(text)
    proc = run("validate", str(bad), "--format", "json")
    assert proc.returncode == 1
    (diag,) = json.loads(proc.stdout)
    assert diag["code"] == "CP309" and diag["severity"] == "error" and diag["path"] == str(bad)
    assert text.splitlines()[diag["line"] - 1].strip() == "role: psychotherapst"


def test_all_files_reported_valid_ones_still_checked(tmp_path: Path, root: Path) -> None:
    (tmp_path / "a.yaml").write_text("id: [unclosed\n")
    (tmp_path / "b.yml").write_bytes(b"\x00\xff\xfe binary")
    proc = run("validate", str(tmp_path), str(root / "pathways"), str(tmp_path / "missing.yaml"))
    assert proc.returncode == 1
    codes = [LINE.match(l).group("code") for l in proc.stdout.splitlines()]
    assert codes == ["CP103", "CP101", "CP100"]
    assert "Traceback" not in proc.stderr
    shipped = len(list((root / "pathways").glob("*.yaml")))
    assert f"{3 + shipped} file(s) checked, 3 with errors" in proc.stderr


@pytest.mark.parametrize("content", [b"", b"---\n", b"[]", b"a: *undefined_alias\n", b"\t\t\n", b"{" * 5000])
def test_garbage_never_raises(tmp_path: Path, content: bytes, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "g.yaml"
    path.write_bytes(content)
    assert main(["validate", str(path)]) == 1
    out = capsys.readouterr()
    assert "Traceback" not in out.err and "internal error" not in out.err
    assert LINE.match(out.out.splitlines()[0])


def test_validate_does_not_import_prefect(root: Path) -> None:
    code = (
        "import sys; from carepath.cli.main import main; "
        f"rc = main(['validate', '-q', {str(root / 'pathways')!r}]); "
        "assert rc == 0; assert not [m for m in sys.modules if m.split('.')[0] == 'prefect'], 'prefect imported'"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_usage_errors_exit_two() -> None:
    assert run("validate").returncode == 2
    assert run("frobnicate").returncode == 2


def test_explain_lists_codes() -> None:
    proc = run("explain", "CP104")
    assert proc.returncode == 0 and proc.stdout.startswith("CP104 ")
