"""Version pinning: an enrolled patient keeps the rules they started under.

The ledger records the pathway version each patient was first planned under and
archives every version's source. When the pathway file moves on (1.0.0 → 1.1.0):

- a patient pinned to 1.0.0 is still planned under 1.0.0, compiled from the archive;
- an explicit migration file maps patients (all, or listed refs) from 1.0.0 to 1.1.0,
  with the reason for review; they are planned under 1.1.0 and re-pinned;
- a pinned version that cannot be honoured (not in the archive, or no longer valid
  under this carepath) refuses that patient, with a message naming the migration to
  write — never a silent switch to the new rules;
- the same version number with different rules refuses the whole run: the version is
  what reviewers signed off, so a change needs a new one.

Ids do not include the version (see carepath.engine.ids): the work both versions share
keeps its id, so what was done stays done and a letter sent is not sent again.

A migration file (docs/migration-file.md; schemas/migration.schema.json):

    pathway: ketamine-iv
    from: 1.0.0
    to: 1.1.0
    patients: all            # or a list of refs
    reason: Integration window widened to 72 h; signed off by the clinical lead.
    steps:                   # optional: a step renamed or split, old → new (one or a list)
      integration_psychotherapy: integration_session
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

from carepath.codes import Code
from carepath.diagnostics import Diagnostic
from carepath.engine.aliases import IdAliases
from carepath.loading import InvalidInput
from carepath.source.loader import load_source


class VersionReused(Exception):
    """The same pathway version was run before with different rules. Its message names
    the pathway file, id, version and source digests, never patient data, so the runtime
    passes it to Prefect whole (an hourly sweep's failure says why)."""

    phi_free = True


@dataclass(frozen=True)
class Migration:
    pathway: str
    from_version: str
    to_version: str
    patients: frozenset[str] | None  # None: every patient pinned to from_version
    reason: str
    steps: dict[str, tuple[str, ...]] = field(default_factory=dict)  # old step → the steps replacing it

    def covers(self, pathway: str, ref: str, pinned: str, current: str) -> bool:
        return (pathway == self.pathway and pinned == self.from_version and current == self.to_version
                and (self.patients is None or ref in self.patients))


_VERSION = re.compile(r"^\d+\.\d+\.\d+$")
_MIGRATION_KEYS = {"pathway": str, "from": str, "to": str, "reason": str}


def read_migration(path: str | Path) -> Migration:
    """The migration file, or `InvalidInput` with a positioned diagnostic per problem."""
    source = load_source(path)
    if source.data is None or source.diagnostics:
        raise InvalidInput(list(source.diagnostics))
    data = source.data
    problems: list[Diagnostic] = []

    def problem(key: str, code: Code, message: str) -> None:
        pos = source.locate((key,), key=code is Code.UNKNOWN_FIELD)
        problems.append(Diagnostic(str(path), pos.line, pos.col, str(code), message))

    if not isinstance(data, dict):
        raise InvalidInput([Diagnostic(str(path), 1, 1, str(Code.INVALID_VALUE),
                                       "a migration is a mapping with pathway, from, to, patients and reason")])
    for key, kind in _MIGRATION_KEYS.items():
        if key not in data:
            problem(key, Code.MISSING_FIELD, f"'{key}' is missing; a migration needs pathway, from, to, "
                                             "patients and reason")
        elif not isinstance(data[key], kind) or not str(data[key]).strip():
            problem(key, Code.INVALID_VALUE, f"'{key}' must be text (quote versions, e.g. \"1.0.0\")")
        elif key in ("from", "to") and not _VERSION.match(data[key]):
            problem(key, Code.INVALID_VALUE, f"'{key}' must be a version like \"1.0.0\" (major.minor.patch)")
    patients = data.get("patients")
    if patients != "all" and not (isinstance(patients, list) and patients and all(isinstance(p, str) for p in patients)):
        problem("patients", Code.INVALID_VALUE if "patients" in data else Code.MISSING_FIELD,
                "'patients' must be 'all' or a list of patient refs")
    steps = data.get("steps", {})
    renamed: dict[str, tuple[str, ...]] = {}
    if not isinstance(steps, dict):
        problem("steps", Code.INVALID_VALUE, "'steps' maps an old step name to the new step (or a list of them)")
    else:
        for old, new in steps.items():
            names = [new] if isinstance(new, str) else new
            if not (isinstance(old, str) and isinstance(names, list) and names
                    and all(isinstance(n, str) and n for n in names)):
                problem("steps", Code.INVALID_VALUE, f"'steps: {old}' must name the new step, or a list of them")
            else:
                renamed[old] = tuple(names)
    for key in sorted(set(data) - set(_MIGRATION_KEYS) - {"patients", "steps"}):
        problem(key, Code.UNKNOWN_FIELD, f"unknown key '{key}' (allowed: pathway, from, to, patients, reason, steps)")
    if problems:
        raise InvalidInput(problems)
    return Migration(data["pathway"], data["from"], data["to"],
                     None if patients == "all" else frozenset(patients), data["reason"], renamed)


def check_against(migration: Migration, path: str, new_steps: set[str], old_steps: set[str] | None) -> None:
    """The step map names steps that exist: each old one in the old version (when known),
    each new one in the new version; `InvalidInput` otherwise."""
    problems = []
    for old, new in sorted(migration.steps.items()):
        if old_steps is not None and old not in old_steps:
            problems.append(f"'steps: {old}': {migration.pathway} {migration.from_version} has no step {old!r}")
        problems += [f"'steps: {old}': {migration.pathway} {migration.to_version} has no step {n!r}"
                     for n in new if n not in new_steps]
    if problems:
        raise InvalidInput([Diagnostic(path, 1, 1, str(Code.UNKNOWN_STEP), p) for p in problems])


def id_aliases(archived_versions: list[str], renames: dict[str, tuple[str, ...]],
               migration: Migration | None) -> IdAliases:
    """What else an events file's task ids may be, for a run: ids hashed with any archived
    version (recorded before ids dropped the version), and the steps renamed by every
    migration applied so far and by this run's."""
    steps = dict(renames)
    if migration is not None:
        for old, new in migration.steps.items():
            steps[old] = tuple(sorted(set(steps.get(old, ())) | set(new)))
    return IdAliases(tuple(archived_versions), steps)


def source_digest(text: bytes) -> str:
    return hashlib.sha256(text).hexdigest()[:32]


@dataclass
class Decision:
    """Which version each patient of a group is planned under."""

    current: set[str] = field(default_factory=set)           # under the pathway file's version
    enrol: set[str] = field(default_factory=set)             # first seen: pin to the current version
    migrate: set[str] = field(default_factory=set)           # moved by the migration: re-pin
    keep: dict[str, str] = field(default_factory=dict)       # ref → pinned older version
    refuse: dict[str, str] = field(default_factory=dict)     # ref → why not


def decide(pathway: str, current: str, refs: list[str], pins: dict[str, str], migration: Migration | None,
           honourable: dict[str, str | None]) -> Decision:
    """`honourable` maps each pinned version to None when it can be planned (archived and
    valid), or to the reason it cannot."""
    d = Decision()
    for ref in refs:
        pinned = pins.get(ref)
        if pinned is None:
            d.current.add(ref)
            d.enrol.add(ref)
        elif pinned == current:
            d.current.add(ref)
        elif migration is not None and migration.covers(pathway, ref, pinned, current):
            d.current.add(ref)
            d.migrate.add(ref)
        elif honourable.get(pinned) is None:
            d.keep[ref] = pinned
        else:
            d.refuse[ref] = (
                f"patient {ref} is pinned to {pathway} {pinned}, which cannot be planned ({honourable[pinned]}); "
                f"to move them to {current}, write a migration (pathway: {pathway}, from: {pinned}, to: {current}, "
                f"patients, reason) and pass it with --migration")
    return d
