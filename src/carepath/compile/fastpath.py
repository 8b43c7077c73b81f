"""A condition's Jinja AST translated to one plain Python expression, for speed.

Evaluating a compiled Jinja expression builds a template context per call (about 40 µs
here, most of a plan's time at cohort scale). The checked condition language is small
(names, attributes and string subscripts on mappings, constants, comparisons,
and/or/not, + - * and unary minus, the filters length/count/abs/lower/upper), so it is
translated once into composed Python closures over the context mapping (no eval).

The translation is only a shortcut, never a second definition of the language: it
handles just the plain cases (an attribute of a dict or read-only mapping that is not a
method name, a lowercase/uppercase of a str, ...) and raises `Fallback` for anything
else; the caller then evaluates the Jinja expression, which gives the reference result
or the reference error message. Nodes outside the subset get no fast path at all.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from types import MappingProxyType
from typing import Any

from jinja2 import nodes

from carepath.sandbox import bounded_mul, condition_environment


class Fallback(Exception):
    """The fast path cannot vouch for this case: evaluate the Jinja expression instead."""


_MAPPINGS = (dict, MappingProxyType)
_CONST_TYPES = (bool, int, float, str, type(None))


def _attr(obj: Any, name: str) -> Any:
    # Jinja prefers an attribute to an item: `d.items` is the method, not d["items"].
    if type(obj) in _MAPPINGS and not hasattr(type(obj), name):
        return obj[name]  # a KeyError falls back, and Jinja words the undefined name
    raise Fallback


def _item(obj: Any, key: str) -> Any:
    if type(obj) in _MAPPINGS:
        return obj[key]
    raise Fallback


def _length(value: Any) -> int:
    if type(value) in (list, tuple, str, dict, MappingProxyType):
        return len(value)
    raise Fallback


def _abs(value: Any) -> Any:
    if type(value) in (int, float):
        return abs(value)
    raise Fallback


def _lower(value: Any) -> str:
    if type(value) is str:
        return value.lower()
    raise Fallback


def _upper(value: Any) -> str:
    if type(value) is str:
        return value.upper()
    raise Fallback


_FILTERS = {"length": _length, "count": _length, "abs": _abs, "lower": _lower, "upper": _upper}


class _Unsupported(Exception):
    pass


def _in(a: Any, b: Any) -> bool:
    return a in b


def _not_in(a: Any, b: Any) -> bool:
    return a not in b


_COMPARE = {"eq": operator.eq, "ne": operator.ne, "gt": operator.gt, "gteq": operator.ge, "lt": operator.lt,
            "lteq": operator.le, "in": _in, "notin": _not_in}
_BINARY = {nodes.Add: operator.add, nodes.Sub: operator.sub, nodes.Mul: bounded_mul}

Fn = Callable[[Any], Any]


def _build(node: nodes.Node) -> Fn:  # noqa: PLR0911 - one branch per node kind
    """Closures over the context mapping: the expression is composed, never eval'd."""
    if isinstance(node, nodes.Name) and node.ctx == "load":
        name = node.name
        return lambda c: c[name]
    if isinstance(node, nodes.Const) and type(node.value) in _CONST_TYPES:
        value = node.value
        return lambda c: value
    if isinstance(node, nodes.Getattr):
        inner, attr = _build(node.node), node.attr
        return lambda c: _attr(inner(c), attr)
    if isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const) and type(node.arg.value) is str:
        inner, key = _build(node.node), node.arg.value
        return lambda c: _item(inner(c), key)
    if isinstance(node, (nodes.List, nodes.Tuple)) and all(isinstance(i, nodes.Const) for i in node.items):
        values = [i.value for i in node.items]
        constant = values if isinstance(node, nodes.List) else tuple(values)
        return lambda c: constant
    if isinstance(node, nodes.Compare):
        first = _build(node.expr)
        ops = []
        for op in node.ops:
            if op.op not in _COMPARE:
                raise _Unsupported
            ops.append((_COMPARE[op.op], _build(op.expr)))
        if len(ops) == 1:
            (compare, right), = ops
            return lambda c: compare(first(c), right(c))

        def chained(c: Any) -> Any:  # a < b < c: each operand evaluated once, as in Python
            left = first(c)
            for compare, right in ops:
                value = right(c)
                if not compare(left, value):
                    return False
                left = value
            return True
        return chained
    if isinstance(node, nodes.And):
        left, right = _build(node.left), _build(node.right)
        return lambda c: left(c) and right(c)
    if isinstance(node, nodes.Or):
        left, right = _build(node.left), _build(node.right)
        return lambda c: left(c) or right(c)
    if isinstance(node, nodes.Not):
        inner = _build(node.node)
        return lambda c: not inner(c)
    if isinstance(node, nodes.Neg):
        inner = _build(node.node)
        return lambda c: -inner(c)
    if type(node) in _BINARY:
        combine, left, right = _BINARY[type(node)], _build(node.left), _build(node.right)
        return lambda c: combine(left(c), right(c))
    if (isinstance(node, nodes.Filter) and node.name in _FILTERS and node.node is not None
            and not node.args and not node.kwargs and node.dyn_args is None and node.dyn_kwargs is None):
        apply, inner = _FILTERS[node.name], _build(node.node)
        return lambda c: apply(inner(c))
    raise _Unsupported


def translate(source: str) -> Callable[[Any], Any] | None:
    """A function of the context mapping, or None when the expression is outside the subset."""
    env = condition_environment()
    try:
        tree = env.parse(f"{{{{ {source} }}}}")
        (output,) = tree.body
        (expr,) = output.nodes  # type: ignore[attr-defined]
        return _build(expr)
    except (_Unsupported, ValueError, TypeError, AttributeError):
        return None
    except Exception:  # noqa: BLE001 - a syntax error: Jinja reports it when compiling
        return None
