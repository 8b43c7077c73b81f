#!/usr/bin/env python3
"""Set up the project-local environment if needed, then run the demo or the tests.

    python3 dev.py demo     # the main job (carepath run) on the embedded demo cohort
    python3 dev.py test     # the whole test suite (extra arguments go to pytest)
    python3 dev.py bench    # every performance measurement; writes BENCHMARKS.md (~30 min)

Only the Python standard library is used here, so this works on a machine that has
nothing but Python 3.11. Installs come from the hash-pinned `requirements.lock`; the
environment is rebuilt when the lock or pyproject.toml changes.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / "bin"
STAMP = VENV / ".carepath-installed"


def _fingerprint() -> str:
    digest = hashlib.sha256()
    for name in ("requirements.lock", "pyproject.toml"):
        digest.update((ROOT / name).read_bytes())
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


def test(extra: list[str]) -> int:
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    return subprocess.call([str(BIN / "python"), "-m", "pytest", *extra], cwd=ROOT, env=env)


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("demo", "test", "bench", "setup"):
        print(__doc__)
        return 2
    ensure_environment()
    if argv[0] == "demo":
        return demo()
    if argv[0] == "test":
        return test(argv[1:])
    if argv[0] == "bench":
        return subprocess.call([str(BIN / "python"), "bench/run.py", *argv[1:]], cwd=ROOT)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
