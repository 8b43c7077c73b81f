"""Scenario files: a pathway, a patient's events, an instant, and the plan expected.

    pathway: ../../pathways/ketamine-iv.yaml     # relative to this file
    description: Friday session, escalate policy
    parameters: {weekend_policy: next_open_slot} # optional overrides
    patients: [{patient: p-1, timezone: America/Chicago}]   # optional; default p-1, clinic zone
    events:
      - {id: e-1, type: enrolled, at: "2026-03-02T09:00:00-05:00"}   # patient defaults to the only one
    as_of: "2026-03-05T17:00:00+00:00"
    expect:
      p-1:
        stage: initial_series
        flags: [relapse_risk]          # exact, like holds
        tasks:                         # each entry matches one task on the fields it gives
          - {step: integration_psychotherapy, due: "2026-03-04T10:00:00-05:00", status: open}
        tasks_exhaustive: true         # default: no other tasks exist
        no_tasks: [records_request]
        letters: [{letter: integration_reminder}]
    rejected: [{id: e-9, reason: minimum gap}]   # reason: a fragment of the text

Events go through the same readers as `carepath plan`, so a scenario also pins how bad
lines are rejected. Used by the pytest plugin and by `carepath test`.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field, fields
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from carepath.compile.compiled import CompiledPathway
from carepath.engine.result import PatientPlan, PlannedLetter, PlannedTask
from carepath.loading import InvalidPathway, load_pathway
from carepath.records.fields import time_range_problem
from carepath.source.loader import LoadedSource, load_source


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class PatientExpectation(_Strict):
    stage: str | None = None
    status: str | None = None
    flags: list[str] | None = None
    holds: list[str] | None = None
    tasks: list[dict[str, Any]] | None = None
    tasks_exhaustive: bool = True
    no_tasks: list[str] = Field(default_factory=list)
    letters: list[dict[str, Any]] | None = None
    letters_exhaustive: bool = True
    no_letters: list[str] = Field(default_factory=list)


class RejectedExpectation(_Strict):
    id: str | None = None
    line: int | None = None
    reason: str = ""


class Scenario(_Strict):
    pathway: str
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=dict)
    patients: list[dict[str, Any]] | None = None
    events: list[dict[str, Any]]
    as_of: str
    expect: dict[str, PatientExpectation]
    rejected: list[RejectedExpectation] | None = None


class ScenarioError(Exception):
    """The scenario file itself is wrong (not the pathway's behaviour)."""


@dataclass
class Outcome:
    path: Path
    scenario: Scenario | None
    failures: list[str] = field(default_factory=list)
    plans: list[PatientPlan] = field(default_factory=list)
    pathway_file: Path | None = None

    @property
    def passed(self) -> bool:
        return not self.failures


def load_scenario(path: Path) -> Scenario:
    return _load(path)[0]


def _load(path: Path) -> tuple[Scenario, LoadedSource]:
    source = load_source(path)
    if source.diagnostics:
        raise ScenarioError("; ".join(d.render() for d in source.diagnostics))
    try:
        return Scenario.model_validate(source.data), source
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False):
            where = ".".join(str(p) for p in err["loc"])
            pos = source.locate(err["loc"])
            problems.append(f"{path}:{pos.line}:{pos.col}: {where}: {err['msg']}")
        raise ScenarioError("\n".join(problems)) from None


def run_scenario(path: Path) -> Outcome:
    from carepath.orchestrator.planning import Cohort, plan_cohort, read_cohort

    path = Path(path)
    try:
        scenario, source = _load(path)
    except ScenarioError as exc:
        return Outcome(path, None, [f"scenario file: {exc}"])
    pathway_file = (path.parent / scenario.pathway).resolve()
    outcome = Outcome(path, scenario, pathway_file=pathway_file)
    try:
        compiled = load_pathway(pathway_file, scenario.parameters or None)
    except InvalidPathway as exc:
        outcome.failures.append("pathway does not validate:\n" + "\n".join(d.render() for d in exc.diagnostics))
        return outcome
    if problems := _unknown_names(path, source, scenario, compiled):
        outcome.failures.append("scenario file:\n" + "\n".join(problems))
        return outcome
    try:
        as_of = datetime.fromisoformat(scenario.as_of)
    except ValueError:
        outcome.failures.append(f"as_of {scenario.as_of!r} is not an ISO date-time")
        return outcome
    if as_of.tzinfo is None:
        outcome.failures.append(f"as_of {scenario.as_of!r} has no UTC offset")
        return outcome
    if (problem := time_range_problem(as_of)) is not None:
        outcome.failures.append(f"as_of {scenario.as_of!r} {problem}")
        return outcome

    patients = scenario.patients or [{"patient": "p-1", "given_name": "Test", "family_name": "Patient"}]
    only = patients[0]["patient"] if len(patients) == 1 else None
    with tempfile.TemporaryDirectory(prefix="carepath-scenario-") as tmp:
        patients_file, events_file = Path(tmp) / "patients.jsonl", Path(tmp) / "events.jsonl"
        patients_file.write_text("".join(
            json.dumps({"given_name": "Test", "family_name": "Patient", **p}) + "\n" for p in patients))
        events_file.write_text("".join(
            json.dumps({"data": {}, **({"patient": only} if only else {}), **e}, default=str) + "\n"
            for e in scenario.events))
        cohort: Cohort = read_cohort(compiled, patients_file, events_file)
        outcome.plans = list(plan_cohort(compiled, cohort, as_of))

    by_ref = {p.patient: p for p in outcome.plans}
    for ref, expectation in scenario.expect.items():
        if ref not in by_ref:
            outcome.failures.append(f"expect names patient {ref!r}, who is not in the scenario")
            continue
        outcome.failures.extend(_compare(ref, expectation, by_ref[ref], compiled.version))
    if scenario.rejected is not None:
        outcome.failures.extend(_compare_rejected(scenario.rejected, cohort.rejected))
    elif cohort.rejected:
        outcome.failures.append("unexpected rejected lines: "
                                + "; ".join(f"line {r.line} ({r.id}): {r.reason}" for r in cohort.rejected))
    return outcome


PATIENT_STATUSES = ("active", "pending_eligibility", "blocked", "discharged")
TASK_STATUSES = ("open", "done", "overdue", "cancelled")
_TASK_KEYS = frozenset({f.name for f in fields(PlannedTask)} | {"pathway_version"})
_LETTER_KEYS = frozenset({f.name for f in fields(PlannedLetter)} | {"pathway_version"})


def _unknown_names(path: Path, source: LoadedSource, scenario: Scenario, compiled: CompiledPathway) -> list[str]:
    """A misspelt key, step, letter, stage or status in `expect` would make a check that
    can never fail (`no_tasks: [records_requst]`) or one that fails for the wrong reason:
    each is reported at its line, before anything is planned."""
    problems: list[str] = []

    def bad(loc: tuple, message: str) -> None:
        pos = source.locate(loc)
        problems.append(f"{path}:{pos.line}:{pos.col}: {'.'.join(map(str, loc))}: {message}")

    def one_of(loc: tuple, value: object, allowed, what: str) -> None:
        if value is not None and value not in allowed:
            bad(loc, f"unknown {what} {value!r} (known: {', '.join(sorted(allowed))})")

    for ref, want in scenario.expect.items():
        at = ("expect", ref)
        one_of((*at, "stage"), want.stage, compiled.stages, "stage")
        one_of((*at, "status"), want.status, PATIENT_STATUSES, "patient status")
        for i, flag in enumerate(want.flags or ()):
            one_of((*at, "flags", i), flag, compiled.flags, "flag")
        for kind, entries, keys, names, name_key in (
                ("tasks", want.tasks, _TASK_KEYS, compiled.steps, "step"),
                ("letters", want.letters, _LETTER_KEYS, compiled.letters, "letter")):
            for i, entry in enumerate(entries or ()):
                for key in entry:
                    if key not in keys:
                        bad((*at, kind, i, key), f"unknown key {key!r} (a {kind[:-1]} has: {', '.join(sorted(keys))})")
                one_of((*at, kind, i, name_key), entry.get(name_key), names, name_key)
                if kind == "tasks":
                    one_of((*at, kind, i, "status"), entry.get("status"), TASK_STATUSES, "task status")
        for i, step in enumerate(want.no_tasks):
            one_of((*at, "no_tasks", i), step, compiled.steps, "step")
        for i, letter in enumerate(want.no_letters):
            one_of((*at, "no_letters", i), letter, compiled.letters, "letter")
    return problems


def _compare(ref: str, want: PatientExpectation, got: PatientPlan, version: str) -> list[str]:
    failures = []
    for name in ("stage", "status"):
        expected = getattr(want, name)
        if expected is not None and expected != getattr(got, name):
            failures.append(f"{ref}: {name} is {getattr(got, name)!r}, expected {expected!r}")
    for name in ("flags", "holds"):
        expected = getattr(want, name)
        if expected is not None and sorted(expected) != list(getattr(got, name)):
            failures.append(f"{ref}: {name} are {list(getattr(got, name))}, expected {sorted(expected)}")
    tasks = [t.as_json(version) for t in got.tasks]
    letters = [letter.as_json(version) for letter in got.letters]
    failures += _match(ref, "task", want.tasks, tasks, want.tasks_exhaustive)
    failures += _match(ref, "letter", want.letters, letters, want.letters_exhaustive)
    for step in want.no_tasks:
        if any(t["step"] == step for t in tasks):
            failures.append(f"{ref}: a {step!r} task exists, expected none")
    for name in want.no_letters:
        if any(letter["letter"] == name for letter in letters):
            failures.append(f"{ref}: a {name!r} letter exists, expected none")
    return failures


def _match(ref: str, kind: str, expected: list[dict[str, Any]] | None, actual: list[dict[str, Any]],
           exhaustive: bool) -> list[str]:
    if expected is None:
        return []
    failures, unused = [], list(actual)
    for want in expected:
        hit = next((a for a in unused if all(_same(a.get(k), v) for k, v in want.items())), None)
        if hit is None:
            similar = [a for a in actual if a.get("step", a.get("letter")) == want.get("step", want.get("letter"))]
            shown = "; ".join(json.dumps({k: a.get(k) for k in want}) for a in similar) or "none of that kind"
            failures.append(f"{ref}: no {kind} matches {json.dumps(want)} (found: {shown})")
        else:
            unused.remove(hit)
    if exhaustive and unused and not failures:
        names = ", ".join(f"{a.get('step', a.get('letter'))} (trigger {a.get('trigger')})" for a in unused)
        failures.append(f"{ref}: unexpected {kind}(s): {names}")
    return failures


def _same(actual: object, expected: object) -> bool:
    if isinstance(expected, str) and isinstance(actual, str) and "T" in expected and "T" in actual:
        return actual == expected  # times compare exactly: the zone shown is part of the contract
    return actual == expected


def _compare_rejected(expected: list[RejectedExpectation], actual: list) -> list[str]:
    failures, unused = [], list(actual)
    for want in expected:
        hit = next((r for r in unused if (want.id is None or r.id == want.id)
                    and (want.line is None or r.line == want.line) and want.reason in r.reason), None)
        if hit is None:
            failures.append(f"no rejected line matches {want.model_dump(exclude_none=True)}; rejected: "
                            + ("; ".join(f"line {r.line} ({r.id}): {r.reason}" for r in actual) or "none"))
        else:
            unused.remove(hit)
    if unused and not failures:
        failures.append("unexpected rejected lines: " + "; ".join(f"line {r.line} ({r.id}): {r.reason}" for r in unused))
    return failures
