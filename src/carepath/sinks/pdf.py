"""HTML letters to PDF (WeasyPrint), fast enough for a cohort's outbox.

Where a letter's PDF time went, measured (BENCHMARKS.md, bench/pdf_letters.py):
- font subsetting: WeasyPrint subsets the embedded fonts with fontTools (pure Python,
  ~0.25 s a letter) unless HarfBuzz's subsetter is installed (Debian
  `libharfbuzz-subset0`, ~6× cheaper); a note says so once when it is missing;
- a new font configuration (fontconfig + Pango font map) per letter: one per process here;
- rendering inside `carepath run`, in the thread of a Prefect task, shares the GIL with
  Prefect's own threads (its event loop, log and event workers), which made the same
  letter ~1.3× slower there than in `carepath letters`: batches are rendered in worker
  processes, which also use every core.

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
    if _state.get("noted") or harfbuzz_subsetting():
        return
    _state["noted"] = True
    print("carepath: note: HarfBuzz's font subsetter is not installed, so PDF letters are rendered "
          "about 6 times slower (fontTools subsets the fonts instead); install the Debian package "
          "libharfbuzz-subset0 (apt-get install libharfbuzz-subset0)", file=sys.stderr)


def _setup(paper: str) -> tuple[object, object]:
    """This process's font configuration and page stylesheet, made once."""
    key = f"page:{paper}"
    if key not in _state:
        import warnings

        with warnings.catch_warnings():
            # WeasyPrint warns (DeprecationWarning) when HarfBuzz-Subset is missing; our note says what to do.
            warnings.simplefilter("ignore", DeprecationWarning)
            from weasyprint import CSS
            from weasyprint.text.fonts import FontConfiguration

        if "fonts" not in _state:
            _state["fonts"] = FontConfiguration()
        size = _PAGE.get(paper, "A4")
        _state[key] = CSS(string=f"@page {{ size: {size}; margin: {_MARGINS}; }}", font_config=_state["fonts"])
        _note_missing_harfbuzz()
    return _state["fonts"], _state[key]


def laid_out(document: str, paper: str = "a4"):  # noqa: ANN201 - a weasyprint Document
    """The letter laid out on its pages (what `html_to_pdf` writes)."""
    fonts, page = _setup(paper)
    from weasyprint import HTML

    return HTML(string=document).render(stylesheets=[page], font_config=fonts)


def html_to_pdf(document: str, paper: str = "a4") -> bytes:
    """One letter's PDF."""
    return laid_out(document, paper).write_pdf()


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
