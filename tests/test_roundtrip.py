"""Property: any pathway model dumped to YAML and loaded again is equal to itself.

This is what makes formatting tools and generated pathways safe: nothing a model can
hold is lost or re-typed by YAML on the way back (think `on`, `18:00`, `0o17`).
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from carepath.model.pathway import Pathway
from carepath.source.dumper import dump_yaml
from carepath.source.loader import load_source

names = st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True)
tricky = st.sampled_from(["on", "no", "yes", "18:00", "0o17", "1e3", "- x", "#hash", "a: b", "'q'", "null", "~", ""])
texts = st.one_of(tricky, st.text(st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")), max_size=30))
offsets = st.one_of(
    st.builds(lambda n, u, s: f"{n}{u}{s}", st.integers(0, 500), st.sampled_from(["m", "h", "d", "w", " hours"]),
              st.sampled_from(["", " before", " after"])),
    names.map(lambda n: f"${n}"),
)
counts = st.one_of(st.integers(0, 50), names.map(lambda n: f"${n}"))
clock = st.builds(lambda h, m: f"{h:02d}:{m:02d}", st.integers(0, 23), st.integers(0, 59))
due = st.one_of(st.none(), offsets, st.fixed_dictionaries({"at": clock}, optional={"days_later": counts}),
                st.fixed_dictionaries({"business_days": counts}))
action = st.one_of(
    st.fixed_dictionaries({"task": names}, optional={"due": due}),
    *(st.fixed_dictionaries({key: names}) for key in ("letter", "flag", "unflag", "goto", "complete")),
    st.fixed_dictionaries({"status": st.sampled_from(["active", "pending_eligibility", "blocked", "discharged"])}),
)
actions = st.lists(action, max_size=3)
one_or_many = st.one_of(names, st.lists(names, min_size=1, max_size=3))
param_value = st.one_of(st.booleans(), st.integers(-5, 10**6), st.floats(allow_nan=False, allow_infinity=False),
                        texts, st.lists(texts, max_size=3), st.lists(st.integers(0, 3), max_size=9))

step = st.fixed_dictionaries(
    {"title": texts, "role": names, "window": st.fixed_dictionaries({}, optional={
        "opens": offsets, "due": due, "basis": st.sampled_from(["elapsed", "wall_clock", "$basis"]),
        "when_clinic_closed": st.sampled_from(["escalate", "next_open_slot", "$policy"]),
        "conflict_step": names, "unmet_flag": names})},
    optional={"priority": st.sampled_from(["routine", "high", "urgent"]), "description": texts,
              "anchor": st.sampled_from(["at", "data.start"]), "per": st.sampled_from(["event", "data.session"]),
              "done_by": one_or_many, "cancelled_by": one_or_many, "holds": one_or_many,
              "overdue": st.fixed_dictionaries({}, optional={"after": offsets, "flag": names, "task": names,
                                                             "priority": st.sampled_from(["urgent"])})},
)
stage = st.fixed_dictionaries({}, optional={
    "description": texts, "on_enter": actions,
    "series": st.fixed_dictionaries({}, optional={
        "sessions": counts, "step": names,
        "calendar": st.lists(st.fixed_dictionaries({"weeks": st.tuples(st.integers(1, 9), st.integers(1, 9)).map(list),
                                                    "per_week": counts}), max_size=2)}),
    "recurring": st.lists(st.fixed_dictionaries({"step": names, "every": st.one_of(offsets, st.fixed_dictionaries(
        {"decision_of": names, "options": st.dictionaries(names, offsets, max_size=2), "default": offsets}))},
        optional={"starting": offsets}), max_size=2),
    "transitions": st.lists(st.fixed_dictionaries({"to": names}, optional={
        "on": one_or_many, "when": texts, "then": actions}), max_size=2),
})
rule = st.fixed_dictionaries({"id": names, "on": one_or_many, "then": actions}, optional={
    "description": texts, "stages": one_or_many, "when": texts, "consecutive": counts, "reset_by": one_or_many,
    "until_confirmed": actions})
spans = st.one_of(st.just("closed"), st.just("08:00-18:00"), st.lists(st.just("09:00-12:00"), min_size=1, max_size=2))

pathways = st.fixed_dictionaries(
    {
        "id": st.from_regex(r"[a-z][a-z0-9-]{0,12}", fullmatch=True),
        "version": st.builds(lambda a, b, c: f"{a}.{b}.{c}", st.integers(0, 9), st.integers(0, 20), st.integers(0, 99)),
        "title": texts,
        "clinic": st.fixed_dictionaries(
            {"name": texts, "phone": texts, "timezone": st.sampled_from(["America/New_York", "Europe/Berlin"]),
             "hours": st.dictionaries(st.sampled_from(["mon", "tue", "wed", "thu", "fri", "sat", "sun"]), spans)},
            optional={"crisis_line": texts, "closed_dates": st.lists(st.just("2026-12-25"), max_size=1)}),
        "roles": st.dictionaries(names, texts, max_size=3),
        "start": names,
        "stages": st.dictionaries(names, stage, max_size=3),
        "steps": st.dictionaries(names, step, max_size=3),
    },
    optional={
        "description": texts, "templates": texts,
        "parameters": st.dictionaries(names, st.fixed_dictionaries(
            {"value": param_value, "source": st.sampled_from(["LABEL", "PUB", "CLINIC"])},
            optional={"note": texts}), max_size=4),
        "flags": st.dictionaries(names, texts, max_size=3),
        "events": st.dictionaries(names, st.fixed_dictionaries({}, optional={
            "description": texts,
            "data": st.dictionaries(names, st.one_of(
                st.sampled_from(["text", "integer", "datetime", "text_list"]),
                st.fixed_dictionaries({"type": st.sampled_from(["text", "boolean"])},
                                      optional={"optional": st.booleans(), "one_of": st.lists(texts, max_size=2)})),
                max_size=3)}), max_size=2),
        "sessions": st.fixed_dictionaries({}, optional={"min_gap": offsets}),
        "letters": st.dictionaries(names, st.fixed_dictionaries({"template": names}, optional={
            "anchor": st.sampled_from(["at", "data.start"]), "send": offsets}), max_size=3),
        "rules": st.lists(rule, max_size=3),
    },
)


@pytest.mark.slow  # 200 generated pathways, ~20 s
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(pathways)
def test_model_dumped_to_yaml_and_loaded_again_is_equal(data: dict) -> None:
    model = Pathway.model_validate(data)
    text = dump_yaml(model.model_dump(mode="json", by_alias=True))
    source = load_source("roundtrip.yaml", text=text.encode("utf-8"))
    assert source.diagnostics == []
    again = Pathway.model_validate(source.data)
    assert again == model
    assert dump_yaml(again.model_dump(mode="json", by_alias=True)) == text
