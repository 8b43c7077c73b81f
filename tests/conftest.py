from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def root() -> Path:
    return ROOT


@pytest.fixture
def reference_pathway() -> Path:
    return ROOT / "pathways" / "ketamine-iv.yaml"
