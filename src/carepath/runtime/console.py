"""What `carepath run` shows on the console: a progress bar on stderr (redrawn in place
on a terminal, a few plain lines otherwise) and the closing summary. The flow reports to
whatever bar is installed; a deployed flow has none."""

from __future__ import annotations

import os
import sys
import time
from contextvars import ContextVar
from pathlib import Path
from typing import TextIO

from carepath.orchestrator.sequence import versions_note
from carepath.sinks.storage import documents_location, storage_for


class Progress:
    def __init__(self, stream: TextIO | None = None, width: int = 30) -> None:
        self.stream = stream or sys.stderr
        self.width = width
        self.total_shards = self.total_patients = self.done_shards = self.done_patients = 0
        self.tty = self.stream.isatty()
        self._last = 0.0
        self._started = time.monotonic()

    def start(self, shards: int, patients: int) -> None:
        self.total_shards, self.total_patients = shards, patients
        self._started = time.monotonic()
        self._draw(force=True)

    def advance(self, patients: int) -> None:
        self.done_shards += 1
        self.done_patients += patients
        self._draw(force=self.done_shards == self.total_shards)

    def finish(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()

    def _draw(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < (0.1 if self.tty else 5.0):
            return
        self._last = now
        fraction = self.done_patients / self.total_patients if self.total_patients else 1.0
        filled = int(fraction * self.width)
        line = (f"planning [{'#' * filled}{'.' * (self.width - filled)}] {fraction:4.0%}  "
                f"{self.done_patients:,}/{self.total_patients:,} patients, "
                f"{self.done_shards}/{self.total_shards} shards, {now - self._started:.1f} s")
        self.stream.write(("\r" + line) if self.tty else line + "\n")
        self.stream.flush()


# The bar of the command running in this context (a flow called from the CLI runs in the
# caller's context; a deployed flow's context has none). A context variable, not a global:
# two runs in one process (tests, a serve process) never report to each other's bar.
_current: ContextVar[Progress | None] = ContextVar("carepath_progress", default=None)


def install(progress: Progress | None) -> None:
    _current.set(progress)


def current() -> Progress | None:
    return _current.get()


def quiet_console() -> None:
    """Keep Prefect's own lines off the console — they still reach the API and the UI, and
    `-v` shows them — so the bar, the summary and a failure's one-line reason stay
    readable (a failed task's traceback is a bug report, not a message for the user). An
    explicit setting wins. Must run before Prefect configures logging."""
    os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "CRITICAL")
    # The temporary server's usage telemetry is no business of a clinic's run (and its
    # writes race the run's own on the server's SQLite file, printing lock errors).
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


def summary_text(result) -> str:  # noqa: ANN001 - a runner.RunResult (kept import-free of Prefect)
    s = result.summary
    out = result.out
    docs = storage_for(documents_location(out))
    lines = [f"{s['pathway']} {s['version']} as of {s['as_of']}: {s['patients']:,} patient(s), "
             f"{s.get('replanned', s['patients']):,} re-planned ({s['events']:,} of their event(s) read), "
             f"{s['rejected_lines']:,} input line(s) rejected"
             + (f" (see {out / 'rejected.jsonl'})" if s["rejected_lines"] else "")]
    o = s["outputs"]
    lines.append(f"outputs: {o['new']:,} new, {o['changed']:,} updated, {o['unchanged']:,} unchanged"
                 + (f", {o['retired']:,} retired" if o["retired"] else ""))
    total = sum(row["count"] for row in s["open_tasks"])
    lines.append(f"open or overdue tasks: {total:,} ({s['overdue']:,} overdue); "
                 f"patients needing attention: {s['patients_needing_attention']:,}")
    for row in sorted(s["open_tasks"], key=lambda r: (r["priority"] != "urgent", r["role"], r["priority"])):
        lines.append(f"  {row['role']:<22} {row['priority']:<8} {row['count']:>7,}")
    lines.append(f"letters: {s['letters_written']:,} sent this run {sent_how(s.get('letter_channel', 'file'), out)}; "
                 + letters_by_status(s) + f" (see {docs.shown('letters.jsonl')})")
    if s.get("patients_on_older_versions"):
        lines.append(versions_note(s))
    if s.get("letters_failed") or s.get("letters_queued"):
        lines.append(f"letters not delivered: {s.get('letters_failed', 0):,} failed this run, "
                     f"{s.get('letters_queued', 0):,} waiting for the next run (the worklist lists why)")
    lines.append(f"worklist: {docs.shown('worklist.html')}")
    if changes := [d for d in s.get("documents_rewritten", []) if d.startswith("changes/")]:
        lines.append(f"change feed of this sweep: {docs.shown(changes[0])}")
    exported = "fhir/manifest.json" in s.get("documents_rewritten", [])
    lines.append(("export: " if exported else "export (written by --export or carepath export): ")
                 + f"tasks: {docs.shown('tasks.jsonl')}, {docs.shown('tasks.csv')}; "
                 f"FHIR Bulk Data NDJSON: {docs.shown('fhir/manifest.json')}")
    where = result.api_url or "Prefect's temporary local server (PREFECT_HOME)"
    lines.append(f"Prefect flow run: {result.flow_run_id} ({where})")
    return "\n".join(lines) + "\n"


def sent_how(channel: str, out: Path) -> str:
    """Where this run's letters went, by the channel the run resolved (the deployment's
    setting, else the pathway's `letter_channel`): e-mailed letters leave no file (the
    ledger records each send); the print channel writes the day's batch; the file channel
    writes them under out/letters."""
    if channel == "email":
        return f"by e-mail (patients without an address: files under {out / 'letters'})"
    if channel == "print":
        return f"into the day's print batch under {out / 'print'}"
    return f"under {out / 'letters'}"


def letters_by_status(s: dict) -> str:
    """'in the plan: 3 due (sent or not), 12 scheduled, 590 expired, 6 withdrawn'. A
    plan's status says whether a letter's time has come, not whether it was sent: a due
    letter this run sent is still 'due' in the plan."""
    counts = s.get("letters_by_status") or {}
    shown = ", ".join(f"{n:,} {status}" + (" (sent or not)" if status == "due" else "")
                      for status, n in counts.items()) or "none"
    return f"{s['letters_planned']:,} in the plan ({shown})"
