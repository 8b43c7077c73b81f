"""The steps of a run as declared once (carepath.orchestrator.steps): the sequence hands
executors those declarations, the Prefect adapter retries exactly what they allow, and
the sweep asks the database (through the wake index) whose wake has come."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from pathlib import Path

import pytest
import sqlalchemy

from carepath.orchestrator import sequence, steps
from carepath.orchestrator.executor import InProcess
from carepath.orchestrator.spec import RunSpec
from carepath.orchestrator.steps import Step
from carepath.orchestrator.wake_index import WakeIndex
from carepath.sinks.ledger import Ledger, default_url

ROOT = Path(__file__).resolve().parents[1]
PATHWAY = ROOT / "pathways" / "ketamine-iv.yaml"
AS_OF = datetime.fromisoformat("2026-03-03T17:00:00+00:00")


class Recording(InProcess):
    def __init__(self) -> None:
        self.seen: list[Step] = []

    def call(self, step, fn, *args):  # noqa: ANN001, ANN201
        self.seen.append(step)
        return super().call(step, fn, *args)

    def map(self, step, fn, items):  # noqa: ANN001, ANN201
        self.seen.extend(step(item) for item in items)
        return super().map(step, fn, items)


def declared(step: Step) -> Step | None:
    """The registry's step `step` is (itself, or one of its per-shard or per-patient forms)."""
    for known in steps.STEPS:
        if step == known or (step.name.startswith(f"{known.name}-") and step == replace(known, name=step.name)):
            return known
    return None


def test_every_step_a_sweep_and_a_patient_replan_run_is_declared_with_its_policy(tmp_path: Path) -> None:
    spec = RunSpec.resolve(PATHWAY, tmp_path, AS_OF, "run-1", pdf=False)
    executor = Recording()
    sequence.sweep(spec, ROOT / "examples" / "patients.jsonl", ROOT / "examples" / "events.jsonl", executor,
                   export=True)
    sequence.replan_patient(spec, ROOT / "examples" / "patients.jsonl", ROOT / "examples" / "events.jsonl",
                            "p-001", executor)
    assert executor.seen and all(declared(s) is not None for s in executor.seen), executor.seen
    names = {declared(s) for s in executor.seen}
    assert {steps.PLAN_AND_EMIT, steps.WRITE_WORKLIST, steps.DELIVER_LETTERS, steps.REPLAN_PATIENT,
            steps.WRITE_PATIENT_RECORD, steps.EXPORT_DOCUMENTS} <= names


def test_a_step_that_is_not_idempotent_cannot_be_declared_retried() -> None:
    with pytest.raises(ValueError, match="not idempotent"):
        Step("send-twice", idempotent=False, retries=1)
    assert all(s.idempotent for s in steps.STEPS if s.retries)
    assert len({s.name for s in steps.STEPS}) == len(steps.STEPS)


def test_the_prefect_adapter_retries_each_step_as_declared() -> None:
    from carepath.runtime.flows import PrefectTasks

    tasks = PrefectTasks()
    for step in (*steps.STEPS, steps.PLAN_AND_EMIT.about("shard-0003"), steps.WRITE_WORKLIST.about("after-delivery")):
        task = tasks._task(step)
        assert (task.retries, task.retry_delay_seconds) == (step.retries, step.retry_delay_seconds), step
    assert tasks._task(steps.DELIVER_LETTERS).retries == 3
    assert tasks._task(steps.ANNOUNCE_FACTS).retries == 0  # announcing twice would page twice


def test_the_patients_whose_wake_has_come_are_found_through_the_wake_index(tmp_path: Path) -> None:
    ledger = Ledger(default_url(tmp_path))
    statements: list[tuple[str, object]] = []

    def seen(_conn, _cursor, statement, parameters, *_args) -> None:  # noqa: ANN001, ANN002
        statements.append((statement, parameters))

    sqlalchemy.event.listen(ledger.engine, "before_cursor_execute", seen)
    try:
        WakeIndex(ledger.engine, "ketamine-iv").due({}, AS_OF, "rules", full=False, sharing=lambda refs: set())
    finally:
        sqlalchemy.event.remove(ledger.engine, "before_cursor_execute", seen)
    woken = [(s, p) for s, p in statements if "wake <=" in s]
    assert len(woken) == 1
    with ledger.engine.connect() as conn:
        plan = " ".join(str(row[-1]) for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {woken[0][0]}", woken[0][1]))
    ledger.close()
    assert "ix_patient_state_wake" in plan, plan
