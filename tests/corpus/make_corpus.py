"""Regenerate the broken-pathway corpus from _base.yaml (one defect per file).

Lines 1-2 of _base.yaml (expect + comment) are replaced by `# expect:` and `# why:`,
so line numbers equal those of _base.yaml unless an edit inserts or removes lines.
"""
from __future__ import annotations

import sys
from pathlib import Path

CORPUS = Path(__file__).resolve().parent
BASE = (CORPUS / "_base.yaml").read_text(encoding="utf-8").splitlines(keepends=True)
BODY = "".join(BASE[2:])

CASES: list[tuple[str, str, str, list[tuple[str, str]]]] = []


def case(name: str, expect: str, why: str, *edits: tuple[str, str]) -> None:
    CASES.append((name, expect, why, list(edits)))


# ---------------------------------------------------------------- 1xx: the file
# CP101, CP105, CP106 (partly) are written specially below.
case("CP102-tab-indent", "CP102 line 8", "the clinic name is indented with a tab instead of spaces",
     ("  name: Test Clinic\n", "\tname: Test Clinic\n"))
case("CP102-tab-after-spaces", "CP102 line 50", "the step role is indented with spaces followed by a tab",
     ("    role: therapist\n", "  \t  role: therapist\n"))
case("CP103-colon-in-plain-value", "CP103 line 5", "an unquoted ': ' inside the title makes YAML read a nested mapping",
     ("title: Corpus base pathway\n", "title: Corpus: base pathway\n"))
case("CP103-unclosed-flow-sequence", "CP103 line 16", "Thursday's list of opening spans is missing its closing ']'",
     ('thu: ["08:00-12:00", "13:00-18:00"]\n', 'thu: ["08:00-12:00", "13:00-18:00"\n'))
case("CP103-unclosed-quote", "CP103 line 12", "the phone number's closing quote is missing; the quoted text runs on until the next '\"' (line 12), where the parser notices",
     ('phone: "555-0100"\n', 'phone: "555-0100\n'))
case("CP103-bad-indent", "CP103 line 27", "a role is indented one space less than its sibling",
     ("  coordinator: Care coordinator.\n", " coordinator: Care coordinator.\n"))
case("CP104-duplicate-title", "CP104 line 6", "the top-level key 'title' is written twice",
     ("title: Corpus base pathway\n", "title: Corpus base pathway\ntitle: Corpus base pathway, again\n"))
case("CP104-duplicate-weekday", "CP104 line 13", "Monday's hours are given twice (Tuesday was meant)",
     ('    tue: "08:00-18:00"\n', '    mon: "08:00-18:00"\n'))
case("CP104-duplicate-flow-key", "CP104 line 21", "a parameter's flow mapping sets 'value' twice",
     ("integration_due: {value: 48h, source: CLINIC}", "integration_due: {value: 48h, value: 72h, source: CLINIC}"))
case("CP104-duplicate-step", "CP104 line 57", "two steps are both named 'integration'",
     ("  conflict:\n    title: Integration window outside clinic hours\n",
      "  integration:\n    title: Integration window outside clinic hours\n"))
case("CP107-second-document", "CP107 line 78", "a second YAML document follows a '---' separator at the end",
     ("      - task: integration\n", "      - task: integration\n---\nid: corpus-base-2\n"))
case("CP107-top-level-list", "CP107 line 3", "the whole pathway is one item of a top-level list instead of a mapping",
     ("@ALL", "@LIST"))
case("CP107-empty", "CP107 line 1", "every line of the pathway is commented out, so the document is empty",
     ("@ALL", "@COMMENT"))
case("CP108-python-tag", "CP108 line 5", "the title carries a !!python/object tag",
     ("title: Corpus base pathway\n", "title: !!python/object:builtins.str Corpus base pathway\n"))
case("CP108-merge-key", "CP108 line 21", "a parameter copies another with a YAML merge key '<<'",
     ("  integration_opens: {value: 24h", "  integration_opens: &opens {value: 24h"),
     ("integration_due: {value: 48h, source: CLINIC}", "integration_due: {<<: *opens, value: 48h}"))
case("CP108-integer-key", "CP108 line 17", "a weekday is written as the number 6 instead of 'sat'",
     ("    sat: closed\n", "    6: closed\n"))

# ---------------------------------------------------------------- 2xx: shape
case("CP200-typo-per", "CP200 line 51", "the step key 'per' is misspelled 'pre'",
     ("    per: data.session\n", "    pre: data.session\n"))
case("CP200-typo-priority", "CP200 line 60", "the step key 'priority' is misspelled 'priorty'",
     ("    priority: urgent\n", "    priorty: urgent\n"))
case("CP200-typo-when", "CP200 line 36", "the transition key 'when' is misspelled 'wehn'",
     ("        when: event.data.trd_trials >= 2\n", "        wehn: event.data.trd_trials >= 2\n"))
case("CP200-unknown-top-level", "CP200 line 6", "an unknown top-level key 'owner' is added",
     ("templates: templates\n", "owner: Dr. Smith\ntemplates: templates\n"))
case("CP201-missing-step-title", "CP201 line 57", "the step 'conflict' has no title",
     ("    title: Integration window outside clinic hours\n", ""))
case("CP201-missing-step-window", "CP201 line 57", "the step 'conflict' has no window",
     ("    window:\n      due: {business_days: 0}\n", ""))
case("CP201-missing-timezone", "CP201 line 7", "the clinic has no time zone",
     ("  timezone: America/New_York\n", ""))
case("CP201-missing-rule-then", "CP201 line 69", "the rule 'welcome' has no 'then' actions",
     ("    on: enrolled\n    then:\n      - letter: welcome\n", "    on: enrolled\n"))
case("CP201-missing-parameter-source", "CP201 line 22", "a parameter has no source tag",
     ("series_size: {value: 6, source: PUB}", "series_size: {value: 6}"))
case("CP201-series-without-sessions", "CP201 line 37", "the treatment series has neither 'sessions' nor a 'calendar'",
     ("    series:\n      sessions: $series_size\n", "    series: {}\n"),
     ("  series_size: {value: 6, source: PUB}\n", ""))
case("CP201-escalate-without-conflict-step", "CP201 line 55",
     "the window escalates closed-clinic windows but names no conflict step",
     ("      conflict_step: conflict\n", ""))
case("CP202-bad-priority", "CP202 line 60", "the priority 'asap' is not one of routine, high, urgent",
     ("    priority: urgent\n", "    priority: asap\n"))
case("CP202-phone-not-text", "CP202 line 9", "the phone number is written as a number instead of text",
     ('  phone: "555-0100"\n', "  phone: 5550100\n"))
case("CP202-bad-version", "CP202 line 4", "the version is not of the form 1.0.0",
     ("version: 1.0.0\n", "version: v1.0\n"))
case("CP202-bad-id", "CP202 line 3", "the pathway id has upper case and underscores",
     ("id: corpus-base\n", "id: Corpus_Base\n"))
case("CP202-bad-source-tag", "CP202 line 23", "a parameter source is lower case 'clinic' instead of CLINIC",
     ("relapse_threshold: {value: 10, source: CLINIC}", "relapse_threshold: {value: 10, source: clinic}"))
case("CP202-name-not-snake-case", "CP202 line 27", "the role name 'Coordinator' is not lower_snake_case",
     ("  coordinator: Care coordinator.\n", "  Coordinator: Care coordinator.\n"))
case("CP202-bad-status", "CP202 line 72", "a status action names a status that does not exist",
     ("      - letter: welcome\n", "      - status: enrolled\n"))
case("CP202-consecutive-zero", "CP202 line 75", "a rule fires after 0 consecutive matches",
     ("    on: session_completed\n", "    on: session_completed\n    consecutive: 0\n"))
case("CP202-per-not-data-field", "CP202 line 76", "the step's 'per' is 'session' instead of 'data.session'",
     ("    per: data.session\n", "    per: session\n"))
case("CP203-bad-duration", "CP203 line 53", "the due offset '2 fortnights' uses an unknown unit",
     ("      due: $integration_due\n", "      due: 2 fortnights\n"),
     ("  integration_due: {value: 48h, source: CLINIC}\n", ""))
case("CP203-bad-clock-time", "CP203 line 62", "the clock time 25:00 does not exist",
     ("      due: {business_days: 0}\n", '      due: {at: "25:00"}\n'))
case("CP203-clock-time-no-colon", "CP203 line 62", "the clock time is written 1800 without a colon",
     ("      due: {business_days: 0}\n", '      due: {at: "1800"}\n'))
case("CP203-bad-letter-send", "CP203 line 68", "the letter's send offset is the word 'soon'",
     ("    template: relapse\n", "    template: relapse\n    send: soon\n"))
case("CP203-bad-letter-expires", "CP203 line 68", "the letter's own expiry is the word 'never'",
     ("    template: relapse\n", "    template: relapse\n    expires: never\n"))

# ---------------------------------------------------------------- 3xx: references
case("CP301-transition-to", "CP301 line 48", "a transition leads to 'screenig', a misspelled stage",
     ("      - letter: relapse_letter\n",
      "      - letter: relapse_letter\n    transitions:\n      - to: screenig\n        on: discharged\n"))
case("CP301-goto", "CP301 line 72", "a rule's goto names the stage 'relpase', a misspelling",
     ("      - letter: welcome\n", "      - goto: relpase\n"))
case("CP301-rule-stages", "CP301 line 71", "a rule is limited to the stage 'treatmnt', a misspelling",
     ("    on: enrolled\n", "    on: enrolled\n    stages: treatmnt\n"))
case("CP301-start", "CP301 line 30", "the start stage 'screening' is misspelled",
     ("start: screening\n", "start: screnning\n"))
case("CP302-task", "CP302 line 76", "a rule creates a task of the step 'integraton', a misspelling",
     ("      - task: integration\n", "      - task: integraton\n"))
case("CP302-conflict-step", "CP302 line 56", "the window's conflict step 'conflikt' is misspelled",
     ("      conflict_step: conflict\n", "      conflict_step: conflikt\n"))
case("CP302-complete", "CP302 line 72", "a complete action names a step that does not exist",
     ("      - letter: welcome\n", "      - complete: intake\n"))
case("CP302-overdue-task", "CP302 line 64", "the overdue escalation names a step that does not exist",
     ("      due: {business_days: 0}\n", "      due: {business_days: 0}\n    overdue:\n      task: supervisor_review\n"))
case("CP303-rule-on", "CP303 line 70", "a rule is triggered by 'enroled', a misspelled event type",
     ("    on: enrolled\n", "    on: enroled\n"))
case("CP303-reset-by", "CP303 line 75", "a rule's reset_by names an event type that does not exist",
     ("    on: session_completed\n", "    on: session_completed\n    reset_by: session_skipped\n"))
case("CP303-done-by", "CP303 line 52", "a step is completed by 'task_done', an event type that does not exist",
     ("    per: data.session\n", "    per: data.session\n    done_by: task_done\n"))
case("CP303-cancelled-by", "CP303 line 52", "a step is cancelled by an event type that does not exist",
     ("    per: data.session\n", "    per: data.session\n    cancelled_by: [session_missed, session_canceled]\n"))
case("CP304-missing-template", "CP304 line 65", "the letter names the template 'welcom', which has no file",
     ("    template: welcome\n", "    template: welcom\n"))
case("CP305-dollar-param", "CP305 line 54", "the window's due names the parameter '$integration_deu', a misspelling",
     ("      due: $integration_due\n", "      due: $integration_deu\n"))
case("CP305-dollar-param-count", "CP305 line 39", "the series size names a parameter that does not exist",
     ("      sessions: $series_size\n", "      sessions: $sessions_per_series\n"))
case("CP306-on-enter-letter", "CP306 line 46", "the stage sends the letter 'relapse_leter', a misspelling",
     ("      - letter: relapse_letter\n", "      - letter: relapse_leter\n"))
case("CP306-rule-letter", "CP306 line 72", "a rule sends the letter 'welcom', a misspelling",
     ("      - letter: welcome\n", "      - letter: welcom\n"))
case("CP307-flag-action", "CP307 line 73", "a rule raises the undeclared flag 'welcomed'",
     ("      - letter: welcome\n", "      - letter: welcome\n      - flag: welcomed\n"))
case("CP307-unflag-action", "CP307 line 47", "a stage clears the flag 'remision', a misspelling",
     ("      - letter: relapse_letter\n", "      - letter: relapse_letter\n      - unflag: remision\n"))
case("CP307-unmet-flag", "CP307 line 57", "the window's unmet flag is not declared",
     ("      conflict_step: conflict\n", "      conflict_step: conflict\n      unmet_flag: integration_missed\n"))
case("CP308-duration-param-holds-number", "CP308 line 52", "the window opens after $series_size, a count, not a duration",
     ("      opens: $integration_opens\n", "      opens: $series_size\n"),
     ("  integration_opens: {value: 24h, source: CLINIC}\n", ""))
case("CP308-count-param-holds-duration", "CP308 line 38", "the series size is $integration_due, a duration, not a count",
     ("      sessions: $series_size\n", "      sessions: $integration_due\n"),
     ("  series_size: {value: 6, source: PUB}\n", ""))
case("CP308-enum-param-holds-duration", "CP308 line 54", "the closed-clinic policy is $integration_due, a duration",
     ("      when_clinic_closed: $weekend_policy\n", "      when_clinic_closed: $integration_due\n"),
     ("  weekend_policy: {value: escalate, source: CLINIC}\n", ""))
case("CP308-enum-param-bad-value", "CP308 line 55", "the parameter weekend_policy holds 'reschedule', not a policy",
     ("weekend_policy: {value: escalate, source: CLINIC}", "weekend_policy: {value: reschedule, source: CLINIC}"))
case("CP308-business-days-param-text", "CP308 line 62", "business_days is $weekend_policy, a word, not a number",
     ("      due: {business_days: 0}\n", "      due: {business_days: $weekend_policy}\n"))
case("CP309-unknown-role", "CP309 line 59", "the step's role 'coordinater' is misspelled",
     ("    role: coordinator\n", "    role: coordinater\n"))
case("CP310-anchor-field-missing", "CP310 line 77",
     "the step is anchored at data.start, but session_completed events (its trigger) have no 'start'",
     ("    per: data.session\n", "    per: data.session\n    anchor: data.start\n"))
case("CP310-per-field-missing", "CP310 line 76", "the step is keyed per data.sesion, a field session_completed lacks",
     ("    per: data.session\n", "    per: data.sesion\n"))
case("CP310-anchor-not-datetime", "CP310 line 77", "the step is anchored at data.session, which is text, not a date-time",
     ("    per: data.session\n", "    per: data.session\n    anchor: data.session\n"))
case("CP310-anchor-on-stage-entry", "CP310 line 46",
     "a letter anchored at an event field is sent on stage entry, where no event data exists",
     ("    template: relapse\n", "    template: relapse\n    anchor: data.start\n"))
case("CP311-unused-parameter", "CP311 line 25 warning", "the parameter 'booster_interval' is declared but never used",
     ("  weekend_policy: {value: escalate, source: CLINIC}\n",
      "  weekend_policy: {value: escalate, source: CLINIC}\n  booster_interval: {value: 4w, source: CLINIC}\n"))

case("CP312-unknown-fact", "CP312 line 73", "a rule remembers 'remitted', but the pathway declares no facts",
     ("      - letter: welcome\n", "      - letter: welcome\n      - remember: remitted\n"))
case("CP313-hold-no-step-keeps", "CP313 line 78",
     "a 'dosing' hold is declared with a breach reaction, but no step holds dosing, so it could never fire",
     ("      - task: integration\n", "      - task: integration\nholds:\n  dosing:\n    breached_by: session_completed\n"
      "    on_breach:\n      - task: conflict\n"))
case("CP307-flag-while-open-undeclared", "CP307 line 63", "a step shows the flag 'dosed_during_hold' while open, but no such flag is declared",
     ("      due: {business_days: 0}\n", "      due: {business_days: 0}\n    flag_while_open: dosed_during_hold\n"))

# ---------------------------------------------------------------- 4xx: structure and time
case("CP401-unreachable-stage", "CP401 line 44", "no transition leads to 'relapse' any more (treatment loops to itself)",
     ("      - to: relapse\n", "      - to: treatment\n"))
case("CP401-orphan-stage", "CP401 line 47", "a stage 'aftercare' is declared but nothing leads to it",
     ("      - letter: relapse_letter\n",
      "      - letter: relapse_letter\n  aftercare:\n    description: Follow-up after relapse.\n"))
case("CP402-opens-after-due", "CP402 line 54", "the window opens after 72h but is due after 48h",
     ("integration_opens: {value: 24h, source: CLINIC}", "integration_opens: {value: 72h, source: CLINIC}"))
case("CP402-due-before-event", "CP402 line 63",
     "the conflict task is due an hour before the event that creates it",
     ("      due: {business_days: 0}\n", "      opens: 2h before\n      due: 1h before\n"))
case("CP403-negative-literal", "CP403 line 53", "the due offset is written '-48h' with a minus sign",
     ("      due: $integration_due\n", "      due: -48h\n"),
     ("  integration_due: {value: 48h, source: CLINIC}\n", ""))
case("CP403-negative-parameter", "CP403 line 54", "the parameter integration_due holds '-48h'",
     ("integration_due: {value: 48h, source: CLINIC}", "integration_due: {value: -48h, source: CLINIC}"))
case("CP403-negative-count-parameter", "CP403 line 39", "the parameter series_size holds -6",
     ("series_size: {value: 6, source: PUB}", "series_size: {value: -6, source: PUB}"))
case("CP403-negative-business-days", "CP403 line 62", "the conflict task is due -1 business days after its event",
     ("      due: {business_days: 0}\n", "      due: {business_days: -1}\n"))
case("CP403-letter-expires-at-send", "CP403 line 68", "the letter expires 0h after its send time, so it could never go out",
     ("    template: relapse\n", "    template: relapse\n    expires: 0h\n"))
case("CP404-no-due", "CP404 line 62", "the conflict step's window has no due time and the step no overdue escalation",
     ("      due: {business_days: 0}\n", "      opens: 0h\n"))
case("CP408-calendar-step-sets-due", "CP408 line 65",
     "the treatment series lays out calendar slots of 'conflict', whose own window also sets a due time",
     ("    series:\n      sessions: $series_size\n",
      "    series:\n      sessions: $series_size\n      step: conflict\n      calendar:\n"
      "        - {weeks: [1, 2], per_week: 2}\n"))
case("CP202-calendar-more-sessions-than-days", "CP202 line 42",
     "a calendar week holds 8 sessions, more than its 7 days",
     ("    series:\n      sessions: $series_size\n",
      "    series:\n      sessions: $series_size\n      step: calendar_slot\n      calendar:\n"
      "        - {weeks: [1, 2], per_week: 8}\n"),
     ("  conflict:\n", "  calendar_slot:\n    title: Dosing session\n    role: coordinator\n    window: {}\n  conflict:\n"))
case("CP404-calendar-step-also-created-by-rule", "CP404 line 63",
     "a calendar step, bounded only by its slots, is also created by a rule, where nothing bounds it",
     ("    series:\n      sessions: $series_size\n",
      "    series:\n      sessions: $series_size\n      step: calendar_slot\n      calendar:\n"
      "        - {weeks: [1, 2], per_week: 2}\n"),
     ("  conflict:\n", "  calendar_slot:\n    title: Dosing session\n    role: coordinator\n    window: {}\n  conflict:\n"),
     ("      - task: integration\n", "      - task: integration\n      - task: calendar_slot\n"))
case("CP405-misspelled-zone", "CP405 line 10", "the time zone 'America/New_Yrok' is misspelled",
     ("  timezone: America/New_York\n", "  timezone: America/New_Yrok\n"))
case("CP405-utc-offset", "CP405 line 10", "the time zone is an offset 'UTC-5', not an IANA name",
     ("  timezone: America/New_York\n", "  timezone: UTC-5\n"))
case("CP406-bad-span-format", "CP406 line 12", "Monday's hours are written '8-18' instead of HH:MM-HH:MM",
     ('    mon: "08:00-18:00"\n', '    mon: "8-18"\n'))
case("CP406-closes-before-opens", "CP406 line 13", "Tuesday closes before it opens",
     ('    tue: "08:00-18:00"\n', '    tue: "18:00-08:00"\n'))
case("CP406-overlapping-spans", "CP406 line 15", "Thursday's two opening spans overlap",
     ('["08:00-12:00", "13:00-18:00"]', '["08:00-13:00", "12:00-18:00"]'))
case("CP406-bad-closed-date", "CP406 line 19", "a closed date is not an ISO date",
     ("    sun: closed\n", "    sun: closed\n  closed_dates: [2026-12-25, 12/31/2026]\n"))
case("CP407-duplicate-rule-id", "CP407 line 73", "two rules share the id 'welcome'",
     ("  - id: integration\n", "  - id: welcome\n"))
case("CP407-redefined-core-event", "CP407 line 31", "the pathway redefines the core event type 'enrolled'",
     ("start: screening\n", "events:\n  enrolled:\n    description: Patient enrolled.\nstart: screening\n"))

case("CP409-flag-never-cleared", "CP409 line 73 warning", "the welcome rule raises 'remission' and nothing ever clears it",
     ("      - letter: welcome\n", "      - letter: welcome\n      - flag: remission\n"))
case("CP410-early-tolerance-without-event", "CP410 line 43 warning",
     "recurring 'conflict' work gets an early tolerance, but only task_completed completes it, so no event can count early",
     ("    series:\n      sessions: $series_size\n",
      "    series:\n      sessions: $series_size\n    recurring:\n      - step: conflict\n        every: 4w\n"
      "        early_tolerance: 7d\n"))

# ---------------------------------------------------------------- 5xx: expressions
case("CP501-double-and", "CP501 line 43", "the condition has 'and and'",
     ("when: flags.remission and phq9.total", "when: flags.remission and and phq9.total"))
case("CP501-dangling-operator", "CP501 line 36", "the comparison has no right-hand side",
     ("when: event.data.trd_trials >= 2\n", "when: event.data.trd_trials >=\n"))
case("CP502-unknown-name", "CP502 line 43", "the condition reads 'flag.remission' (the name is 'flags')",
     ("when: flags.remission and", "when: flag.remission and"))
case("CP503-unknown-phq9-attribute", "CP503 line 43", "the condition reads phq9.score (the attribute is 'total')",
     ("phq9.total >= params", "phq9.score >= params"))
case("CP503-unknown-event-data", "CP503 line 36", "the condition reads event.data.trials, not a field of screening_recorded",
     ("when: event.data.trd_trials >= 2\n", "when: event.data.trials >= 2\n"))
case("CP503-attribute-of-number", "CP503 line 43", "the condition reads an attribute of a number (phq9.total.value)",
     ("phq9.total >= params", "phq9.total.value >= params"))
case("CP504-underscore-attribute", "CP504 line 43", "the condition reads phq9.__class__, which the sandbox forbids",
     ("when: flags.remission and phq9.total", "when: flags.remission and phq9.__class__"))
case("CP505-number-condition", "CP505 line 36", "the condition is a number, not a comparison",
     ("when: event.data.trd_trials >= 2\n", "when: event.data.trd_trials\n"))
case("CP505-and-joins-number", "CP505 line 43", "'and' joins a number (phq9.total) instead of a comparison",
     ("when: flags.remission and phq9.total >= params.relapse_threshold\n",
      "when: flags.remission and phq9.total\n"))
case("CP505-not-of-list", "CP505 line 36", "'not' is applied to a list",
     ("when: event.data.trd_trials >= 2\n", "when: not screening.contraindications\n"))
case("CP506-call", "CP506 line 36", "the condition calls a method",
     ("when: event.data.trd_trials >= 2\n", "when: screening.cautions.count('bp') == 0\n"))
case("CP506-filter", "CP506 line 36", "the condition uses the filter 'join', which conditions may not use",
     ("when: event.data.trd_trials >= 2\n", "when: screening.cautions | join == ''\n"))
case("CP506-test", "CP506 line 36", "the condition uses the test 'is odd', which conditions may not use",
     ("when: event.data.trd_trials >= 2\n", "when: event.data.trd_trials is odd\n"))

# ---------------------------------------------------------------- 6xx: templates
case("CP601-template-syntax", "CP601 bad_templates/syntax/relapse.md.j2 line 5",
     "the relapse template has an unbalanced '}' (templates in bad_templates/syntax)",
     ("templates: templates\n", "templates: bad_templates/syntax\n"))
case("CP602-template-unknown-attribute", "CP602 bad_templates/welcome.md.j2 line 3",
     "the welcome template uses patient.first_name (the engine provides patient.given_name)",
     ("templates: templates\n", "templates: bad_templates\n"))
case("CP602-template-unknown-name", "CP602 bad_templates/unknown_name/relapse.md.j2 line 7",
     "the relapse template uses a variable 'doctor' the engine does not provide",
     ("templates: templates\n", "templates: bad_templates/unknown_name\n"))
case("CP603-template-forbidden", "CP603 bad_templates/sandbox/welcome.md.j2 line 5",
     "the welcome template reads clinic.__class__, which the sandbox forbids",
     ("templates: templates\n", "templates: bad_templates/sandbox\n"))

# Bounds and confinement (the letter sandbox refuses these at run time too).
case("CP507-power-too-large", "CP507 line 36", "the condition computes 10 ** (10 ** 8), which would never finish",
     ("when: event.data.trd_trials >= 2\n", "when: event.data.trd_trials >= 10 ** (10 ** 8)\n"))
case("CP604-unknown-filter", "CP604 bad_templates/filter/welcome.md.j2 line 3",
     "the welcome template uses a filter 'shout' that letters do not have",
     ("templates: templates\n", "templates: bad_templates/filter\n"))
case("CP605-template-includes-itself", "CP605 bad_templates/recursive/welcome.md.j2 line 7",
     "the welcome template includes itself, which would never finish",
     ("templates: templates\n", "templates: bad_templates/recursive\n"))
case("CP606-template-links-outside", "CP606 bad_templates/outside/welcome.md.j2 line 1",
     "the welcome template is a symlink to /etc/passwd, outside the repository",
     ("templates: templates\n", "templates: bad_templates/outside\n"))


def render(expect: str, why: str, edits: list[tuple[str, str]]) -> str:
    body = BODY
    for old, new in edits:
        if old == "@ALL":
            lines = body.splitlines(keepends=True)
            if new == "@LIST":
                body = "- " + lines[0] + "".join("  " + ln if ln.strip() else ln for ln in lines[1:])
            elif new == "@COMMENT":
                body = "".join("# " + ln for ln in lines)
            continue
        n = body.count(old)
        if n != 1:
            raise SystemExit(f"edit {old!r} matches {n} times")
        body = body.replace(old, new)
    return f"# expect: {expect}\n# why: {why}.\n{body}"


def write_templates() -> None:
    good = CORPUS / "templates"
    bad = CORPUS / "bad_templates"
    welcome = (good / "welcome.md.j2").read_text(encoding="utf-8")
    relapse = (good / "relapse.md.j2").read_text(encoding="utf-8")

    def put(folder: Path, welcome_text: str, relapse_text: str) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "welcome.md.j2").write_text(welcome_text, encoding="utf-8")
        (folder / "relapse.md.j2").write_text(relapse_text, encoding="utf-8")

    def swap(text: str, old: str, new: str) -> str:
        assert text.count(old) == 1, old
        return text.replace(old, new)

    # bad_templates/: welcome uses an attribute the engine does not provide (CP602, line 3).
    put(bad, swap(welcome, "patient.given_name", "patient.first_name"), relapse)
    # bad_templates/syntax/: relapse has '}' where '}}' belongs (CP601, line 5).
    put(bad / "syntax", welcome, swap(relapse, "{{ clinic.crisis_line }}", "{{ clinic.crisis_line }"))
    # bad_templates/unknown_name/: relapse signs off with {{ doctor }} (CP602, line 7).
    put(bad / "unknown_name", welcome, relapse.rstrip("\n") + "\n\n{{ doctor }}\n")
    # bad_templates/sandbox/: welcome reaches for clinic.__class__ (CP603, line 5).
    put(bad / "sandbox", swap(welcome, "{{ clinic.phone }}", "{{ clinic.__class__ }}"), relapse)
    # bad_templates/filter/: welcome shouts the name with a filter letters lack (CP604, line 3).
    put(bad / "filter", swap(welcome, "{{ patient.given_name }}", "{{ patient.given_name | shout }}"), relapse)
    # bad_templates/recursive/: welcome includes itself at its end (CP605, line 7).
    put(bad / "recursive", welcome.rstrip("\n") + "\n\n{% include 'welcome.md.j2' %}\n", relapse)
    # bad_templates/outside/: welcome is a symlink climbing out of any checkout to /etc/passwd (CP606).
    put(bad / "outside", welcome, relapse)
    link = bad / "outside" / "welcome.md.j2"
    link.unlink()
    link.symlink_to("../" * 40 + "etc/passwd")


def main() -> None:
    write_templates()
    for name, expect, why, edits in CASES:
        (CORPUS / f"{name}.yaml").write_text(render(expect, why, edits), encoding="utf-8")

    # CP101: invalid UTF-8 bytes, written as bytes.
    text = render("CP101 line 5", "the title holds the byte 0xff, which is not UTF-8", [])
    raw = text.encode("utf-8").replace(b"title: Corpus base pathway", b"title: Corpus base \xff pathway")
    (CORPUS / "CP101-invalid-byte.yaml").write_bytes(raw)
    text = render("CP101 line 8", "the clinic name was saved as Latin-1 ('Cl\\xednica'), not UTF-8", [])
    raw = text.encode("utf-8").replace(b"name: Test Clinic", "name: Test Clínica".encode("latin-1"))
    (CORPUS / "CP101-latin1-accent.yaml").write_bytes(raw)

    # CP105: a description just over 1 MiB.
    text = render("CP105 line 1", "a generated description makes the file just over 1 MiB", [])
    head, rest = text.split("templates: templates\n", 1)
    filler_len = 1024 * 1024 - len(text.encode()) + 64
    text = head + "templates: templates\ndescription: " + "x" * filler_len + "\n" + rest
    assert 1024 * 1024 < len(text.encode()) < 1024 * 1024 + 1024
    (CORPUS / "CP105-file-too-large.yaml").write_text(text, encoding="utf-8")

    # CP106: nested aliases, 9 levels of 9x (9**9 nodes when expanded).
    levels = ["a", "b", "c", "d", "e", "f", "g", "h", "i"]
    bomb = ["&a [" + ", ".join(["lol"] * 9) + "]"]
    for prev, cur in zip(levels, levels[1:]):
        bomb.append(f"&{cur} [" + ", ".join([f"*{prev}"] * 9) + "]")
    text = render("CP106 line 3", "the description is an alias bomb: 9 levels of 9 nested aliases", [])
    text = text.replace("templates: templates\n",
                        "templates: templates\ndescription: [" + ", ".join(bomb) + "]\n", 1)
    (CORPUS / "CP106-alias-bomb.yaml").write_text(text, encoding="utf-8")
    print(f"wrote {len(CASES) + 5} cases", file=sys.stderr)


if __name__ == "__main__":
    main()
