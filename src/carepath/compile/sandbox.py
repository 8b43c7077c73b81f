"""The one Jinja2 sandbox used for conditions and letters.

Sandboxed (no attribute access to internals, no unsafe calls), StrictUndefined (a
missing variable is an error, never an empty string: no "Dear ,").
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

from jinja2 import FileSystemLoader, StrictUndefined, select_autoescape
from jinja2.sandbox import SandboxedEnvironment

# The only filters a condition may use; calls and other filters are refused by `check`.
CONDITION_FILTERS = frozenset({"length", "count", "abs", "lower", "upper"})


# A value put into a letter (a name, the clinic's phone) is data, never markup: the
# letter markup reads line structure (`# `, `- `, blank lines) and `**bold**`. `as_data`
# turns control characters and line breaks into one space and `*` into LITERAL_STAR,
# which the markup renderers turn back into a plain `*` after markup is applied.
LITERAL_STAR = "\ue000"
_DATA_BREAKS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


def as_data(value: object) -> object:
    """What `{{ value }}` prints in a letter: strings as one line of plain text."""
    if not isinstance(value, str):
        return value
    return _DATA_BREAKS.sub(" ", value).replace("*", LITERAL_STAR)


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
        finalize=as_data,
    )
    return env
