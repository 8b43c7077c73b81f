"""Each flag declares what it means for the reader: `attention`, `info` or `good` news."""

from __future__ import annotations

from pathlib import Path

from carepath.api import load_pathway
from carepath.cli.main import main
from carepath.review.diff import diff_pathways
from carepath.review.diff_format import format_text
from carepath.review.load import load_reviewed
from pathway_variants import REFERENCE, edit, write_variant

TEXT = REFERENCE.read_text()
REMISSION = ("  remission:\n    meaning: The latest PHQ-9 total was below the remission threshold.\n"
             "    severity: good\n")


def test_shipped_pathways_say_remission_is_good_news() -> None:
    compiled = load_pathway(REFERENCE)
    assert compiled.flag_severity == {"remission": "good", "possible_relapse": "attention",
                                      "relapse_risk": "attention", "integration_window_unmet": "attention",
                                      "dosed_during_hold": "attention"}
    assert compiled.flags == ("remission", "possible_relapse", "relapse_risk", "integration_window_unmet",
                              "dosed_during_hold")


def test_a_plain_meaning_still_works_and_needs_attention(tmp_path: Path) -> None:
    short = write_variant(tmp_path, edit(TEXT, (REMISSION, "  remission: Below the remission threshold.\n")))
    assert load_pathway(short).flag_severity["remission"] == "attention"


def test_an_unknown_severity_is_a_positioned_error(tmp_path: Path, capsys) -> None:
    bad = write_variant(tmp_path, edit(TEXT, ("    severity: good\n", "    severity: great\n")))
    assert main(["validate", str(bad)]) == 1
    out = capsys.readouterr().out
    line = TEXT[:TEXT.index("    severity: good\n")].count("\n") + 1
    assert f"{bad}:{line}:15: CP202 flags.remission.severity: input should be 'attention', 'info' or 'good'" in out


def test_diff_shows_a_changed_severity(tmp_path: Path) -> None:
    new = write_variant(tmp_path, edit(TEXT, ("    severity: good\n", "    severity: info\n")))
    text = format_text(diff_pathways(load_reviewed(str(REFERENCE)), load_reviewed(str(new))))
    assert "remission" in text and "good" in text and "info" in text, text


def test_the_text_plan_says_which_flags_are_good_news(capsys) -> None:
    demo = REFERENCE.parents[1] / "examples" / "demo"
    assert main(["plan", str(REFERENCE), "--patients", str(demo / "patients.jsonl"), "--events",
                 str(demo / "events.jsonl"), "--as-of", "2026-03-05T17:00:00+00:00", "--format", "text"]) == 0
    out = capsys.readouterr().out
    assert "remission (good)" in out and "relapse_risk" in out and "relapse_risk (" not in out
