#!/usr/bin/env python3
"""Set up the project-local environment if needed, then run the demo, the tests or the checks.

    python3 dev.py demo     # the main job (carepath run) on the embedded demo cohort
    python3 dev.py test     # the whole test suite (extra arguments go to pytest)
    python3 dev.py test -m "not slow"   # the fast lane: no Prefect server, browser, PostgreSQL
    python3 dev.py lint     # ruff, mypy against mypy-baseline.txt, import-linter (CI runs it)
    python3 dev.py lint mypy imports       # only the checks named (ruff, mypy, imports)
    python3 dev.py lint --fix              # ruff fixes what it can; its debt table shrinks to what remains
    python3 dev.py lint --update-baseline  # rewrite mypy-baseline.txt to today's mypy errors
    python3 dev.py bench    # every performance measurement; writes BENCHMARKS.md (~30 min)
    python3 dev.py serve    # the live worklist on the demo (sweeps it first if needed); prints a demo account

Only the Python standard library is used here, so this works on a machine that has
nothing but Python 3.11. Installs come from the hash-pinned `requirements.lock`; the
environment is rebuilt when the lock or pyproject.toml's dependencies or packaging change.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tomllib
import venv
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / "bin"
STAMP = VENV / ".carepath-installed"


def _fingerprint() -> str:
    """What the installed environment depends on: the lock, and the parts of pyproject.toml
    that change what is installed (not the linters' and pytest's settings)."""
    digest = hashlib.sha256((ROOT / "requirements.lock").read_bytes())
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    installed = {"build-system": pyproject.get("build-system"), "project": pyproject.get("project"),
                 "setuptools": pyproject.get("tool", {}).get("setuptools")}
    digest.update(json.dumps(installed, sort_keys=True).encode())
    return digest.hexdigest()


def _run_quietly(cmd: list[str], what: str) -> None:
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        sys.stderr.write(result.stdout[-4000:] + result.stderr[-8000:])
        sys.exit(f"dev.py: {what} failed (exit {result.returncode}); see the output above")


def ensure_environment() -> None:
    if sys.version_info[:2] != (3, 11):
        sys.exit(f"dev.py: carepath needs Python 3.11; this is {sys.version.split()[0]}")
    wanted = _fingerprint()
    if STAMP.exists() and STAMP.read_text() == wanted and (BIN / "carepath").exists():
        return
    if not (BIN / "python").exists():
        print("Creating .venv ...", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    print("Installing pinned dependencies from requirements.lock (first run takes a minute) ...", flush=True)
    pip = [str(BIN / "python"), "-m", "pip", "--disable-pip-version-check", "install", "-q"]
    # The lock is the complete closure, so nothing is left for pip to resolve: --no-deps
    # installs exactly it. (Resolving would also trip pip 23's require-hashes handling of
    # a dependency's extras, e.g. prefect's sqlalchemy[asyncio], which ignores the pin.)
    _run_quietly([*pip, "--no-deps", "--require-hashes", "-r", "requirements.lock"], "installing requirements.lock")
    _run_quietly([*pip, "--no-deps", "--no-build-isolation", "-e", "."], "installing carepath")
    _run_quietly([str(BIN / "python"), "-m", "pip", "check"], "checking the installed dependencies")
    STAMP.write_text(wanted)


DEMO_AS_OF = "2026-03-05T17:00:00+00:00"
DEMO_OUT = "out/demo"


def demo() -> int:
    """Validate the shipped pathways, then run the main job on the demo cohort
    (examples/demo/) as of a fixed instant: one recorded Prefect flow run on Prefect's
    temporary local server, writing the worklist, letters and change feed, then (--export)
    the whole-cohort documents — tasks, letters.jsonl, FHIR NDJSON — to out/demo."""
    cli = str(BIN / "carepath")
    steps = [
        ["validate", "pathways/"],
        ["run", "pathways/ketamine-iv.yaml", "--patients", "examples/demo/patients.jsonl",
         "--events", "examples/demo/events.jsonl", "--out", DEMO_OUT, "--as-of", DEMO_AS_OF, "--export"],
    ]
    for args in steps:
        print(f"\n$ carepath {' '.join(args)}", flush=True)
        code = subprocess.call([cli, *args], cwd=ROOT)
        if code != 0:
            return code
    print(f"\nOpen {DEMO_OUT}/worklist.html in a browser; run the demo again and nothing is emitted twice.")
    return 0


DEMO_USER = "demo"


def serve(extra: list[str]) -> int:
    """`carepath serve` on the demo cohort: the demo's sweep first when its ledger is
    missing; actions append to a copy of the demo's events file (out/demo/cohort/), so
    examples/ stays as committed; the clock starts at the demo's as-of and runs. A demo
    administrator account is created once, its password kept owner-only beside the ledger."""
    import secrets
    import shutil

    out = ROOT / DEMO_OUT
    if not (out / "ledger.sqlite").exists():
        code = demo()
        if code != 0:
            return code
    cohort = out / "cohort"
    cohort.mkdir(mode=0o700, exist_ok=True)
    for name in ("patients.jsonl", "events.jsonl"):
        if not (cohort / name).exists():
            shutil.copyfile(ROOT / "examples" / "demo" / name, cohort / name)
            (cohort / name).chmod(0o600)
    cli = str(BIN / "carepath")
    ledger = f"sqlite:///{out / 'ledger.sqlite'}"
    secret = out / ".demo-password"
    if not secret.exists():
        password = secrets.token_urlsafe(12)
        code = subprocess.run([cli, "users", "add", DEMO_USER, "--role", "admin", "--ledger", ledger],
                              input=password + "\n", text=True, cwd=ROOT).returncode
        if code != 0:
            return code
        secret.touch(mode=0o600)
        secret.write_text(password + "\n")
    password = secret.read_text().strip()
    port = extra[extra.index("--port") + 1] if "--port" in extra else "8000"
    print(f"\nSign in at http://127.0.0.1:{port}/ as {DEMO_USER!r} with password {password!r} "
          "(an administrator: every role's work).", flush=True)
    return subprocess.call([cli, "serve", "pathways/ketamine-iv.yaml", "--ledger", ledger,
                            "--patients", str(cohort / "patients.jsonl"), "--events", str(cohort / "events.jsonl"),
                            "--as-of", DEMO_AS_OF, "--no-pdf", *extra], cwd=ROOT)


def test(extra: list[str]) -> int:
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    return subprocess.call([str(BIN / "python"), "-m", "pytest", *extra], cwd=ROOT, env=env)


# What ruff checks; mypy's files and import-linter's contracts are in pyproject.toml.
LINT_PATHS = ["src", "tests", "bench", "flows", "dev.py"]
MYPY_BASELINE = ROOT / "mypy-baseline.txt"
PYPROJECT = ROOT / "pyproject.toml"
# The per-file table of ruff findings accepted when ruff came in, between these markers.
DEBT_BEGIN, DEBT_END = "# ruff-debt: begin\n", "# ruff-debt: end\n"
STRICT_RUFF_CONFIG = ROOT / ".ruff-without-debt.toml"


def _tool(name: str, *args: str, capture: bool = False) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / name), *args], cwd=ROOT, text=True, capture_output=capture)


def _ruff_findings(*extra: str) -> list[dict]:
    result = _tool("ruff", "check", "--output-format", "json", "--exit-zero", *extra, *LINT_PATHS, capture=True)
    if result.returncode != 0:
        sys.exit(f"dev.py: ruff failed (exit {result.returncode}):\n{result.stderr}")
    return json.loads(result.stdout)


def _write_ruff_debt(findings: list[dict]) -> None:
    per_file: dict[str, set[str]] = {}
    for finding in findings:
        path = Path(finding["filename"]).resolve().relative_to(ROOT).as_posix()
        per_file.setdefault(path, set()).add(finding["code"] or "E999")
    table = "".join(f"{json.dumps(path)} = {json.dumps(sorted(codes))}\n" for path, codes in sorted(per_file.items()))
    text = PYPROJECT.read_text()
    start, end = text.index(DEBT_BEGIN) + len(DEBT_BEGIN), text.index(DEBT_END)
    PYPROJECT.write_text(text[:start] + table + text[end:])


def _toml_table(table: dict, prefix: str = "") -> str:
    """The small subset of TOML ruff's settings use: strings, numbers, lists, tables."""
    scalars = "".join(f"{json.dumps(key) if '/' in key else key} = {json.dumps(value)}\n"
                      for key, value in table.items() if not isinstance(value, dict))
    tables = "".join(f"\n[{prefix}{key}]\n" + _toml_table(value, f"{prefix}{key}.")
                     for key, value in table.items() if isinstance(value, dict))
    return scalars + tables


def ruff_fix() -> int:
    """Fix what ruff fixes safely, in every file, then accept only what remains."""
    # ruff's --config overrides merge into tables instead of replacing them, so the
    # settings without the debt table go to a file of their own for this run.
    settings = tomllib.loads(PYPROJECT.read_text())["tool"]["ruff"]
    settings["lint"].pop("extend-per-file-ignores", None)
    STRICT_RUFF_CONFIG.write_text(_toml_table(settings))
    try:
        strict = ["--config", str(STRICT_RUFF_CONFIG)]
        _tool("ruff", "check", "--fix", "--exit-zero", "--silent", *strict, *LINT_PATHS)
        remaining = _ruff_findings(*strict)
    finally:
        STRICT_RUFF_CONFIG.unlink()
    _write_ruff_debt(remaining)
    for finding in remaining:
        where = Path(finding["filename"]).resolve().relative_to(ROOT).as_posix()
        print(f'{where}:{finding["location"]["row"]}: {finding["code"]} {finding["message"]}')
    counts = Counter(finding["code"] for finding in remaining)
    print(f"ruff: {len(remaining)} findings remain that ruff cannot fix safely (above);"
          " pyproject.toml's ruff-debt table now lists them, per file:")
    for code, count in counts.most_common():
        print(f"  {count:5d}  {code}")
    print("Review the changes (git diff), run the tests, commit.")
    return 0


def _mypy_errors() -> tuple[Counter[tuple[str, str]], list[str]]:
    result = _tool("mypy", "--output", "json", "--no-error-summary", capture=True)
    if result.returncode not in (0, 1):
        sys.exit(f"dev.py: mypy failed (exit {result.returncode}):\n{result.stdout[-4000:]}{result.stderr[-4000:]}")
    counts: Counter[tuple[str, str]] = Counter()
    lines = []
    for line in result.stdout.splitlines():
        error = json.loads(line)
        if error["severity"] != "error":
            continue
        counts[error["file"], error["code"] or "misc"] += 1
        lines.append(f'{error["file"]}:{error["line"]}: {error["message"]}  [{error["code"]}]')
    return counts, lines


def _read_mypy_baseline() -> Counter[tuple[str, str]]:
    baseline: Counter[tuple[str, str]] = Counter()
    for line in MYPY_BASELINE.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            path, code, count = line.split()
            baseline[path, code] = int(count)
    return baseline


def update_mypy_baseline() -> int:
    counts, _ = _mypy_errors()
    header = ("# mypy's errors on src/ accepted when mypy came in: file, error code, count.\n"
              "# `python3 dev.py lint` fails when a count grows or a new (file, code) appears;\n"
              "# after fixing some, `python3 dev.py lint --update-baseline` shrinks this file.\n")
    rows = "".join(f"{path} {code} {count}\n" for (path, code), count in sorted(counts.items()))
    MYPY_BASELINE.write_text(header + rows)
    files = len({path for path, _ in counts})
    print(f"mypy: {sum(counts.values())} errors in {files} files written to {MYPY_BASELINE.name}")
    return 0


def mypy_against_baseline() -> bool:
    counts, lines = _mypy_errors()
    baseline = _read_mypy_baseline()
    grown = {key: count for key, count in counts.items() if count > baseline[key]}
    total, accepted = sum(counts.values()), sum(baseline.values())
    if grown:
        print(f"mypy: {total} errors; more than {MYPY_BASELINE.name} accepts for:")
        for (path, code), count in sorted(grown.items()):
            print(f"  {path} [{code}]: {count}, baseline {baseline[path, code]}")
            for line in lines:
                if line.startswith(f"{path}:") and line.endswith(f"[{code}]"):
                    print(f"    {line}")
        return False
    note = ""
    if total < accepted:
        note = f"; {accepted - total} fewer than the baseline: lock that in with --update-baseline"
    print(f"mypy: {total} errors, none new (baseline {accepted}){note}")
    return True


LINTERS = ("ruff", "mypy", "imports")


def lint(args: list[str]) -> int:
    """All three checks, or those named (`python3 dev.py lint mypy imports`)."""
    if args == ["--fix"]:
        return ruff_fix()
    if args == ["--update-baseline"]:
        return update_mypy_baseline()
    if not set(args) <= set(LINTERS):
        print(__doc__)
        return 2
    wanted = args or LINTERS
    failed = []
    if "ruff" in wanted:
        print("$ ruff check", flush=True)
        if _tool("ruff", "check", *LINT_PATHS).returncode != 0:
            failed.append("ruff (`python3 dev.py lint --fix` fixes what it can)")
    if "mypy" in wanted:
        print("$ mypy (against mypy-baseline.txt)", flush=True)
        if not mypy_against_baseline():
            failed.append("mypy")
    if "imports" in wanted:
        print("$ lint-imports", flush=True)
        if _tool("lint-imports", "--no-cache").returncode != 0:
            failed.append("import-linter")
    if failed:
        print(f"dev.py lint: failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    print(f"dev.py lint: {', '.join(wanted)} pass")
    return 0


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("demo", "test", "bench", "setup", "lint", "serve"):
        print(__doc__)
        return 2
    ensure_environment()
    if argv[0] == "demo":
        return demo()
    if argv[0] == "test":
        return test(argv[1:])
    if argv[0] == "lint":
        return lint(argv[1:])
    if argv[0] == "serve":
        return serve(argv[1:])
    if argv[0] == "bench":
        return subprocess.call([str(BIN / "python"), "bench/run.py", *argv[1:]], cwd=ROOT)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
