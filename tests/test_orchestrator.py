"""The orchestrator's sequence under its executors, and the run's context resolved once:
shards planned in worker processes give the same outputs as in this process, and a
pathway file edited while a run goes on does not change the rules that run plans under."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from carepath.orchestrator import sequence
from carepath.orchestrator.executor import InProcess, ProcessPool
from carepath.orchestrator.spec import RunSpec
from carepath.sinks.ledger import Ledger
from pathway_variants import edit, write_variant

ROOT = Path(__file__).resolve().parents[1]
PATHWAY = ROOT / "pathways" / "ketamine-iv.yaml"
COHORT = ROOT / "examples" / "demo"
AS_OF = datetime.fromisoformat("2026-03-05T17:00:00+00:00")


def files(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and "ledger" not in p.name}


def test_shards_in_worker_processes_emit_what_one_process_emits(tmp_path: Path) -> None:
    runs = {}
    for name, executor in (("in-process", InProcess()), ("pool", ProcessPool(2))):
        out = tmp_path / name
        spec = RunSpec.resolve(PATHWAY, out, AS_OF, "run", pdf=False)
        summary = sequence.sweep(spec, COHORT / "patients.jsonl", COHORT / "events.jsonl", executor, shard_size=7,
                                 export=True, bundle=True)
        runs[name] = (summary.as_json(), files(out))
    assert runs["pool"][0]["shards"] == 6  # 40 patients, 7 a shard: the pool really had shards to share
    assert runs["pool"] == runs["in-process"]
    assert runs["pool"][0]["letters_written"] > 0 and runs["pool"][0]["outputs"]["new"] > 0


def test_a_pathway_edited_during_a_run_does_not_change_its_rules(tmp_path: Path) -> None:
    original = PATHWAY.read_text()
    pathway = write_variant(tmp_path, original)
    spec = RunSpec.resolve(pathway, tmp_path / "out", AS_OF, "run", pdf=False)
    edited = edit(original, ("version: 1.0.0", "version: 1.0.1"))
    pathway.write_text(edited)  # e.g. a merge lands while the sweep is running
    sequence.sweep(spec, COHORT / "patients.jsonl", COHORT / "events.jsonl", ProcessPool(2), shard_size=10,
                   export=True, bundle=True)
    tasks = [json.loads(line) for line in (tmp_path / "out" / "tasks.jsonl").read_text().splitlines()]
    assert {t["pathway_version"] for t in tasks} == {"1.0.0"}
    ledger = Ledger(spec.ledger_url)
    try:
        assert ledger.archived_source("ketamine-iv", "1.0.0") == original
        assert ledger.pins("ketamine-iv", ["p-000001"]) == {"p-000001": "1.0.0"}
    finally:
        ledger.close()
