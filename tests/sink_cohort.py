"""A cohort for the document-sink tests: examples/ plus patients that give every kind of
row a worklist has (overdue, due today, tomorrow and later, not yet open, done, cancelled,
blocked), planned with the real engine on the reference pathway."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from html.parser import HTMLParser
from pathlib import Path

from carepath.api import load_cohort
from carepath.compile.compiled import CompiledPathway
from carepath.engine.result import PatientPlan
from carepath.orchestrator.planning import plan_cohort
from carepath.sinks.base import Output, OutputKind, outputs_of

ROOT = Path(__file__).resolve().parents[1]
PATHWAY = ROOT / "pathways" / "ketamine-iv.yaml"
EXAMPLES = ROOT / "examples"
AS_OF = datetime.fromisoformat("2026-03-03T17:00:00+00:00")  # Tue 3 Mar 2026 12:00 EST

EXTRA_PATIENTS = [
    {"patient": "p-101", "given_name": "Clara", "family_name": "Zimmerhof"},
    {"patient": "p-102", "given_name": "Dmitri", "family_name": "Vashenko", "timezone": "Europe/Berlin"},
    {"patient": "p-103", "given_name": "Esther", "family_name": "Quillfeather"},
    {"patient": "p-104", "given_name": "Farid", "family_name": "Oyelaran"},
    {"patient": "p-105", "given_name": "Greta", "family_name": "Lindqvist-Moreau"},
]


def _event(eid: str, patient: str, kind: str, at: str, **data: object) -> dict[str, object]:
    return {"id": eid, "patient": patient, "type": kind, "at": at, "data": data}


EXTRA_EVENTS = [
    # Two sessions: the first integration task done in time, the second open today.
    _event("a-1", "p-101", "enrolled", "2026-02-23T09:00:00-05:00"),
    _event("a-2", "p-101", "screening_recorded", "2026-02-23T10:00:00-05:00",
           trd_trials=2, contraindications=[], cautions=[]),
    _event("a-3", "p-101", "session_completed", "2026-02-26T10:00:00-05:00", session="s-1"),
    _event("a-5", "p-101", "session_completed", "2026-03-02T10:00:00-05:00", session="s-2"),
    # A missed session (overdue outreach) and suicidality this morning (urgent, due today).
    _event("b-1", "p-102", "enrolled", "2026-02-23T09:00:00-05:00"),
    _event("b-2", "p-102", "screening_recorded", "2026-02-23T10:00:00-05:00",
           trd_trials=3, contraindications=[], cautions=[]),
    _event("b-4", "p-102", "session_scheduled", "2026-02-23T11:00:00-05:00",
           session="s-1", start="2026-02-25T10:00:00-05:00"),
    _event("b-5", "p-102", "session_missed", "2026-02-25T11:00:00-05:00", session="s-1"),
    _event("b-3", "p-102", "assessment_recorded", "2026-03-03T09:00:00-05:00",
           instrument="phq9", items=[1, 1, 1, 1, 1, 1, 1, 1, 1]),
    # Discharged after a session: its integration task is cancelled.
    _event("c-1", "p-103", "enrolled", "2026-02-23T09:00:00-05:00"),
    _event("c-2", "p-103", "screening_recorded", "2026-02-23T10:00:00-05:00",
           trd_trials=2, contraindications=[], cautions=[]),
    _event("c-3", "p-103", "session_completed", "2026-03-02T10:45:00-05:00", session="s-1"),
    _event("c-4", "p-103", "discharged", "2026-03-02T16:00:00-05:00"),
    # A contraindication: blocked, high-priority review due tomorrow.
    _event("d-1", "p-104", "enrolled", "2026-03-02T09:00:00-05:00"),
    _event("d-2", "p-104", "screening_recorded", "2026-03-02T10:00:00-05:00",
           trd_trials=3, contraindications=["uncontrolled_hypertension"], cautions=[]),
    # A session this morning: integration opens tomorrow (not yet actionable), due Thursday.
    _event("f-1", "p-105", "enrolled", "2026-02-23T09:00:00-05:00"),
    _event("f-2", "p-105", "screening_recorded", "2026-02-23T10:00:00-05:00",
           trd_trials=2, contraindications=[], cautions=[]),
    _event("f-3", "p-105", "session_completed", "2026-03-03T11:30:00-05:00", session="s-1"),
]


@dataclass
class Planned:
    compiled: CompiledPathway
    plans: list[PatientPlan]
    outputs: list[Output]
    names: list[str]  # every given and family name in the patients files
    directory: Path   # where its patients.jsonl and events.jsonl are

    def of_kind(self, kind: OutputKind) -> list[Output]:
        return [o for o in self.outputs if o.kind == kind]


def _write_jsonl(path: Path, rows: list[dict[str, object]]) -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def _plan(directory: Path, events: list[dict[str, object]]) -> Planned:
    patients_lines = (EXAMPLES / "patients.jsonl").read_text().splitlines()
    patients = [json.loads(line) for line in patients_lines if line.strip()] + EXTRA_PATIENTS
    example_events = [json.loads(l) for l in (EXAMPLES / "events.jsonl").read_text().splitlines() if l.strip()]
    _write_jsonl(directory / "patients.jsonl", patients)
    _write_jsonl(directory / "events.jsonl", example_events + events)
    compiled, cohort = load_cohort(PATHWAY, directory / "patients.jsonl", directory / "events.jsonl")
    plans = list(plan_cohort(compiled, cohort, AS_OF))
    outputs = [o for plan in plans for o in outputs_of(plan, compiled.version)]
    names = [p[key] for p in patients for key in ("given_name", "family_name") if p.get(key)]
    return Planned(compiled, plans, outputs, names, directory)


def planned_cohort(directory: Path) -> Planned:
    directory.mkdir(parents=True, exist_ok=True)
    first = _plan(directory, EXTRA_EVENTS)
    # The completion names the task by its id, which depends on the pathway version: take it
    # from a first plan rather than hard-coding it.
    p101 = next(p for p in first.plans if p.patient == "p-101")
    first_integration = min((t for t in p101.tasks if t.step == "integration_psychotherapy"),
                            key=lambda t: t.earliest)
    done = _event("a-4", "p-101", "task_completed", "2026-02-27T15:00:00-05:00", task=first_integration.id)
    planned = _plan(directory, [*EXTRA_EVENTS, done])
    statuses = {str(o.body["status"]) for o in planned.of_kind(OutputKind.TASK)}
    assert statuses == {"open", "overdue", "done", "cancelled"}, statuses  # the cohort still covers them all
    return planned


def contains_name(text: str, names: list[str]) -> list[str]:
    return [n for n in names if re.search(rf"(?<![\w-]){re.escape(n)}(?![\w-])", text)]


def with_body(output: Output, **changes: object) -> Output:
    return Output(output.id, output.kind, output.patient, {**output.body, **changes})


VOID = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
                  "track", "wbr"})


@dataclass
class TaskRow:
    attrs: dict[str, str]
    cells: list[str]

    @property
    def window(self) -> str:
        return self.cells[0]


class WorklistReader(HTMLParser):
    """The task rows of a worklist page in document order, and structural problems: unclosed
    or mismatched elements, duplicate ids (a stand-in for an HTML validator, none being
    available offline)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.rows: list[TaskRow] = []
        self.groups: list[str] = []   # data-group of each day section, in order
        self.problems: list[str] = []
        self.ids: set[str] = set()
        self.html_lang: str | None = None
        self._stack: list[str] = []
        self._cell: list[str] | None = None
        self._task_row = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = {k: v or "" for k, v in attrs}
        if "id" in found:
            if found["id"] in self.ids:
                self.problems.append(f"duplicate id {found['id']}")
            self.ids.add(found["id"])
        if tag == "html":
            self.html_lang = found.get("lang")
        if tag == "section" and "data-group" in found:
            self.groups.append(found["data-group"])
        if tag == "tr":
            self._task_row = "data-task" in found
            if self._task_row:
                self.rows.append(TaskRow(found, []))
        if tag == "td" and self._task_row:
            self._cell = []
        if tag == "br" and self._cell is not None:
            self._cell.append(" ")
        if tag not in VOID:
            self._stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in VOID:
            self._stack.pop()

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID:
            return
        if not self._stack or self._stack[-1] != tag:
            self.problems.append(f"</{tag}> does not close <{self._stack[-1] if self._stack else 'nothing'}>")
            if tag in self._stack:
                while self._stack.pop() != tag:
                    pass
            return
        self._stack.pop()
        if tag == "td" and self._cell is not None:
            self.rows[-1].cells.append(" ".join("".join(self._cell).split()))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)

    def close(self) -> None:
        super().close()
        if self._stack:
            self.problems.append(f"unclosed: {self._stack}")


def read_worklist(html: str) -> WorklistReader:
    reader = WorklistReader()
    reader.feed(html)
    reader.close()
    return reader
