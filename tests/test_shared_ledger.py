"""Two pathways sharing one ledger database (what docs/operations.md recommends for a
clinic that runs several): each run's output folder holds its own pathway's work only,
and a ledger written before outputs were scoped by pathway keeps working."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import sqlalchemy

from carepath import api
from carepath.orchestrator import sequence
from carepath.orchestrator.spec import RunSpec
from carepath.sinks.ledger import Ledger

ROOT = Path(__file__).resolve().parents[1]
KETAMINE = (str(ROOT / "pathways" / "ketamine-iv.yaml"), ROOT / "examples" / "demo")
ESKETAMINE = (str(ROOT / "pathways" / "esketamine-spravato.yaml"), ROOT / "examples" / "esketamine")
AS_OF = datetime.fromisoformat("2026-03-05T17:00:00+00:00")


def sweep(pathway: str, cohort_dir: Path, out: Path, url: str, run: str, patients: Path | None = None,
          events: Path | None = None) -> None:
    """A sweep of one pathway's cohort into its own folder, recording into the shared ledger."""
    sequence.sweep(RunSpec.resolve(pathway, out, AS_OF, run, ledger_url=url, pdf=False),
                   patients or cohort_dir / "patients.jsonl", events or cohort_dir / "events.jsonl", shard_size=500,
                   export=True, bundle=True)


def refs_in(out: Path) -> dict[str, set[str]]:
    """The patient refs each cohort-wide document of a folder mentions."""
    tasks = {json.loads(line)["patient"] for line in (out / "tasks.jsonl").read_text().splitlines()}
    letters = {json.loads(line)["patient"] for line in (out / "letters.jsonl").read_text().splitlines()}
    bundle = json.loads((out / "fhir" / "bundle.json").read_text())
    fhir = {e["resource"]["subject"]["reference"].removeprefix("Patient/") for e in bundle["entry"]
            if "subject" in e["resource"]}
    worklist = (out / "worklist.html").read_text()
    return {"tasks.jsonl": tasks, "letters.jsonl": letters, "fhir": fhir,
            "worklist": {ref for ref in tasks | letters | fhir if ref in worklist}}


def cohort_refs(cohort_dir: Path) -> set[str]:
    return {json.loads(line)["patient"] for line in (cohort_dir / "patients.jsonl").read_text().splitlines()}


def test_two_pathways_on_one_ledger_keep_their_cohorts_apart(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.sqlite'}"
    ketamine_out, esketamine_out = tmp_path / "ketamine", tmp_path / "esketamine"
    sweep(*KETAMINE, ketamine_out, url, "run-k")
    sweep(*ESKETAMINE, esketamine_out, url, "run-e")
    sweep(*KETAMINE, ketamine_out, url, "run-k2")  # after the other pathway wrote into the ledger
    ketamine_refs, esketamine_refs = cohort_refs(KETAMINE[1]), cohort_refs(ESKETAMINE[1])
    assert not ketamine_refs & esketamine_refs
    for out, own in ((ketamine_out, ketamine_refs), (esketamine_out, esketamine_refs)):
        found = refs_in(out)
        for document, refs in found.items():
            assert refs, (out.name, document)
            assert refs <= own, (out.name, document, sorted(refs - own)[:5])
    tasks = [json.loads(line) for line in (esketamine_out / "tasks.jsonl").read_text().splitlines()]
    assert {t["id"] for t in tasks}.isdisjoint(
        json.loads(line)["id"] for line in (ketamine_out / "tasks.jsonl").read_text().splitlines())
    ledger = Ledger(url)
    try:
        assert ledger.counts("esketamine-spravato")["task"] == len(tasks)
    finally:
        ledger.close()


def _renamed(cohort_dir: Path, to: dict[str, str], folder: Path) -> tuple[Path, Path]:
    """The cohort with its refs replaced (so it shares refs with the other pathway's cohort)."""
    folder.mkdir()
    paths = []
    for name in ("patients.jsonl", "events.jsonl"):
        text = (cohort_dir / name).read_text()
        for old, new in to.items():
            text = text.replace(f'"{old}"', f'"{new}"')
        (folder / name).write_text(text)
        paths.append(folder / name)
    return paths[0], paths[1]


def test_a_patient_ref_in_both_pathways_keeps_each_pathways_plan(tmp_path: Path) -> None:
    # The same pseudonymous ref enrolled in both pathways: each pathway's run must neither
    # retire nor overwrite the other's outputs (its care-plan summary has the same id).
    url = f"sqlite:///{tmp_path / 'shared.sqlite'}"
    shared = {f"sp-00{i}": f"p-00000{i}" for i in range(1, 5)}
    patients, events = _renamed(ESKETAMINE[1], shared, tmp_path / "renamed")
    ketamine_out, esketamine_out = tmp_path / "ketamine", tmp_path / "esketamine"
    sweep(*KETAMINE, ketamine_out, url, "run-k")
    before = (ketamine_out / "tasks.jsonl").read_bytes(), (ketamine_out / "fhir" / "bundle.json").read_bytes()
    sweep(*ESKETAMINE, esketamine_out, url, "run-e", patients, events)
    sweep(*KETAMINE, ketamine_out, url, "run-k2")
    assert (ketamine_out / "tasks.jsonl").read_bytes() == before[0]
    assert (ketamine_out / "fhir" / "bundle.json").read_bytes() == before[1]
    esketamine_tasks = [json.loads(line) for line in (esketamine_out / "tasks.jsonl").read_text().splitlines()]
    assert {t["patient"] for t in esketamine_tasks} <= set(shared.values())
    steps = {s.name for s in api.load_pathway(ESKETAMINE[0]).steps.values()}
    assert {t["step"] for t in esketamine_tasks} <= steps


def _unscope(url: str) -> None:
    """Turn a ledger back into the shape it had before outputs were keyed by pathway."""
    engine = sqlalchemy.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sqlalchemy.text("ALTER TABLE outputs RENAME TO outputs_new"))
        conn.execute(sqlalchemy.text(
            "CREATE TABLE outputs (id VARCHAR(80) NOT NULL PRIMARY KEY, kind VARCHAR(16) NOT NULL, "
            "patient VARCHAR(200) NOT NULL, pathway VARCHAR(200) NOT NULL, digest VARCHAR(64) NOT NULL, "
            "body TEXT NOT NULL, retired INTEGER NOT NULL, first_run VARCHAR(64) NOT NULL, "
            "updated_run VARCHAR(64) NOT NULL)"))
        conn.execute(sqlalchemy.text("CREATE INDEX ix_outputs_patient ON outputs (patient)"))
        conn.execute(sqlalchemy.text("INSERT INTO outputs SELECT id, kind, patient, pathway, digest, body, "
                                     "retired, first_run, updated_run FROM outputs_new"))
        conn.execute(sqlalchemy.text("DROP TABLE outputs_new"))
        conn.execute(sqlalchemy.text("DROP TABLE document_snapshots"))
        # Before the ledger had migrations: no version table, its own one-time flags in `meta`.
        conn.execute(sqlalchemy.text("DROP TABLE carepath_ledger_version"))
        conn.execute(sqlalchemy.text('CREATE TABLE meta ("key" VARCHAR(64) NOT NULL PRIMARY KEY, '
                                     "value INTEGER NOT NULL)"))
        conn.execute(sqlalchemy.text("INSERT INTO meta VALUES ('generation', 7), ('letter_sends_adopted', 1)"))
        conn.execute(sqlalchemy.text("CREATE TABLE snapshots (sink VARCHAR(64) NOT NULL PRIMARY KEY, "
                                     "state VARCHAR(200) NOT NULL, run VARCHAR(64) NOT NULL)"))
    engine.dispose()


def test_a_ledger_from_before_pathway_scoping_is_adopted(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.sqlite'}"
    ketamine_out, esketamine_out = tmp_path / "ketamine", tmp_path / "esketamine"
    sweep(*KETAMINE, ketamine_out, url, "run-k")
    sweep(*ESKETAMINE, esketamine_out, url, "run-e")
    expected = {out: (out / "tasks.jsonl").read_bytes() for out in (ketamine_out, esketamine_out)}
    sent = (esketamine_out / "letters.jsonl").read_bytes()
    _unscope(url)
    for out in expected:
        (out / "tasks.jsonl").unlink()
    sweep(*ESKETAMINE, esketamine_out, url, "after-upgrade")
    sweep(*KETAMINE, ketamine_out, url, "after-upgrade")
    assert {out: (out / "tasks.jsonl").read_bytes() for out in expected} == expected
    assert (esketamine_out / "letters.jsonl").read_bytes() == sent  # nothing sent twice, nothing lost
    engine = sqlalchemy.create_engine(url)
    try:
        pk = sqlalchemy.inspect(engine).get_pk_constraint("outputs")["constrained_columns"]
        assert sorted(pk) == ["id", "pathway"]
        assert not {"outputs_unscoped", "meta", "snapshots"} & set(sqlalchemy.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_one_pathways_run_leaves_the_others_documents_as_they_were(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.sqlite'}"
    ketamine_out, esketamine_out = tmp_path / "ketamine", tmp_path / "esketamine"
    sweep(*ESKETAMINE, esketamine_out, url, "run-e")
    sweep(*KETAMINE, ketamine_out, url, "run-k")
    written = {p: p.stat().st_mtime_ns for p in esketamine_out.rglob("*") if p.is_file() and "ledger" not in p.name}
    later = datetime.fromisoformat("2026-03-20T17:00:00+00:00")  # ketamine's tasks fall overdue, letters due
    sequence.sweep(RunSpec.resolve(KETAMINE[0], ketamine_out, later, "run-k2", ledger_url=url, pdf=False),
                   KETAMINE[1] / "patients.jsonl", KETAMINE[1] / "events.jsonl")
    summary = sequence.sweep(RunSpec.resolve(ESKETAMINE[0], esketamine_out, AS_OF, "run-e2", ledger_url=url, pdf=False),
                             ESKETAMINE[1] / "patients.jsonl", ESKETAMINE[1] / "events.jsonl")
    assert summary.as_json()["documents_rewritten"] == []
    assert {p: p.stat().st_mtime_ns for p in written} == written
