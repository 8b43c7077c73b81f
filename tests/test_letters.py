"""Letters: every template renders for realistic patients, reads at grade <= 8, greets by
name, gives times in the patient's zone, and files are private (0600)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from carepath.api import load_pathway
from carepath.engine.result import PatientPlan, PlannedLetter, PlannedSession
from carepath.records import Patient
from carepath.sinks.letters import LetterError, render_letter, write_letter, written_out
from carepath.sinks.readability import fk_grade

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "golden" / "letters"
COMPILED = load_pathway(ROOT / "pathways" / "ketamine-iv.yaml")
LA = ZoneInfo("America/Los_Angeles")
PATIENT = Patient("p-001", "Ada", "Byron", "America/Los_Angeles", "ada@example.org")
START = datetime(2026, 3, 2, 10, 0, tzinfo=ZoneInfo("America/New_York"))
SESSIONS = tuple(PlannedSession(f"s-{i}", "scheduled", START + timedelta(days=2 * i + (i // 3)), None)
                 for i in range(1, 4))
LETTERS = sorted(COMPILED.letters)


def _plan(letter: PlannedLetter) -> PatientPlan:
    return PatientPlan("p-001", "initial_series", "active", (), (), (), (letter,), SESSIONS)


def _letter(name: str) -> PlannedLetter:
    session = "s-1" if name in ("pre_session_instructions", "integration_reminder", "missed_session") else None
    return PlannedLetter(f"l-{name}", name, COMPILED.letters[name].template, START.astimezone(LA), "e-1",
                         "rule:test", session)


@pytest.mark.parametrize("name", LETTERS)
def test_letter_reads_at_grade_8_or_below(name: str) -> None:
    rendered = render_letter(COMPILED, PATIENT, _plan(_letter(name)), _letter(name))
    grade = fk_grade(rendered.text)
    print(f"{name}: Flesch-Kincaid grade {grade:.1f}")
    assert grade <= 8.0, f"{name} reads at grade {grade:.1f}; patient letters must be at most 8 (target 6)"
    # the date it is sent (the patient's calendar) heads the letter, then subject and greeting
    assert rendered.text.splitlines()[0] == "March 2, 2026" and rendered.text.splitlines()[5] == "Dear Ada,"
    assert '<p class="date">March 2, 2026</p>' in rendered.html
    assert "{{" not in rendered.text and "None" not in rendered.text


@pytest.mark.parametrize("name", LETTERS)
def test_letter_text_matches_golden(name: str) -> None:
    """Wording changes show up in review as a diff of tests/golden/letters/."""
    rendered = render_letter(COMPILED, PATIENT, _plan(_letter(name)), _letter(name))
    golden = GOLDEN / f"{name}.txt"
    if os.environ.get("CAREPATH_UPDATE_GOLDEN"):
        golden.write_text(rendered.text)
    assert golden.exists(), f"no golden file; run with CAREPATH_UPDATE_GOLDEN=1 to create {golden}"
    assert rendered.text == golden.read_text()


def test_times_are_in_the_patient_zone_and_say_so() -> None:
    text = render_letter(COMPILED, PATIENT, _plan(_letter("pre_session_instructions")),
                         _letter("pre_session_instructions")).text
    assert "Monday, March 4, 2026" not in text
    assert written_out(SESSIONS[0].start, LA) in text
    assert "PST (Los Angeles time)" in text


def test_written_out_across_dst() -> None:
    moment = datetime(2026, 3, 9, 17, 0, tzinfo=ZoneInfo("UTC"))
    assert written_out(moment, LA) == "Monday, March 9, 2026 at 10:00 AM PDT (Los Angeles time)"


def test_html_escapes_patient_data() -> None:
    patient = Patient("p-002", "<script>alert(1)</script>", "O'Brien & Co", "America/New_York")
    rendered = render_letter(COMPILED, patient, _plan(_letter("welcome")), _letter("welcome"))
    assert "<script>" not in rendered.html and "&lt;script&gt;" in rendered.html


def test_files_are_private_and_named_by_letter_id(tmp_path: Path) -> None:
    rendered = render_letter(COMPILED, PATIENT, _plan(_letter("welcome")), _letter("welcome"))
    paths = write_letter(tmp_path, rendered, pdf=True)
    assert sorted(p.name for p in paths) == ["l-welcome.html", "l-welcome.pdf", "l-welcome.txt"]
    for path in paths:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert "Ada" not in path.name and "Byron" not in path.name
    assert (tmp_path / "l-welcome.pdf").read_bytes().startswith(b"%PDF-")


def test_template_mistake_is_a_letter_error_not_an_empty_greeting(tmp_path: Path) -> None:
    import shutil
    from dataclasses import replace

    shutil.copytree(COMPILED.template_dir, tmp_path / "letters")
    (tmp_path / "letters" / "welcome.md.j2").write_text("# Hi\n\nDear {{ patient.nickname }},\n")
    broken = replace(COMPILED, template_dir=str(tmp_path / "letters"))
    with pytest.raises(LetterError, match="welcome"):
        render_letter(broken, PATIENT, _plan(_letter("welcome")), _letter("welcome"))


def test_letters_command_renders_only_the_letters_due_at_as_of(tmp_path: Path) -> None:
    out = tmp_path / "letters"
    proc = subprocess.run(
        [sys.executable, "-m", "carepath.cli.main", "letters", str(ROOT / "pathways" / "ketamine-iv.yaml"),
         "--patients", str(ROOT / "examples" / "patients.jsonl"), "--events", str(ROOT / "examples" / "events.jsonl"),
         "--as-of", "2026-03-03T17:00:00+00:00", "--out", str(out)],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    texts = sorted(out.glob("*.txt"))
    # Seven letters are planned; p-001's enrolment letters and pre-session instructions
    # expired before this as-of, so only the integration reminder and p-002's two go out.
    assert len(texts) == 3 and len(list(out.glob("*.pdf"))) == 3 and len(list(out.glob("*.html"))) == 3
    greetings = {t.read_text().splitlines()[5] for t in texts}
    assert greetings == {"Dear Ada,", "Dear Ben,"}


def test_readability_measure_tells_plain_from_dense() -> None:
    plain = "Please call us. We can help. Do not drive after your session."
    dense = ("Pharmacological augmentation strategies notwithstanding, comprehensive psychotherapeutic "
             "integration necessitates individualized consideration of intercurrent psychiatric comorbidities.")
    assert fk_grade(plain) < 4 < 16 < fk_grade(dense)


def test_pdf_paper_follows_the_clinic() -> None:
    from carepath.compile.compiler import paper_for_zone
    from carepath.sinks.pdf import laid_out

    assert COMPILED.clinic.paper == "letter"  # a clinic in New York
    assert (paper_for_zone("America/Toronto"), paper_for_zone("Europe/Berlin")) == ("letter", "a4")
    html = render_letter(COMPILED, PATIENT, _plan(_letter("welcome")), _letter("welcome")).html
    letter, a4 = laid_out(html, "letter").pages[0], laid_out(html, "a4").pages[0]
    assert (round(letter.width), round(letter.height)) == (816, 1056)  # 8.5 x 11 in at 96 px/in
    assert (round(a4.width), round(a4.height)) == (794, 1123)  # 210 x 297 mm


@pytest.mark.parametrize("whole", [True, False], ids=["font-embedded-whole", "font-subset"])
def test_pdf_prints_every_character_of_a_name_with_the_right_glyph(whole: bool) -> None:
    """The letter font is cached as subsets (ASCII; the rest of Latin): a name with other
    Latin letters or in another script still prints, each character with a glyph of a font
    the PDF embeds (whole, as without HarfBuzz's subsetter, or subset)."""
    import io

    from fontTools.ttLib import TTFont

    from carepath.sinks import pdf

    if not pdf.cached_faces():
        pytest.skip("DejaVu Sans is not installed: no cached letter font to check")
    patient = Patient("p-009", "Zoë-Łucja Αθηνά", "Byron", "America/Los_Angeles", "zoe@example.org")  # "Dear …,"
    html = render_letter(COMPILED, patient, _plan(_letter("welcome")), _letter("welcome")).html
    document = pdf.laid_out(html, "letter")
    document.write_pdf(full_fonts=whole)
    drawn: dict[str, str] = {}  # character -> the family of the font it was printed with
    for font in document.fonts.values():
        embedded = TTFont(io.BytesIO(font.file_content), fontNumber=font.index)
        cmap, order = embedded.getBestCmap(), embedded.getGlyphOrder()
        assert not font.missing, f"{font.family}: no glyph for {sorted(font.missing)}"
        for glyph, text in font.to_unicode.items():
            if len(text) == 1:  # a ligature maps one glyph to several characters
                # the embedded file holds this character at this glyph: the PDF prints it
                assert cmap.get(ord(text)) == order[glyph], (font.family, text)
                drawn[text] = font.family
    assert {drawn[c] for c in "Dear"} == {"Carepath Sans"}
    assert {drawn[c] for c in "ëŁ"} == {"Carepath Sans Latin"}  # embedded only when a letter uses it
    assert all(c in drawn and not drawn[c].startswith("Carepath") for c in "Αθηνά")  # the system's fonts


def test_a_batch_of_pdfs_is_rendered_in_worker_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    from carepath.sinks import pdf

    monkeypatch.setenv("CAREPATH_PDF_WORKERS", "2")
    docs = [render_letter(COMPILED, PATIENT, _plan(_letter(name)), _letter(name)).html for name in LETTERS] * 2
    assert len(docs) >= pdf.PARALLEL_FROM
    pdfs = pdf.render_pdfs(docs, "letter")
    assert pdf._state.get("pool_size") == 2  # the batch went to the workers
    assert len(pdfs) == len(docs) and all(p.startswith(b"%PDF-") for p in pdfs)
    # in order: each PDF is the one of its document (same letter, same size as rendered here)
    assert abs(len(pdfs[0]) - len(pdf.html_to_pdf(docs[0], "letter"))) < 200
