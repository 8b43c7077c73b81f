"""Prefect artifacts summarising a run for clinicians and operators: a table of open
work by role and priority, the urgent and overdue tasks by pseudonymous ref, and a
markdown note of what was emitted and where. Refs and counts only."""

from __future__ import annotations

from pathlib import Path

from prefect.artifacts import create_markdown_artifact, create_table_artifact

from carepath.orchestrator.emission import RunSummary
from carepath.sinks.storage import documents_location, storage_for


def _key(prefix: str, pathway: str, what: str) -> str:
    # Artifact keys: lowercase letters, numbers and dashes only.
    raw = f"{prefix}-{pathway}-{what}".lower()
    return "".join(c if c.isalnum() or c == "-" else "-" for c in raw)


def workload_rows(summary: RunSummary) -> list[dict[str, object]]:
    return [{"role": role, "priority": prio, "open or overdue": n}
            for (role, prio), n in sorted(summary.workload.open_tasks.items(),
                                          key=lambda kv: (kv[0][1] != "urgent", kv[0][0]))]


def urgent_rows(summary: RunSummary) -> list[dict[str, object]]:
    """The top rows of the worklist, in the page's order (safety-critical, overdue, due
    today): pseudonymous refs, step names and times only."""
    return [{"band": band, "patient": ref, "step": step, "due": due, "status": status, "opened": opened}
            for _, band, ref, step, due, status, opened in summary.workload.urgent]


_CHANNEL = {"email": "by e-mail", "print": "into the day's print batch", "file": "as files under the letters folder"}


def letter_rows(summary: RunSummary) -> list[dict[str, object]]:
    rows = [{"letters": status, "count": n} for status, n in summary.as_json()["letters_by_status"].items()]
    return [*rows, {"letters": "sent this run", "count": summary.letters_written},
            {"letters": "failed this run", "count": summary.letters_failed},
            {"letters": "waiting to be delivered", "count": summary.letters_queued}]


def markdown(summary: RunSummary, out: Path) -> str:
    s = summary.as_json()
    out_ = s["outputs"]
    lines = [
        f"# {summary.pathway} {summary.version} as of {summary.as_of}",
        "",
        f"- **{s['patients']:,} patients**, {s['events']:,} events in {summary.shards} shard(s); "
        f"{summary.rejected} input line(s) rejected (see `rejected.jsonl`)",
        f"- outputs: {out_['new']:,} new, {out_['changed']:,} updated, {out_['unchanged']:,} unchanged, "
        f"{out_['retired']:,} retired",
        f"- open or overdue tasks: {sum(summary.workload.open_tasks.values()):,} "
        f"({summary.workload.overdue:,} overdue)",
        f"- letters: {summary.letters_written:,} sent this run ({_CHANNEL[summary.letter_channel]}); "
        f"{summary.workload.letters:,} planned: "
        + ", ".join(f"{n:,} {status}" for status, n in s["letters_by_status"].items()),
        "- patients by status: " + ", ".join(f"{k} {v:,}" for k, v in s["patients_by_status"].items()),
        f"- patients needing attention: {summary.workload.attention:,} (blocked, awaiting eligibility, on hold "
        f"or flagged for attention; good news such as remission does not count)",
        f"- documents rewritten: {', '.join(s['documents_rewritten']) or 'none (nothing changed)'}",
        "- pathway versions in force: " + (", ".join(f"{v} {n:,} patient(s)" for v, n in s["versions_in_force"].items())
                                           or "none")
        + (f" ({s['patients_on_older_versions']:,} on an older version than {summary.version})"
           if s["patients_on_older_versions"] else ""),
        f"- worklist: `{storage_for(documents_location(out)).shown('worklist.html')}`",
    ]
    return "\n".join(lines) + "\n"


def publish(summary: RunSummary, out: Path, key_prefix: str = "carepath-sweep") -> None:
    create_markdown_artifact(markdown(summary, out), key=_key(key_prefix, summary.pathway, "summary"),
                             description="What this run emitted (counts only)")
    create_table_artifact(workload_rows(summary), key=_key(key_prefix, summary.pathway, "workload"),
                          description="Open or overdue tasks by role and priority")
    create_table_artifact(letter_rows(summary), key=_key(key_prefix, summary.pathway, "letters"),
                          description="Letters by status at the run's as-of, and sent by this run")
    if summary.workload.urgent:
        create_table_artifact(urgent_rows(summary), key=_key(key_prefix, summary.pathway, "urgent"),
                              description="Top of the worklist (pseudonymous refs): safety-critical, overdue, "
                                      "due today, in the page's order")
