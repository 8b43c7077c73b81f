"""Property: on random histories (seeded synthetic cohorts: completions, decisions, sent
letters, open safety work) and a generated pair of versions (the integration window
moved, maybe a step added, maybe a letter removed), migrating every patient

- reopens nothing that was done, sends no letter twice, loses no open safety work;
- leaves the ledger's current outputs equal to a fresh plan under the new version;
- changes exactly what the preview listed beforehand."""

from __future__ import annotations

import tempfile
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from carepath import api
from carepath.orchestrator.pinning import Migration
from carepath.orchestrator.release import preview
from carepath.sinks.ledger import default_url
from carepath.synth import generate
from pathway_variants import REFERENCE, edit, write_variant
from test_releases import OPEN, PATHWAY, WIDER, _applied, current, is_task, sends, sweep, withdrawals

ADDED_STEP = ("steps:\n", """steps:
  integration_follow_up_call:
    title: Follow-up call after integration
    role: psychotherapist
    window:
      due: 5d

""")
ADDED_ACTION = ("      - task: integration_psychotherapy\n      - letter: integration_reminder\n",
                "      - task: integration_psychotherapy\n      - task: integration_follow_up_call\n"
                "      - letter: integration_reminder\n")
REMOVED_LETTER = (("      - letter: integration_reminder\n", ""),
                  ("  integration_reminder:\n    template: integration_reminder\n", ""))


def new_version(hours: int, add_step: bool, remove_letter: bool) -> str:
    text = edit(REFERENCE.read_text(), WIDER[0], (WIDER[1][0], WIDER[1][1].replace("72h", f"{hours}h")))
    if add_step:
        text = edit(text, ADDED_STEP, ADDED_ACTION)
    if remove_letter:
        text = edit(text, *REMOVED_LETTER)
    return text


@pytest.mark.slow  # five migrations of the 40-patient demo cohort, each planned twice
@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), days=st.integers(20, 120), hours=st.sampled_from([30, 36, 60, 72, 96]),
       add_step=st.booleans(), remove_letter=st.booleans())
def test_migrating_every_patient(seed: int, days: int, hours: int, add_step: bool, remove_letter: bool) -> None:
    with tempfile.TemporaryDirectory(prefix="carepath-release-") as tmp:
        root = Path(tmp)
        start = datetime.fromisoformat("2026-01-05T09:00:00-05:00")
        as_of = start + timedelta(days=days)
        generate(root / "cohort", patients=6, seed=seed, start=start, as_of=as_of)
        patients, events = root / "cohort" / "patients.jsonl", root / "cohort" / "events.jsonl"
        old = write_variant(root / "v1", REFERENCE.read_text())
        new = write_variant(root / "v2", new_version(hours, add_step, remove_letter))
        safety = {name for name, step in api.load_pathway(old).steps.items() if step.safety}

        out = root / "out"
        sweep(old, out, patients=patients, events=events, as_of=as_of)
        before, sent_before = current(out), sends(out)
        migration = Migration(PATHWAY, "1.0.0", "1.1.0", None, "generated release")
        said = preview(new, migration, patients, events, default_url(out), as_of)
        summary = sweep(new, out, migration=migration, run="migrate", patients=patients, events=events, as_of=as_of)
        after, sent_after = current(out), sends(out)

        for tid, body in before.items():
            if is_task(body) and body["status"] == "done":
                assert after[tid]["status"] == "done", ("reopened", body)
            if is_task(body) and body["step"] in safety and body["status"] in OPEN:
                assert tid in after and after[tid]["status"] in (*OPEN, "done"), ("safety work lost", body)
        assert set(sent_before) <= set(sent_after)  # each kept with its first sent_at
        sent_ids = [i for _, i, _ in sent_after]
        assert len(sent_ids) == len(set(sent_ids))
        occurrences = [(after.get(i) or before[i])["letter"] + (after.get(i) or before[i])["trigger"]
                       for i in set(sent_ids)]
        assert len(occurrences) == len(set(occurrences))  # one letter per occurrence, across versions
        assert summary.letters_written == len(set(sent_ids)) - len({i for _, i, _ in sent_before})

        fresh = root / "fresh"
        sweep(new, fresh, patients=patients, events=events, as_of=as_of)
        assert after == current(fresh)  # the migrated ledger is what the new version plans afresh
        assert {i for _, i, _ in sends(fresh)} <= set(sent_ids)

        listed = {(t.change, t.task) for c in said.changes for t in c.tasks}
        listed |= {(f"letter {x.change}", x.letter) for c in said.changes for x in c.letters}
        assert listed == _applied(before, after, sent_before, sent_after)
        assert {(w["task"], w["why"]) for w in withdrawals(out)} == \
            {(t.task, t.why) for c in said.changes for t in c.tasks if t.change == "withdrawn"}
