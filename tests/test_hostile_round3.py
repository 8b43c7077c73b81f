"""Hostile inputs, third round: what the reader refuses because it cannot work later
(an address that is not one mailbox, a name no letter holds, a ref no disk can name)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from carepath.records import read_patients
from carepath.records.fields import MAX_NAME_CHARS, MAX_REF_CHARS
from carepath.sinks.patient_record import record_name

OTHER = {"patient": "q-2", "given_name": "Bo", "family_name": "Lind"}


def _read_one_bad(tmp_path: Path, **fields: object) -> tuple[list[str], list]:
    path = tmp_path / "patients.jsonl"
    bad = dict({"patient": "q-1", "given_name": "Mirela", "family_name": "Ostrowska"}, **fields)
    path.write_text(json.dumps(bad, ensure_ascii=False) + "\n" + json.dumps(OTHER) + "\n", encoding="utf-8")
    patients, rejected = read_patients(path, default_timezone="Europe/Warsaw")
    return list(patients), rejected


@pytest.mark.parametrize("email, reason", [
    ("mirela@example.pl, kuzyn@example.com", "more than one address"),
    ("mirela@example.pl;kuzyn@example.com", "more than one address"),
    ("mirela@kuzyn@example.pl", "more than one address"),
    ("Mirela Ostrowska <mirela@example.pl>", "display name"),
    ('"mirela ostrowska"@example.pl', "display name"),
    ("mirela@example.pl (home)", "display name"),
    ("mirela @example.pl", "holds a space"),
    ("mirela.ostrowska", "not an e-mail address"),
    ("mirela@localhost", "not an e-mail address"),
    ("mirela..o@example.pl", "not an e-mail address"),
    ("", "not an e-mail address"),
    ("mirełła@example.pl", "non-ASCII character at character 5"),
    ("mirela@przykład.pl", "non-ASCII character at character 13"),
    ("m" * 65 + "@example.pl", "not an e-mail address"),
    ("m@" + "a" * 250 + ".pl", "longer than 254"),
])
def test_an_email_that_is_not_exactly_one_mailbox_is_refused_without_echoing_it(
        tmp_path: Path, email: str, reason: str) -> None:
    read, rejected = _read_one_bad(tmp_path, email=email)
    assert read == ["q-2"]
    assert [r.line for r in rejected] == [1] and reason in rejected[0].reason, rejected[0].reason
    assert "mirela" not in rejected[0].reason and "kuzyn" not in rejected[0].reason


@pytest.mark.parametrize("email", [
    "mirela@example.pl", "mirela.o+pathway@mail.example.co.uk", "m_o-1@xn--przykad-1ib.pl", "O'Neil@example.ie",
])
def test_a_plain_address_is_accepted(tmp_path: Path, email: str) -> None:
    path = tmp_path / "patients.jsonl"
    path.write_text(json.dumps({"patient": "q-1", "given_name": "M", "family_name": "O", "email": email}) + "\n")
    patients, rejected = read_patients(path, default_timezone="Europe/Warsaw")
    assert rejected == [] and patients["q-1"].email == email


def test_a_name_longer_than_a_letter_holds_is_refused_and_its_neighbour_read(tmp_path: Path) -> None:
    read, rejected = _read_one_bad(tmp_path, family_name="Ostrowska" * 100_000)  # 900 KB: under the line limit
    assert read == ["q-2"]
    assert f"'family_name' is longer than {MAX_NAME_CHARS} characters" in rejected[0].reason
    assert "Ostrowska" not in rejected[0].reason
    read, rejected = _read_one_bad(tmp_path, given_name="M" * MAX_NAME_CHARS)
    assert read == ["q-1", "q-2"] and rejected == []


def test_a_ref_too_long_for_a_file_name_is_refused_in_both_files(tmp_path: Path) -> None:
    from carepath.model.events import CORE_EVENTS
    from carepath.records import read_events

    long_ref = "k" * (MAX_REF_CHARS + 1)
    read, rejected = _read_one_bad(tmp_path, patient=long_ref)
    assert read == ["q-2"] and f"'patient' is longer than {MAX_REF_CHARS} characters" in rejected[0].reason
    events = tmp_path / "events.jsonl"
    events.write_text(json.dumps({"id": "e" * 300, "patient": "q-2", "type": "enrolled",
                                  "at": "2026-03-01T10:00:00+01:00", "data": {}}) + "\n")
    accepted, rejected = read_events(events, event_types=CORE_EVENTS, patients={"q-2"})
    assert accepted == [] and f"'id' is longer than {MAX_REF_CHARS}" in rejected[0].reason


@pytest.mark.parametrize("ref", ["x" * MAX_REF_CHARS, "Ж" * MAX_REF_CHARS, "𝔄" * MAX_REF_CHARS, "p/../" * 25])
def test_every_accepted_ref_names_a_file_the_disk_can_hold(tmp_path: Path, ref: str) -> None:
    name = record_name(ref)
    leaf = name.rsplit("/", 1)[1]
    assert len(leaf.encode()) <= 255 and "/" not in leaf and leaf.endswith(".json")
    target = tmp_path / name
    target.parent.mkdir(parents=True)
    target.write_text("{}")  # the file system takes the name
    assert record_name(ref) == name and record_name(ref + "y") != name


def test_refs_differing_only_in_case_get_names_that_differ_on_a_case_insensitive_disk() -> None:
    refs = ["MRN-77a", "mrn-77a", "Mrn-77A", "mRN-77a", "^MRN-77a", "%5EMRN-77a", "ÉLA-1", "éla-1"]
    folded = {record_name(r).casefold() for r in refs}
    assert len(folded) == len(refs)
    assert record_name("p-001") == f"patients/{record_name('p-001').split('/')[1]}/p-001.json"


# --- pathway files: residuals of earlier rounds ------------------------------------------

PATHWAY = Path(__file__).resolve().parents[1] / "pathways" / "ketamine-iv.yaml"


def _check_text(tmp_path: Path, text: str):  # noqa: ANN202 - a Checked
    from carepath.check.runner import check_file

    target = tmp_path / "pathways" / "ketamine-iv.yaml"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    return check_file(target, display="ketamine-iv.yaml")


@pytest.mark.parametrize("version", ["١.٠.٠", "1.٢.0", "１.0.0", "1.0.0\n"])
def test_a_version_in_other_digits_is_not_a_version(tmp_path: Path, version: str) -> None:
    text = PATHWAY.read_text().replace("version: 1.0.0", f"version: {json.dumps(version)}", 1)
    assert json.dumps(version) in text
    result = _check_text(tmp_path, text)
    assert not result.ok and any("is not a version like 1.0.0" in d.message for d in result.diagnostics)


def test_a_duration_in_other_digits_is_refused() -> None:
    from carepath.model.durations import parse_offset

    with pytest.raises(ValueError):
        parse_offset("٢٤h")


def test_a_nul_byte_is_reported_at_its_own_line_and_column(tmp_path: Path) -> None:
    lines = PATHWAY.read_text().splitlines(keepends=True)
    lines[9] = lines[9][:4] + "\x00" + lines[9][4:]
    result = _check_text(tmp_path, "".join(lines))
    (found,) = [d for d in result.diagnostics if "U+0000" in d.message]
    assert (found.line, found.col) == (10, 5)


def test_a_huge_flow_sequence_is_refused_in_well_under_a_second(tmp_path: Path) -> None:
    import time

    flow = "[" + ", ".join(["7"] * 280_000) + "]"  # about 840 KB
    text = PATHWAY.read_text() + f"\nnotes: {flow}\n"
    assert 800_000 < len(text.encode()) < 1024 * 1024
    started = time.process_time()
    result = _check_text(tmp_path, text)
    assert time.process_time() - started < 1.0
    assert [d.code for d in result.diagnostics] == ["CP105"] and "more than 20000 values" in result.diagnostics[0].message


def test_a_letter_that_fails_on_a_type_at_run_time_is_a_letter_error_not_a_bug(tmp_path: Path) -> None:
    """validate reports it (CP607, tests/corpus); a run that meets one anyway stops with a
    LetterError (exit 1) that does not quote the value."""
    import shutil
    from datetime import datetime

    from carepath import api
    from carepath.engine import plan
    from carepath.sinks.letters import LetterError, render_letter

    root = PATHWAY.parents[1]
    shutil.copytree(root / "templates", tmp_path / "templates")
    (tmp_path / "pathways").mkdir()
    shutil.copy(PATHWAY, tmp_path / "pathways" / "ketamine-iv.yaml")
    compiled = api.load_pathway(tmp_path / "pathways" / "ketamine-iv.yaml")
    patients, _ = read_patients(root / "examples" / "demo" / "patients.jsonl", default_timezone="America/New_York")
    from carepath.model.events import CORE_EVENTS  # noqa: F401 - the demo's events are read with the pathway's types
    from carepath.records import read_events

    events, _ = read_events(root / "examples" / "demo" / "events.jsonl", event_types=compiled.event_fields,
                            patients=patients)
    ref = next(iter(patients))
    mine = [e for e in events if e.patient == ref]
    result = plan(compiled, patients[ref], mine, datetime.fromisoformat("2026-03-05T17:00:00+00:00"))
    letter = result.letters[0]
    template = tmp_path / "templates" / "letters" / f"{letter.template}.md.j2"
    template.write_text("Dear {{ patient.family_name + 1 }}\n")
    with pytest.raises(LetterError) as caught:
        render_letter(compiled, patients[ref], result, letter)
    assert "TypeError" in str(caught.value) and patients[ref].family_name not in str(caught.value)


def _documents_text(out: Path) -> dict[str, str]:
    names = ["tasks.jsonl", "tasks.csv", "worklist.html", "letters.jsonl",
             *(str(p.relative_to(out)) for p in sorted((out / "fhir").glob("*.ndjson")))]
    return {name: (out / name).read_text() for name in names}


def test_a_patient_removed_from_the_patients_file_leaves_every_document_and_comes_back(tmp_path: Path) -> None:
    """The run's summary stops counting a removed patient; the worklist, task lists, FHIR
    parts, letters list and the patient's record file must stop showing them too, at the
    next sweep, and show them again when their line is put back."""
    from datetime import datetime

    from carepath.orchestrator import emission, sequence
    from carepath.orchestrator.spec import RunSpec
    from carepath.sinks.ledger import Ledger

    demo = PATHWAY.parents[1] / "examples" / "demo"
    lines = (demo / "patients.jsonl").read_text().splitlines(keepends=True)
    patients = tmp_path / "patients.jsonl"
    patients.write_text("".join(lines))
    out = tmp_path / "out"
    as_of = datetime.fromisoformat("2026-03-05T17:00:00+00:00")

    def sweep(run: str) -> dict:
        spec = RunSpec.resolve(PATHWAY, out, as_of, run, pdf=False)
        return sequence.sweep(spec, patients, demo / "events.jsonl", export=True).as_json()

    first = sweep("r1")
    before = _documents_text(out)
    ref = json.loads(lines[2])["patient"]
    assert all(ref in text for name, text in before.items() if name != "letters.jsonl"), "the patient has tasks"
    spec = RunSpec.resolve(PATHWAY, out, as_of, "r1b", pdf=False)
    ledger = Ledger(spec.ledger_url)
    try:
        record = out / emission.write_patient_record(spec, ledger, ref)
    finally:
        ledger.close()
    assert record.exists()

    patients.write_text("".join(line for line in lines if json.loads(line)["patient"] != ref))
    second = sweep("r2")
    assert second["patients"] == first["patients"] - 1
    assert {name: ref in text for name, text in _documents_text(out).items()} == \
        dict.fromkeys(_documents_text(out), False)
    assert not record.exists()

    patients.write_text("".join(lines))
    third = sweep("r3")
    assert third["patients"] == first["patients"]
    assert _documents_text(out) == before

    # The events file given as the patients file: every line rejected, the run refused,
    # and nobody's work leaves the documents on its way.
    patients.write_text((demo / "events.jsonl").read_text())
    spec = RunSpec.resolve(PATHWAY, out, as_of, "r4", pdf=False)
    with pytest.raises(sequence.AllLinesRejected):
        sequence.sweep(spec, patients, demo / "events.jsonl", export=True, refuse_unused_input=True)
    assert _documents_text(out) == before


def test_a_migration_that_rejects_lines_the_old_rules_accepted_fails_the_run_and_names_them(tmp_path: Path) -> None:
    """Version 1.1.0 asks for 72 h between sessions: the demo's thrice-weekly bookings,
    accepted under 1.0.0, are rejected once patients move. The run writes everything, then
    fails (exit 1 from `carepath run`) naming the lines; a run that rejects nothing new,
    and the same move made knowingly, are not failed again."""
    from datetime import datetime

    from carepath.orchestrator import sequence
    from carepath.orchestrator.pinning import Migration
    from carepath.orchestrator.spec import RunSpec
    from carepath.runtime.runner import RunFailed
    from pathway_variants import REFERENCE, edit, write_variant

    demo = PATHWAY.parents[1] / "examples" / "demo"
    old = write_variant(tmp_path / "v1", REFERENCE.read_text())
    gap = "  min_session_gap:                       # [CLINIC] thrice weekly implies about 44-48 h\n    value: 44h"
    new = write_variant(tmp_path / "v2", edit(REFERENCE.read_text(), ("version: 1.0.0", "version: 1.1.0"),
                                              (gap, gap.replace("44h", "72h"))))
    out = tmp_path / "out"
    as_of = datetime.fromisoformat("2026-03-05T17:00:00+00:00")

    def sweep(pathway: Path, run: str, migration: Migration | None = None) -> dict:
        spec = RunSpec.resolve(pathway, out, as_of, run, pdf=False, migration=migration)
        return sequence.sweep(spec, demo / "patients.jsonl", demo / "events.jsonl",
                              refuse_unused_input=True).as_json()

    before = sweep(old, "r1")
    sweep(old, "r1-again")  # no migration: nothing to compare, nothing refused
    move = Migration("ketamine-iv", "1.0.0", "1.1.0", None, "sessions 72 h apart")
    with pytest.raises(sequence.MigrationRejectedLines) as caught:
        sweep(new, "r2", move)
    message = str(caught.value)
    assert "rejected" in message and "line(s) " in message and "rejected.jsonl" in message
    rejected = [json.loads(line) for line in (out / "rejected.jsonl").read_text().splitlines()]
    newly = [r for r in rejected if "minimum gap between sessions is 72" in r["reason"]]
    assert newly and len(rejected) > before["rejected_lines"]
    assert str(newly[0]["line"]) in message
    given, family = "Lena", "Whitfield"  # the demo's first patient: no name in what Prefect may see
    assert given not in message and family not in message
    assert RunFailed("run", message, cause=caught.value).user_error  # exit 1, not 70
    sweep(new, "r3")  # the lines stay rejected, but no migration rejects them anew


def test_the_summary_says_where_letters_went_by_the_channel_the_run_used(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A pathway whose `letter_channel` is print, with no CAREPATH_LETTER_CHANNEL in the
    environment: the summary must not say the letters are under out/letters."""
    from datetime import datetime

    from carepath.orchestrator import sequence
    from carepath.orchestrator.spec import RunSpec
    from carepath.runtime import artifacts, console
    from carepath.runtime.runner import RunResult
    from pathway_variants import REFERENCE, edit, write_variant

    monkeypatch.delenv("CAREPATH_LETTER_CHANNEL", raising=False)
    expiry = "letter_expiry: $letter_expiry"
    pathway = write_variant(tmp_path / "repo", edit(REFERENCE.read_text(),
                                                    (expiry, f"letter_channel: print\n{expiry}")))
    demo = PATHWAY.parents[1] / "examples" / "demo"
    out = tmp_path / "out"
    spec = RunSpec.resolve(pathway, out, datetime.fromisoformat("2026-03-05T17:00:00+00:00"), "r1", pdf=False)
    summary = sequence.sweep(spec, demo / "patients.jsonl", demo / "events.jsonl")
    assert summary.letters_written > 0 and list((out / "print").glob("*.pdf"))
    text = console.summary_text(RunResult("run-1", summary.as_json(), out, None))
    letters = next(line for line in text.splitlines() if line.startswith("letters:"))
    assert "print batch" in letters and "under " + str(out / "letters") not in letters
    # The plan still calls the letters just sent "due": the text must not read as if they were not.
    assert summary.as_json()["letters_by_status"]["due"] > 0 and " due (sent or not)" in letters
    assert "print batch" in artifacts.markdown(summary, out)

    monkeypatch.setenv("CAREPATH_LETTER_CHANNEL", "file")  # a deployment's setting wins over the pathway's
    spec = RunSpec.resolve(pathway, out, datetime.fromisoformat("2026-03-06T17:00:00+00:00"), "r2", pdf=False)
    summary = sequence.sweep(spec, demo / "patients.jsonl", demo / "events.jsonl")
    text = console.summary_text(RunResult("run-2", summary.as_json(), out, None))
    assert f"sent this run under {out / 'letters'}" in text


def test_an_out_with_letters_pointed_at_a_shared_ledger_without_its_pathway_is_refused(tmp_path: Path) -> None:
    """The ledger beside `out` is the evidence of what was sent. A shared ledger that only
    ever held another pathway's outputs knows none of these letters: a run would send
    every one of them again, so it is refused (exit 1) before anything is planned."""
    from datetime import datetime

    from carepath.orchestrator import sequence
    from carepath.orchestrator.spec import RunSpec
    from carepath.runtime.flows import _spec
    from carepath.sinks.ledger import LedgerProblem

    root = PATHWAY.parents[1]
    as_of = datetime.fromisoformat("2026-03-05T17:00:00+00:00")
    ketamine_out = tmp_path / "ketamine-iv"
    spec = RunSpec.resolve(PATHWAY, ketamine_out, as_of, "k1", pdf=False)
    assert sequence.sweep(spec, root / "examples" / "demo" / "patients.jsonl",
                          root / "examples" / "demo" / "events.jsonl").letters_written > 0
    shared = f"sqlite:///{tmp_path / 'shared.sqlite'}"
    other = RunSpec.resolve(root / "pathways" / "esketamine-spravato.yaml", tmp_path / "esketamine", as_of, "e1",
                            pdf=False, ledger_url=shared)
    sequence.sweep(other, root / "examples" / "esketamine" / "patients.jsonl",
                   root / "examples" / "esketamine" / "events.jsonl")
    with pytest.raises(LedgerProblem, match="holds nothing of pathway ketamine-iv, but .*letters holds letters"):
        _spec(str(PATHWAY), str(ketamine_out), as_of.isoformat(), shared, False, None)
    _spec(str(PATHWAY), str(ketamine_out), as_of.isoformat(), None, False, None)  # its own ledger: fine
