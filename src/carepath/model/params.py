"""Resolving `$parameter` references against a pathway's parameters.

Pure functions over the model, shared by `check` (to report misuse with positions) and
`compile` (to produce concrete values).
"""

from __future__ import annotations

from datetime import time, timedelta
from enum import StrEnum
from typing import TypeVar

from carepath.model.durations import SyntaxProblem, param_name, parse_clock, parse_offset, referenced_name
from carepath.model.pathway import Pathway

E = TypeVar("E", bound=StrEnum)


class ParamProblem(ValueError):
    """A reference that cannot be resolved; `unknown` separates a missing name from a misfit."""

    def __init__(self, message: str, *, unknown: bool = False, negative: bool = False) -> None:
        super().__init__(message)
        self.unknown = unknown
        self.negative = negative


def _lookup(pathway: Pathway, raw: object) -> tuple[object, str | None]:
    name = param_name(raw)
    if name is None:
        return raw, None
    if name not in pathway.parameters:
        raise ParamProblem(f"unknown parameter '${name}'", unknown=True)
    return pathway.parameters[name].value, name


def _where(name: str | None) -> str:
    return f" (parameter '${name}')" if name else ""


def resolve_offset(pathway: Pathway, raw: str) -> timedelta:
    """An offset, possibly `$param`, possibly followed by ' before'/' after'."""
    name = referenced_name(raw)
    if name is None:
        value: object = raw
    else:
        value, _ = _lookup(pathway, f"${name}")
        if not isinstance(value, str):
            raise ParamProblem(f"expected a duration such as '24h'{_where(name)}, got {value!r}")
    try:
        delta = parse_offset(value)
    except SyntaxProblem as exc:
        raise ParamProblem(f"{exc}{_where(name)}", negative=exc.negative) from None
    if name is not None and raw.strip().endswith(" before"):
        if delta < timedelta(0):
            raise ParamProblem(f"'{raw}' says 'before' twice{_where(name)}")
        delta = -delta
    return delta


def resolve_count(pathway: Pathway, raw: int | str) -> int:
    value, name = _lookup(pathway, raw)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ParamProblem(f"expected a whole number{_where(name)}, got {value!r}")
    if value < 0:
        raise ParamProblem(f"expected a whole number of 0 or more{_where(name)}, got {value}", negative=True)
    return value


def resolve_clock(pathway: Pathway, raw: str) -> time:
    value, name = _lookup(pathway, raw)
    if not isinstance(value, str):
        raise ParamProblem(f"expected a clock time such as '23:59'{_where(name)}, got {value!r}")
    try:
        return parse_clock(value)
    except SyntaxProblem as exc:
        raise ParamProblem(f"{exc}{_where(name)}") from None


def resolve_enum(pathway: Pathway, raw: object, enum: type[E]) -> E:
    value, name = _lookup(pathway, raw)
    try:
        return enum(value)
    except ValueError:
        allowed = ", ".join(e.value for e in enum)
        raise ParamProblem(f"expected one of {allowed}{_where(name)}, got {value!r}") from None
