"""HTML letters to PDF (WeasyPrint), fast enough for a cohort's outbox.

Where a letter's PDF time went, measured (BENCHMARKS.md, bench/pdf_fonts.py,
bench/pdf_letters.py):
- font subsetting: WeasyPrint subsets the embedded fonts per letter with fontTools (pure
  Python, ~0.25 s a letter) unless HarfBuzz's subsetter is installed (Debian
  `libharfbuzz-subset0`, ~6× cheaper). Letters use fonts subset once per machine and
  cached (`cached_faces`), embedded whole without HarfBuzz: no per-letter subsetting;
  the face nearly every letter needs holds ~130 glyphs, so embedding it whole is cheap;
- a new font configuration (fontconfig + Pango font map), page stylesheet, letter
  stylesheet or URL fetcher per letter: one per process here;
- list markers outside the text are laid out as absolutely positioned boxes (~12 % of a
  letter's layout): the letter's bullets sit inside its lines (markup.CSS);
- rendering inside `carepath run`, in the thread of a Prefect task, shares the GIL with
  Prefect's own threads (its event loop, log and event workers), which made the same
  letter ~1.3× slower there than in `carepath letters`: batches are rendered in worker
  processes, which also use every core.
What remains is WeasyPrint's own layout (~⅔ of a letter) and PDF writing.

The page size follows the clinic (`clinic.paper`, by default from its country).
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

_PAGE = {"letter": "letter", "a4": "A4"}
_MARGINS = "2cm 2.2cm"

# A batch smaller than this is rendered in the calling process: starting the workers
# (each imports WeasyPrint, ~0.5 s) would cost more than it saves.
PARALLEL_FROM = 12

_state: dict[str, object] = {}
_lock = threading.Lock()


def harfbuzz_subsetting() -> bool:
    """Whether WeasyPrint found HarfBuzz's subsetter (Debian libharfbuzz-subset0)."""
    from weasyprint.text import ffi

    return getattr(ffi, "harfbuzz_subset", None) is not None


def _note_missing_harfbuzz() -> None:
    if _state.get("noted") or harfbuzz_subsetting() or cached_faces():
        return
    _state["noted"] = True
    print("carepath: note: HarfBuzz's font subsetter is not installed, so PDF letters are rendered "
          "about 6 times slower (fontTools subsets the fonts instead); install the Debian package "
          "libharfbuzz-subset0 (apt-get install libharfbuzz-subset0)", file=sys.stderr)


# The letters' font, subset once per machine and cached (`CAREPATH_FONT_CACHE`, else
# ~/.cache/carepath/fonts). Without HarfBuzz's subsetter (a Debian package many users
# cannot install) it is embedded whole (`full_fonts`): fontTools subsetting each letter's
# fonts was most of a PDF's time. What a whole font costs a letter (WeasyPrint reads every
# glyph's width and cmap entry, writes and compresses the file) grows with its glyphs, so
# each face is cached as two fonts of one family: the characters nearly every letter uses
# (ASCII and typographic punctuation, ~130 glyphs) and the rest of the Latin scripts,
# embedded only in a letter that uses one of them. They are two families (the letter's CSS
# names both): WeasyPrint tells a PDF's fonts apart by family, weight and style, so two
# faces of one family would be written as one font and print the wrong glyphs. A
# character outside both (a name in another script) falls back to the system's fonts,
# embedded whole in that letter.
_FACES = (("DejaVuSans", "normal", "normal"), ("DejaVuSans-Bold", "bold", "normal"),
          ("DejaVuSans-Oblique", "normal", "italic"), ("DejaVuSans-BoldOblique", "bold", "italic"))
_BASIC = ((0x20, 0x7E), (0xA0, 0xA0), (0x2013, 0x2014), (0x2018, 0x2019), (0x201C, 0x201D), (0x2022, 0x2022),
          (0x2026, 0x2026))
# Every character letters in Latin scripts use, ASCII too: a space or a comma after "ë"
# stays in that character's font (Pango shapes a run of common characters with the font
# before it), which must then have a glyph for it.
_EXTENDED = ((0x20, 0x7E), (0xA0, 0x17F), (0x2010, 0x2027), (0x2030, 0x205E), (0x20AC, 0x20AC), (0x2122, 0x2122))
_BLOCKS = (("Carepath Sans", "basic", _BASIC), ("Carepath Sans Latin", "latin", _EXTENDED))
_FONT_DIRS = ("/usr/share/fonts", "/usr/local/share/fonts", "~/.local/share/fonts", "~/.fonts",
              "/System/Library/Fonts", "/Library/Fonts")
_SUBSET_VERSION = "3"  # bump when _BLOCKS or the subsetting options change


def _font_cache() -> Path:
    explicit = os.environ.get("CAREPATH_FONT_CACHE")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "carepath" / "fonts"


def _find_font(name: str) -> Path | None:
    for folder in _FONT_DIRS:
        root = Path(os.path.expanduser(folder))
        if root.is_dir():
            found = next(iter(sorted(root.rglob(f"{name}.ttf"))), None)
            if found is not None:
                return found
    return None


Face = tuple[str, Path, str, str, tuple[tuple[int, int], ...]]  # family, file, weight, style, characters


def cached_faces() -> list[Face]:
    """The letter fonts' faces as cached subsets, made once; [] when the source fonts are
    not installed (PDFs are then made the slower way)."""
    if "faces" in _state:
        return _state["faces"]  # type: ignore[return-value]
    faces: list[Face] = []
    try:
        cache = _font_cache()
        for name, weight, style in _FACES:
            source: Path | None = None
            for family, block, ranges in _BLOCKS:
                target = cache / f"{name}-{block}-v{_SUBSET_VERSION}.ttf"
                if not target.is_file():
                    source = source or _find_font(name)
                    if source is None:
                        break
                    _subset_font(source, target, ranges)
                faces.append((family, target, weight, style, ranges))
    except OSError:
        faces = []  # a cache we cannot write: the slower way, not a failed letter
    _state["faces"] = faces
    return faces


def _subset_font(source: Path, target: Path, ranges: tuple[tuple[int, int], ...]) -> None:
    import logging
    import tempfile

    from fontTools import subset
    from fontTools.ttLib import TTFont

    logging.getLogger("fontTools").setLevel(logging.ERROR)
    options = subset.Options()
    options.hinting, options.layout_features, options.notdef_outline = False, ["*"], True
    options.name_IDs = [0, 1, 2, 3, 4, 5, 6, 14]  # names and the licence URL, not its 10 KB text: embedded in every letter
    options.drop_tables += ["MATH"]  # formulas: never in a letter, and embedded with every one
    font = TTFont(str(source))
    subsetter = subset.Subsetter(options)
    subsetter.populate(unicodes=[c for low, high in ranges for c in range(low, high + 1)])
    subsetter.subset(font)
    target.parent.mkdir(parents=True, exist_ok=True)
    # Written aside and renamed: parallel workers making it at once each see a whole file.
    fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".tmp")
    os.close(fd)
    try:
        font.save(tmp)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _font_faces_css() -> str:
    def unicode_range(ranges: tuple[tuple[int, int], ...]) -> str:
        return ", ".join(f"U+{low:X}-{high:X}" if low != high else f"U+{low:X}" for low, high in ranges)

    return "\n".join(f'@font-face {{ font-family: "{family}"; src: url("{path.as_uri()}"); '
                     f"font-weight: {weight}; font-style: {style}; unicode-range: {unicode_range(ranges)}; }}"
                     for family, path, weight, style, ranges in cached_faces())


def _setup(paper: str) -> tuple[object, object, object, object]:
    """This process's font configuration, page stylesheet, letter stylesheet and URL
    fetcher, made once: each made anew cost a letter ~3 ms, ~5 ms and ~1 ms."""
    key = f"page:{paper}"
    if key not in _state:
        import warnings

        with warnings.catch_warnings():
            # WeasyPrint warns (DeprecationWarning) when HarfBuzz-Subset is missing; our note says what to do.
            warnings.simplefilter("ignore", DeprecationWarning)
            from weasyprint import CSS
            from weasyprint.text.fonts import FontConfiguration
            from weasyprint.urls import URLFetcher

        from carepath.sinks import markup

        if "fonts" not in _state:
            _state["fonts"] = FontConfiguration()
            _state["letter_css"] = CSS(string=markup.CSS, font_config=_state["fonts"])
            # A letter loads nothing (its text is escaped, its style and fonts are here).
            _state["fetcher"] = URLFetcher(allowed_protocols=("data",))
        size = _PAGE.get(paper, "A4")
        _state[key] = CSS(string=f"@page {{ size: {size}; margin: {_MARGINS}; }}\n{_font_faces_css()}",
                          font_config=_state["fonts"])
        if not cached_faces():
            _note_missing_harfbuzz()
    return _state["fonts"], _state[key], _state["letter_css"], _state["fetcher"]


def laid_out(document: str, paper: str = "a4"):  # noqa: ANN201 - a weasyprint Document
    """The letter laid out on its pages (what `html_to_pdf` writes)."""
    fonts, page, letter_css, fetcher = _setup(paper)
    from weasyprint import HTML

    from carepath.sinks.markup import STYLE_ELEMENT

    sheets = [page]
    if STYLE_ELEMENT in document:
        # The letter's own stylesheet, parsed once. Given as a user stylesheet it still
        # overrides the browser defaults, and the letter has no other author styles.
        document = document.replace(STYLE_ELEMENT, "", 1)
        sheets.append(letter_css)
    return HTML(string=document, url_fetcher=fetcher).render(stylesheets=sheets, font_config=fonts)


def html_to_pdf(document: str, paper: str = "a4") -> bytes:
    """One letter's PDF. Without HarfBuzz's subsetter the cached letter fonts are embedded
    whole (no per-letter subsetting, ~22 KB a letter in ASCII); with it, subsetting those
    small fonts costs less than embedding them (~7 KB a letter)."""
    return laid_out(document, paper).write_pdf(full_fonts=_embed_whole())


def _embed_whole() -> bool:
    if "whole" not in _state:
        _state["whole"] = bool(cached_faces()) and not harfbuzz_subsetting()
    return bool(_state["whole"])


def _render_chunk(documents: Sequence[str], paper: str) -> list[bytes]:
    return [html_to_pdf(d, paper) for d in documents]


def _render_in_worker(documents: Sequence[str], paper: str) -> list[bytes]:
    _state["noted"] = True  # the parent says it once, not every worker
    return _render_chunk(documents, paper)


def workers() -> int:
    """Processes for PDF batches: CAREPATH_PDF_WORKERS, else the cores this process may use."""
    raw = os.environ.get("CAREPATH_PDF_WORKERS", "")
    if raw.isdigit() and int(raw) > 0:
        return int(raw)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _pool(n: int) -> ProcessPoolExecutor:
    with _lock:
        pool = _state.get("pool")
        if pool is None or _state.get("pool_size") != n:
            if pool is not None:
                pool.shutdown()  # type: ignore[attr-defined]
            # spawn, not fork: the parent may hold Prefect's threads and their locks.
            pool = ProcessPoolExecutor(max_workers=n, mp_context=get_context("spawn"))
            _state["pool"], _state["pool_size"] = pool, n
            atexit.register(pool.shutdown)
        return pool  # type: ignore[return-value]


def render_pdfs(documents: Sequence[str], paper: str = "a4") -> list[bytes]:
    """The PDFs of `documents`, in order; a batch is shared out among worker processes.
    The HTML (it holds names) goes to the workers through a pipe, never to disk."""
    n = workers()
    # A daemonic process (e.g. a worker of a process pool running shards) may not start
    # children; there the shards themselves already run in parallel processes.
    from multiprocessing import current_process

    if n == 1 or len(documents) < PARALLEL_FROM or current_process().daemon:
        return _render_chunk(documents, paper)
    _note_missing_harfbuzz()
    size = max(1, min(32, len(documents) // (n * 4)))
    chunks = [documents[i:i + size] for i in range(0, len(documents), size)]
    pool = _pool(n)
    out: list[bytes] = []
    for part in pool.map(_render_in_worker, chunks, [paper] * len(chunks)):
        out.extend(part)
    return out
