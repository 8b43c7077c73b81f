"""Pydantic validation errors → positioned Diagnostics.

Pydantic's `loc` mixes real keys with union-member and tag names; we keep only the
parts that exist in the loaded data, so each error points at the key or value the
author wrote. Several errors at one place (one per union member) become one message.
"""

from __future__ import annotations

from collections import defaultdict

from pydantic import ValidationError

from carepath.codes import Code
from carepath.diagnostics import Diagnostic
from carepath.model.pathway import Pathway
from carepath.source.loader import KeyPath, LoadedSource

_CUSTOM_CODES = {
    "duration": Code.INVALID_DURATION,
    "negative_duration": Code.NEGATIVE_DURATION,
}


def _real_path(data: object, loc: tuple[str | int, ...]) -> tuple[KeyPath, bool]:
    """Keep the loc parts present in `data`; report whether the error is about a dict key."""
    path: list[str | int] = []
    node = data
    about_key = False
    for part in loc:
        if part == "[key]":
            about_key = True
            continue
        if isinstance(node, dict) and isinstance(part, str) and part in node:
            path.append(part)
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            path.append(part)
            node = node[part]
    return tuple(path), about_key


def validate_model(source: LoadedSource) -> tuple[Pathway | None, list[Diagnostic]]:
    try:
        return Pathway.model_validate(source.data), []
    except ValidationError as exc:
        return None, _diagnostics(source, exc)


def _diagnostics(source: LoadedSource, exc: ValidationError) -> list[Diagnostic]:
    grouped: dict[tuple[KeyPath, str, bool], list[dict]] = defaultdict(list)
    for error in exc.errors(include_url=False):
        path, about_key = _real_path(source.data, error["loc"])
        kind = error["type"]
        if kind == "extra_forbidden":
            grouped[(path, "extra", True)].append(error)
        elif kind == "missing":
            missing = next((p for p in reversed(error["loc"]) if isinstance(p, str) and not p.startswith("[")), "?")
            grouped[(path, f"missing:{missing}", False)].append(error)
        else:
            grouped[(path, "value", about_key)].append(error)

    out: list[Diagnostic] = []
    for (path, what, about_key), errors in grouped.items():
        where = ".".join(str(p) for p in path) or "pathway"
        if what == "extra":
            out.append(source.diagnostic(path, Code.UNKNOWN_FIELD, f"unknown key {path[-1]!r}" if path else "unknown key",
                                         "check the spelling; see schemas/pathway.schema.json for the keys allowed here",
                                         key=True))
            continue
        if what.startswith("missing:"):
            name = what.split(":", 1)[1]
            out.append(source.diagnostic(path, Code.MISSING_FIELD, f"{where}: missing required key {name!r}",
                                         f"add '{name}:'", key=True))
            continue
        custom = [e for e in errors if e["type"] in _CUSTOM_CODES]
        if custom:
            out.append(source.diagnostic(path, _CUSTOM_CODES[custom[0]["type"]], f"{where}: {custom[0]['msg']}"))
            continue
        messages = sorted({_plain(e) for e in errors})
        text = messages[0] if len(messages) == 1 else " or ".join(messages)
        if about_key:
            out.append(source.diagnostic(path, Code.INVALID_VALUE, f"name {path[-1]!r}: {text}",
                                         "names are lower_snake_case", key=True))
        else:
            out.append(source.diagnostic(path, Code.INVALID_VALUE, f"{where}: {text}"))
    return sorted(out)


def _plain(error: dict) -> str:
    msg = error["msg"]
    if error["type"] == "string_pattern_mismatch":
        pattern = error.get("ctx", {}).get("pattern", "")
        if "before|after" in pattern or pattern.startswith(r"^\$"):
            return "expected a $parameter"
        if pattern == r"^[a-z][a-z0-9_]*$":
            return f"{error['input']!r} is not a lower_snake_case name"
        if pattern == r"^[0-9]+\.[0-9]+\.[0-9]+$":
            return f"{error['input']!r} is not a version like 1.0.0"
        if pattern == r"^[a-z][a-z0-9-]*$":
            return f"{error['input']!r} is not an id like ketamine-iv"
    return msg[0].lower() + msg[1:] if msg else msg
