"""Version pinning: an enrolled patient keeps the rules they enrolled under until an
explicit migration moves them; what cannot be honoured is refused, never switched."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import delete

from carepath import api
from carepath.orchestrator import emission, sequence
from carepath.orchestrator.pinning import Migration, VersionReused, read_migration
from carepath.orchestrator.spec import RunSpec
from carepath.sinks.ledger import Ledger, default_url, versions_table
from pathway_variants import REFERENCE, edit, write_variant

ROOT = Path(__file__).resolve().parents[1]
PATIENTS = ROOT / "examples" / "patients.jsonl"
EVENTS = ROOT / "examples" / "events.jsonl"
AS_OF = datetime.fromisoformat("2026-03-03T17:00:00+00:00")

WIDER = (("version: 1.0.0", "version: 1.1.0"),
         ("  integration_due:                       # [CLINIC] upper bound of the integration window\n    value: 48h",
          "  integration_due:                       # [CLINIC] upper bound of the integration window\n    value: 72h"))


def sweep(pathway: Path, out: Path, patients: Path = PATIENTS, migration: Migration | None = None,
          run: str = "run") -> emission.RunSummary:
    """The sweep flow's sequence, in this process."""
    return sequence.sweep(RunSpec.resolve(pathway, out, AS_OF, run, pdf=False, migration=migration), patients, EVENTS,
                          export=True, bundle=True)



def integration_tasks(out: Path) -> dict[str, dict]:
    rows = [json.loads(l) for l in (out / "tasks.jsonl").read_text().splitlines()]
    return {t["patient"]: t for t in rows if t["step"] == "integration_psychotherapy"}


@pytest.fixture
def versions(tmp_path: Path) -> tuple[Path, Path]:
    old = write_variant(tmp_path / "v1", REFERENCE.read_text())
    new = write_variant(tmp_path / "v2", edit(REFERENCE.read_text(), *WIDER))
    return old, new


def hours(task: dict) -> float:
    return (datetime.fromisoformat(task["due"]) - datetime.fromisoformat(task["earliest"])).total_seconds() / 3600


def test_a_pinned_patient_keeps_the_version_they_enrolled_under(versions, tmp_path: Path) -> None:
    old, new = versions
    out = tmp_path / "out"
    sweep(old, out)
    before = integration_tasks(out)["p-001"]
    assert before["pathway_version"] == "1.0.0" and hours(before) == 24

    newcomer = tmp_path / "patients.jsonl"
    newcomer.write_text(PATIENTS.read_text() + json.dumps(
        {"patient": "p-003", "given_name": "Neu", "family_name": "Kommer", "timezone": "America/New_York"}) + "\n")
    reports = sweep(new, out, patients=newcomer, run="after-upgrade")
    after = integration_tasks(out)["p-001"]
    assert after == before  # same rules, same window, same version
    assert reports.recorded.changed == 0
    ledger = Ledger(default_url(out))
    assert ledger.pins("ketamine-iv", ["p-001", "p-002", "p-003"]) == {
        "p-001": "1.0.0", "p-002": "1.0.0", "p-003": "1.1.0"}
    ledger.close()


def test_an_explicit_migration_moves_patients_to_the_new_version(versions, tmp_path: Path) -> None:
    old, new = versions
    out = tmp_path / "out"
    sweep(old, out)
    migration = Migration("ketamine-iv", "1.0.0", "1.1.0", frozenset({"p-001"}), "window widened; signed off")
    reports = sweep(new, out, migration=migration, run="migrate")
    moved = integration_tasks(out)["p-001"]
    assert moved["pathway_version"] == "1.1.0" and hours(moved) == 48  # 24 h opens → 72 h due
    assert reports.recorded.changed > 0
    ledger = Ledger(default_url(out))
    assert ledger.pins("ketamine-iv", ["p-001", "p-002"]) == {"p-001": "1.1.0", "p-002": "1.0.0"}
    ledger.close()


def test_a_pin_that_cannot_be_honoured_is_refused_with_the_way_out(versions, tmp_path: Path) -> None:
    old, new = versions
    out = tmp_path / "out"
    sweep(old, out)
    before = integration_tasks(out)["p-001"]
    ledger = Ledger(default_url(out))
    with ledger.engine.begin() as conn:  # e.g. a ledger restored without its archive
        conn.execute(delete(versions_table).where(versions_table.c.version == "1.0.0"))
    ledger.close()
    sweep(new, out, run="refused")
    rejected = [json.loads(line) for line in (out / "rejected.jsonl").read_text().splitlines()]
    refused = [r for r in rejected if r["file"] == "pins"]
    assert {r["id"] for r in refused} == {"p-001", "p-002"}
    assert "pinned to ketamine-iv 1.0.0" in refused[0]["reason"] and "--migration" in refused[0]["reason"]
    assert integration_tasks(out)["p-001"] == before  # nothing switched to 1.1.0 behind anyone's back


def test_the_same_version_with_different_rules_is_refused(versions, tmp_path: Path) -> None:
    old, _ = versions
    out = tmp_path / "out"
    sweep(old, out)
    changed = write_variant(tmp_path / "v1b", edit(REFERENCE.read_text(), WIDER[1]))
    with pytest.raises(VersionReused, match="give the changed pathway a new version"):
        sweep(changed, out, run="same-version")


def test_a_migration_file_is_read_and_its_mistakes_positioned(tmp_path: Path) -> None:
    good = tmp_path / "m.yaml"
    good.write_text('pathway: ketamine-iv\nfrom: "1.0.0"\nto: "1.1.0"\npatients: all\nreason: widened window\n')
    assert read_migration(good) == Migration("ketamine-iv", "1.0.0", "1.1.0", None, "widened window")
    bad = tmp_path / "bad.yaml"
    bad.write_text('pathway: ketamine-iv\nfrom: "1.0.0"\npatients: [p-001]\nreason: x\nwhy: typo\n')
    with pytest.raises(api.InvalidInput) as caught:
        read_migration(bad)
    rendered = [d.render() for d in caught.value.diagnostics]
    assert any("'to' is missing" in r for r in rendered)
    assert any(r.startswith(f"{bad}:5:1:") and "unknown key 'why'" in r for r in rendered)
