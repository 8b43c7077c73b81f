"""The expression sandbox: the one bounded Jinja2 environment for conditions and letters
(`environments.py`). Below both `check` (which types conditions and templates against it)
and `compile` (which compiles them in it), so data still flows one way:
source → model → check → compile → engine."""

from carepath.sandbox.environments import (
    CONDITION_FILTERS,
    LITERAL_STAR,
    MAX_POWER_BITS,
    MAX_RENDER_CHARS,
    MAX_RENDER_SECONDS,
    MAX_REPEAT,
    BoundedSandbox,
    BoundedTemplate,
    ConfinedLoader,
    as_data,
    bounded_mul,
    bounded_pow,
    condition_environment,
    inside,
    letter_environment,
    template_root,
)

__all__ = [
    "CONDITION_FILTERS", "LITERAL_STAR", "MAX_POWER_BITS", "MAX_RENDER_CHARS", "MAX_RENDER_SECONDS", "MAX_REPEAT",
    "BoundedSandbox", "BoundedTemplate", "ConfinedLoader", "as_data", "bounded_mul", "bounded_pow",
    "condition_environment", "inside", "letter_environment", "template_root",
]
