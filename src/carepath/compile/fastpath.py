"""A condition's Jinja AST translated to one plain Python expression, for speed.

Evaluating a compiled Jinja expression builds a template context per call (about 40 µs
here, most of a plan's time at cohort scale). The checked condition language is small
(names, attributes and string subscripts on mappings, constants, comparisons,
and/or/not, + - * and unary minus, the filters length/count/abs/lower/upper), so it is
translated once into a Python lambda over the context mapping.

The translation is only a shortcut, never a second definition of the language: it
handles just the plain cases (an attribute of a dict or read-only mapping that is not a
method name, a lowercase/uppercase of a str, ...) and raises `Fallback` for anything
else; the caller then evaluates the Jinja expression, which gives the reference result
or the reference error message. Nodes outside the subset get no fast path at all.
"""

from __future__ import annotations

from collections.abc import Callable
from types import MappingProxyType
from typing import Any

from jinja2 import nodes

from carepath.compile.sandbox import condition_environment


class Fallback(Exception):
    """The fast path cannot vouch for this case: evaluate the Jinja expression instead."""


_MAPPINGS = (dict, MappingProxyType)
_COMPARE = {"eq": "==", "ne": "!=", "gt": ">", "gteq": ">=", "lt": "<", "lteq": "<=", "in": "in", "notin": "not in"}
_BINARY = {nodes.Add: "+", nodes.Sub: "-", nodes.Mul: "*"}
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


_FILTERS = {"length": "_length", "count": "_length", "abs": "_abs", "lower": "_lower", "upper": "_upper"}
_HELPERS = {"_attr": _attr, "_item": _item, "_length": _length, "_abs": _abs, "_lower": _lower, "_upper": _upper}


class _Unsupported(Exception):
    pass


def _emit(node: nodes.Node) -> str:  # noqa: PLR0911 - one branch per node kind
    if isinstance(node, nodes.Name) and node.ctx == "load":
        return f"c[{node.name!r}]"
    if isinstance(node, nodes.Const) and type(node.value) in _CONST_TYPES:
        return repr(node.value)
    if isinstance(node, nodes.Getattr):
        return f"_attr({_emit(node.node)}, {node.attr!r})"
    if isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const) and type(node.arg.value) is str:
        return f"_item({_emit(node.node)}, {node.arg.value!r})"
    if isinstance(node, (nodes.List, nodes.Tuple)) and all(isinstance(i, nodes.Const) for i in node.items):
        inner = ", ".join(_emit(i) for i in node.items)
        return f"[{inner}]" if isinstance(node, nodes.List) else f"({inner}{',' if len(node.items) == 1 else ''})"
    if isinstance(node, nodes.Compare):
        parts = [_emit(node.expr)]
        for op in node.ops:
            if op.op not in _COMPARE:
                raise _Unsupported
            parts += [_COMPARE[op.op], _emit(op.expr)]
        return "(" + " ".join(parts) + ")"
    if isinstance(node, nodes.And):
        return f"({_emit(node.left)} and {_emit(node.right)})"
    if isinstance(node, nodes.Or):
        return f"({_emit(node.left)} or {_emit(node.right)})"
    if isinstance(node, nodes.Not):
        return f"(not {_emit(node.node)})"
    if isinstance(node, nodes.Neg):
        return f"(-{_emit(node.node)})"
    if type(node) in _BINARY:
        return f"({_emit(node.left)} {_BINARY[type(node)]} {_emit(node.right)})"
    if (isinstance(node, nodes.Filter) and node.name in _FILTERS and node.node is not None
            and not node.args and not node.kwargs and node.dyn_args is None and node.dyn_kwargs is None):
        return f"{_FILTERS[node.name]}({_emit(node.node)})"
    raise _Unsupported


def translate(source: str) -> Callable[[Any], Any] | None:
    """A function of the context mapping, or None when the expression is outside the subset."""
    env = condition_environment()
    try:
        tree = env.parse(f"{{{{ {source} }}}}")
        (output,) = tree.body
        (expr,) = output.nodes  # type: ignore[attr-defined]
        body = _emit(expr)
    except (_Unsupported, ValueError, TypeError, AttributeError):
        return None
    except Exception:  # noqa: BLE001 - a syntax error: Jinja reports it when compiling
        return None
    return eval(f"lambda c: {body}", dict(_HELPERS))  # noqa: S307 - built from checked AST nodes only
