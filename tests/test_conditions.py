"""Data conditions for choice steps: operators, combinators, outputs, refusals, the data form."""

from __future__ import annotations

import re
from collections.abc import Mapping

import pytest

from spine_dagster import (
    Condition,
    ConditionError,
    InvalidWorkflowError,
    Step,
    StepType,
    Workflow,
    WorkflowContext,
)
from spine_dagster.execution import run_step


def ctx_with(**params) -> WorkflowContext:
    return WorkflowContext.create("cond", params=params)


@pytest.mark.parametrize("clause, value, expected", [
    ({"equals": "fast"}, "fast", True), ({"equals": "fast"}, "slow", False),
    ({"not_equals": "fast"}, "slow", True), ({"not_equals": "fast"}, "fast", False),
    ({"in": ["a", "b"]}, "b", True), ({"in": ["a", "b"]}, "c", False),
    ({"not_in": ["a", "b"]}, "c", True), ({"not_in": ["a", "b"]}, "a", False),
    ({"gt": 10}, 11, True), ({"gt": 10}, 10, False),
    ({"gte": 10}, 10, True), ({"gte": 10}, 9.5, False),
    ({"lt": 10}, 9, True), ({"lt": 10}, 10, False),
    ({"lte": 10}, 10, True), ({"lte": 10}, 11, False),
    ({"gt": "2026-01-01"}, "2026-02-01", True),
    ({"exists": True}, 0, True), ({"exists": False}, 0, False),
    ({"truthy": True}, [1], True), ({"truthy": True}, [], False),
    ({"truthy": False}, "", True), ({"truthy": False}, "x", False),
    ({"equals": None}, None, True), ({"in": [[1], [2]]}, [2], True),
])
def test_param_operators(clause, value, expected):
    assert Condition({"param": "p", **clause})(ctx_with(p=value)) is expected


@pytest.mark.parametrize("clause, expected", [
    ({"equals": None}, False), ({"not_equals": "x"}, True), ({"in": [None]}, False),
    ({"not_in": ["x"]}, True), ({"gt": 0}, False), ({"lte": 0}, False),
    ({"exists": True}, False), ({"exists": False}, True),
    ({"truthy": True}, False), ({"truthy": False}, True),
])
def test_a_missing_param_fails_every_test_but_the_negative_ones(clause, expected):
    assert Condition({"param": "absent", **clause})(ctx_with()) is expected


def test_combinators_nest():
    condition = Condition({"all": [
        {"param": "mode", "in": ["full", "backfill"]},
        {"any": [{"param": "rows", "gt": 1000}, {"param": "force", "truthy": True}]},
        {"not": {"param": "paused", "equals": True}},
    ]})
    assert condition(ctx_with(mode="full", rows=5000))
    assert condition(ctx_with(mode="backfill", rows=1, force=True))
    assert not condition(ctx_with(mode="full", rows=1))
    assert not condition(ctx_with(mode="full", rows=5000, paused=True))
    assert not condition(ctx_with(mode="fast", rows=5000))


def test_output_clauses_read_previous_steps_outputs():
    ctx = ctx_with().with_output("fetch", {"status": "ok", "rows": 0}).with_output("empty", {})
    assert Condition({"output": "fetch", "key": "status", "equals": "ok"})(ctx)
    assert Condition({"output": "fetch", "key": "rows", "truthy": False})(ctx)
    assert Condition({"output": "fetch", "key": "missing", "exists": False})(ctx)
    assert Condition({"output": "fetch", "exists": True})(ctx)
    assert Condition({"output": "empty", "exists": True})(ctx), "an empty output still exists"
    assert Condition({"output": "never_ran", "exists": False})(ctx)
    assert not Condition({"output": "never_ran", "key": "status", "equals": "ok"})(ctx)
    assert Condition({"output": "fetch", "equals": {"status": "ok", "rows": 0}})(ctx)


class StrictParams(Mapping):
    """Params that allow only ``in`` and ``[...]``, and record the keys read."""

    def __init__(self, data):
        self.data, self.read = dict(data), []

    def __contains__(self, key):
        self.read.append(key)
        return key in self.data

    def __getitem__(self, key):
        self.read.append(key)
        return self.data[key]

    def __iter__(self):
        raise AssertionError("a condition must not iterate the params")

    def __len__(self):
        raise AssertionError("a condition must not size the params")


class StubContext:
    def __init__(self, params):
        self.params = params


def test_a_condition_reads_params_only_by_key():
    params = StrictParams({"mode": "fast", "other": 1})
    condition = Condition({"any": [{"param": "mode", "equals": "fast"},
                                   {"param": "never", "exists": True}]})
    assert condition(StubContext(params)) is True
    assert set(params.read) == {"mode"}, "any() stops at the first true clause"
    assert Condition({"param": "never", "exists": True})(StubContext(params)) is False


def test_comparing_incompatible_values_raises_a_condition_error():
    condition = Condition({"param": "rows", "gt": 10})
    with pytest.raises(ConditionError, match=re.escape(
            "condition: cannot compare param 'rows' = str 'many' with gt 10; give param 'rows' a "
            "value of type int, or change the condition")):
        condition(ctx_with(rows="many"))
    assert issubclass(ConditionError, TypeError)


@pytest.mark.parametrize("data, fragment", [
    ("mode == fast", "condition: expected a mapping, got str 'mode == fast'"),
    ({}, "condition: a condition needs exactly one of 'param', 'output', 'all', 'any', 'not'; it "
         "has none of them (keys: none)"),
    ({"equals": 1}, "it has none of them (keys: 'equals')"),
    ({"param": "a", "output": "b", "equals": 1}, "it has 'param' and 'output'"),
    ({"param": "a"}, "condition: a param clause needs exactly one operator, got none"),
    ({"param": "a", "gt": 1, "lt": 5},
     "a param clause needs exactly one operator, got 'gt', 'lt'; combine tests with 'all'"),
    ({"param": "a", "equal": 1}, "condition: unknown key 'equal' (did you mean 'equals'?); allowed "
                                 "keys: param, equals, not_equals, in, not_in, gt, gte, lt, lte, "
                                 "exists, truthy"),
    ({"param": "a", "key": "k", "equals": 1}, "condition: unknown key 'key'"),
    ({"param": "", "equals": 1}, "condition: 'param' must name a param (a non-empty string)"),
    ({"output": 3, "equals": 1}, "'output' must name a step (a non-empty string), got int 3"),
    ({"output": "s", "key": 1, "equals": 1}, "'key' must be a non-empty string, got int 1"),
    ({"param": "a", "in": "abc"}, "condition: 'in' needs a list of values, got str 'abc'"),
    ({"param": "a", "not_in": ("x",)}, "'not_in' needs a list of values"),
    ({"param": "a", "exists": "yes"}, "'exists' needs true or false, got str 'yes'"),
    ({"param": "a", "truthy": 1}, "'truthy' needs true or false"),
    ({"param": "a", "gt": None}, "'gt' needs a number or a string, got NoneType None"),
    ({"param": "a", "lte": True}, "'lte' needs a number or a string, got bool True"),
    ({"all": []}, "condition: 'all' needs a non-empty list of conditions, got list []"),
    ({"any": {"param": "a"}}, "'any' needs a non-empty list of conditions"),
    ({"all": [{"param": "a", "equals": 1}, {"param": "b"}]},
     "condition.all[1]: a param clause needs exactly one operator"),
    ({"not": {"param": "a", "equals": 1}, "param": "b"}, "it has 'not' and 'param'"),
    ({"not": {"any": [{"not": {"param": "a", "gt": []}}]}},
     "condition.not.any[0].not: 'gt' needs a number or a string"),
])
def test_malformed_conditions_are_refused_with_the_place_and_the_operators(data, fragment):
    with pytest.raises(InvalidWorkflowError) as caught:
        Condition(data)
    message = str(caught.value)
    assert fragment in message
    assert "operators: equals, not_equals, in, not_in (a list), gt, gte, lt, lte" in message


def test_to_dict_returns_the_data_form_as_given():
    data = {"all": [{"param": "mode", "in": ["a", "b"]}, {"not": {"output": "s", "exists": True}}]}
    condition = Condition(data)
    assert condition.to_dict() == data
    data["all"].clear()  # the condition kept its own copy
    assert condition.to_dict()["all"][0] == {"param": "mode", "in": ["a", "b"]}
    condition.to_dict()["all"].clear()  # and hands out copies
    assert len(condition.to_dict()["all"]) == 2
    assert condition == Condition(condition.to_dict())
    assert repr(Condition({"param": "x", "gt": 1})) == "Condition({'param': 'x', 'gt': 1})"


def test_a_choice_step_takes_a_dict_or_a_callable():
    step = Step.choice("route", {"param": "mode", "equals": "fast"}, then_step="load")
    assert isinstance(step.condition, Condition) and step.step_type is StepType.CHOICE
    assert Step.choice("route", lambda ctx: True, "load").condition(None) is True
    with pytest.raises(InvalidWorkflowError, match=re.escape(
            "step 'route': condition: unknown key 'eq'")):
        Step.choice("route", {"param": "mode", "eq": "fast"}, then_step="load")


def test_a_data_condition_routes_a_choice_step():
    wf = Workflow("cond.route", [
        Step.choice("route", {"param": "mode", "equals": "fast"}, then_step="fast",
                    else_step="slow"),
        Step.wait("slow", 0),
        Step.wait("fast", 0),
    ])
    fast = run_step(wf.get_step("route"), ctx_with(mode="fast"))
    slow = run_step(wf.get_step("route"), ctx_with(mode="careful"))
    assert fast.result.next_step == "fast" and slow.result.next_step == "slow"
