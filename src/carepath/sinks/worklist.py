"""`DIR/worklist.html`: the page a clinician works from.

Open work in bands, most important first: safety-critical work (a step the pathway marks
`safety`, or urgent work that holds dosing) with how long it has been open, then overdue,
due today, upcoming within the pathway's `worklist.horizon`, and open work with no due
time. The safety band is grouped by patient, unacknowledged work and the most recently
raised first (a row says who acknowledged it and the escalation tier it reached); the
other bands go by due time. Work due beyond the horizon and rows beyond a band's
`worklist.rows` are counted, not listed, so the page stays the same size however large the
cohort. A role selector filters the rows and keeps that order. Every row says why the task
exists in clinical words (what the triggering event recorded and when, and the pathway's
own description of the rule), with the ids in a tooltip. Done and cancelled work is folded
away. Patients appear only by their pseudonymous ref: no names reach this page.

The page is one self-contained file (inline CSS, no scripts, no external requests; its
Content-Security-Policy forbids both, so a regression shows up as a browser error). The
role selector is radio buttons and CSS `:has()`, which needs no script.

This module ranks the outputs into the page (`Worklist`); the rules it ranks by are in
`worklist_bands`, the words in `worklist_text`, the rows and the page's data in
`worklist_page`, one patient's page's letters in `worklist_patient`. Their public names are
importable from here too.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Generator, Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from carepath.compile.compiled import CompiledPathway
from carepath.sinks.base import Output, OutputKind
from carepath.sinks.documents import Instants, PatientOutputs, instant, require_aware
from carepath.sinks.storage import Location, storage_for
from carepath.sinks.worklist_bands import (
    ACTIONABLE,
    ATTENTION_STATUSES,
    BAND_INDEX,
    BANDS,
    CLOSED_SHOWN,
    BandSpec,
    band_of,
    needs_attention,
    safety_critical,
    safety_sort_keys,
    sort_key,
)
from carepath.sinks.worklist_page import (
    PRIORITIES,
    Band,
    Moment,
    Row,
    assemble_page,
    patient_view,
    task_row,
    template,
)
from carepath.sinks.worklist_patient import PATIENT_HORIZON, PATIENT_ROWS, letter_entry
from carepath.sinks.worklist_text import (
    Words,
    long_moment,
    outside_hours,
    provenance_text,
    role_label,
    short_moment,
    span,
    window_parts,
    window_text,
)

if TYPE_CHECKING:
    from carepath.sinks.worklist_rows import WorklistInput

__all__ = [
    "ACTIONABLE", "ATTENTION_STATUSES", "BAND_INDEX", "BANDS", "CLOSED_SHOWN", "PATIENT_HORIZON", "PATIENT_ROWS",
    "PRIORITIES", "Band", "BandSpec", "Moment", "Row", "Words", "Worklist", "assemble_page", "band_of",
    "letter_entry", "long_moment", "needs_attention", "outside_hours", "patient_view", "provenance_text",
    "role_label", "safety_critical", "safety_sort_keys", "short_moment", "sort_key", "span", "task_row",
    "template", "window_parts", "window_text",
]


class _Worst:
    """Reverses the order so that heapq's min-heap keeps the N smallest keys."""

    __slots__ = ("key",)

    def __init__(self, key: tuple[object, ...]) -> None:
        self.key = key

    def __lt__(self, other: _Worst) -> bool:
        return other.key < self.key


class Worklist:
    """`DIR/worklist.html` for one pathway as of one instant."""

    name = "worklist.html"
    kinds = frozenset({OutputKind.PATIENT, OutputKind.TASK})

    def __init__(self, out_dir: Location, compiled: CompiledPathway, as_of: datetime, *,
                 patient: str | None = None, closures: Mapping[str, str] | None = None,
                 failed_letters: tuple[int, list[tuple[str, str, str]]] = (0, [])) -> None:
        """`patient`: one patient's whole plan instead (every task, no horizon, no caps), with
        its letters; `closures`: what closed each withdrawn task or letter (engine/closure.py).
        `failed_letters`: how many letters could not be delivered, and the first of them
        as (patient ref, letter id, reason free of patient data)."""
        self.failed_letters = failed_letters
        self.storage = storage_for(out_dir)
        self.path = self.storage.local_path(self.name)
        self.compiled = compiled
        self.as_of = require_aware(as_of)
        self.patient = patient
        self.closures = closures or {}
        self.written = 0

    def write(self, outputs: Iterable[Output]) -> int:
        page, count = self.page(outputs)
        self._write_page(page)
        return count

    def _write_page(self, page: dict[str, object]) -> None:
        # Streamed as Jinja produces it.
        with self.storage.writer(self.name) as handle:
            for chunk in template().generate(page=page):
                handle.write(chunk.encode())

    @contextmanager
    def feed(self) -> Iterator[_RankingFeed]:
        """Rank one pass's outputs (`add` one patient's at a time); the page is written when
        the block ends without an error (its size does not depend on the cohort's)."""
        ranking = self._ranking()
        next(ranking)
        yield _RankingFeed(ranking)
        try:
            ranking.send(None)
        except StopIteration as done:
            page, self.written = done.value
        self._write_page(page)

    def render(self, outputs: Iterable[Output]) -> tuple[str, int]:
        """The page and how many outputs it shows (patients and tasks)."""
        page, count = self.page(outputs)
        return template().render(page=page), count

    def page(self, outputs: Iterable[Output]) -> tuple[dict[str, object], int]:
        """What the template shows, and how many outputs that is."""
        ranking = self._ranking()
        next(ranking)
        for output in outputs:
            ranking.send(output)
        try:
            ranking.send(None)
        except StopIteration as done:
            return done.value
        raise AssertionError("the ranking ends when it is sent None")

    def _ranking(self) -> Generator[None, Output | None, tuple[dict[str, object], int]]:
        """Sent the outputs one at a time (so that one pass over the ledger can feed every
        document at once), then None; returns the page and how many outputs it shows."""
        compiled = self.compiled
        zone = compiled.clinic.zone
        as_of = self.as_of.astimezone(zone)
        today = as_of.date()
        horizon_end = as_of + compiled.worklist.horizon
        limit = compiled.worklist.rows
        closed_limit = min(CLOSED_SHOWN, limit)
        if self.patient is not None:
            horizon_end, limit, closed_limit = as_of + PATIENT_HORIZON, PATIENT_ROWS, PATIENT_ROWS
        words = Words(compiled, as_of)
        attention: list[tuple[str, dict[str, object]]] = []
        attention_total = settled = 0
        heaps: dict[str, list[tuple[_Worst, Row]]] = {b.key: [] for b in BANDS}
        band_totals: Counter[str] = Counter()
        role_totals: Counter[str] = Counter()
        beyond: Counter[str] = Counter()    # role → open work due beyond the horizon
        by_role: Counter[tuple[str, str]] = Counter()
        open_by_patient: Counter[str] = Counter()
        overdue = 0
        closed: list[tuple[datetime, str, Row]] = []   # a min-heap of the most recently closed
        closed_counts: Counter[str] = Counter()
        count = 0
        versions: Counter[str] = Counter()  # pathway version → patients planned under it (pins)
        instant = Instants()
        # Outputs come patient by patient (care plan, then tasks): a patient's view and its
        # safety-band rows wait until its last task, since both depend on all of them.
        current: str | None = None
        pending: dict[str, object] | None = None
        letters: list[dict[str, object]] = []  # one patient's page only
        safety_items: list[tuple[Output, Mapping[str, object], datetime, bool]] = []

        def settle_patient() -> None:
            nonlocal attention_total, settled, pending
            if pending is not None:
                view, ref = pending, str(pending["ref"])
                if safety_items:
                    # Open safety work is the patient's summary: no good news shown beside it.
                    view = {**view, "needs_attention": True,
                            "flags": [(name, level) for name, level in view["flags"] if level != "good"]}  # type: ignore[attr-defined]
                if view["needs_attention"]:
                    attention_total += 1
                    item = (ref, view)
                    # The first `limit` refs in order; the rest are counted.
                    if len(attention) < limit:
                        heapq.heappush(attention, (_Worst((ref,)), item))  # type: ignore[arg-type]
                    elif ref < attention[0][0].key[0]:  # type: ignore[index]
                        heapq.heapreplace(attention, (_Worst((ref,)), item))  # type: ignore[arg-type]
                else:
                    settled += 1
                pending = None
            if safety_items:
                keys = safety_sort_keys(safety_items[0][0].patient,
                                        [(o.id, acknowledged, raised) for o, _, raised, acknowledged in safety_items])
                heap = heaps["safety"]
                for item_output, body, _, _ in safety_items:
                    key = keys[item_output.id]
                    if len(heap) >= limit and not key < heap[0][0].key:
                        continue
                    row = self._row(item_output, body, zone, words, "safety", key, safety=True)
                    if len(heap) < limit:
                        heapq.heappush(heap, (_Worst(key), row))
                    else:
                        heapq.heapreplace(heap, (_Worst(key), row))
                safety_items.clear()

        while (output := (yield)) is not None:
            if self.patient is not None and output.kind == OutputKind.LETTER and output.patient == self.patient:
                letters.append(self._letter(output))
                continue
            if output.kind not in self.kinds or (self.patient is not None and output.patient != self.patient):
                continue
            count += 1
            if output.patient != current:
                settle_patient()
                current = output.patient
            if output.kind == OutputKind.PATIENT:
                versions[str(output.body.get("pathway_version") or compiled.version)] += 1
                pending = patient_view(output.patient, output.body, compiled.flag_severity)
                continue
            # Read straight from the body (most tasks are only counted); a listed row's
            # body is checked whole by task_record when its row is built.
            task = output.body
            status = str(task["status"])
            owner = f"task {output.id}"
            if status not in ACTIONABLE:
                closed_counts[status] += 1
                # Most closed work is older than what the page lists: decide before building a row.
                closed_at = (instant(task, "completed_at", owner) or instant(task, "due", owner)
                             or instant(task, "earliest", owner))
                if len(closed) >= closed_limit and (closed_at, output.id) <= closed[0][:2]:
                    continue
                row = self._row(output, task, zone, words, "closed", None)
                item = (row.closed_at, row.id, row)
                if len(closed) < closed_limit:
                    heapq.heappush(closed, item)
                else:
                    heapq.heappushpop(closed, item)
                continue
            earliest = instant(task, "earliest", owner)
            if earliest is None:
                raise ValueError(f"{owner} has no earliest time")
            due = instant(task, "due", owner)
            priority, role = str(task["priority"]), str(task["role"])
            by_role[(role, priority)] += 1
            open_by_patient[output.patient] += 1
            overdue += status == "overdue"
            safety = safety_critical(compiled.steps.get(str(task["step"])), priority)
            band = band_of(status, safety, due, earliest, as_of, today, horizon_end, zone)
            if band is None:
                beyond[role] += 1
                continue
            band_totals[band] += 1
            role_totals[role] += 1
            if band == "safety":
                safety_items.append((output, task, earliest, task.get("acknowledged_at") is not None))
                continue
            key = sort_key(band, due, earliest, priority, output.patient, output.id)
            heap = heaps[band]
            if len(heap) >= limit and not key < heap[0][0].key:
                continue
            row = self._row(output, task, zone, words, band, key, safety=safety)
            if len(heap) < limit:
                heapq.heappush(heap, (_Worst(key), row))
            else:
                heapq.heapreplace(heap, (_Worst(key), row))
        settle_patient()

        bands = {b.key: [r for _, r in heaps[b.key]] for b in BANDS}
        patients: list[dict[str, object]] = [{**view, "open": open_by_patient[ref]}
                                             for ref, view in sorted(item for _, item in attention)]
        page = assemble_page(self.compiled, self.patient, self.failed_letters, as_of, horizon_end, bands,
                             band_totals, role_totals, beyond, by_role, overdue, closed_counts,
                             [row for _, _, row in sorted(closed, reverse=True)], versions,
                             patients, attention_total, settled, letters)
        return page, count

    def write_from(self, stored: WorklistInput) -> int:
        """Write the page from the stored per-patient rows (`carepath.sinks.worklist_rows`):
        the same bytes as a pass over every output, reading only what the page lists."""
        compiled = self.compiled
        zone = compiled.clinic.zone
        as_of = self.as_of.astimezone(zone)
        horizon_end = as_of + compiled.worklist.horizon
        words = Words(compiled, as_of)
        rows: dict[str, list[Row]] = {}
        for key, listed in stored.bands.items():
            built = rows[key] = []
            if key == "safety":
                built.extend(self._row(item.output, item.output.body, zone, words, key, item.key, safety=True)
                             for item in listed)
                continue
            for item in listed:
                body, owner = item.output.body, f"task {item.output.id}"
                earliest = instant(body, "earliest", owner)
                if earliest is None:
                    raise ValueError(f"{owner} has no earliest time")
                k = sort_key(key, instant(body, "due", owner), earliest, str(body["priority"]), item.output.patient,
                             item.output.id)
                built.append(self._row(item.output, body, zone, words, key, k, safety=item.safety))
        closed = sorted((self._row(o, o.body, zone, words, "closed", None) for o in stored.closed),
                        key=lambda r: (r.closed_at, r.id), reverse=True)
        severity = compiled.flag_severity
        patients = []
        for ref, view, open_count, has_safety in stored.attention:
            shown = patient_view(ref, view, severity)
            if has_safety:  # open safety work is the patient's summary: no good news beside it
                shown = {**shown, "needs_attention": True,
                         "flags": [(name, level) for name, level in shown["flags"] if level != "good"]}  # type: ignore[attr-defined]
            patients.append({**shown, "open": open_count})
        page = assemble_page(self.compiled, self.patient, self.failed_letters, as_of, horizon_end, rows,
                             stored.band_totals, stored.role_totals, stored.beyond, stored.by_role, stored.overdue,
                             stored.closed_counts, closed, stored.versions,
                             patients, stored.attention_total, stored.settled, [])
        self._write_page(page)
        self.written = stored.shown
        return stored.shown

    def _row(self, output: Output, body: Mapping[str, object], zone: ZoneInfo, words: Words, band: str,
             key: tuple[object, ...] | None, *, safety: bool = False) -> Row:
        return task_row(output, body, zone, words, band, key, safety=safety,
                        closed_by=self.closures.get(output.id, ""))

    def _letter(self, output: Output) -> dict[str, object]:
        return letter_entry(output, self.compiled.clinic.zone, self.closures)


class _RankingFeed:
    def __init__(self, ranking: Generator[None, Output | None, tuple[dict[str, object], int]]) -> None:
        self.send = ranking.send

    def add(self, group: PatientOutputs) -> None:
        send = self.send
        for output in group.plans:
            send(output)
        for output in group.tasks:
            send(output)

