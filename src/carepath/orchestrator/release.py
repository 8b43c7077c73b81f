"""What moving patients to a new pathway version changes, before anyone is moved.

`preview` plans each patient a migration covers twice, as of one instant — under the
version they are pinned to (what the next sweep would record without the migration) and
under the new version with the migration's step map (what `carepath run --migration`
records) — and compares the two: tasks added, withdrawn (with the reason) or moved (old
due → new due), letters that the move would send or withdraw, holds and flags gained or
lost. Both plans are made with the functions a sweep uses, from the same ledger (pins,
archived versions, sends), so applying the migration at that instant changes exactly
what the preview lists. It records nothing in the ledger. No Prefect, no names: refs,
step and letter names, times.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from carepath.codes import Code
from carepath.diagnostics import Diagnostic
from carepath.engine import plan
from carepath.engine.result import PatientPlan, PlannedTask
from carepath.loading import InvalidInput, load_pathway, load_pathway_text
from carepath.orchestrator.pinning import Migration, check_against, id_aliases
from carepath.records import read_patients
from carepath.records.readers import read_events
from carepath.sinks.base import Output, OutputKind
from carepath.sinks.ledger import Ledger

OPEN = ("open", "overdue")
SENDABLE = ("scheduled", "due")  # a letter still to go out


@dataclass(frozen=True)
class TaskChange:
    change: str           # added | withdrawn | moved | reopened
    task: str             # id
    step: str
    title: str
    old_due: str | None = None
    new_due: str | None = None
    why: str = ""


@dataclass(frozen=True)
class LetterChange:
    change: str           # send | withdrawn
    letter: str           # id
    name: str
    send_at: str
    why: str = ""


@dataclass(frozen=True)
class PatientChange:
    patient: str
    tasks: tuple[TaskChange, ...] = ()
    letters: tuple[LetterChange, ...] = ()
    holds_added: tuple[str, ...] = ()
    holds_removed: tuple[str, ...] = ()
    flags_added: tuple[str, ...] = ()
    flags_removed: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.tasks or self.letters or self.holds_added or self.holds_removed or self.flags_added
                    or self.flags_removed)


@dataclass(frozen=True)
class Preview:
    pathway: str
    from_version: str
    to_version: str
    as_of: str
    reason: str
    steps: dict[str, tuple[str, ...]]
    covered: int                       # patients the migration moves
    changes: tuple[PatientChange, ...]  # those whose plan changes, by ref
    not_pinned: int = 0                # listed refs not pinned to `from` (left alone)
    totals: Counter = field(default_factory=Counter)
    zone: str = "UTC"                  # the clinic's zone: task times are shown in it

    def as_json(self) -> dict[str, object]:
        return {
            "pathway": self.pathway, "from": self.from_version, "to": self.to_version, "as_of": self.as_of,
            "reason": self.reason, "steps": {k: list(v) for k, v in self.steps.items()},
            "patients_moved": self.covered, "patients_changed": len(self.changes),
            "totals": dict(sorted(self.totals.items())),
            "patients": [{
                "patient": c.patient,
                "tasks": [t.__dict__ for t in c.tasks], "letters": [x.__dict__ for x in c.letters],
                "holds": {"added": list(c.holds_added), "removed": list(c.holds_removed)},
                "flags": {"added": list(c.flags_added), "removed": list(c.flags_removed)},
            } for c in self.changes],
        }


def _tasks(p: PatientPlan) -> dict[str, PlannedTask]:
    return {t.id: t for t in p.tasks}


def compare(old: PatientPlan, new: PatientPlan, new_steps: set[str], migration: Migration,
            unsent: set[str]) -> PatientChange:
    """What the patient's plan gains and loses by the move (`unsent`: letter ids no channel sent)."""
    before, after = _tasks(old), _tasks(new)
    tasks: list[TaskChange] = []
    for tid, t in sorted(after.items(), key=lambda kv: (kv[1].step, kv[0])):
        was = before.get(tid)
        if t.status not in OPEN:
            continue
        due = t.due.isoformat() if t.due else None
        if was is None or was.status == "cancelled":
            tasks.append(TaskChange("added", tid, t.step, t.title, None, due,
                                    "new in this version" if was is None else "no longer withdrawn"))
        elif was.status == "done":
            tasks.append(TaskChange("reopened", tid, t.step, t.title, None, due, "done under the old version"))
        elif was.due != t.due:
            tasks.append(TaskChange("moved", tid, t.step, t.title, was.due.isoformat() if was.due else None, due))
    for tid, t in sorted(before.items(), key=lambda kv: (kv[1].step, kv[0])):
        now = after.get(tid)
        if t.status in OPEN and (now is None or now.status == "cancelled"):
            if t.step not in new_steps and t.step not in migration.steps:
                why = f"step {t.step} is not in version {migration.to_version}"
            elif t.step in migration.steps:
                why = f"step {t.step} became {', '.join(migration.steps[t.step])}"
            else:
                why = f"not planned under version {migration.to_version}"
            tasks.append(TaskChange("withdrawn", tid, t.step, t.title, t.due.isoformat() if t.due else None,
                                    None, f"{why} ({migration.reason})"))
    old_letters = {x.id: x for x in old.letters}
    new_letters = {x.id: x for x in new.letters}
    letters: list[LetterChange] = []
    for lid, x in sorted(new_letters.items()):
        was = old_letters.get(lid)
        if x.status == "due" and lid in unsent and (was is None or was.status != "due"):
            letters.append(LetterChange("send", lid, x.letter, x.send_at.isoformat()))
    for lid, x in sorted(old_letters.items()):
        now = new_letters.get(lid)
        if x.status in SENDABLE and lid in unsent and (now is None or now.status not in SENDABLE):
            letters.append(LetterChange("withdrawn", lid, x.letter, x.send_at.isoformat(),
                                        f"not sent under version {migration.to_version}"))
    return PatientChange(new.patient, tuple(tasks), tuple(letters),
                         tuple(sorted(set(new.holds) - set(old.holds))), tuple(sorted(set(old.holds) - set(new.holds))),
                         tuple(sorted(set(new.flags) - set(old.flags))), tuple(sorted(set(old.flags) - set(new.flags))))


def preview(pathway: str | Path, migration: Migration, patients_path: str | Path, events_path: str | Path,
            ledger_url: str, as_of: datetime, migration_path: str = "migration") -> Preview:
    """What `carepath run PATHWAY --migration FILE --as-of AS_OF` would change, per patient."""
    if as_of.tzinfo is None:
        raise ValueError("as_of must be timezone-aware")
    new = load_pathway(pathway)
    problems = []
    if migration.pathway != new.id:
        problems.append(f"the migration is for pathway {migration.pathway}; {pathway} is {new.id}")
    if migration.to_version != new.version:
        problems.append(f"the migration moves patients to {migration.to_version}; {pathway} is version {new.version}")
    if problems:
        raise InvalidInput([Diagnostic(migration_path, 1, 1, str(Code.INVALID_VALUE), p) for p in problems])
    ledger = Ledger(ledger_url)
    try:
        source = ledger.archived_source(new.id, migration.from_version)
        if source is None:
            raise InvalidInput([Diagnostic(migration_path, 1, 1, str(Code.INVALID_VALUE),
                                           f"the ledger holds no {new.id} version {migration.from_version}: "
                                           "no patient can be on it")])
        old = load_pathway_text(pathway, source.encode(), f"{pathway} (version {migration.from_version})")
        check_against(migration, migration_path, set(new.steps), set(old.steps))
        patients, _ = read_patients(patients_path, default_timezone=new.clinic.zone.key)
        pins = ledger.pins(new.id, sorted(patients))
        listed = migration.patients
        moved = sorted(ref for ref, v in pins.items() if v == migration.from_version
                       and (listed is None or ref in listed))
        not_pinned = len(listed - set(moved)) if listed is not None else 0
        events, _ = read_events(events_path, event_types=new.event_fields, patients=patients)
        by_patient: dict[str, list] = {ref: [] for ref in moved}
        for e in events:
            if e.patient in by_patient:
                by_patient[e.patient].append(e)
        versions, renames = ledger.archived_versions(new.id), ledger.step_renames(new.id)
        before_aliases = id_aliases(versions, renames, None)
        after_aliases = id_aliases(versions, renames, migration)
        changes: list[PatientChange] = []
        totals: Counter = Counter()
        for ref in moved:
            was = plan(old, patients[ref], by_patient[ref], as_of, aliases=before_aliases)
            now = plan(new, patients[ref], by_patient[ref], as_of, aliases=after_aliases)
            letter_ids = [x.id for x in (*was.letters, *now.letters)]
            unsent = {o.id for o in ledger.unsent([Output(i, OutputKind.LETTER, ref, {}) for i in letter_ids])}
            change = compare(was, now, set(new.steps), migration, unsent)
            if not change.empty:
                changes.append(change)
            totals.update(f"tasks {t.change}" for t in change.tasks)
            totals.update(f"letters {x.change}" for x in change.letters)
            totals["holds added"] += len(change.holds_added)
            totals["holds removed"] += len(change.holds_removed)
            totals["flags added"] += len(change.flags_added)
            totals["flags removed"] += len(change.flags_removed)
    finally:
        ledger.close()
    totals = Counter({k: v for k, v in totals.items() if v})
    return Preview(new.id, migration.from_version, migration.to_version, as_of.isoformat(), migration.reason,
                   dict(migration.steps), len(moved), tuple(changes), not_pinned, totals, new.clinic.zone.key)
