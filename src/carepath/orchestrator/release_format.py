"""A migration preview in words a clinical reviewer signs off: text for the terminal,
Markdown for the review beside `carepath diff`, JSON for tools."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from carepath.orchestrator.release import PatientChange, Preview
from carepath.review.words import delta_text

_TOTALS = ("tasks added", "tasks withdrawn", "tasks moved", "tasks reopened", "letters send", "letters withdrawn",
           "holds added", "holds removed", "flags added", "flags removed")
_TOTAL_WORDS = {"letters send": "letters to send"}


def when(text: str | None, zone: str | None = None) -> str:
    """An instant as a reviewer reads it: in the clinic's zone when given (Tue 3 Mar 2026
    14:00 EST), else in the zone it was planned in (a letter: the patient's; -05:00)."""
    if text is None:
        return "no due time"
    at = datetime.fromisoformat(text)
    if zone is not None:
        at = at.astimezone(ZoneInfo(zone))
        return f"{at:%a} {at.day} {at:%b %Y %H:%M} {at:%Z}"
    offset = f"{at:%z}"
    return f"{at:%a} {at.day} {at:%b %Y %H:%M} ({offset[:-2]}:{offset[-2:]})"


def _moved(old: str | None, new: str | None, zone: str) -> str:
    if old is None or new is None:
        return f"{when(old, zone)} → {when(new, zone)}"
    delta = datetime.fromisoformat(new) - datetime.fromisoformat(old)
    later = "later" if delta.total_seconds() > 0 else "earlier"
    return f"{when(old, zone)} → {when(new, zone)} ({delta_text(abs(delta))} {later})"


def _lines(c: PatientChange, zone: str) -> list[str]:
    out = []
    for t in c.tasks:
        if t.change == "added":
            out.append(f"task added: {t.title} ({t.step}), due {when(t.new_due, zone)}")
        elif t.change == "moved":
            out.append(f"task moved: {t.title} ({t.step}), due {_moved(t.old_due, t.new_due, zone)}")
        elif t.change == "reopened":
            out.append(f"task REOPENED: {t.title} ({t.step}), {t.why}")
        else:
            out.append(f"task withdrawn: {t.title} ({t.step}), was due {when(t.old_due, zone)}: {t.why}")
    for x in c.letters:
        if x.change == "send":
            out.append(f"letter would be sent: {x.name} (send time {when(x.send_at)})")
        else:
            out.append(f"letter withdrawn: {x.name} (was to go {when(x.send_at)}): {x.why}")
    out += [f"hold added: {h}" for h in c.holds_added] + [f"hold released: {h}" for h in c.holds_removed]
    out += [f"flag raised: {f}" for f in c.flags_added] + [f"flag cleared: {f}" for f in c.flags_removed]
    return out


def _totals(p: Preview) -> list[str]:
    return [f"{p.totals.get(k, 0)} {_TOTAL_WORDS.get(k, k)}" for k in _TOTALS if p.totals.get(k, 0) or k in (
        "tasks added", "tasks withdrawn", "tasks moved", "letters send")]


def _title(p: Preview) -> str:
    return (f"{p.pathway} {p.from_version} → {p.to_version} as of {p.as_of}: {p.covered} patient(s) move, "
            f"{len(p.changes)} with a changed plan (task times in clinic time, {p.zone})")


def format_text(p: Preview) -> str:
    lines = [_title(p), f"reason: {p.reason}"]
    lines += [f"step {old} → {', '.join(new)}" for old, new in sorted(p.steps.items())]
    if p.not_pinned:
        lines.append(f"{p.not_pinned} listed patient(s) are not on {p.from_version} and stay as they are")
    for c in p.changes:
        lines.append(f"{c.patient}:")
        lines += [f"  {line}" for line in _lines(c, p.zone)]
    lines.append("totals: " + ", ".join(_totals(p)))
    return "\n".join(lines) + "\n"


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("*", "\\*").replace("_", "\\_")


def format_markdown(p: Preview) -> str:
    lines = [f"## Migration preview: {_md(_title(p))}", "", f"**Reason:** {_md(p.reason)}", ""]
    if p.steps:
        lines += [f"- step `{old}` → {', '.join(f'`{n}`' for n in new)}" for old, new in sorted(p.steps.items())]
        lines.append("")
    if p.not_pinned:
        lines += [f"{p.not_pinned} listed patient(s) are not on {p.from_version} and stay as they are.", ""]
    lines += ["| total | count |", "|---|---|"] + [f"| {_md(t.split(' ', 1)[1])} | {t.split(' ', 1)[0]} |"
                                                  for t in _totals(p)]
    lines.append("")
    if p.changes:
        lines += ["| patient | change |", "|---|---|"]
        for c in p.changes:
            lines += [f"| `{c.patient}` | {_md(line)} |" for line in _lines(c, p.zone)]
    else:
        lines.append("No patient's plan changes.")
    return "\n".join(lines) + "\n"
