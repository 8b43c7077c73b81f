"""Conditions compiled once, evaluated in the sandbox; a non-boolean result is an error."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from jinja2 import UndefinedError
from jinja2.exceptions import SecurityError

from carepath.compile.sandbox import condition_environment


class ConditionError(Exception):
    """A condition that could not be decided for a patient: never silently 'false'."""


@dataclass(frozen=True)
class Condition:
    source: str
    where: str  # e.g. "rules[3].when", for messages
    _compiled: Callable[..., Any] = field(repr=False, compare=False)

    @classmethod
    def compile(cls, source: str, where: str) -> Condition:
        compiled = condition_environment().compile_expression(source, undefined_to_none=False)
        return cls(source, where, compiled)

    def __call__(self, context: Mapping[str, Any]) -> bool:
        try:
            result = self._compiled(**context)
        except (UndefinedError, SecurityError, TypeError, ValueError, ZeroDivisionError) as exc:
            raise ConditionError(f"{self.where}: {self.source!r} could not be evaluated: {exc}") from None
        if not isinstance(result, bool):
            raise ConditionError(
                f"{self.where}: {self.source!r} gave {result!r}, not true/false"
            )
        return result
