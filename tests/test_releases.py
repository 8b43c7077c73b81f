"""Rolling a new pathway version out to patients in flight: ids without the version, the
preview, applying it, and ledgers written when ids still hashed the version.

The history is the demo cohort's (examples/demo: completions, decisions, sent letters,
open suicide-risk assessments), not a history without completions."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from pathlib import Path

import orjson
import pytest
import sqlalchemy
from sqlalchemy import select, text

from carepath.engine.ids import legacy_output_id, output_id
from carepath.orchestrator import sequence
from carepath.orchestrator.pinning import Migration
from carepath.orchestrator.release import preview
from carepath.orchestrator.release_format import format_markdown, format_text
from carepath.orchestrator.spec import RunSpec
from carepath.sinks.base import OutputKind
from carepath.sinks.ledger import Ledger, default_url, sends_table
from carepath.testing.rekey import _recording_plans
from pathway_variants import REFERENCE, edit, write_variant

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "examples" / "demo"
AS_OF = datetime.fromisoformat("2026-03-05T17:00:00+00:00")  # the Quick start's as-of
PATHWAY = "ketamine-iv"
WIDER = (("version: 1.0.0", "version: 1.1.0"),
         ("  integration_due:                       # [CLINIC] upper bound of the integration window\n    value: 48h",
          "  integration_due:                       # [CLINIC] upper bound of the integration window\n    value: 72h"))
OPEN = ("open", "overdue")


def sweep(pathway: Path, out: Path, *, migration: Migration | None = None, run: str = "run",
          patients: Path = DEMO / "patients.jsonl", events: Path = DEMO / "events.jsonl", as_of: datetime = AS_OF):
    return sequence.sweep(RunSpec.resolve(pathway, out, as_of, run, pdf=False, migration=migration), patients, events)


def current(out: Path) -> dict[str, dict]:
    ledger = Ledger(default_url(out))
    try:
        return {o.id: dict(o.body) for o in ledger.current(PATHWAY, [OutputKind.TASK, OutputKind.LETTER])}
    finally:
        ledger.close()


def sends(out: Path) -> list[tuple[str, str, str]]:
    ledger = Ledger(default_url(out))
    try:
        with ledger.engine.connect() as conn:
            return sorted(conn.execute(select(sends_table.c.channel, sends_table.c.output_id,
                                              sends_table.c.sent_at)).all())
    finally:
        ledger.close()


def withdrawals(out: Path) -> list[dict[str, str]]:
    ledger = Ledger(default_url(out))
    try:
        return ledger.withdrawals(PATHWAY)
    finally:
        ledger.close()


def is_task(body: dict) -> bool:
    return "step" in body


@pytest.fixture(scope="module")
def versions(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("versions")
    return (write_variant(root / "v1", REFERENCE.read_text()),
            write_variant(root / "v2", edit(REFERENCE.read_text(), *WIDER)))


def test_ids_do_not_depend_on_the_version() -> None:
    assert output_id("t", PATHWAY, "p-1", "integration_psychotherapy", "session:s-1") == \
        output_id("t", PATHWAY, "p-1", "integration_psychotherapy", "session:s-1")
    assert legacy_output_id("t", PATHWAY, "1.0.0", "p-1", "x", "k") != \
        legacy_output_id("t", PATHWAY, "1.1.0", "p-1", "x", "k")
    assert output_id("t", PATHWAY, "p-1", "x", "k") != output_id("t", PATHWAY, "p-2", "x", "k")


def test_an_events_file_with_version_hashed_ids_plans_as_one_with_todays_ids(tmp_path: Path) -> None:
    """Events files written before ids dropped the version keep their ids for ever: every
    completion and decision in them still closes its task."""
    from carepath import api
    from carepath.orchestrator.planning import plan_cohort, read_cohort

    compiled = api.load_pathway(REFERENCE)
    mapping = _recording_plans(compiled, DEMO / "patients.jsonl", DEMO / "events.jsonl", None)
    new_to_old = {new: old for old, new in mapping.items() if old != new}
    legacy = tmp_path / "events.jsonl"
    raw = (DEMO / "events.jsonl").read_text()
    named = [i for i in new_to_old if i in raw]
    assert len(named) > 100  # the demo's completions and decisions
    for new in named:
        raw = raw.replace(new, new_to_old[new])
    legacy.write_text(raw)

    def planned(events: Path) -> tuple[list, list]:
        cohort = read_cohort(compiled, DEMO / "patients.jsonl", events)
        plans = [p.as_json(compiled.version) for p in plan_cohort(compiled, cohort, AS_OF)]
        return plans, [r.as_json() for r in cohort.rejected]

    assert planned(legacy) == planned(DEMO / "events.jsonl")


def test_moving_the_demo_to_a_wider_integration_window(versions, tmp_path: Path) -> None:
    """Done when: bumping the integration window 48 h → 72 h and migrating every patient
    reopens nothing, sends nothing twice, moves exactly the open integration tasks' dues,
    and the preview said so beforehand."""
    old, new = versions
    out = tmp_path / "out"
    sweep(old, out)
    before, sent_before = current(out), sends(out)
    assert any(is_task(b) and b["status"] == "done" for b in before.values())
    assert sent_before

    migration = Migration(PATHWAY, "1.0.0", "1.1.0", None, "integration window 72 h; signed off by the lead")
    said = preview(new, migration, DEMO / "patients.jsonl", DEMO / "events.jsonl", default_url(out), AS_OF)
    summary = sweep(new, out, migration=migration, run="migrate")
    after, sent_after = current(out), sends(out)

    # Nothing sent again: the outbox is as it was, and the run wrote no letter.
    assert sent_after == sent_before and summary.letters_written == 0
    # Nothing done reopens; every task the old plan had, the new one has under the same id.
    for tid, body in before.items():
        if is_task(body) and body["status"] == "done":
            assert after[tid]["status"] == "done", body
    moved = {tid for tid, b in after.items() if is_task(b) and tid in before
             and before[tid]["status"] in OPEN and b["status"] in OPEN and b["due"] != before[tid]["due"]}
    open_integration = {tid for tid, b in before.items() if is_task(b) and b["step"] == "integration_psychotherapy"
                        and b["status"] in OPEN}
    assert moved == open_integration and moved
    for tid in moved:
        shift = datetime.fromisoformat(after[tid]["due"]) - datetime.fromisoformat(before[tid]["due"])
        assert shift.total_seconds() == 24 * 3600
    # The preview listed exactly what the move changed.
    applied = _applied(before, after, sent_before, sent_after)
    listed = {(t.change, t.task) for c in said.changes for t in c.tasks}
    listed |= {(f"letter {x.change}", x.letter) for c in said.changes for x in c.letters}
    assert listed == applied
    assert said.covered == 40 and said.totals["tasks moved"] == len(moved)
    assert "tasks reopened" not in said.totals
    words = format_text(said)
    assert f"{len(moved)} tasks moved" in words and "(24 h later)" in words
    assert "| tasks moved |" in format_markdown(said)


def _applied(before: dict, after: dict, sent_before: list, sent_after: list) -> set[tuple[str, str]]:
    """What a migration changed in the ledger, in the preview's terms."""
    changed: set[tuple[str, str]] = set()
    for tid, b in after.items():
        if not is_task(b) or b["status"] not in OPEN:
            continue
        was = before.get(tid)
        if was is None or was["status"] == "cancelled":
            changed.add(("added", tid))
        elif was["status"] == "done":
            changed.add(("reopened", tid))
        elif was["due"] != b["due"]:
            changed.add(("moved", tid))
    for tid, b in before.items():
        if is_task(b) and b["status"] in OPEN and (tid not in after or after[tid]["status"] == "cancelled"):
            changed.add(("withdrawn", tid))
    sent_ids_before = {i for _, i, _ in sent_before}
    changed |= {("letter send", i) for _, i, _ in sent_after if i not in sent_ids_before}
    for lid, b in before.items():
        if not is_task(b) and b["status"] in ("scheduled", "due") and lid not in sent_ids_before and (
                lid not in after or after[lid]["status"] not in ("scheduled", "due")):
            changed.add(("letter withdrawn", lid))
    return changed


def _age(out: Path) -> dict[str, str]:
    """Turn a ledger into one written when ids hashed the version (revision 0003, the
    last before 0004): every stored id, body id and send back to its version-hashed id."""
    from carepath import api

    compiled = api.load_pathway(REFERENCE)
    mapping = _recording_plans(compiled, DEMO / "patients.jsonl", DEMO / "events.jsonl", AS_OF)
    old_of = {new: old for old, new in mapping.items()}
    ledger = Ledger(default_url(out))
    with ledger.engine.begin() as conn:
        for pathway, oid, body in conn.execute(text("SELECT pathway, id, body FROM outputs")).all():
            legacy = old_of.get(oid)
            if legacy is None:
                continue
            data = orjson.loads(body)
            data["id"] = legacy
            digest = hashlib.sha256(orjson.dumps(data, option=orjson.OPT_SORT_KEYS)).hexdigest()[:32]
            conn.execute(text("UPDATE outputs SET id = :n, body = :b, digest = :d WHERE pathway = :p AND id = :o"),
                         {"n": legacy, "b": orjson.dumps(data).decode(), "d": digest, "p": pathway, "o": oid})
            conn.execute(text("UPDATE letter_sends SET output_id = :n WHERE output_id = :o"), {"n": legacy, "o": oid})
        for table in ("pathway_migrations", "migration_withdrawals", "notified_facts"):  # added by 0004, 0005
            conn.execute(text(f"DROP TABLE {table}"))
        conn.execute(text("UPDATE carepath_ledger_version SET version_num = '0003'"))
    ledger.close()
    return old_of


def test_a_ledger_from_before_is_re_keyed_and_sends_nothing_again(versions, tmp_path: Path) -> None:
    old, _ = versions
    out = tmp_path / "out"
    sweep(old, out)
    before, sent_before = current(out), sends(out)
    old_of = _age(out)
    letters = [lid for lid, b in before.items() if not is_task(b)]
    raw = sqlalchemy.create_engine(default_url(out))
    with raw.connect() as conn:  # not through Ledger, which would upgrade it
        assert {i for (i,) in conn.execute(text("SELECT output_id FROM letter_sends"))} == \
            {old_of[i] for _, i, _ in sent_before}
    raw.dispose()

    # Opening the ledger runs revision 0004: every output and send is back under today's id.
    assert sends(out) == sent_before
    assert current(out) == before
    assert letters

    summary = sweep(old, out, run="after-upgrade")  # every patient re-planned once
    assert summary.replanned == 40
    assert summary.letters_written == 0 and sends(out) == sent_before
    assert (summary.recorded.new, summary.recorded.changed, summary.recorded.retired) == (0, 0, 0)
    assert current(out) == before


def test_preview_words_and_formats(versions, tmp_path: Path) -> None:
    old, new = versions
    out = tmp_path / "out"
    sweep(old, out)
    migration = Migration(PATHWAY, "1.0.0", "1.1.0", frozenset({"p-000001", "p-999999"}), "window widened")
    said = preview(new, migration, DEMO / "patients.jsonl", DEMO / "events.jsonl", default_url(out), AS_OF)
    assert said.covered == 1 and said.not_pinned == 1
    assert "reason: window widened" in format_text(said)
    data = said.as_json()
    assert json.loads(json.dumps(data))["patients_moved"] == 1


# --- fail early: validate (and the pre-commit hook) against Git's HEAD; the sweep's reason ---


def _git(repo: Path, *args: str) -> None:
    import subprocess

    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.org", *args], cwd=repo, check=True,
                   capture_output=True)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = write_variant(tmp_path / "repo", REFERENCE.read_text())
    _git(tmp_path / "repo", "init", "-q")
    _git(tmp_path / "repo", "add", ".")
    _git(tmp_path / "repo", "commit", "-qm", "1.0.0")
    return path


def _validate(path: Path, *extra: str) -> tuple[int, str]:
    import contextlib
    import io

    from carepath.cli.main import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        code = main(["validate", "-q", *extra, str(path)])
    return code, out.getvalue()


def test_validate_catches_a_changed_pathway_whose_version_did_not_change(repo: Path) -> None:
    assert _validate(repo) == (0, "")  # unchanged since HEAD
    changed = edit(REFERENCE.read_text(), WIDER[1])
    repo.write_text(changed)
    code, printed = _validate(repo)
    line = next(n for n, text in enumerate(changed.splitlines(), 1) if text.startswith("version:"))
    assert code == 1 and f"{repo}:{line}:10: CP701 " in printed and "still 1.0.0" in printed
    assert "give the changed pathway a new version" in printed
    assert _validate(repo, "--no-git")[0] == 0
    _git(repo.parents[1], "add", ".")  # what the pre-commit hook sees: the staged file against HEAD
    assert _validate(repo)[0] == 1
    repo.write_text(edit(REFERENCE.read_text(), *WIDER))  # bumped: fine
    assert _validate(repo) == (0, "")


def test_validate_outside_git_and_on_new_files_compares_nothing(tmp_path: Path, repo: Path) -> None:
    outside = write_variant(tmp_path / "plain", edit(REFERENCE.read_text(), WIDER[1]))
    assert _validate(outside) == (0, "")
    new = repo.parent / "copy.yaml"  # not in HEAD
    new.write_text(REFERENCE.read_text())
    assert _validate(new) == (0, "")


def test_a_refused_version_reaches_prefect_with_its_reason() -> None:
    from carepath.orchestrator.pinning import VersionReused
    from carepath.runtime.flows import Withheld, _withheld

    with pytest.raises(VersionReused, match="give the changed pathway a new version"):
        with _withheld("archive-pathway-version"):
            raise VersionReused("ketamine-iv version 1.0.0 was run before with different rules; "
                                "give the changed pathway a new version")
    with pytest.raises(Withheld):  # anything else still keeps its message out of Prefect
        with _withheld("plan-and-emit"):
            raise ValueError("Ada Byron")


# --- the versions in force are visible: worklist, run summary, artifacts ----------------


def test_patients_left_on_an_older_version_are_counted_and_said_once(versions, tmp_path: Path) -> None:
    from carepath.orchestrator.sequence import versions_note
    from carepath.runtime.artifacts import markdown

    old, new = versions
    out = tmp_path / "out"
    sweep(old, out)
    notes: list[str] = []
    summary = sequence.sweep(RunSpec.resolve(new, out, AS_OF, "bumped", pdf=False), DEMO / "patients.jsonl",
                             DEMO / "events.jsonl", log=notes.append)
    assert summary.versions == {"1.0.0": 40} and summary.older == 40
    data = summary.as_json()
    assert data["versions_in_force"] == {"1.0.0": 40} and data["patients_on_older_versions"] == 40
    assert [n for n in notes if "older" in n] == [versions_note(data)]
    assert "40 patient(s) stay on an older ketamine-iv version than 1.1.0 (1.0.0: 40)" in versions_note(data)
    assert "- pathway versions in force: 1.0.0 40 patient(s) (40 on an older version than 1.1.0)" in \
        markdown(summary, out)
    page = (out / "worklist.html").read_text()
    assert 'id="versions"' in page and "<code>1.0.0</code> 40" in page and "40 stay on an older version" in page

    migration = Migration(PATHWAY, "1.0.0", "1.1.0", None, "window widened")
    moved = sweep(new, out, migration=migration, run="migrate")
    assert moved.versions == {"1.1.0": 40} and moved.older == 0
    page = (out / "worklist.html").read_text()
    assert "Patients by pathway version: <code>1.1.0</code> 40." in page and "older version" not in page


# --- the migration file: documented example, schema, reader ----------------------------


def test_the_documented_migration_file_is_valid_for_the_schema_and_the_reader(tmp_path: Path) -> None:
    import re

    import jsonschema
    import yaml

    from carepath.orchestrator.pinning import read_migration

    doc = (ROOT / "docs" / "migration-file.md").read_text()
    example = re.search(r"```yaml\n(.*?)```", doc, re.S).group(1)
    schema = json.loads((ROOT / "schemas" / "migration.schema.json").read_text())
    jsonschema.validate(yaml.safe_load(example), schema)
    path = tmp_path / "migration.yaml"
    path.write_text(example)
    migration = read_migration(path)
    assert migration.steps == {"integration_psychotherapy": ("integration_session",),
                               "safety_review": ("safety_review_nurse", "safety_review_md")}
    assert migration.patients is None and migration.from_version == "1.0.0"
    bad = yaml.safe_load(example) | {"to": "next", "steps": {"x": []}}
    assert len(list(jsonschema.Draft202012Validator(schema).iter_errors(bad))) == 2


def test_a_renamed_step_mapped_in_the_migration_keeps_its_completions(versions, tmp_path: Path) -> None:
    old, _ = versions
    renamed = write_variant(tmp_path / "v2", edit(REFERENCE.read_text(), WIDER[0]).replace(
        "integration_psychotherapy", "integration_session"))
    out = tmp_path / "out"
    sweep(old, out)
    before = current(out)
    done_before = {b["trigger"] for b in before.values()
                   if is_task(b) and b["step"] == "integration_psychotherapy" and b["status"] == "done"}
    open_before = {tid for tid, b in before.items()
                   if is_task(b) and b["step"] == "integration_psychotherapy" and b["status"] in OPEN}
    assert done_before and open_before
    migration = Migration(PATHWAY, "1.0.0", "1.1.0", None, "step renamed",
                          {"integration_psychotherapy": ("integration_session",)})
    said = preview(renamed, migration, DEMO / "patients.jsonl", DEMO / "events.jsonl", default_url(out), AS_OF)
    withdrawn = {t.task: t.why for c in said.changes for t in c.tasks if t.change == "withdrawn"}
    assert set(withdrawn) == open_before
    assert all(why == "step integration_psychotherapy became integration_session (step renamed)"
               for why in withdrawn.values())
    summary = sweep(renamed, out, migration=migration, run="migrate")
    after = current(out)
    assert summary.letters_written == 0
    done_after = {b["trigger"] for b in after.values()
                  if is_task(b) and b["step"] == "integration_session" and b["status"] == "done"}
    assert done_after == done_before  # every completion recorded under the old step still counts
    assert not any(is_task(b) and b["step"] == "integration_psychotherapy" for b in after.values())
    listed = {(t.change, t.task) for c in said.changes for t in c.tasks}
    assert listed == _applied(before, after, [], [])
    assert {(w["task"], w["why"]) for w in withdrawals(out)} == set(withdrawn.items())  # kept, with why

    # A later sweep (no --migration) still reads the old step's completions: the ledger kept the map.
    again = sequence.sweep(RunSpec.resolve(renamed, out, AS_OF, "later", pdf=False), DEMO / "patients.jsonl",
                           DEMO / "events.jsonl", full=True)
    assert again.replanned == 40
    assert (again.recorded.new, again.recorded.changed, again.recorded.retired) == (0, 0, 0)


def test_release_preview_command(versions, tmp_path: Path) -> None:
    import contextlib
    import io

    from carepath.cli.main import main

    old, new = versions
    out = tmp_path / "out"
    sweep(old, out)

    def run(migration: str, *extra: str) -> tuple[int, str, str]:
        path = tmp_path / "migration.yaml"
        path.write_text(migration)
        stdout, stderr = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            code = main(["release", "preview", str(new), "--migration", str(path), "--patients",
                         str(DEMO / "patients.jsonl"), "--events", str(DEMO / "events.jsonl"), "--out", str(out),
                         "--as-of", AS_OF.isoformat(), *extra])
        return code, stdout.getvalue(), stderr.getvalue()

    good = "pathway: ketamine-iv\nfrom: '1.0.0'\nto: '1.1.0'\npatients: all\nreason: wider window\n"
    code, printed, _ = run(good)
    assert code == 0 and printed.startswith("ketamine-iv 1.0.0 → 1.1.0 as of 2026-03-05T17:00:00+00:00: 40 patient(s)")
    assert "task moved: Integration psychotherapy" in printed and printed.rstrip().splitlines()[-1].startswith(
        "totals: 0 tasks added, 0 tasks withdrawn, 24 tasks moved, 0 letters to send")
    code, printed, _ = run(good, "--format", "markdown")
    assert code == 0 and printed.startswith("## Migration preview: ") and "| tasks moved | 24 |" in printed
    code, printed, _ = run(good, "--format", "json")
    assert code == 0 and json.loads(printed)["totals"] == {"tasks moved": 24}

    code, _, errors = run("pathway: ketamine-iv\nfrom: '1.0.0'\n")
    assert code == 1 and "CP201" in errors and "migration.yaml:" in errors
    code, _, errors = run(good.replace("'1.1.0'", "'1.2.0'"))
    assert code == 1 and "is version 1.1.0" in errors
    code, _, errors = run(good + "steps:\n  integration_psychotherapy: integration_sesion\n")
    assert code == 1 and "CP302" in errors and "has no step 'integration_sesion'" in errors


def test_an_old_id_names_every_step_a_split_replaced_and_embedded_legacy_ids_resolve() -> None:
    from carepath.engine.aliases import AliasIndex, IdAliases

    a = output_id("t", PATHWAY, "p-1", "review_nurse", "event:e-1")
    b = output_id("t", PATHWAY, "p-1", "review_md", "event:e-1")
    esc = output_id("t", PATHWAY, "p-1", "escalate", f"overdue:{a}")
    tasks = {a: ("review_nurse", "event:e-1"), b: ("review_md", "event:e-1"), esc: ("escalate", f"overdue:{a}")}
    index = AliasIndex(PATHWAY, "p-1", "1.1.0", IdAliases(("1.0.0",), {"review": ("review_nurse", "review_md")}),
                       tasks.get)
    occurrences = [(i, step, key) for i, (step, key) in tasks.items()]
    assert index.resolve(output_id("t", PATHWAY, "p-1", "review", "event:e-1"), occurrences) == [a, b]
    old_a = legacy_output_id("t", PATHWAY, "1.0.0", "p-1", "review_nurse", "event:e-1")
    assert index.resolve(old_a, occurrences) == [a]
    old_esc = legacy_output_id("t", PATHWAY, "1.0.0", "p-1", "escalate", f"overdue:{old_a}")
    assert index.resolve(old_esc, occurrences) == [esc]
    assert index.resolve(legacy_output_id("t", PATHWAY, "0.9.0", "p-1", "review_nurse", "event:e-1"),
                         occurrences) == []  # a version the ledger never archived
