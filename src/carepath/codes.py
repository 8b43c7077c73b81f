"""Stable diagnostic codes. Tests, editors and CI scripts key on these: never renumber.

Each code is one kind of defect; its summary is what `carepath validate --explain` and
the docs show. Ranges: 1xx the file itself, 2xx shape (model), 3xx references,
4xx structure and time, 5xx expressions, 6xx templates, 7xx releases.
"""

from __future__ import annotations

from enum import StrEnum


class Code(StrEnum):
    # 1xx: reading the file
    FILE_UNREADABLE = "CP100"
    INVALID_UTF8 = "CP101"
    TAB_INDENT = "CP102"
    YAML_SYNTAX = "CP103"
    DUPLICATE_KEY = "CP104"
    FILE_TOO_LARGE = "CP105"
    ALIAS_LIMIT = "CP106"
    NOT_A_MAPPING = "CP107"
    UNSUPPORTED_YAML = "CP108"
    # 2xx: shape of the pathway (pydantic)
    UNKNOWN_FIELD = "CP200"
    MISSING_FIELD = "CP201"
    INVALID_VALUE = "CP202"
    INVALID_DURATION = "CP203"
    # 3xx: references between parts of the pathway
    UNKNOWN_STAGE = "CP301"
    UNKNOWN_STEP = "CP302"
    UNKNOWN_EVENT = "CP303"
    UNKNOWN_TEMPLATE = "CP304"
    UNKNOWN_PARAMETER = "CP305"
    UNKNOWN_LETTER = "CP306"
    UNKNOWN_FLAG = "CP307"
    PARAMETER_KIND = "CP308"
    UNKNOWN_ROLE = "CP309"
    UNKNOWN_DATA_FIELD = "CP310"
    UNUSED_PARAMETER = "CP311"
    UNKNOWN_FACT = "CP312"
    UNKNOWN_HOLD = "CP313"
    # 4xx: structure and time
    UNREACHABLE_STAGE = "CP401"
    WINDOW_ORDER = "CP402"
    NEGATIVE_DURATION = "CP403"
    UNBOUNDED_WAIT = "CP404"
    INVALID_TIMEZONE = "CP405"
    INVALID_HOURS = "CP406"
    DUPLICATE_NAME = "CP407"
    CALENDAR_STEP_WINDOW = "CP408"
    FLAG_NEVER_CLEARED = "CP409"
    TOLERANCE_WITHOUT_EVENT = "CP410"
    WITHDRAWS_SAFETY_STEP = "CP411"
    GATE_WITHOUT_KEY = "CP412"
    DECISIONS_NOT_CLOSING = "CP413"
    CONFLICTING_TIMING = "CP414"
    # 5xx: expressions
    EXPR_SYNTAX = "CP501"
    EXPR_UNKNOWN_NAME = "CP502"
    EXPR_UNKNOWN_ATTRIBUTE = "CP503"
    EXPR_FORBIDDEN = "CP504"
    EXPR_NOT_BOOLEAN = "CP505"
    EXPR_UNSUPPORTED = "CP506"
    EXPR_TOO_LARGE = "CP507"
    # 6xx: letter templates
    TEMPLATE_SYNTAX = "CP601"
    TEMPLATE_UNKNOWN_VARIABLE = "CP602"
    TEMPLATE_FORBIDDEN = "CP603"
    TEMPLATE_UNKNOWN_FILTER = "CP604"
    TEMPLATE_TOO_LARGE = "CP605"
    TEMPLATE_OUTSIDE = "CP606"
    TEMPLATE_TYPE = "CP607"
    # 7xx: releases (a pathway compared with its history)
    VERSION_NOT_BUMPED = "CP701"


SUMMARIES: dict[Code, str] = {
    Code.FILE_UNREADABLE: "The file cannot be read (missing, a directory, or no permission).",
    Code.INVALID_UTF8: "The file is not valid UTF-8 text.",
    Code.TAB_INDENT: "A tab is used for indentation; YAML allows spaces only.",
    Code.YAML_SYNTAX: "The YAML does not parse.",
    Code.DUPLICATE_KEY: "A key appears twice in one mapping; YAML loaders silently keep the last.",
    Code.FILE_TOO_LARGE: "The file exceeds the size cap for a pathway.",
    Code.ALIAS_LIMIT: "YAML aliases expand to more nodes than a pathway may hold.",
    Code.NOT_A_MAPPING: "The document is empty, not a mapping, or holds several documents.",
    Code.UNSUPPORTED_YAML: "A YAML feature a pathway may not use (custom tags, non-string keys).",
    Code.UNKNOWN_FIELD: "A key the pathway language does not define (often a typo).",
    Code.MISSING_FIELD: "A required key is missing.",
    Code.INVALID_VALUE: "A value has the wrong type or is not one of the allowed values.",
    Code.INVALID_DURATION: "A duration, offset or time of day is malformed.",
    Code.UNKNOWN_STAGE: "A reference names a stage the pathway does not define.",
    Code.UNKNOWN_STEP: "A reference names a step the pathway does not define.",
    Code.UNKNOWN_EVENT: "A reference names an event type that is neither core nor declared.",
    Code.UNKNOWN_TEMPLATE: "A letter names a template file that does not exist.",
    Code.UNKNOWN_PARAMETER: "A `$name` or `params.name` reference names no parameter.",
    Code.UNKNOWN_LETTER: "A reference names a letter the pathway does not define.",
    Code.UNKNOWN_FLAG: "A reference names a flag the pathway does not declare.",
    Code.PARAMETER_KIND: "A parameter's value does not fit the place that uses it.",
    Code.UNKNOWN_ROLE: "A step names a role the pathway does not declare.",
    Code.UNKNOWN_DATA_FIELD: "An anchor or key names a data field the event type does not have.",
    Code.UNUSED_PARAMETER: "A parameter is declared but nothing uses it.",
    Code.UNKNOWN_FACT: "A `remember`/`forget` action names a fact the pathway does not declare under `facts:`.",
    Code.UNKNOWN_HOLD: "A hold is declared under `holds:` but no step keeps it, so its reactions never fire.",
    Code.UNREACHABLE_STAGE: "No transition or rule ever leads to this stage.",
    Code.WINDOW_ORDER: "A window opens after it is due.",
    Code.NEGATIVE_DURATION: "A duration is negative; write 'before' instead of a minus sign.",
    Code.UNBOUNDED_WAIT: "A step has neither a due time nor an overdue escalation: it could wait forever.",
    Code.INVALID_TIMEZONE: "Not an IANA time zone name.",
    Code.INVALID_HOURS: "Opening hours are malformed (format, order or overlap).",
    Code.DUPLICATE_NAME: "A name is declared twice (e.g. a rule id or a core event type).",
    Code.CALENDAR_STEP_WINDOW: "A calendar series' step sets window times the calendar's slots would override.",
    Code.FLAG_NEVER_CLEARED: "A flag is raised by a `flag:` action but nothing ever clears it (no `unflag:`).",
    Code.TOLERANCE_WITHOUT_EVENT: "A recurring step's `early_tolerance` has no event to act on: the step is "
                                  "completed only by task_completed/decision_recorded.",
    Code.WITHDRAWS_SAFETY_STEP: "A hold's `withdraws` names a safety-critical step; a status change never "
                                "withdraws safety work.",
    Code.GATE_WITHOUT_KEY: "A step that `gates` a hold has no `per: data.<field>` key, so no breaching event "
                           "can be matched to its task.",
    Code.DECISIONS_NOT_CLOSING: "A step lists `decisions` but a decision_recorded does not close it "
                                "(decision_recorded missing from done_by).",
    Code.CONFLICTING_TIMING: "Two timing settings of a step contradict each other (in_session with "
                             "due_outside_hours: next_opening, or opens_at with opens).",
    Code.EXPR_SYNTAX: "An expression does not parse.",
    Code.EXPR_UNKNOWN_NAME: "An expression uses a name the engine does not provide.",
    Code.EXPR_UNKNOWN_ATTRIBUTE: "An expression reads an attribute the named object does not have.",
    Code.EXPR_FORBIDDEN: "An expression reaches for something the sandbox forbids.",
    Code.EXPR_NOT_BOOLEAN: "A condition cannot yield true/false.",
    Code.EXPR_UNSUPPORTED: "An expression uses a construct conditions may not use (calls, filters, assignments).",
    Code.EXPR_TOO_LARGE: "An expression computes a value too large to evaluate safely, holds a number too long, "
                         "or is nested too deeply.",
    Code.TEMPLATE_SYNTAX: "A letter template does not parse.",
    Code.TEMPLATE_UNKNOWN_VARIABLE: "A template uses a variable the engine does not provide.",
    Code.TEMPLATE_FORBIDDEN: "A template reaches for something the sandbox forbids.",
    Code.TEMPLATE_UNKNOWN_FILTER: "A template uses a filter the letter sandbox does not have (a typo, or one "
                                  "removed because it pads text to any width).",
    Code.TEMPLATE_TOO_LARGE: "A template computes a value too large to render safely, includes itself, or is "
                             "nested too deeply.",
    Code.TEMPLATE_OUTSIDE: "The template folder or a template file lies outside the pathway's repository "
                           "(an absolute path, '..' out of it, or a symlink pointing out).",
    Code.TEMPLATE_TYPE: "A template uses a value in a way its type does not allow (adds a number to text, "
                        "divides by zero, ...): found by rendering it with sample values.",
    Code.VERSION_NOT_BUMPED: "The pathway changed since Git's HEAD but its version did not; a sweep refuses a "
                             "version it ran with other rules (checked only inside a Git work tree).",
}
