"""`carepath synth`: seeded synthetic cohorts are deterministic, valid for the reference
pathway except for the lines meant to be rejected, and hold the mix benchmarks need."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from carepath.synth import BAD_KINDS, generate

ROOT = Path(__file__).resolve().parents[1]
PATHWAY = ROOT / "pathways" / "ketamine-iv.yaml"
AS_OF = "2026-03-05T17:00:00+00:00"


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "carepath.cli.main", *args], capture_output=True, text=True,
                          cwd=ROOT)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "c"
    proc = _cli("synth", "--patients", "300", "--seed", "5", "--out", str(out), "--bad-lines", "12")
    assert proc.returncode == 0, proc.stderr
    return out


def test_same_arguments_same_bytes(cohort: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    generate(again, patients=300, seed=5, bad_lines=12)
    for name in ("patients.jsonl", "events.jsonl", "synth.json"):
        assert (again / name).read_bytes() == (cohort / name).read_bytes(), name


def test_a_patient_does_not_depend_on_the_cohort_size(cohort: Path, tmp_path: Path) -> None:
    generate(tmp_path / "small", patients=20, seed=5)
    small = (tmp_path / "small" / "patients.jsonl").read_text().splitlines()
    assert small == (cohort / "patients.jsonl").read_text().splitlines()[:20]


def test_plan_rejects_exactly_the_intended_lines(cohort: Path) -> None:
    manifest = json.loads((cohort / "synth.json").read_text())
    proc = _cli("plan", str(PATHWAY), "--patients", str(cohort / "patients.jsonl"),
                "--events", str(cohort / "events.jsonl"), "--as-of", AS_OF)
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)
    assert len(plan["patients"]) == 300
    rejected = {(r["line"], r["id"]) for r in plan["rejected"]}
    bad = {(b["line"], b["id"]) for b in manifest["bad_lines"]}
    assert {b["kind"] for b in manifest["bad_lines"]} == set(BAD_KINDS)
    assert bad <= rejected
    assert {i for line, i in rejected - bad} == set(manifest["gap_violations"])
    assert all("minimum gap" in r["reason"] for r in plan["rejected"] if (r["line"], r["id"]) not in bad)


def test_the_mix_is_there(cohort: Path) -> None:
    manifest = json.loads((cohort / "synth.json").read_text())
    mix, by_type = manifest["mix"], manifest["events_by_type"]
    for kind in ("missed", "cancelled", "item9_positive", "relapse", "contraindicated", "records_pending",
                 "entered_maintenance", "gap_violation"):
        assert mix.get(kind, 0) > 0, kind
    assert by_type["task_completed"] > 0 and manifest["duplicate_lines"] > 0
    assert 20 <= manifest["event_lines"] / manifest["patients"] <= 36  # "about 30 events each"
    patients = [json.loads(line) for line in (cohort / "patients.jsonl").read_text().splitlines()]
    assert len(Counter(p.get("timezone") for p in patients)) >= 5
    assert all(p["patient"].startswith("p-") for p in patients)


def test_the_plan_shows_the_mix(cohort: Path) -> None:
    proc = _cli("plan", str(PATHWAY), "--patients", str(cohort / "patients.jsonl"),
                "--events", str(cohort / "events.jsonl"), "--as-of", AS_OF)
    plan = json.loads(proc.stdout)
    stages = Counter(p["stage"] for p in plan["patients"])
    assert {"screening", "initial_series", "maintenance"} <= set(stages)
    statuses = Counter(p["status"] for p in plan["patients"])
    assert {"active", "blocked", "pending_eligibility"} <= set(statuses)
    steps = Counter(t["step"] for p in plan["patients"] for t in p["tasks"])
    assert steps["suicide_risk_assessment"] > 0 and steps["missed_session_outreach"] > 0
    done = Counter(t["step"] for p in plan["patients"] for t in p["tasks"] if t["status"] == "done")
    assert done["integration_psychotherapy"] > 0  # task_completed events carry the engine's real ids


def test_the_committed_demo_is_what_its_readme_command_writes(tmp_path: Path) -> None:
    demo = ROOT / "examples" / "demo"
    assert "--patients 40 --seed 8 --out examples/demo --bad-lines 1" in (demo / "README.md").read_text()
    generate(tmp_path, patients=40, seed=8, bad_lines=1)
    for name in ("patients.jsonl", "events.jsonl", "synth.json"):
        assert (tmp_path / name).read_bytes() == (demo / name).read_bytes(), name


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    assert _cli("synth", "--patients", "0", "--seed", "1", "--out", str(tmp_path)).returncode == 2
    assert _cli("synth", "--patients", "5", "--seed", "1", "--out", str(tmp_path),
                "--as-of", "2026-03-05T17:00:00").returncode == 2
