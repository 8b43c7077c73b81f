"""A pathway diff as text for a terminal and as Markdown for a pull-request comment."""

from __future__ import annotations

import re

from carepath.review.changes import Change, Kind, PathwayDiff

_MARK = {Kind.ADDED: "+", Kind.REMOVED: "-", Kind.CHANGED: "~"}
_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|#~])")


def _title(d: PathwayDiff) -> str:
    o, n = d.old.compiled, d.new.compiled
    old = f"{o.id} {o.version}"
    new = f"{n.version}" if n.id == o.id else f"{n.id} {n.version}"
    return f"{old} → {new}" if (o.id, o.version) != (n.id, n.version) else old


def _bump_note(d: PathwayDiff) -> str:
    return (f"The version is still {d.new.compiled.version}: bump it, since task and letter ids and their "
            "provenance carry the version.")


def format_text(d: PathwayDiff) -> str:
    """One line per change under a heading per section; empty when nothing differs."""
    if not d.differs:
        return ""
    lines = [f"{_title(d)}: {len(d.changes)} clinical change(s)",
             f"(old: {d.old.label}; new: {d.new.label})"]
    if d.version_not_bumped:
        lines.append(f"note: {_bump_note(d)}")
    for section, changes in d.by_section().items():
        lines += ["", section.value]
        lines += [f"  {_MARK[ch.kind]} {ch.sentence()}" for ch in changes]
    return "\n".join(lines) + "\n"


def _md(text: str) -> str:
    return _MD_SPECIAL.sub(r"\\\1", text)


def _md_code(text: str) -> str:
    # GitHub splits table cells on '|' even inside code spans, so it stays escaped there.
    text = text.replace("|", "\\|")
    fence = "``" if "`" in text else "`"
    return f"{fence} {text} {fence}" if fence == "``" else f"`{text}`"


def _md_value(ch: Change, value: str) -> str:
    if not value:
        return "—"
    body = _md_code(value) if ch.code else _md(value)
    return body + (f" {_md(ch.suffix)}" if ch.suffix else "")


def _md_row(ch: Change) -> str:
    subject = ch.subject.render(lambda name: f"`{name}`")
    what = _md(ch.aspect if ch.kind is Kind.CHANGED else ch.kind.value) + (f" ({_md(ch.note)})" if ch.note else "")
    old = _md_value(ch, ch.old) if ch.kind is not Kind.ADDED else "—"
    new = _md_value(ch, ch.new) if ch.kind is not Kind.REMOVED else "—"
    if ch.kind is not Kind.CHANGED:  # summaries of whole items are prose, not one value
        old = _md(ch.old) if ch.old else "—"
        new = _md(ch.new) if ch.new else "—"
    return f"| {subject} | {what} | {old} | {new} |"


def format_markdown(d: PathwayDiff) -> str:
    """Headings and one table per section, for a pull-request comment; empty when nothing differs."""
    if not d.differs:
        return ""
    out = [f"### Clinical changes: {_md(_title(d))}", "",
           f"{len(d.changes)} change(s) from `{d.old.label}` to `{d.new.label}`."]
    if d.version_not_bumped:
        out += ["", f"> **Note:** {_md(_bump_note(d))}"]
    for section, changes in d.by_section().items():
        out += ["", f"#### {section.value}", "", "| item | change | was | now |", "|---|---|---|---|"]
        out += [_md_row(ch) for ch in changes]
    return "\n".join(out) + "\n"
