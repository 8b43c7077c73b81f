"""Strict, safe YAML loading with positions.

PyYAML's `safe_load` keeps the last of two duplicate keys without a word and expands
alias chains without bound; both are unacceptable for a clinical document. We compose
the node graph ourselves, refuse duplicates, count every node we materialise (so an
alias bomb stops early), and record where each key and value sits so later layers can
point at `line:col`.

Booleans follow YAML 1.2 (`true`/`false` only): `on:` is a key of the language and
`answer: no` must stay the word "no".
"""

from __future__ import annotations

import re
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from carepath.codes import Code
from carepath.diagnostics import Diagnostic

MAX_BYTES = 1024 * 1024
MAX_NODES = 100_000
MAX_SOURCE_NODES = 20_000
"""Values (scalars, lists, mappings) a file may write out, counted by libyaml's C parser
before PyYAML's pure-Python composer runs: that composer takes about 25 microseconds a
node, so a megabyte flow sequence of 400,000 numbers would cost ten seconds of CPU before
being refused. The shipped pathways write about 1,500."""

KeyPath = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class Position:
    line: int
    col: int


@dataclass
class LoadedSource:
    path: str
    data: object | None
    value_positions: dict[KeyPath, Position] = field(default_factory=dict)
    key_positions: dict[KeyPath, Position] = field(default_factory=dict)
    diagnostics: list[Diagnostic] = field(default_factory=list)

    def locate(self, path: Iterable[str | int], *, key: bool = False) -> Position:
        """Position of `path`, or of its nearest ancestor that exists in the file."""
        parts = tuple(path)
        while True:
            if key and parts in self.key_positions:
                return self.key_positions[parts]
            if parts in self.value_positions:
                return self.value_positions[parts]
            if parts in self.key_positions:
                return self.key_positions[parts]
            if not parts:
                return Position(1, 1)
            parts = parts[:-1]

    def diagnostic(
        self, path: Iterable[str | int], code: Code, message: str, hint: str = "", *, key: bool = False
    ) -> Diagnostic:
        pos = self.locate(path, key=key)
        return Diagnostic(self.path, pos.line, pos.col, str(code), message, hint)


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader resolving plain scalars by the YAML 1.2 core schema.

    YAML 1.1 turns `on`/`no` into booleans, `18:00` into the integer 1080 (base 60) and
    `2026-03-02` into a date; a pathway needs all of them to stay what they look like.
    """


_StrictLoader.yaml_implicit_resolvers = {}
for _tag, _regexp, _first in (
    ("tag:yaml.org,2002:bool", r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
    ("tag:yaml.org,2002:int", r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", "-+0123456789"),
    ("tag:yaml.org,2002:float",
     r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$",
     "-+0123456789."),
    ("tag:yaml.org,2002:null", r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
):
    _StrictLoader.add_implicit_resolver(_tag, re.compile(_regexp), list(_first))

_ALLOWED_TAGS = {
    "tag:yaml.org,2002:str",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:null",
    "tag:yaml.org,2002:map",
    "tag:yaml.org,2002:seq",
}


class _TooManyNodes(Exception):
    pass


def _pos(mark: yaml.Mark) -> Position:
    return Position(mark.line + 1, mark.column + 1)


def _offset_to_position(text: bytes, offset: int) -> Position:
    line = text.count(b"\n", 0, offset) + 1
    start = text.rfind(b"\n", 0, offset) + 1
    return Position(line, offset - start + 1)


def load_source(path: str | Path, *, display: str | None = None, text: bytes | None = None) -> LoadedSource:
    """Read and parse one pathway file; never raises for a user mistake."""
    shown = display or str(path)
    src = LoadedSource(shown, None)

    def fail(pos: Position, code: Code, message: str, hint: str = "") -> LoadedSource:
        src.diagnostics.append(Diagnostic(shown, pos.line, pos.col, str(code), message, hint))
        return src

    if text is None:
        try:
            p = Path(path)
            info = p.stat()
            if not (stat.S_ISREG(info.st_mode) or stat.S_ISDIR(info.st_mode)):
                # A FIFO would block the read, a device such as /dev/zero never end it.
                return fail(Position(1, 1), Code.FILE_UNREADABLE, "is a pipe or a device, not a pathway file")
            size = info.st_size
            if size > MAX_BYTES:
                return fail(Position(1, 1), Code.FILE_TOO_LARGE,
                            f"file is {size} bytes; a pathway may be at most {MAX_BYTES} bytes",
                            "split the pathway or remove generated content")
            text = p.read_bytes()
        except IsADirectoryError:
            return fail(Position(1, 1), Code.FILE_UNREADABLE, "is a directory, not a pathway file")
        except OSError as exc:
            return fail(Position(1, 1), Code.FILE_UNREADABLE, f"cannot read file: {exc.strerror or exc}")
    if len(text) > MAX_BYTES:
        return fail(Position(1, 1), Code.FILE_TOO_LARGE,
                    f"file is {len(text)} bytes; a pathway may be at most {MAX_BYTES} bytes")

    try:
        decoded = text.decode("utf-8")
    except UnicodeDecodeError as exc:
        return fail(_offset_to_position(text, exc.start), Code.INVALID_UTF8,
                    f"invalid UTF-8 byte 0x{text[exc.start]:02x}", "save the file as UTF-8")
    if decoded.startswith("\ufeff"):
        decoded = decoded[1:]

    if (crowded := _too_many_nodes(decoded)) is not None:
        return fail(crowded, Code.FILE_TOO_LARGE,
                    f"the file writes out more than {MAX_SOURCE_NODES} values; a pathway holds far fewer",
                    "split the pathway or remove generated content")
    try:
        documents = list(yaml.compose_all(decoded, Loader=_StrictLoader))
    except yaml.reader.ReaderError as exc:
        # A character YAML does not allow (NUL, other controls): point at it, not at 1:1.
        at = max(0, min(exc.position, len(decoded)))
        before = decoded[:at]
        line = before.count("\n") + 1
        return fail(Position(line, at - (before.rfind("\n") + 1) + 1), Code.YAML_SYNTAX,
                    f"YAML syntax error: character U+{exc.character:04X} is not allowed in a YAML file",
                    "remove it (a control character, e.g. NUL, pasted in by accident)")
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        pos = _pos(mark) if mark else Position(1, 1)
        # A tab only matters where YAML chokes on it; inside a block scalar it is content.
        lines = decoded.splitlines()
        if 0 < pos.line <= len(lines) and (tab := re.match(r"^ *\t", lines[pos.line - 1])):
            return fail(Position(pos.line, tab.end()), Code.TAB_INDENT, "tab character in indentation",
                        "indent with spaces")
        problem = exc.problem or "syntax error"
        if exc.context:
            problem = f"{problem} ({exc.context})"
        return fail(pos, Code.YAML_SYNTAX, f"YAML syntax error: {problem}")
    except yaml.YAMLError as exc:
        return fail(Position(1, 1), Code.YAML_SYNTAX, f"YAML error: {exc}")
    except RecursionError:
        return fail(Position(1, 1), Code.YAML_SYNTAX, "YAML nesting is too deep")

    documents = [d for d in documents if d is not None]
    if not documents:
        return fail(Position(1, 1), Code.NOT_A_MAPPING, "the file holds no pathway (empty document)")
    if len(documents) > 1:
        return fail(_pos(documents[1].start_mark), Code.NOT_A_MAPPING,
                    "the file holds several YAML documents; a pathway file holds exactly one",
                    "remove the '---' separator or split into files")
    root = documents[0]
    if not isinstance(root, yaml.MappingNode):
        return fail(_pos(root.start_mark), Code.NOT_A_MAPPING, "a pathway must be a mapping of keys to values")

    builder = _Builder(src)
    try:
        src.data = builder.build(root, ())
    except _TooManyNodes:
        src.data = None
        return fail(_pos(root.start_mark), Code.ALIAS_LIMIT,
                    f"the document expands to more than {MAX_NODES} nodes (alias expansion)",
                    "do not nest aliases; write the values out")
    except RecursionError:
        src.data = None
        return fail(Position(1, 1), Code.YAML_SYNTAX, "YAML nesting is too deep")
    return src


def _too_many_nodes(decoded: str) -> Position | None:
    """Where the file's values pass MAX_SOURCE_NODES (libyaml's parser, fast), or None;
    None also when libyaml is not installed or the file is not valid YAML (the strict
    loader words that)."""
    if len(decoded) < MAX_SOURCE_NODES or not getattr(yaml, "__with_libyaml__", False):
        return None  # fewer characters than values allowed: cannot pass it
    count = 0
    try:
        for event in yaml.parse(decoded, Loader=yaml.CSafeLoader):
            if isinstance(event, (yaml.ScalarEvent, yaml.SequenceStartEvent, yaml.MappingStartEvent,
                                  yaml.AliasEvent)):
                count += 1
                if count > MAX_SOURCE_NODES:
                    return _pos(event.start_mark)
    except yaml.YAMLError:
        return None
    return None


class _Builder:
    def __init__(self, src: LoadedSource) -> None:
        self.src = src
        self.nodes = 0

    def _report(self, node: yaml.Node, code: Code, message: str, hint: str = "") -> None:
        pos = _pos(node.start_mark)
        self.src.diagnostics.append(Diagnostic(self.src.path, pos.line, pos.col, str(code), message, hint))

    def build(self, node: yaml.Node, path: KeyPath) -> object:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise _TooManyNodes
        self.src.value_positions.setdefault(path, _pos(node.start_mark))
        if node.tag not in _ALLOWED_TAGS:
            self._report(node, Code.UNSUPPORTED_YAML, f"YAML tag {node.tag!r} is not allowed in a pathway",
                         "remove the tag; write a plain value")
            return None
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        try:
            return _scalar(node)
        except ValueError:  # Python refuses to read an integer of more than 4300 digits
            self._report(node, Code.INVALID_VALUE, "this number has thousands of digits: too long to read",
                         "write the value the clinic means")
            return None

    def _mapping(self, node: yaml.MappingNode, path: KeyPath) -> dict[str, object]:
        result: dict[str, object] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge" or (key_node.value == "<<" and key_node.style is None):
                self._report(key_node, Code.UNSUPPORTED_YAML, "merge keys ('<<') are not allowed in a pathway",
                             "write the keys out; reviewers must see every value where it applies")
                continue
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag != "tag:yaml.org,2002:str":
                self._report(key_node, Code.UNSUPPORTED_YAML, "mapping keys must be plain text",
                             "quote the key")
                continue
            key = key_node.value
            if key in result:
                first = self.src.key_positions[(*path, key)]
                self._report(key_node, Code.DUPLICATE_KEY,
                             f"duplicate key {key!r} (first defined at line {first.line})",
                             "remove one of them; YAML would silently keep the last")
                continue
            self.src.key_positions[(*path, key)] = _pos(key_node.start_mark)
            result[key] = self.build(value_node, (*path, key))
        return result


def _scalar(node: yaml.ScalarNode) -> object:
    value = node.value
    if node.tag == "tag:yaml.org,2002:null":
        return None
    if node.tag == "tag:yaml.org,2002:bool":
        return value.lower() == "true"
    if node.tag == "tag:yaml.org,2002:int":
        body = value.lstrip("+-")
        sign = -1 if value.startswith("-") else 1
        if body[:2] in ("0x", "0o"):
            return sign * int(body, 0)
        return sign * int(body, 10)
    if node.tag == "tag:yaml.org,2002:float":
        low = value.lower().lstrip("+")
        if low in (".inf", "-.inf"):
            return float(low.replace(".", ""))
        if low == ".nan":
            return float("nan")
        return float(value)
    return value
