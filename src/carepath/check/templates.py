"""Letter templates parse and use only what the engine provides (see model.context)."""

from __future__ import annotations

from pathlib import Path

from jinja2 import TemplateSyntaxError

from carepath.check.context import CheckContext
from carepath.check.expressions import check_template_tree, included_templates
from carepath.codes import Code
from carepath.compile.sandbox import letter_environment
from carepath.diagnostics import Diagnostic
from carepath.model.context import letter_context


def template_path(ctx: CheckContext, template: str) -> Path:
    return ctx.base_dir / ctx.pathway.templates / f"{template}.md.j2"


def check_templates(ctx: CheckContext) -> None:
    context = letter_context(ctx.pathway)
    checked: set[Path] = set()
    for letter in ctx.pathway.letters.values():
        path = template_path(ctx, letter.template)
        if path in checked or not path.is_file():
            continue  # a missing file is reported by the reference check
        checked.add(path)
        shown = _display(path)
        env = letter_environment(path.parent, html=True)
        try:
            text = path.read_text(encoding="utf-8")
            tree = env.parse(text, name=path.name, filename=str(path))
        except UnicodeDecodeError:
            ctx.diagnostics.append(Diagnostic(shown, 1, 1, str(Code.TEMPLATE_SYNTAX),
                                              "template is not valid UTF-8"))
            continue
        except TemplateSyntaxError as exc:
            ctx.diagnostics.append(Diagnostic(shown, exc.lineno or 1, 1, str(Code.TEMPLATE_SYNTAX),
                                              f"template does not parse: {exc.message}"))
            continue
        for name, line in included_templates(tree):
            if not (path.parent / name).is_file():
                ctx.diagnostics.append(Diagnostic(shown, line, 1, str(Code.TEMPLATE_SYNTAX),
                                                  f"template includes {name!r}, which does not exist",
                                                  f"create {name} next to {path.name} or remove the include"))
        for finding in check_template_tree(tree, context):
            ctx.diagnostics.append(Diagnostic(shown, finding.lineno, 1, str(finding.code), finding.message,
                                              finding.hint))


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)
