"""The letter markup: a tiny Markdown subset that renders to plain text and to HTML.

One source per letter (letter templates): `# Subject` on the first line, paragraphs
separated by blank lines, `- ` bullets, `**bold**`. Everything else is text. HTML is
produced by escaping every text span here, so a value such as a name with `<` or `&`
can never become markup, whether it came from the template or from the patient file.
Values are data here too: a name cannot add a line, a bullet or bold (carepath.sandbox.as_data).
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

from carepath.sandbox import LITERAL_STAR

_BOLD = re.compile(r"\*\*(.+?)\*\*")

# Values put into a letter are data, never markup (see carepath.sandbox.as_data): a `*`
# from a value arrives as a stand-in, turned back into a plain `*` after markup is applied.
_LITERAL_STAR = LITERAL_STAR

CSS = """
body { font-family: "Carepath Sans", "Carepath Sans Latin", "DejaVu Sans", Arial, sans-serif;
       font-size: 12pt; line-height: 1.5; color: #1a1a1a; max-width: 40em; margin: 2em auto; padding: 0 1em; }
h1 { font-size: 16pt; margin: 0 0 1em; }
ul { padding-left: 1.4em; list-style-position: inside; }
li { margin: 0.2em 0; text-indent: -1em; }
"""
# The letter's stylesheet as it appears in every letter's HTML: the PDF renderer parses it
# once per process instead of once per letter (carepath.sinks.pdf).
STYLE_ELEMENT = f"<style>{CSS}</style>"


@dataclass(frozen=True)
class Blocks:
    subject: str
    blocks: tuple[tuple[str, tuple[str, ...]], ...]  # ("p", lines) | ("ul", items)


def parse(markup: str) -> Blocks:
    lines = markup.replace("\r\n", "\n").split("\n")
    while lines and not lines[0].strip():
        lines.pop(0)
    subject = ""
    if lines and lines[0].startswith("# "):
        subject = lines.pop(0)[2:].strip()
    blocks: list[tuple[str, tuple[str, ...]]] = []
    current: list[str] = []
    kind = ""

    def flush() -> None:
        nonlocal current, kind
        if current:
            blocks.append((kind, tuple(current)))
        current, kind = [], ""

    for raw in lines:
        line = raw.strip()
        if not line:
            flush()
        elif line.startswith("- "):
            if kind != "ul":
                flush()
                kind = "ul"
            current.append(line[2:].strip())
        else:
            if kind != "p":
                flush()
                kind = "p"
            current.append(line)
    flush()
    return Blocks(subject, tuple(blocks))


def to_text(markup: str) -> str:
    doc = parse(markup)
    parts = []
    if doc.subject:
        subject = doc.subject.replace(_LITERAL_STAR, "*")
        parts.append(f"{subject}\n{'=' * len(subject)}")
    for kind, lines in doc.blocks:
        if kind == "ul":
            parts.append("\n".join("- " + _plain(item) for item in lines))
        else:
            parts.append(" ".join(_plain(line) for line in lines))
    return "\n\n".join(parts) + "\n"


def _plain(text: str) -> str:
    return _BOLD.sub(r"\1", text).replace(_LITERAL_STAR, "*")


def _inline(text: str) -> str:
    return _BOLD.sub(r"<strong>\1</strong>", html.escape(text, quote=True)).replace(_LITERAL_STAR, "*")


def to_html(markup: str) -> str:
    doc = parse(markup)
    body = []
    if doc.subject:
        body.append(f"<h1>{_inline(doc.subject)}</h1>")
    for kind, lines in doc.blocks:
        if kind == "ul":
            body.append("<ul>\n" + "\n".join(f"  <li>{_inline(item)}</li>" for item in lines) + "\n</ul>")
        else:
            body.append(f"<p>{' '.join(_inline(line) for line in lines)}</p>")
    title = html.escape(doc.subject or "Letter", quote=True).replace(_LITERAL_STAR, "*")
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<title>{title}</title>\n{STYLE_ELEMENT}\n</head>\n<body>\n"
        + "\n".join(body) + "\n</body>\n</html>\n"
    )
