"""Static analysis of conditions and letter templates against the engine's context.

A condition may read names, attributes, constants, compare, combine with and/or/not,
do arithmetic and use a few filters; it must yield true or false. Anything else (calls,
underscore attributes, unknown names) is refused here, before a patient is planned.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from jinja2 import TemplateSyntaxError, meta, nodes
from jinja2.exceptions import SecurityError
from jinja2.parser import Parser

from carepath.codes import Code
from carepath.model.context import Kind, Shape
from carepath.sandbox import CONDITION_FILTERS, bounded_mul, bounded_pow, condition_environment


@dataclass(frozen=True, slots=True)
class Finding:
    code: Code
    message: str
    hint: str = ""
    lineno: int = 1


def parse_condition(source: str) -> nodes.Expr:
    """Parse like `Environment.compile_expression` does; raises TemplateSyntaxError."""
    env = condition_environment()
    parser = Parser(env, source, state="variable")
    expr = parser.parse_expression()
    if not parser.stream.eos:
        raise TemplateSyntaxError("unexpected text after the expression", parser.stream.current.lineno)
    return expr


MAX_DEPTH = 50  # nesting levels an expression may have; real conditions have fewer than ten


def depth(tree: nodes.Node) -> int:
    """How deeply the tree nests (iteratively: a deep tree must not exhaust the stack here)."""
    deepest, stack = 0, [(tree, 1)]
    while stack:
        node, level = stack.pop()
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in node.iter_child_nodes())
    return deepest


class _NotConstant(Exception):
    pass


_FOLD = {nodes.Add: lambda a, b: a + b, nodes.Sub: lambda a, b: a - b, nodes.Mul: bounded_mul,
         nodes.Pow: bounded_pow, nodes.Neg: lambda a: -a, nodes.Pos: lambda a: +a}


def constant_value(node: nodes.Node) -> object:
    """The value of arithmetic on constants, computed with the sandbox's bounds (so a
    too-large result raises SecurityError here, in `validate`, instead of at run time);
    _NotConstant when it depends on anything else."""
    if isinstance(node, nodes.Const) and isinstance(node.value, (int, float, str)):
        return node.value
    fold = _FOLD.get(type(node))  # type: ignore[call-overload]
    if fold is None:
        raise _NotConstant
    if isinstance(node, nodes.UnaryExpr):
        return fold(constant_value(node.node))
    left, right = constant_value(node.left), constant_value(node.right)  # type: ignore[attr-defined]
    try:
        return fold(left, right)
    except (TypeError, ValueError, ZeroDivisionError):
        raise _NotConstant from None


def too_large(tree: nodes.Node) -> Iterator[tuple[str, int]]:
    """(reason, line) for each constant computation the sandbox would refuse."""
    for node in tree.find_all((nodes.Mul, nodes.Pow)):
        try:
            constant_value(node)
        except _NotConstant:
            continue
        except SecurityError as exc:
            yield str(exc), node.lineno


_COMPARE_OPS = {"eq", "ne", "lt", "lteq", "gt", "gteq", "in", "notin"}
_ARITH = (nodes.Add, nodes.Sub, nodes.Mul, nodes.Div, nodes.FloorDiv, nodes.Mod, nodes.Pow)


class _ConditionChecker:
    def __init__(self, context: dict[str, Shape]) -> None:
        self.context = context
        self.findings: list[Finding] = []

    def problem(self, code: Code, message: str, hint: str = "") -> Shape:
        self.findings.append(Finding(code, message, hint))
        return Kind.ANY

    def shape(self, node: nodes.Node) -> Shape:  # noqa: PLR0911 - one branch per node kind
        if isinstance(node, nodes.Name):
            if node.name in ("true", "false", "True", "False"):
                return Kind.BOOL
            if node.name not in self.context:
                return self.problem(Code.EXPR_UNKNOWN_NAME, f"unknown name {node.name!r}",
                                    "available: " + ", ".join(sorted(self.context)))
            return self.context[node.name]
        if isinstance(node, nodes.Getattr):
            return self.attribute(self.shape(node.node), node.attr, _dotted(node.node))
        if isinstance(node, nodes.Getitem):
            base = self.shape(node.node)
            if isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
                return self.attribute(base, node.arg.value, _dotted(node.node))
            self.shape(node.arg)
            return Kind.ANY
        if isinstance(node, nodes.Const):
            value = node.value
            if isinstance(value, bool):
                return Kind.BOOL
            if isinstance(value, int):
                return Kind.INT
            if isinstance(value, float):
                return Kind.NUMBER
            if value is None:
                return Kind.ANY
            return Kind.TEXT
        if isinstance(node, (nodes.List, nodes.Tuple)):
            for item in node.items:
                self.shape(item)
            return Kind.LIST
        if isinstance(node, nodes.Compare):
            left = self.shape(node.expr)
            for op in node.ops:
                if op.op not in _COMPARE_OPS:
                    self.problem(Code.EXPR_UNSUPPORTED, f"comparison {op.op!r} is not allowed")
                right = self.shape(op.expr)
                if op.op in ("lt", "lteq", "gt", "gteq") and {_family(left), _family(right)} == {"text", "number"}:
                    self.problem(Code.EXPR_UNSUPPORTED, "compares text with a number",
                                 "compare numbers with numbers, e.g. 'phq9.total >= 10'")
                left = right
            return Kind.BOOL
        if isinstance(node, (nodes.And, nodes.Or)):
            word = "and" if isinstance(node, nodes.And) else "or"
            for side in (node.left, node.right):
                kind = self.shape(side)
                if kind not in (Kind.BOOL, Kind.ANY):
                    self.problem(Code.EXPR_NOT_BOOLEAN,
                                 f"'{word}' joins a {_describe(kind)}, not true/false",
                                 "compare it, e.g. 'x | length > 0'")
            return Kind.BOOL
        if isinstance(node, nodes.Not):
            kind = self.shape(node.node)
            if kind not in (Kind.BOOL, Kind.ANY):
                self.problem(Code.EXPR_NOT_BOOLEAN, f"'not' applied to a {_describe(kind)}, not true/false",
                             "compare it explicitly, e.g. 'x | length == 0'")
            return Kind.BOOL
        if isinstance(node, (nodes.Neg, nodes.Pos)):
            self.shape(node.node)
            return Kind.NUMBER
        if isinstance(node, _ARITH):
            self.shape(node.left)
            self.shape(node.right)
            return Kind.NUMBER
        if isinstance(node, nodes.CondExpr):
            self.shape(node.test)
            a = self.shape(node.expr1)
            b = self.shape(node.expr2) if node.expr2 is not None else Kind.ANY
            return a if a == b else Kind.ANY
        if isinstance(node, nodes.Filter):
            if node.name not in CONDITION_FILTERS:
                return self.problem(Code.EXPR_UNSUPPORTED, f"filter {node.name!r} is not allowed in a condition",
                                    "allowed filters: " + ", ".join(sorted(CONDITION_FILTERS)))
            subject = self.shape(node.node) if node.node is not None else Kind.ANY
            for arg in [*node.args, *(kw.value for kw in node.kwargs)]:
                self.shape(arg)
            if node.name in ("length", "count") and subject in (Kind.INT, Kind.NUMBER, Kind.BOOL, Kind.DATETIME):
                self.problem(Code.EXPR_UNSUPPORTED, f"'| {node.name}' of a {_describe(subject)}",
                             "length applies to lists and text")
            return Kind.INT if node.name in ("length", "count") else Kind.ANY
        if isinstance(node, nodes.Test):
            self.shape(node.node)
            if node.name not in ("none", "defined", "undefined", "true", "false", "number", "string"):
                self.problem(Code.EXPR_UNSUPPORTED, f"test 'is {node.name}' is not allowed in a condition")
            return Kind.BOOL
        if isinstance(node, nodes.Call):
            return self.problem(Code.EXPR_UNSUPPORTED, "calls are not allowed in a condition",
                                "conditions compare values; use a filter such as '| length'")
        return self.problem(Code.EXPR_UNSUPPORTED, f"{type(node).__name__} is not allowed in a condition")

    def attribute(self, base: Shape, attr: str, owner: str) -> Shape:
        if attr.startswith("_"):
            return self.problem(Code.EXPR_FORBIDDEN, f"attribute {attr!r} is forbidden by the sandbox",
                                "conditions may only read pathway data")
        if isinstance(base, dict):
            if attr not in base and owner in _DECLARED:
                code, kind = _DECLARED[owner]
                return self.problem(code, f"unknown {kind} {attr!r} ({owner}.{attr})",
                                    "declared: " + ", ".join(sorted(base)) if base else f"no {kind}s are declared")
            if attr not in base:
                return self.problem(Code.EXPR_UNKNOWN_ATTRIBUTE, f"{owner} has no attribute {attr!r}",
                                    "available: " + ", ".join(sorted(base)) if base else "it has none")
            return base[attr]
        if base is Kind.ANY:
            return Kind.ANY
        return self.problem(Code.EXPR_UNKNOWN_ATTRIBUTE, f"{owner} is a {_describe(base)} and has no attribute {attr!r}")


_DECLARED = {"params": (Code.UNKNOWN_PARAMETER, "parameter"), "flags": (Code.UNKNOWN_FLAG, "flag")}


def _family(kind: Shape) -> str:
    if kind in (Kind.INT, Kind.NUMBER):
        return "number"
    return "text" if kind is Kind.TEXT else "other"


def _dotted(node: nodes.Node) -> str:
    if isinstance(node, nodes.Name):
        return node.name
    if isinstance(node, nodes.Getattr):
        return f"{_dotted(node.node)}.{node.attr}"
    return "value"


def _describe(kind: Shape) -> str:
    return "group of values" if isinstance(kind, dict) else {
        Kind.INT: "number", Kind.NUMBER: "number", Kind.TEXT: "text", Kind.DATETIME: "date-time",
        Kind.LIST: "list", Kind.BOOL: "true/false", Kind.ANY: "value",
    }[kind]


def check_condition(source: str, context: dict[str, Shape]) -> list[Finding]:
    try:
        tree = parse_condition(source)
    except TemplateSyntaxError as exc:
        return [Finding(Code.EXPR_SYNTAX, f"condition does not parse: {exc.message}", lineno=exc.lineno or 1)]
    except RecursionError:
        return [Finding(Code.EXPR_TOO_LARGE, "the condition is nested too deeply to read",
                        f"use at most {MAX_DEPTH} levels of parentheses and operators")]
    except ValueError:  # Python refuses to read an integer of more than 4300 digits
        return [Finding(Code.EXPR_TOO_LARGE, "the condition holds a number too long to read",
                        "numbers in conditions are scores, counts and thresholds")]
    if depth(tree) > MAX_DEPTH:
        return [Finding(Code.EXPR_TOO_LARGE, f"the condition is nested more than {MAX_DEPTH} levels deep",
                        "split it into simpler comparisons")]
    large = [Finding(Code.EXPR_TOO_LARGE, f"the condition cannot be evaluated safely: {reason}",
                     "numbers in conditions are scores, counts and thresholds") for reason, _ in too_large(tree)]
    if large:
        return large
    checker = _ConditionChecker(context)
    kind = checker.shape(tree)
    if not checker.findings and kind not in (Kind.BOOL, Kind.ANY):
        checker.problem(Code.EXPR_NOT_BOOLEAN, f"the condition yields a {_describe(kind)}, not true/false",
                        "compare it, e.g. 'phq9.total >= params.relapse_threshold'")
    return checker.findings


def check_template_tree(tree: nodes.Template, context: dict[str, Shape],
                        filters: frozenset[str] = frozenset()) -> Iterator[Finding]:
    """Names and attribute chains in a letter template, against the letter context;
    filters the letter sandbox lacks (`filters`: those it has); constant computations
    it would refuse."""
    unknown = [node for node in tree.find_all(nodes.Filter) if filters and node.name not in filters]
    for node in unknown:
        yield Finding(Code.TEMPLATE_UNKNOWN_FILTER, f"template uses the filter {node.name!r}, which letters "
                      "do not have", "available: " + ", ".join(sorted(filters)), lineno=node.lineno)
    for reason, line in too_large(tree):
        yield Finding(Code.TEMPLATE_TOO_LARGE, f"template cannot be rendered safely: {reason}", lineno=line)
    if unknown:
        return  # Jinja's analysis below compiles the template, which stops at an unknown filter

    local_names = {n.name for n in tree.find_all(nodes.Name) if n.ctx in ("store", "param")}
    try:
        undeclared = meta.find_undeclared_variables(tree)
    except TemplateSyntaxError as exc:  # e.g. an unknown test ('is shouting')
        yield Finding(Code.TEMPLATE_SYNTAX, f"template does not compile: {exc.message}", lineno=exc.lineno or 1)
        return
    for name in sorted(undeclared - set(context) - local_names - set(condition_environment().globals)):
        line = next((n.lineno for n in tree.find_all(nodes.Name) if n.name == name), 1)
        yield Finding(Code.TEMPLATE_UNKNOWN_VARIABLE, f"template uses {name!r}, which the engine does not provide",
                      "available: " + ", ".join(sorted(context)), lineno=line)
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        attr = node.attr if isinstance(node, nodes.Getattr) else _const_key(node)
        if attr is None:
            continue
        if attr.startswith("_"):
            yield Finding(Code.TEMPLATE_FORBIDDEN, f"attribute {attr!r} is forbidden by the sandbox",
                          lineno=node.lineno)
            continue
        chain = _chain(node.node)
        if chain is None or chain[0] in local_names:
            continue
        shape: Shape | None = context.get(chain[0])
        for part in chain[1:]:
            shape = shape.get(part) if isinstance(shape, dict) else None
        owner = ".".join(chain)
        if isinstance(shape, dict) and attr not in shape:
            yield Finding(Code.TEMPLATE_UNKNOWN_VARIABLE,
                          f"template uses {owner}.{attr}, which the engine does not provide",
                          "available: " + ", ".join(f"{owner}.{k}" for k in sorted(shape)), lineno=node.lineno)
        elif shape is not None and not isinstance(shape, dict) and shape is not Kind.ANY and shape is not Kind.LIST:
            yield Finding(Code.TEMPLATE_UNKNOWN_VARIABLE,
                          f"template uses {owner}.{attr}, but {owner} is a {_describe(shape)}", lineno=node.lineno)


def _const_key(node: nodes.Getitem) -> str | None:
    return node.arg.value if isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str) else None


def _chain(node: nodes.Node) -> list[str] | None:
    """`a.b["c"]` → ["a", "b", "c"]; None for anything that is not a plain lookup chain."""
    if isinstance(node, nodes.Name):
        return [node.name]
    if isinstance(node, nodes.Getattr):
        head = _chain(node.node)
        return None if head is None else [*head, node.attr]
    if isinstance(node, nodes.Getitem) and (key := _const_key(node)) is not None:
        head = _chain(node.node)
        return None if head is None else [*head, key]
    return None


def included_templates(tree: nodes.Template) -> list[tuple[str, int]]:
    """Names of templates pulled in by include/import/extends, with their lines."""
    found = []
    for node in tree.find_all((nodes.Include, nodes.Import, nodes.FromImport, nodes.Extends)):
        if isinstance(node.template, nodes.Const) and isinstance(node.template.value, str):
            found.append((node.template.value, node.lineno))
    return found
