"""Conditions compiled once, evaluated in the sandbox; a non-boolean result is an error."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from jinja2 import UndefinedError
from jinja2.exceptions import SecurityError

from carepath.compile.fastpath import translate
from carepath.sandbox import condition_environment


class ConditionError(Exception):
    """A condition that could not be decided for a patient: never silently 'false'."""


@dataclass(frozen=True)
class Condition:
    source: str
    where: str  # e.g. "rules[3].when", for messages
    _compiled: Callable[..., Any] = field(repr=False, compare=False)
    # The same expression as plain Python (see fastpath.py); None outside its subset.
    _fast: Callable[[Mapping[str, Any]], Any] | None = field(default=None, repr=False, compare=False)

    @classmethod
    def compile(cls, source: str, where: str) -> Condition:
        compiled = condition_environment().compile_expression(source, undefined_to_none=False)
        return cls(source, where, compiled, translate(source))

    def __reduce__(self) -> tuple[Any, ...]:
        # Compiled code does not pickle; a worker process compiles the source again.
        return (Condition.compile, (self.source, self.where))

    def __call__(self, context: Mapping[str, Any]) -> bool:
        """`context` may compute its entries on demand; the Jinja path asks for all of them
        (through `materialise()` when the mapping has it)."""
        fast = self._fast
        if fast is not None:
            try:
                result = fast(context)
            except Exception:  # noqa: BLE001 - whatever went wrong, Jinja decides and words it
                result = None
            if type(result) is bool:
                return result
        materialise = getattr(context, "materialise", None)
        if materialise is not None:
            context = materialise()
        try:
            result = self._compiled(**context)
        except (UndefinedError, SecurityError, TypeError, ValueError, ZeroDivisionError) as exc:
            raise ConditionError(f"{self.where}: {self.source!r} could not be evaluated: {exc}") from None
        if not isinstance(result, bool):
            raise ConditionError(
                f"{self.where}: {self.source!r} gave {result!r}, not true/false"
            )
        return result
