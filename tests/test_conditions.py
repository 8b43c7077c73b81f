"""Conditions run in the sandbox; anything but true/false is an error, never 'false'."""

from __future__ import annotations

import pytest

from carepath.check.expressions import check_condition
from carepath.compile.conditions import Condition, ConditionError
from carepath.model.context import Kind

CONTEXT = {"phq9": {"total": Kind.INT, "item9": Kind.INT}, "flags": {"remission": Kind.BOOL},
           "params": {"threshold": Kind.INT}, "event": {"data": {"items": Kind.LIST}}}


def test_condition_is_evaluated_once_compiled() -> None:
    cond = Condition.compile("flags.remission and phq9.total >= params.threshold", "t")
    ctx = {"flags": {"remission": True}, "phq9": {"total": 12}, "params": {"threshold": 10}}
    assert cond(ctx) is True
    ctx["phq9"] = {"total": 4}
    assert cond(ctx) is False


def test_non_boolean_result_is_an_error_not_false() -> None:
    cond = Condition.compile("phq9.total", "rules[0].when")
    with pytest.raises(ConditionError, match="not true/false"):
        cond({"phq9": {"total": 0}})


def test_missing_value_is_an_error_not_false() -> None:
    cond = Condition.compile("phq9.total > 3", "rules[0].when")
    with pytest.raises(ConditionError, match="could not be evaluated"):
        cond({"phq9": {}})


def test_sandbox_refuses_internals_at_run_time() -> None:
    cond = Condition.compile("phq9.__class__.__mro__ is defined", "t")
    with pytest.raises(ConditionError):
        cond({"phq9": object()})


@pytest.mark.parametrize(
    ("source", "code"),
    [
        ("phq9.total >= ", "CP501"),
        ("phq9.totl >= 10", "CP503"),
        ("score >= 10", "CP502"),
        ("phq9.__class__ is defined", "CP504"),
        ("phq9.total", "CP505"),
        ("phq9.total and flags.remission", "CP505"),
        ("not event.data.items", "CP505"),
        ("range(10) | length > 2", "CP506"),
        ("phq9.total | sum > 1", "CP506"),
    ],
)
def test_static_check_names_the_problem(source: str, code: str) -> None:
    assert [f.code.value for f in check_condition(source, CONTEXT)][:1] == [code]


@pytest.mark.parametrize(
    "source",
    ["phq9.item9 > 0", "event.data.items | length == 9", "not flags.remission", "phq9.total in [1, 2]",
     "(phq9.total + 1) * 2 > params.threshold or flags.remission"],
)
def test_static_check_accepts_plain_conditions(source: str) -> None:
    assert check_condition(source, CONTEXT) == []
