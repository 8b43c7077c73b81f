"""Letter templates parse, use only what the engine provides (see model.context), stay
inside the pathway's repository and within the letter sandbox's bounds."""

from __future__ import annotations

from pathlib import Path

from jinja2 import TemplateError, TemplateSyntaxError, nodes

from carepath.check.context import CheckContext
from carepath.check.expressions import check_template_tree, depth, included_templates
from carepath.codes import Code
from carepath.diagnostics import Diagnostic, Severity
from carepath.model.context import letter_context
from carepath.sandbox import inside, letter_environment, template_root

MAX_TEMPLATE_DEPTH = 200  # nesting of a template's syntax tree; letters are a few levels deep


def template_path(ctx: CheckContext, template: str) -> Path:
    return ctx.base_dir / ctx.pathway.templates / f"{template}.md.j2"


def pathway_repository(base_dir: Path) -> Path:
    """The repository a pathway file lives in: the nearest folder with `.git`, or the
    folder above the pathway's own (the `pathways/` beside `templates/` layout)."""
    folder = base_dir.resolve()
    for candidate in (folder, *folder.parents):
        if (candidate / ".git").exists():
            return candidate
    return folder.parent


def check_templates(ctx: CheckContext) -> None:
    folder = ctx.base_dir / ctx.pathway.templates
    if not _folder_confined(ctx, folder):
        return
    context = letter_context(ctx.pathway)
    root = template_root(folder)
    env = letter_environment(folder, html=True)
    filters = frozenset(env.filters)
    checked: set[Path] = set()
    for letter in ctx.pathway.letters.values():
        path = template_path(ctx, letter.template)
        if path in checked or not path.is_file():
            continue  # a missing file is reported by the reference check
        checked.add(path)
        shown = _display(path)

        def problem(code: Code, message: str, hint: str = "", line: int = 1, shown: str = shown) -> None:
            ctx.diagnostics.append(Diagnostic(shown, line, 1, str(code), message, hint))

        if not inside(path, root):
            problem(Code.TEMPLATE_OUTSIDE, f"template {path.name} is a link to a file outside {root}",
                    "put the template's text in the template folder itself")
            continue
        try:
            text = path.read_text(encoding="utf-8")
            tree = env.parse(text, name=path.name, filename=str(path))
        except UnicodeDecodeError:
            problem(Code.TEMPLATE_SYNTAX, "template is not valid UTF-8")
            continue
        except TemplateSyntaxError as exc:
            problem(Code.TEMPLATE_SYNTAX, f"template does not parse: {exc.message}", line=exc.lineno or 1)
            continue
        except (RecursionError, ValueError):  # deep nesting; an integer of more than 4300 digits
            problem(Code.TEMPLATE_TOO_LARGE, "template is nested too deeply or holds a number too long to read")
            continue
        if depth(tree) > MAX_TEMPLATE_DEPTH:
            problem(Code.TEMPLATE_TOO_LARGE, f"template is nested more than {MAX_TEMPLATE_DEPTH} levels deep")
            continue
        before = len(ctx.diagnostics)
        for node in tree.find_all(nodes.Test):
            if node.name not in env.tests:  # Jinja only notices an unknown test while rendering
                problem(Code.TEMPLATE_SYNTAX, f"template uses the test 'is {node.name}', which does not exist",
                        "available: " + ", ".join(sorted(env.tests)), node.lineno)
        _includes(problem, env, folder, root, path, tree)
        for finding in check_template_tree(tree, context, filters):
            problem(finding.code, finding.message, finding.hint, finding.lineno)
        if not any(d.severity is Severity.ERROR for d in ctx.diagnostics[before:]):
            _compiles(problem, env, text, path)
        if not any(d.severity is Severity.ERROR for d in ctx.diagnostics[before:]):
            _renders(problem, ctx, folder, path)


def _folder_confined(ctx: CheckContext, folder: Path) -> bool:
    written = ctx.pathway.templates
    repository = pathway_repository(ctx.base_dir)
    if Path(written).is_absolute():
        ctx.report(("templates",), Code.TEMPLATE_OUTSIDE, f"the template folder {written!r} is an absolute path",
                   "give the folder relative to this file, inside its repository, e.g. ../templates/letters")
        return False
    if not inside(folder, repository):
        ctx.report(("templates",), Code.TEMPLATE_OUTSIDE,
                   f"the template folder {written!r} resolves outside the pathway's repository ({repository})",
                   "keep letter templates in the repository, where they are reviewed with the pathway")
        return False
    return True


def _includes(problem, env, folder: Path, root: Path, path: Path, tree: nodes.Template) -> None:
    for node in tree.find_all((nodes.Include, nodes.Import, nodes.FromImport, nodes.Extends)):
        if not (isinstance(node.template, nodes.Const) and isinstance(node.template.value, str)):
            problem(Code.TEMPLATE_FORBIDDEN, "template includes a template whose name is computed when the "
                    "letter is rendered", "name the included file, e.g. {% include 'footer.md.j2' %}", node.lineno)
    for name, line in included_templates(tree):
        target = folder / name
        if not target.is_file():
            problem(Code.TEMPLATE_SYNTAX, f"template includes {name!r}, which does not exist",
                    f"create {name} next to {path.name} or remove the include", line)
        elif not inside(target, root):
            problem(Code.TEMPLATE_OUTSIDE, f"template includes {name!r}, which resolves outside {root}", line=line)
        elif (cycle := _include_cycle(env, folder, root, path.name, name)) is not None:
            problem(Code.TEMPLATE_TOO_LARGE, f"template includes itself: {' -> '.join(cycle)}",
                    "a letter cannot include a template that leads back to it", line)


def _include_cycle(env, folder: Path, root: Path, start: str, first: str) -> list[str] | None:
    """The include chain from `start` through `first` back to a template already on it."""
    stack, seen = [[start, first]], set()
    while stack:
        trail = stack.pop()
        if trail[-1] in trail[:-1]:
            return trail
        target = folder / trail[-1]
        if trail[-1] in seen or not target.is_file() or not inside(target, root):
            continue
        seen.add(trail[-1])
        try:
            tree = env.parse(target.read_text(encoding="utf-8"))
        except Exception:  # noqa: BLE001 - an included file's own problems are not this template's
            continue
        stack.extend([*trail, name] for name, _ in included_templates(tree))
    return None


def _compiles(problem, env, text: str, path: Path) -> None:
    """What parsing does not catch (an unknown test, Python's own limits) is caught here;
    the sandbox keeps constant folding from computing anything unbounded."""
    try:
        env.compile(text, name=path.name, filename=str(path))
    except TemplateSyntaxError as exc:
        problem(Code.TEMPLATE_SYNTAX, f"template does not compile: {exc.message}", line=exc.lineno or 1)
    except (RecursionError, SyntaxError, MemoryError, ValueError):
        problem(Code.TEMPLATE_TOO_LARGE, "template is too large or nested too deeply to compile")


_SAMPLE_TIME = "Monday, March 2, 2026 at 10:00 AM EST"
_SAMPLE_SESSION = {"id": "s-1", "start": _SAMPLE_TIME}


def _sample_contexts(ctx: CheckContext, letter: str) -> list[dict[str, object]]:
    """What a letter is rendered with (sinks.letters.letter_context), with sample values:
    once with a session and booked sessions, once without (both happen at run time)."""
    pathway = ctx.pathway
    base = {
        "patient": {"given_name": "Sample", "family_name": "Patient", "timezone": pathway.clinic.timezone},
        "clinic": {"name": pathway.clinic.name, "phone": pathway.clinic.phone,
                   "crisis_line": pathway.clinic.crisis_line, "timezone": pathway.clinic.timezone},
        "letter": {"id": "sample-letter", "name": letter, "send_at": _SAMPLE_TIME},
        "params": {name: p.value for name, p in pathway.parameters.items()},
        "pathway": {"id": pathway.id, "version": pathway.version, "title": pathway.title},
    }
    return [{**base, "session": dict(_SAMPLE_SESSION), "scheduled_sessions": [dict(_SAMPLE_SESSION)]},
            {**base, "session": None, "scheduled_sessions": []}]


def _renders(problem, ctx: CheckContext, folder: Path, path: Path) -> None:
    """A template that parses and names only known variables can still fail on a value's
    type (`{{ patient.given_name + 1 }}`), which Jinja finds only while rendering: render
    it with sample values as a run would. Template errors (an undefined attribute of an
    absent session) are the run's business; a Python error here would stop every letter."""
    env = letter_environment(folder, html=False)
    letters = [name for name, letter in ctx.pathway.letters.items() if template_path(ctx, letter.template) == path]
    for context in _sample_contexts(ctx, letters[0] if letters else path.stem):
        try:
            env.get_template(path.name).render(context)
        except TemplateError:
            continue
        except (TypeError, ArithmeticError, ValueError, LookupError, AttributeError) as exc:
            line = next((tb.tb_lineno for tb in _frames(exc.__traceback__)
                         if tb.tb_frame.f_code.co_filename == str(path)), 1)
            problem(Code.TEMPLATE_TYPE, f"template fails when rendered ({type(exc).__name__}: {exc})",
                    "check the types: text and numbers do not mix without a filter such as |string or |int",
                    line)
            return
        except Exception:  # noqa: BLE001, S112 - a sandbox limit: the bounds checks word those
            continue


def _frames(tb):  # noqa: ANN001, ANN202 - a traceback
    while tb is not None:
        yield tb
        tb = tb.tb_next


def _display(path: Path) -> str:
    # The folder's real place, the file's own name (a symlink is shown as itself).
    shown = path.parent.resolve() / path.name
    try:
        return str(shown.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(shown)
