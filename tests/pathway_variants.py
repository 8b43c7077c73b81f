"""Edited copies of the reference pathway for the review-tool tests (graph, diff, FHIR)."""

from __future__ import annotations

import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "pathways" / "ketamine-iv.yaml"


def edit(text: str, *pairs: tuple[str, str]) -> str:
    """Replace each `old` once; fail loudly if the reference pathway no longer contains it."""
    for old, new in pairs:
        assert old in text, f"reference pathway no longer contains {old!r}"
        text = text.replace(old, new, 1)
    return text


def write_variant(directory: Path, text: str, name: str = "ketamine-iv.yaml") -> Path:
    """`directory/pathways/<name>` beside a copy of the real templates, as a pathway repository has
    (a link would point out of it, and templates must resolve inside the pathway's repository)."""
    (directory / "pathways").mkdir(parents=True, exist_ok=True)
    templates = directory / "templates"
    if not templates.exists():
        shutil.copytree(ROOT / "templates", templates)
    path = directory / "pathways" / name
    path.write_text(text)
    return path
