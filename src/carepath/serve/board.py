"""The live worklist's index: every open task of a pathway, kept in memory in the bands
and order of `worklist.html` (`carepath.sinks.worklist_bands.band_of`/`sort_key`), so a page
costs the same at 1k patients as at 20k.

Built once from the ledger's current outputs, then kept current one patient at a time
(after an action re-plans that patient) or rebuilt when another process (a sweep) moved
the pathway's generation. Bands depend on the clock: each task knows the next instant its
band changes (it opens, its due day starts, it comes within the horizon), kept in a heap,
so only the tasks whose moment came are moved.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

from sortedcontainers import SortedList

from carepath.compile.compiled import CompiledPathway
from carepath.sinks.base import Output, OutputKind
from carepath.sinks.worklist_bands import ACTIONABLE, BANDS, band_of, safety_critical, sort_key

BAND_KEYS = tuple(b.key for b in BANDS)


@dataclass(slots=True)
class Entry:
    id: str
    patient: str
    step: str
    role: str
    priority: str
    status: str
    earliest: datetime
    due: datetime | None
    safety: bool
    acknowledged_by: str | None
    body: Mapping[str, object]
    band: str | None = None
    key: tuple[object, ...] = ()


@dataclass
class Board:
    compiled: CompiledPathway
    entries: dict[str, Entry] = field(default_factory=dict)
    by_patient: dict[str, set[str]] = field(default_factory=dict)
    plans: dict[str, Mapping[str, object]] = field(default_factory=dict)   # patient → care-plan summary
    lists: dict[tuple[str, str], SortedList] = field(default_factory=dict)  # (band, role) → (key, id)
    acknowledged: dict[str, set[str]] = field(default_factory=dict)        # user → open tasks they own
    beyond: Counter = field(default_factory=Counter)                       # role → beyond the horizon
    wakes: list[tuple[datetime, str]] = field(default_factory=list)        # (when its band changes, task id)
    as_of: datetime | None = None
    # task id → who acknowledged it, from the events (the engine's task body carries
    # `acknowledged_by` only on urgent and safety work; "mine" needs every task)
    acks: dict[str, str] = field(default_factory=dict)
    _bulk: dict[tuple[str, str], list] | None = None   # while loading: lists sorted once at the end

    # -- filling ------------------------------------------------------------------------

    def load(self, outputs: Iterable[Output], as_of: datetime) -> None:
        """Everything afresh from the ledger's current outputs."""
        self.entries.clear(), self.by_patient.clear(), self.plans.clear(), self.lists.clear()
        self.beyond.clear(), self.acknowledged.clear()
        self.wakes = []
        self.as_of = as_of
        self._bulk: dict[tuple[str, str], list] | None = {}
        try:
            for output in outputs:
                self._add(output)
            # Sorted once at the end: much cheaper than one insertion at a time.
            self.lists = {k: SortedList(items) for k, items in self._bulk.items()}
            heapq.heapify(self.wakes)
        finally:
            self._bulk = None

    def replace_patient(self, patient: str, outputs: Iterable[Output]) -> None:
        """One patient's outputs, re-read after their re-plan."""
        for task_id in list(self.by_patient.get(patient, ())):
            self._remove(task_id)
        self.by_patient.pop(patient, None)
        self.plans.pop(patient, None)
        for output in outputs:
            self._add(output)

    def _add(self, output: Output) -> None:
        if output.kind is OutputKind.PATIENT:
            self.plans[output.patient] = output.body
            return
        if output.kind is not OutputKind.TASK:
            return
        body = output.body
        status = str(body["status"])
        if status not in ACTIONABLE:
            return
        step = self.compiled.steps.get(str(body["step"]))
        priority = str(body["priority"])
        due = body.get("due")
        entry = Entry(output.id, output.patient, str(body["step"]), str(body["role"]), priority, status,
                      datetime.fromisoformat(str(body["earliest"])),
                      datetime.fromisoformat(str(due)) if due else None,
                      safety_critical(step, priority),
                      _text(body.get("acknowledged_by")) or self.acks.get(output.id), body)
        self.entries[entry.id] = entry
        self.by_patient.setdefault(entry.patient, set()).add(entry.id)
        if entry.acknowledged_by:
            self.acknowledged.setdefault(entry.acknowledged_by, set()).add(entry.id)
        self._place(entry)

    def _remove(self, task_id: str) -> None:
        entry = self.entries.pop(task_id)
        if entry.acknowledged_by:
            self.acknowledged.get(entry.acknowledged_by, set()).discard(task_id)
        self._unplace(entry)

    # -- bands --------------------------------------------------------------------------

    def _context(self) -> tuple[datetime, date, datetime]:
        assert self.as_of is not None, "the board is loaded before it is read"
        zone = self.compiled.clinic.zone
        as_of = self.as_of.astimezone(zone)
        return as_of, as_of.date(), as_of + self.compiled.worklist.horizon

    def _place(self, entry: Entry) -> None:
        as_of, today, horizon_end = self._context()
        zone = self.compiled.clinic.zone
        band = band_of(entry.status, entry.safety, entry.due, entry.earliest, as_of, today, horizon_end, zone)
        entry.band = band
        if band is None:
            self.beyond[entry.role] += 1
        else:
            entry.key = sort_key(band, entry.due, entry.earliest, entry.priority, entry.patient, entry.id)
            if self._bulk is not None:
                self._bulk.setdefault((band, entry.role), []).append((entry.key, entry.id))
            else:
                found = self.lists.get((band, entry.role))
                if found is None:
                    found = self.lists[(band, entry.role)] = SortedList()
                found.add((entry.key, entry.id))
        moment = self._next_change(entry, as_of, today, horizon_end)
        if moment is not None:
            if self._bulk is not None:
                self.wakes.append((moment, entry.id))
            else:
                heapq.heappush(self.wakes, (moment, entry.id))

    def _unplace(self, entry: Entry) -> None:
        if entry.band is None:
            self.beyond[entry.role] -= 1
        else:
            self.lists[(entry.band, entry.role)].discard((entry.key, entry.id))
        entry.band = None

    def _next_change(self, entry: Entry, as_of: datetime, today: date, horizon_end: datetime) -> datetime | None:
        """The first instant after `as_of` at which this task's band may differ."""
        zone = self.compiled.clinic.zone
        moments = []
        if entry.safety and entry.earliest > as_of:
            moments.append(entry.earliest)                       # safety work enters its band when it opens
        if entry.due is not None:
            day = entry.due.astimezone(zone).date()
            if day > today:
                moments.append(datetime.combine(day, time(0), zone))  # "due today" from its day's start
            if entry.due > horizon_end:
                moments.append(self._enters_horizon(entry.due))
        elif entry.earliest > horizon_end:
            moments.append(self._enters_horizon(entry.earliest))
        if not moments:
            return None
        # Never at or before now (a DST-ambiguous wall time): a task is looked at again
        # later, not on every page.
        return max(min(moments), as_of + timedelta(minutes=1))

    def _enters_horizon(self, moment: datetime) -> datetime:
        """When `moment` comes within the horizon: the horizon's end is the as-of plus the
        horizon in clinic wall-clock time (as `band_of`'s caller computes it), so the
        horizon is taken off in wall-clock time too."""
        zone = self.compiled.clinic.zone
        return (moment.astimezone(zone) - self.compiled.worklist.horizon).astimezone(zone)

    def advance(self, as_of: datetime) -> None:
        """Move the clock: only the tasks whose band may have changed are placed again."""
        self.as_of = as_of
        moved: set[str] = set()
        while self.wakes and self.wakes[0][0] <= as_of:
            _, task_id = heapq.heappop(self.wakes)
            moved.add(task_id)
        for task_id in moved:
            entry = self.entries.get(task_id)
            if entry is not None:   # removed since: its wake is stale
                self._unplace(entry)
                self._place(entry)

    # -- reading ------------------------------------------------------------------------

    def rows(self, band: str, *, role: str | None = None, mine: str | None = None) -> Iterator[Entry]:
        """A band's open tasks in worklist order, filtered by role and by who acknowledged
        them; lazily, so taking the first rows costs the same however many there are."""
        if mine is not None:
            owned = [self.entries[i] for i in self.acknowledged.get(mine, ())]
            yield from sorted((e for e in owned if e.band == band and role in (None, e.role)), key=lambda e: e.key)
            return
        lists = [items for (b, r), items in self.lists.items() if b == band and role in (None, r)]
        for _, task_id in heapq.merge(*lists):
            yield self.entries[task_id]

    def total(self, band: str, role: str | None = None, mine: str | None = None) -> int:
        if mine is not None:
            return sum(1 for i in self.acknowledged.get(mine, ()) if self.entries[i].band == band
                       and role in (None, self.entries[i].role))
        return sum(len(items) for (b, r), items in self.lists.items() if b == band and role in (None, r))

    def beyond_total(self, role: str | None = None) -> int:
        return sum(n for r, n in self.beyond.items() if role in (None, r))


def _text(value: object) -> str | None:
    return str(value) if value else None
