"""The one Jinja2 sandbox used for conditions and letters.

Sandboxed (no attribute access to internals, no unsafe calls), StrictUndefined (a
missing variable is an error, never an empty string: no "Dear ,").

Bounded, so that no pathway can make planning or a letter hang or exhaust memory:
`**` and `*` refuse results beyond `MAX_POWER_BITS` / `MAX_REPEAT` (Jinja's own sandbox
allows `10 ** (10 ** 8)` and `'ab' * 99999999999`), `%` does not format text, the
globals that generate work (`range`, `lipsum`) and the filters and text methods that pad
to a given width are absent, and a letter's render stops past `MAX_RENDER_CHARS` or
`MAX_RENDER_SECONDS` or when it recurses (a template including itself). Every refusal is
a `SecurityError`, a `TemplateError`: a coded error for `validate`, a failed letter at
run time, never a crash.
"""

from __future__ import annotations

import re
import time
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import FileSystemLoader, StrictUndefined, Template, select_autoescape
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment

MAX_POWER_BITS = 4096        # a ** b: at most this many bits (about 1,200 digits)
MAX_REPEAT = 100_000         # text or list * n: at most this many characters/items
MAX_RENDER_CHARS = 1_000_000  # one letter's markup; real letters are a few thousand
MAX_RENDER_SECONDS = 10.0    # one letter; real letters take milliseconds

# Globals and filters that only generate work, pad text to a given width, or (random)
# would make the same plan give a different letter.
_NO_GLOBALS = ("range", "lipsum")
_NO_FILTERS = ("center", "indent", "wordwrap", "format", "batch", "slice", "xmlattr", "urlize", "pprint", "random")
_NO_TEXT_METHODS = frozenset({"center", "ljust", "rjust", "zfill", "expandtabs", "format", "format_map"})


def bounded_mul(left: Any, right: Any) -> Any:
    for seq, times in ((left, right), (right, left)):
        if isinstance(seq, (str, list, tuple)) and isinstance(times, int) and not isinstance(times, bool):
            if len(seq) * max(times, 0) > MAX_REPEAT:
                raise SecurityError(f"repeating a value {times} times gives more than {MAX_REPEAT:,} "
                                    "characters or items")
    return left * right


def bounded_pow(left: Any, right: Any) -> Any:
    if isinstance(left, int) and isinstance(right, int) and right > 0 and abs(left) > 1:
        if abs(left).bit_length() * right > MAX_POWER_BITS:
            raise SecurityError(f"the power has more than {MAX_POWER_BITS} bits: too large to compute")
    try:
        return left ** right
    except OverflowError:
        raise SecurityError("the power is too large to compute") from None


def _bounded_mod(left: Any, right: Any) -> Any:
    if isinstance(left, str):
        raise SecurityError("'%' formatting of text is not allowed")
    return left % right


def template_root(template_dir: Path) -> Path:
    """Where a letter template may come from: the repository holding the template folder
    (the nearest folder with `.git`), or the template folder itself outside a repository."""
    folder = template_dir.resolve()
    for candidate in (folder, *folder.parents):
        if (candidate / ".git").exists():
            return candidate
    return folder


def inside(path: Path, root: Path) -> bool:
    """Whether `path`, with every symlink followed, lies under `root` (resolved)."""
    return path.resolve().is_relative_to(root.resolve())


class ConfinedLoader(FileSystemLoader):
    """A template file (or an include) that resolves outside `template_root` is not
    found: a symlink in the template folder cannot pull another file into a letter."""

    def __init__(self, template_dir: Path) -> None:
        super().__init__(str(template_dir))
        self.root = template_root(template_dir)

    def get_source(self, environment: Any, template: str) -> Any:
        source, filename, uptodate = super().get_source(environment, template)
        if filename is None or not inside(Path(filename), self.root):
            raise SecurityError(f"template {template!r} resolves outside {self.root}")
        return source, filename, uptodate


class BoundedTemplate(Template):
    """`render` with a size and time budget; recursion is an error, not a crash."""

    def render(self, *args: Any, **kwargs: Any) -> str:
        ctx = self.new_context(dict(*args, **kwargs))
        parts: list[str] = []
        size, started = 0, time.monotonic()
        try:
            for chunk in self.root_render_func(ctx):
                parts.append(chunk)
                size += len(chunk)
                if size > MAX_RENDER_CHARS:
                    raise SecurityError(f"the letter grew past {MAX_RENDER_CHARS:,} characters")
                if time.monotonic() - started > MAX_RENDER_SECONDS:
                    raise SecurityError(f"the letter took more than {MAX_RENDER_SECONDS:g} s to render")
        except RecursionError:
            raise SecurityError("the template recurses without end (does it include itself?)") from None
        except Exception:
            self.environment.handle_exception()
        return "".join(parts)


class BoundedSandbox(SandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**", "%"})
    template_class = BoundedTemplate

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        for name in _NO_GLOBALS:
            self.globals.pop(name, None)
        for name in _NO_FILTERS:
            self.filters.pop(name, None)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            return bounded_mul(left, right)
        if operator == "**":
            return bounded_pow(left, right)
        if operator == "%":
            return _bounded_mod(left, right)
        return super().call_binop(context, operator, left, right)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805 - Jinja's signature
        if isinstance(getattr(__obj, "__self__", None), str) and getattr(__obj, "__name__", "") in _NO_TEXT_METHODS:
            raise SecurityError(f"text method {__obj.__name__!r} is not allowed")
        return super().call(__context, __obj, *args, **kwargs)

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
    return BoundedSandbox(undefined=StrictUndefined, autoescape=False)


def letter_environment(template_dir: Path, *, html: bool) -> SandboxedEnvironment:
    env = BoundedSandbox(
        loader=ConfinedLoader(template_dir),
        undefined=StrictUndefined,
        autoescape=select_autoescape(default=html, default_for_string=html),
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        finalize=as_data,
    )
    return env
