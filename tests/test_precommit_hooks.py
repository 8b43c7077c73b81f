"""`.pre-commit-hooks.yaml` offers hooks whose commands the CLI really has."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml

from carepath.cli.main import build_parser

REQUIRED = {"id", "name", "entry", "language"}


@pytest.fixture(scope="module")
def hooks(root: Path) -> dict[str, dict]:
    entries = yaml.safe_load((root / ".pre-commit-hooks.yaml").read_text())
    assert isinstance(entries, list)
    return {h["id"]: h for h in entries}


@pytest.fixture(scope="module")
def root() -> Path:
    return Path(__file__).resolve().parents[1]


def test_offers_validate_and_scenarios(hooks: dict[str, dict]) -> None:
    assert set(hooks) == {"carepath-validate", "carepath-scenarios"}
    for hook in hooks.values():
        assert REQUIRED <= hook.keys(), hook["id"]
        assert hook["language"] == "python"  # pre-commit installs carepath itself


@pytest.mark.parametrize("hook_id", ["carepath-validate", "carepath-scenarios"])
def test_each_entry_is_a_command_the_cli_parses(hooks: dict[str, dict], hook_id: str) -> None:
    hook = hooks[hook_id]
    program, *args = shlex.split(hook["entry"])
    assert program == "carepath"
    args += hook.get("args", [])
    if hook.get("pass_filenames", True):
        args.append("pathways/ketamine-iv.yaml")  # what pre-commit appends
    parsed = build_parser().parse_args(args)  # exits (SystemExit) on an unknown command or option
    assert parsed.command == args[0]


def test_validate_runs_on_pathway_files_only(hooks: dict[str, dict]) -> None:
    hook = hooks["carepath-validate"]
    files, exclude = re.compile(hook["files"]), re.compile(hook["exclude"])

    def selected(path: str) -> bool:
        return bool(files.search(path)) and not exclude.search(path)

    assert selected("pathways/ketamine-iv.yaml") and selected("pathways/sub/x.yml")
    assert not selected("README.md") and not selected("prefect.yaml") and not selected("tests/scenarios/a.yaml")
    assert not selected("pathways/a.scenario.yaml")


def test_scenarios_run_once_per_commit_when_pathway_inputs_change(hooks: dict[str, dict]) -> None:
    hook = hooks["carepath-scenarios"]
    assert hook["pass_filenames"] is False
    files = re.compile(hook["files"])
    assert files.search("pathways/ketamine-iv.yaml") and files.search("templates/letters/welcome.md.j2")
    assert files.search("tests/scenarios/x.scenario.yaml") and not files.search("README.md")


def test_this_repositorys_own_hooks_download_nothing_and_run_real_commands(root: Path) -> None:
    """`.pre-commit-config.yaml` runs the tools `dev.py setup` installed from the lock."""
    import sys

    sys.path.insert(0, str(root))
    try:
        import dev
    finally:
        sys.path.remove(str(root))
    config = yaml.safe_load((root / ".pre-commit-config.yaml").read_text())
    assert [repo["repo"] for repo in config["repos"]] == ["local"]
    hooks = {hook["id"]: hook for hook in config["repos"][0]["hooks"]}
    assert {"ruff", "mypy", "import-linter", "carepath-validate", "carepath-scenarios"} <= hooks.keys()
    for hook in hooks.values():
        assert hook["language"] == "system", hook["id"]  # "python" would make pre-commit install packages
        program, *args = shlex.split(hook["entry"])
        if program == "python3":
            assert args[:2] == ["dev.py", "lint"] and set(args[2:]) <= set(dev.LINTERS), hook["id"]
            continue
        assert program.startswith(".venv/bin/") and (root / program).exists(), hook["id"]
        if program == ".venv/bin/carepath":
            assert build_parser().parse_args([*args, "pathways/ketamine-iv.yaml"]).command == args[0]
    # The hooks offered to pathway repositories select the same files as this repository's.
    for offered in ("carepath-validate", "carepath-scenarios"):
        offered_hook = {h["id"]: h for h in yaml.safe_load((root / ".pre-commit-hooks.yaml").read_text())}[offered]
        assert hooks[offered]["files"] == offered_hook["files"]
