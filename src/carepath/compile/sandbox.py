"""The one Jinja2 sandbox used for conditions and letters.

Sandboxed (no attribute access to internals, no unsafe calls), StrictUndefined (a
missing variable is an error, never an empty string: no "Dear ,").
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from jinja2 import FileSystemLoader, StrictUndefined, select_autoescape
from jinja2.sandbox import SandboxedEnvironment

# The only filters a condition may use; calls and other filters are refused by `check`.
CONDITION_FILTERS = frozenset({"length", "count", "abs", "lower", "upper"})


@lru_cache(maxsize=1)
def condition_environment() -> SandboxedEnvironment:
    return SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)


def letter_environment(template_dir: Path, *, html: bool) -> SandboxedEnvironment:
    env = SandboxedEnvironment(
        loader=FileSystemLoader(str(template_dir)),
        undefined=StrictUndefined,
        autoescape=select_autoescape(default=html, default_for_string=html),
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env
