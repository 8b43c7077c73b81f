"""Moved to `carepath.sandbox` (below check and compile); these names stay importable from
here for code written before the move. `check` must import `carepath.sandbox` itself."""

from carepath.sandbox import (  # noqa: F401 - re-exported
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
