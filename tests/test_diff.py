"""`carepath diff`: what a reviewer signing off a pathway change needs to see."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from carepath.cli.main import main
from carepath.review.diff import Kind, Section, diff_pathways
from carepath.review.diff_format import format_markdown, format_text
from carepath.review.load import load_reviewed
from pathway_variants import REFERENCE, edit, write_variant

TEXT = REFERENCE.read_text()
WIDER_INTEGRATION = ("  integration_due:                       # [CLINIC] upper bound of the integration window\n"
                     "    value: 48h",
                     "  integration_due:                       # [CLINIC] upper bound of the integration window\n"
                     "    value: 72h")
BUMP = ("version: 1.0.0", "version: 1.1.0")


def diff_text(tmp_path: Path, *pairs: tuple[str, str]) -> str:
    new = write_variant(tmp_path, edit(TEXT, *pairs))
    return format_text(diff_pathways(load_reviewed(str(REFERENCE)), load_reviewed(str(new))))


def test_identical_pathways_have_no_differences(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    copy = write_variant(tmp_path, TEXT)
    assert not diff_pathways(load_reviewed(str(REFERENCE)), load_reviewed(str(copy))).differs
    assert main(["diff", str(REFERENCE), str(copy), "--exit-code"]) == 0
    out = capsys.readouterr()
    assert out.out == "" and "no clinical differences" in out.err


def test_rewording_comments_and_durations_is_no_clinical_change(tmp_path: Path) -> None:
    assert diff_text(tmp_path,
                     ("    value: 48h\n    source: CLINIC", "    value: 2d\n    source: CLINIC"),
                     ("# IV ketamine with integration", "# Intravenous ketamine with integration"),
                     ("description: Six infusions over two to three weeks.", "description: Six infusions."),
                     ("      due: 3d\n    done_by: [task_completed, assessment_recorded]",
                      "      due: 72h\n    done_by: [task_completed, assessment_recorded]")) == ""


def test_widened_integration_window_names_the_window_and_both_values(tmp_path: Path) -> None:
    out = diff_text(tmp_path, WIDER_INTEGRATION, BUMP)
    assert ("~ Integration psychotherapy after a dosing session (integration_psychotherapy): window due changed "
            "from 48 h to 72 h after the session_completed event") in out
    assert "~ Parameter integration_due [CLINIC]: value changed from 48h to 72h (used by step " \
           "integration_psychotherapy)" in out
    assert out.startswith("ketamine-iv 1.0.0 → 1.1.0: 3 clinical change(s)")


def test_window_written_in_the_step_and_policies(tmp_path: Path) -> None:
    out = diff_text(tmp_path, ("      opens: $integration_opens\n", "      opens: 12h\n"),
                    ("      basis: $integration_basis\n", "      basis: wall_clock\n"),
                    ("      when_clinic_closed: $weekend_policy\n", "      when_clinic_closed: next_open_slot\n"))
    assert "window opens changed from 24 h to 12 h after the session_completed event" in out
    assert "window basis changed from elapsed hours to wall-clock time" in out
    assert ("clinic-closed policy changed from escalate (conflict task before the clinic closes) to next open "
            "slot (task marked out of window)") in out


def test_threshold_change_shows_values_source_tag_and_where_it_is_used(tmp_path: Path) -> None:
    out = diff_text(tmp_path, ("    value: 10\n    source: CLINIC", "    value: 12\n    source: PUB"))
    assert "~ Parameter relapse_threshold [PUB]: value changed from 10 to 12 (used by rule relapse_not_confirmed, rule relapse)" in out
    assert "~ Parameter relapse_threshold [PUB]: source changed from CLINIC to PUB" in out


def test_removed_letter_and_the_rule_that_sent_it(tmp_path: Path) -> None:
    out = diff_text(tmp_path, ("  missed_session:\n    template: missed_session\n", ""),
                    ("      - flag: relapse_risk\n      - letter: missed_session\n", "      - flag: relapse_risk\n"))
    assert "- Letter missed_session: removed (was template missed_session, sent at the triggering event)" in out
    assert re.search(r"~ Rule repeated_missed_sessions: actions changed from .*letter missed_session to "
                     r"task missed_session_outreach .*; flag relapse_risk$", out, re.M)


def test_new_rule_and_new_step(tmp_path: Path) -> None:
    rule = ("  - id: discharge\n",
            "  - id: high_blood_pressure\n"
            "    on: vitals_recorded\n"
            "    when: event.data.systolic > 140 or event.data.diastolic > 90\n"
            "    then:\n"
            "      - task: bp_review\n"
            "  - id: discharge\n")
    step = ("  safety_review:\n",
            "  bp_review:\n    title: Review raised blood pressure before dosing\n    role: prescriber\n"
            "    priority: urgent\n    window:\n      due: 2h\n    holds: dosing\n\n  safety_review:\n")
    out = diff_text(tmp_path, rule, step)
    assert ("+ Rule high_blood_pressure: added (on vitals_recorded when event.data.systolic > 140 or "
            "event.data.diastolic > 90: task bp_review)") in out
    assert ("+ Review raised blood pressure before dosing (bp_review): added (prescriber, urgent; opens at "
            "the vitals_recorded event; due 2 h after the vitals_recorded event)") in out


def test_transition_condition_and_rule_order(tmp_path: Path) -> None:
    out = diff_text(tmp_path, ("when: series.completed >= params.initial_series_sessions",
                               "when: series.completed > params.initial_series_sessions"),
                    ("  - id: welcome\n    on: enrolled\n    then:\n      - letter: welcome\n"
                     "      - task: screening_completion\n\n", ""),
                    ("  - id: discharge\n", "  - id: welcome\n    on: enrolled\n    then:\n      - letter: welcome\n"
                                            "      - task: screening_completion\n\n  - id: discharge\n"))
    assert ("~ Transition initial_series → maintenance: condition changed from series.completed >= "
            "params.initial_series_sessions to series.completed > params.initial_series_sessions") in out
    assert "~ Rules: evaluation order changed from welcome, too_few_documented_trials" in out


def test_clinic_hours_and_stage_work(tmp_path: Path) -> None:
    out = diff_text(tmp_path, ('    fri: "08:00-18:00"', '    fri: "08:00-13:00"'),
                    ("      - step: safety_review\n        every: $safety_review_interval",
                     "      - step: safety_review\n        every: 8w"))
    assert "~ Clinic: Friday hours changed from 08:00-18:00 to 08:00-13:00" in out
    assert ("~ Stage maintenance: recurring safety_review changed from every 12 weeks, first 12 weeks after "
            "entering the stage to every 8 weeks, first 12 weeks after entering the stage") in out


def test_version_alone_is_reported_and_unbumped_change_is_flagged(tmp_path: Path) -> None:
    old = load_reviewed(str(REFERENCE))
    bumped = diff_pathways(old, load_reviewed(str(write_variant(tmp_path / "a", edit(TEXT, BUMP)))))
    assert [(c.section, c.kind, c.aspect, c.old, c.new) for c in bumped.changes] == [
        (Section.PATHWAY, Kind.CHANGED, "version", "1.0.0", "1.1.0")]
    assert not bumped.version_not_bumped and "version is still" not in format_text(bumped)
    unbumped = diff_pathways(old, load_reviewed(str(write_variant(tmp_path / "b", edit(TEXT, WIDER_INTEGRATION)))))
    assert unbumped.version_not_bumped
    assert "note: The version is still 1.0.0: bump it" in format_text(unbumped)


def test_markdown_for_a_pull_request_comment(tmp_path: Path) -> None:
    new = write_variant(tmp_path, edit(TEXT, WIDER_INTEGRATION, BUMP, (
        "when: event.data.contraindications | length > 0", "when: event.data.contraindications | length > 1")))
    md = format_markdown(diff_pathways(load_reviewed(str(REFERENCE)), load_reviewed(str(new))))
    lines = md.splitlines()
    assert lines[0] == "### Clinical changes: ketamine-iv 1.0.0 → 1.1.0"
    assert "#### Steps (clinician tasks)" in lines and "#### Parameters" in lines and "#### Rules" in lines
    assert lines.count("| item | change | was | now |") == 4  # pathway, parameters, steps, rules
    rows = [l for l in lines if l.startswith("| ") and not l.startswith("| item")]
    for row in rows:  # a '|' inside a condition must not split the cell
        assert len(re.findall(r"(?<!\\)\|", row)) == 5, row
    assert ("| Integration psychotherapy after a dosing session (`integration_psychotherapy`) | window due | "
            "48 h after the session\\_completed event | 72 h after the session\\_completed event |") in lines
    assert "| Rule `contraindication` | condition | `event.data.contraindications \\| length > 0` | " \
           "`event.data.contraindications \\| length > 1` |" in lines


def test_invalid_pathway_prints_diagnostics_and_exits_one(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    bad = write_variant(tmp_path, edit(TEXT, ("role: psychotherapist\n", "role: psychotherapst\n")))
    assert main(["diff", str(REFERENCE), str(bad), "--exit-code"]) == 1
    out = capsys.readouterr()
    assert out.out == "" and re.search(rf"^{re.escape(str(bad))}:\d+:\d+: CP309 ", out.err, re.M)
    assert "Traceback" not in out.err
    assert main(["diff", str(REFERENCE), str(tmp_path / "missing.yaml")]) == 1
    assert "CP100" in capsys.readouterr().err


def test_exit_codes_of_differences(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    new = write_variant(tmp_path, edit(TEXT, WIDER_INTEGRATION))
    assert main(["diff", str(REFERENCE), str(new)]) == 0
    assert capsys.readouterr().out.startswith("ketamine-iv 1.0.0: 2 clinical change(s)\n")
    assert main(["diff", str(REFERENCE), str(new), "--exit-code", "--format", "markdown"]) == 3
    assert capsys.readouterr().out.startswith("### Clinical changes: ketamine-iv 1.0.0\n")
    with pytest.raises(SystemExit) as usage:
        main(["diff", str(REFERENCE)])
    assert usage.value.code == 2


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.org", "-c", "commit.gpgsign=false",
                    *args], cwd=repo, check=True, capture_output=True)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A pathway repository with two commits: the reference pathway, then a wider integration window."""
    path = write_variant(tmp_path, TEXT)
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-q", "-m", "v1")
    path.write_text(edit(TEXT, WIDER_INTEGRATION, BUMP))
    git(tmp_path, "commit", "-q", "-am", "v2")
    return tmp_path


def run_cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "carepath.cli.main", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=60)


def test_git_ref_against_a_file_and_against_another_ref(repo: Path) -> None:
    proc = run_cli(repo, "diff", "git:HEAD~1:pathways/ketamine-iv.yaml", "pathways/ketamine-iv.yaml")
    assert proc.returncode == 0, proc.stderr
    assert "(old: git:HEAD~1:pathways/ketamine-iv.yaml; new: pathways/ketamine-iv.yaml)" in proc.stdout
    assert "window due changed from 48 h to 72 h" in proc.stdout
    proc = run_cli(repo, "diff", "git:HEAD:pathways/ketamine-iv.yaml", "pathways/ketamine-iv.yaml", "--exit-code")
    assert proc.returncode == 0 and proc.stdout == ""


@pytest.mark.parametrize(("spec", "message"), [
    ("git:no-such-ref:pathways/ketamine-iv.yaml", "Git revision 'no-such-ref' does not exist"),
    ("git:HEAD~1:pathways/other.yaml", "'pathways/other.yaml' does not exist at revision 'HEAD~1'"),
    ("git:HEAD~1:pathways", "is a tree, not a file"),
    ("git:HEAD", "is not a Git source; write git:REF:path"),
    ("git:--output=x:pathways/ketamine-iv.yaml", "is not a Git revision"),
])
def test_git_source_problems_are_clear(repo: Path, spec: str, message: str) -> None:
    proc = run_cli(repo, "diff", spec, "pathways/ketamine-iv.yaml")
    assert proc.returncode == 1
    assert proc.stderr.startswith(f"{spec}:1:1: CP100 ") and message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and not (repo / "x").exists()


def test_git_source_outside_a_repository(tmp_path: Path) -> None:
    proc = run_cli(tmp_path, "diff", "git:HEAD:p.yaml", str(REFERENCE))
    assert proc.returncode == 1 and "is not inside a Git repository" in proc.stderr


def test_review_commands_do_not_import_prefect(tmp_path: Path) -> None:
    code = (
        "import sys; from carepath.cli.main import main; "
        f"assert main(['graph', {str(REFERENCE)!r}]) == 0; "
        f"assert main(['diff', {str(REFERENCE)!r}, {str(REFERENCE)!r}]) == 0; "
        f"assert main(['export-fhir', {str(REFERENCE)!r}]) == 0; "
        "assert not [m for m in sys.modules if m.split('.')[0] == 'prefect'], 'prefect imported'"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_second_round_safety_constructs_are_shown_in_clinical_terms(tmp_path: Path) -> None:
    out = diff_text(tmp_path, ("    while_status: [blocked]", "    while_status: [blocked, pending_eligibility]"),
                    ("    in_session: true\n    gates: dosing", "    gates: dosing"),
                    ("      after: $lost_to_follow_up_after", "      after: 90d"))
    assert "~ Hold dosing: in force while status changed from blocked to blocked, pending_eligibility" in out
    assert ("(pre_dose_check): in session (keeps the session's clock after hours) changed from yes to no"
            in out)
    assert ("~ Stage maintenance: lost to follow-up changed from lost_to_follow_up_outreach after 60 days "
            "without assessment_recorded or session_completed to lost_to_follow_up_outreach after 90 days") in out
