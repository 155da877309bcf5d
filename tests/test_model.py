"""The Spine model, pure Python: Workflow, Step, StepResult, WorkflowContext, pipelines."""

from __future__ import annotations

import json
import random
import re

import pytest

from spine_dagster import (
    AutoResume,
    Condition,
    ErrorCategory,
    ErrorPolicy,
    InvalidWorkflowError,
    QualityMetrics,
    QualityThresholds,
    RetryPolicy,
    Step,
    StepResult,
    StepType,
    Workflow,
    WorkflowContext,
    WorkflowStatus,
    pipeline,
    registered_pipelines,
)
from spine_dagster.execution import run_step

from random_workflows import random_workflow


def test_workflow_refuses_duplicate_step_names_with_spines_message():
    with pytest.raises(ValueError, match="Duplicate step name") as caught:
        Workflow("w", [Step.lambda_("a", lambda c, k: None), Step.lambda_("a", lambda c, k: None)])
    assert isinstance(caught.value, InvalidWorkflowError)
    assert str(caught.value) == "Duplicate step name: a"


def test_choice_targets_must_exist_with_spines_messages():
    with pytest.raises(InvalidWorkflowError) as caught:
        Workflow("w", [Step.choice("c", lambda ctx: True, "nowhere")])
    assert str(caught.value) == "Choice step 'c' references unknown then_step: nowhere"
    with pytest.raises(ValueError, match="references unknown else_step") as caught:
        Workflow("w", [Step.choice("c", lambda ctx: True, "b", else_step="gone"),
                       Step.wait("b", 0)])
    assert str(caught.value) == "Choice step 'c' references unknown else_step: gone"


def test_an_empty_workflow_is_accepted_when_built_and_refused_when_compiled():
    assert Workflow("w", []).steps == []
    from spine_dagster import build_job  # noqa: PLC0415 - the model itself needs no Dagster

    with pytest.raises(InvalidWorkflowError, match="workflow 'w' has no steps; a Dagster job "
                                                   "needs at least one"):
        build_job(Workflow("w", []))
    inner = Workflow("inner", [])
    with pytest.raises(InvalidWorkflowError, match="workflow 'inner' has no steps"):
        build_job(Workflow("outer", [Step.map("fan", "items", inner)]))


@pytest.mark.parametrize("build, fragment", [
    (lambda: Workflow("", []), "a workflow needs a non-empty string name"),
    (lambda: Workflow("w", ["a"]), "every step must be a Step"),
    (lambda: Step.pipeline("", "p"), "a step needs a non-empty string name"),
    (lambda: Step.lambda_("s", "not callable"), "step 's': handler must be callable"),
    (lambda: Step.pipeline("s", ""), "step 's': pipeline_name must name a registered pipeline"),
    (lambda: Step.pipeline("s", "p", on_error="explode"),
     "step 's': on_error 'explode' is not valid; use one of stop, continue, retry"),
    (lambda: Step.wait("s", -1), "step 's': duration_seconds must be a number >= 0"),
])
def test_invalid_steps_and_workflows_are_refused(build, fragment):
    with pytest.raises(InvalidWorkflowError, match=re.escape(fragment)):
        build()


def test_workflow_accessors_and_dict_form():
    wf = Workflow("w", [Step.pipeline("a", "p.a", {"x": 1}), Step.wait("b", 0)], version=2,
                  defaults={"d": 1})
    assert wf.step_names() == ["a", "b"]
    assert wf.step_index("b") == 1 and wf.step_index("zz") == -1
    assert wf.get_step("a").step_type is StepType.PIPELINE
    again = Workflow.from_dict(wf.to_dict())
    assert again.step_names() == ["a", "b"] and again.get_step("a").config == {"x": 1}
    assert again.version == 2 and again.defaults == {"d": 1}


def test_step_flags_and_policies():
    step = Step.pipeline("fetch", "my.fetch", checkpoint=True)
    assert step.checkpoint is True
    assert Step.lambda_("x", lambda c, k: None, checkpoint=True).checkpoint is True
    retry = Step.lambda_("r", lambda c, k: None, on_error=ErrorPolicy.RETRY)
    assert retry.retry_policy == RetryPolicy()
    assert RetryPolicy(initial_delay_seconds=1, backoff_multiplier=2).delay_for(3) == 4
    assert RetryPolicy().is_retryable(ErrorCategory.TRANSIENT)
    assert not RetryPolicy().is_retryable("DATA_QUALITY")


def test_step_result_factories():
    assert StepResult.ok(output={"a": 1}, checkpoint=True).checkpoint is True
    failed = StepResult.fail("bad", category=ErrorCategory.DATA_QUALITY)
    assert (failed.success, failed.error, failed.error_category) == (
        False, "bad", ErrorCategory.DATA_QUALITY)
    assert StepResult.skip("nothing new").output == {"skipped": True,
                                                      "skip_reason": "nothing new"}
    assert StepResult.coerce({"n": 1}, "s").output == {"n": 1}
    with pytest.raises(TypeError, match="return a StepResult or a dict"):
        StepResult.coerce(42, "s")


def test_workflow_status_is_a_str_enum():
    assert WorkflowStatus.FAILED == "failed"
    assert isinstance(WorkflowStatus.COMPLETED, str)


def test_quality_metrics_rates():
    q = QualityMetrics(record_count=10, valid_count=8, null_count=1)
    assert (q.valid_rate, q.null_rate) == (0.8, 0.1)
    assert q.to_dict()["valid_rate"] == 0.8


def test_context_is_immutable_and_derives_new_contexts():
    ctx = WorkflowContext.create("w", params={"a": 1}, partition={"date": "2026-01-10"})
    with pytest.raises(Exception):
        ctx.params["a"] = 2  # read-only mapping
    with pytest.raises(Exception):
        ctx.run_id = "x"  # frozen
    ctx2 = ctx.with_params({"b": 2}).with_output("s", {"n": 1}).with_metadata({"m": True})
    assert dict(ctx.params) == {"a": 1} and not ctx.has_output("s")
    assert dict(ctx2.params) == {"a": 1, "b": 2} and ctx2.get_output("s", "n") == 1
    assert ctx2.get_output("missing", "n", default=0) == 0
    again = WorkflowContext.from_dict(ctx2.to_dict())
    assert again.to_dict() == ctx2.to_dict()


def test_pipeline_decorator_and_config_merge():
    seen = {}

    @pipeline("model.test.pipe")
    def handler(ctx, config):
        seen.update(config)
        return {"ok": True}

    assert "model.test.pipe" in registered_pipelines()
    ctx = WorkflowContext.create("w", params={"a": 1, "b": 1})
    outcome = run_step(Step.pipeline("s", "model.test.pipe", {"b": 2}), ctx)
    assert seen == {"a": 1, "b": 2}
    assert outcome.context.outputs["s"] == {"ok": True}


def test_run_step_reports_failures_without_raising():
    ctx = WorkflowContext.create("w")
    raising = run_step(Step.lambda_("s", lambda c, k: 1 / 0), ctx)
    assert raising.failed and raising.error == "division by zero"
    assert raising.error_category == "INTERNAL"
    cont = run_step(Step.lambda_("s", lambda c, k: StepResult.fail("x"),
                                 on_error=ErrorPolicy.CONTINUE), ctx)
    assert not cont.failed and cont.continued
    assert cont.context.metadata["failed_steps"]["s"]["error"] == "x"
    bad = run_step(Step.lambda_("fetch", lambda c, k: {"records": [1, 2, 3, {4}]}), ctx)
    assert bad.failed
    assert "outputs.fetch.records[3]: set is not JSON-serializable" in bad.error


# -- new step options ----------------------------------------------------------------------------
def test_factories_accept_the_new_options():
    limits = QualityThresholds(min_valid_rate=0.9)
    inner = Workflow("per_file", [Step.pipeline("parse", "p.parse")])
    options = dict(quality_thresholds=limits, pool="warehouse", fuse=False,
                   produces="warehouse/orders", description="the orders")
    steps = [Step.pipeline("a", "p.a", **options), Step.lambda_("b", lambda c, k: None, **options),
             Step.map("c", "files", inner, **options), Step.wait("d", 1, **options),
             Step.choice("e", {"param": "x", "exists": True}, "a", **options)]
    for step in steps:
        assert (step.quality_thresholds, step.pool, step.fuse, step.produces, step.description) == (
            limits, "warehouse", False, "warehouse/orders", "the orders")
    plain = Step.pipeline("a", "p.a")
    assert (plain.quality_thresholds, plain.pool, plain.fuse, plain.produces,
            plain.description) == (None, None, None, None, None)


@pytest.mark.parametrize("key", ["warehouse/orders", "orders", "A_1/b2/c_3"])
def test_produces_takes_an_asset_key(key):
    assert Step.pipeline("s", "p", produces=key).produces == key


@pytest.mark.parametrize("key", ["", "/orders", "orders/", "a//b", "a-b", "a b", "a.b", 3])
def test_produces_refuses_what_is_not_an_asset_key(key):
    with pytest.raises(InvalidWorkflowError, match="is not an asset key; use segments of letters, "
                                                   "digits and '_' separated by '/'"):
        Step.pipeline("s", "p", produces=key)


@pytest.mark.parametrize("options, fragment", [
    ({"pool": ""}, "pool must be a non-empty string naming a Dagster concurrency pool"),
    ({"pool": 3}, "pool must be a non-empty string"),
    ({"fuse": "no"}, "fuse must be True, False or None, got str 'no'"),
    ({"checkpoint": 1}, "checkpoint must be True, False or None"),
    ({"quality_thresholds": {"min_valid_rate": 0.9}},
     "quality_thresholds must be a QualityThresholds(...), got dict"),
    ({"description": 5}, "description must be a string"),
    ({"retry_policy": {"max_attempts": 2}}, "retry_policy must be a RetryPolicy(...)"),
])
def test_step_options_are_type_checked(options, fragment):
    with pytest.raises(InvalidWorkflowError, match=re.escape(f"step 's': {fragment}")):
        Step.pipeline("s", "p", **options)


def test_workflow_fuse_and_owners():
    wf = Workflow("w", [], fuse=True, owners=["team:data", "ana@example.com"])
    assert (wf.fuse, wf.owners) == (True, ["team:data", "ana@example.com"])
    assert (Workflow("w", []).fuse, Workflow("w", []).owners) == (False, [])
    with pytest.raises(InvalidWorkflowError, match="workflow 'w': fuse must be True or False"):
        Workflow("w", [], fuse="yes")
    with pytest.raises(InvalidWorkflowError, match="owners must be a list of non-empty strings"):
        Workflow("w", [], owners="team:data")
    with pytest.raises(InvalidWorkflowError, match="owners must be a list of non-empty strings"):
        Workflow("w", [], owners=["ok", ""])


# -- signature -----------------------------------------------------------------------------------
def test_signature_targets_name_the_iterator_workflow_and_both_branches():
    inner = Workflow("per_file", [Step.pipeline("parse", "p.parse")])
    wf = Workflow("w", [Step.pipeline("a", "p.a"),
                        Step.choice("route", lambda ctx: True, "b", else_step="a"),
                        Step.map("fan", "files", inner), Step.wait("b", 1),
                        Step.lambda_("c", lambda c, k: None)])
    assert wf.signature() == [
        ["a", "pipeline", "p.a"],
        ["route", "choice", "then=b else=a"],
        ["fan", "map", "items=files workflow=per_file"],
        ["b", "wait", None],
        ["c", "lambda", None],
    ]
    other = Workflow("per_item", [Step.pipeline("parse", "p.parse")])
    assert Step.map("fan", "files", other).signature() != wf.steps[2].signature()
    assert Step.choice("route", lambda ctx: True, "b").signature()[2] == "then=b else=None"


# -- the data form -------------------------------------------------------------------------------
def _every_data_step_workflow() -> Workflow:
    inner = Workflow("per_file", [Step.pipeline("parse", "p.parse", {"strict": True}),
                                  Step.wait("nap", 0.5)], defaults={"sep": ","})
    return Workflow(
        "orders.daily",
        [
            Step.pipeline("fetch", "orders.fetch", {"limit": 10, "nested": {"a": [1, 2]}},
                          ErrorPolicy.RETRY,
                          retry_policy=RetryPolicy(max_attempts=5,
                                                   retryable_categories=("TIMEOUT",)),
                          checkpoint=True, pool="api", produces="raw/orders",
                          description="download"),
            Step.choice("route", {"any": [{"param": "mode", "equals": "full"},
                                          {"not": {"output": "fetch", "key": "n", "lt": 5}}]},
                        then_step="fan", else_step="load", fuse=False),
            Step.map("fan", "files", inner, max_concurrency=8, item_param="file",
                     on_error=ErrorPolicy.CONTINUE,
                     quality_thresholds=QualityThresholds(min_record_count=1)),
            Step.wait("cool_down", 30),
            Step.pipeline("load", "orders.load", on_error=ErrorPolicy.RETRY,
                          quality_thresholds=QualityThresholds(min_valid_rate=0.95,
                                                               max_null_rate=0.1),
                          produces="warehouse/orders", checkpoint=False),
        ],
        domain="orders", description="Daily orders", version=3, defaults={"mode": "full"},
        tags=["daily"], checkpoint_strategy="key_steps", auto_resume=AutoResume(max_resumes=2),
        fuse=True, owners=["team:data"],
    )


def test_every_data_step_type_round_trips():
    wf = _every_data_step_workflow()
    data = wf.to_dict()
    again = Workflow.from_dict(data)
    assert again.to_dict() == data
    assert again.signature() == wf.signature()
    assert data["auto_resume"] == {"max_resumes": 2, "categories": ["TRANSIENT", "TIMEOUT",
                                                                      "DEPENDENCY"]}
    assert again.auto_resume == AutoResume(max_resumes=2)
    fetch, route, fan, cool_down, load = data["steps"]
    assert fetch["retry"]["retryable_categories"] == ["TIMEOUT"]
    assert "retry" not in load, "the default policy of on_error=retry is implied"
    assert again.get_step("load").retry_policy == RetryPolicy()
    assert route["condition"]["any"][0] == {"param": "mode", "equals": "full"}
    assert fan["workflow"]["steps"][1] == {"name": "nap", "type": "wait", "duration_seconds": 0.5}
    assert (fan["max_concurrency"], fan["item_param"], fan["on_error"]) == (8, "file", "continue")
    assert cool_down == {"name": "cool_down", "type": "wait", "duration_seconds": 30.0}
    assert load["quality_thresholds"] == {"min_valid_rate": 0.95, "max_null_rate": 0.1}
    assert (data["fuse"], data["owners"], data["checkpoint_strategy"]) == (True, ["team:data"],
                                                                           "key_steps")
    assert isinstance(again.get_step("route").condition, Condition)


@pytest.mark.parametrize("value, expected", [
    (True, {"max_resumes": 1, "categories": ["TRANSIENT", "TIMEOUT", "DEPENDENCY"]}),
    (3, {"max_resumes": 3, "categories": ["TRANSIENT", "TIMEOUT", "DEPENDENCY"]}),
    ({"max_resumes": 2, "categories": ["timeout"]}, {"max_resumes": 2, "categories": ["TIMEOUT"]}),
])
def test_auto_resume_has_one_data_form(value, expected):
    data = Workflow("w", [], auto_resume=value).to_dict()
    assert data["auto_resume"] == expected
    assert Workflow.from_dict(data).to_dict() == data
    assert "auto_resume" not in Workflow("w", [], auto_resume=False).to_dict()


def test_a_lambda_step_cannot_be_data():
    wf = Workflow("w", [Step.lambda_("clean", lambda c, k: None)])
    with pytest.raises(InvalidWorkflowError, match=re.escape(
            "workflow 'w': step 'clean': a lambda step runs a Python function, which cannot be "
            "written as data. Register the function with @spine_dagster.pipeline('NAME') and use "
            "Step.pipeline('clean', 'NAME') instead")):
        wf.to_dict()
    nested = Workflow("outer", [Step.map("fan", "xs", wf)])
    with pytest.raises(InvalidWorkflowError,
                       match="workflow 'outer': step 'fan': workflow 'w': step 'clean': a lambda"):
        nested.to_dict()


def test_a_choice_on_a_callable_cannot_be_data():
    wf = Workflow("w", [Step.choice("route", lambda ctx: True, "b"), Step.wait("b", 0)])
    with pytest.raises(InvalidWorkflowError, match=re.escape(
            "step 'route': its condition is a Python callable, which cannot be written as data. "
            "Use a data condition")):
        wf.to_dict()


@pytest.mark.parametrize("step, fragment", [
    ({"name": "a"}, "steps[0]: step 'a' (pipeline): missing 'pipeline' (the name of a pipeline "
                    "registered with @spine_dagster.pipeline)"),
    ({"pipeline": "p"}, "steps[0]: step (pipeline): missing 'name'"),
    ({"name": "a", "type": "sleep"},
     "steps[0]: step 'a': unknown type 'sleep'; use one of pipeline, wait, map, choice"),
    ({"name": "a", "type": "lambda"}, "steps[0]: step 'a': type 'lambda' cannot be data"),
    ({"name": "a", "pipeline": "p", "pipline": "p"},
     "steps[0]: step 'a' (pipeline): unknown key 'pipline' (did you mean 'pipeline'?); allowed "
     "keys: name, type, pipeline, config, params, description, on_error, retry, checkpoint, "
     "quality_thresholds, pool, fuse, produces"),
    ({"name": "a", "type": "wait", "duration_seconds": 1, "pipeline": "p"},
     "steps[0]: step 'a' (wait): unknown key 'pipeline'"),
    ({"name": "a", "pipeline": "p", "on_error": "ignore"},
     "steps[0]: step 'a': on_error 'ignore' is not valid; use one of stop, continue, retry"),
    ({"name": "a", "pipeline": "p", "config": {}, "params": {}},
     "steps[0]: step 'a': has both 'config' and 'params'"),
    ({"name": "a", "pipeline": "p", "config": [1]},
     "steps[0]: step 'a': config: expected a mapping"),
    ({"name": "a", "pipeline": "p", "retry": {"attempts": 2}},
     "steps[0]: step 'a': retry: unknown key 'attempts'"),
    ({"name": "a", "pipeline": "p", "quality_thresholds": {"min_valid_rate": 2}},
     "steps[0]: step 'a': QualityThresholds(min_valid_rate=2): a rate is a number from 0 to 1"),
    ({"name": "a", "type": "wait"}, "steps[0]: step 'a' (wait): missing 'duration_seconds'"),
    ({"name": "a", "type": "map", "items_path": "xs", "workflow": {"name": "i", "steps": [{}]}},
     "steps[0]: step 'a': workflow: steps[0]: step (pipeline): missing 'name'"),
    ({"name": "a", "type": "choice", "condition": {"param": "x", "equal": 1}, "then_step": "a"},
     "steps[0]: step 'a': condition: unknown key 'equal' (did you mean 'equals'?)"),
    ({"name": "a", "type": "choice", "condition": "x > 1", "then_step": "a"},
     "steps[0]: step 'a': condition must be a callable condition(ctx) -> bool or a data condition"),
    ("fetch", "steps[0]: step: expected a mapping of keys to values, got str 'fetch'"),
])
def test_from_dict_names_the_step_and_the_problem(step, fragment):
    with pytest.raises(InvalidWorkflowError, match=re.escape(fragment)):
        Workflow.from_dict({"name": "w", "steps": [step]})


def test_from_dict_accepts_spines_params_alias_and_refuses_unknown_workflow_keys():
    wf = Workflow.from_dict({"name": "w", "steps": [{"name": "a", "pipeline": "p",
                                                      "params": {"x": 1}}]})
    assert wf.get_step("a").config == {"x": 1}
    with pytest.raises(InvalidWorkflowError, match=re.escape(
            "workflow: unknown key 'stpes' (did you mean 'steps'?)")):
        Workflow.from_dict({"name": "w", "stpes": []})
    with pytest.raises(InvalidWorkflowError, match="Duplicate step name: a"):
        Workflow.from_dict({"name": "w", "steps": [{"name": "a", "pipeline": "p"}] * 2})


def test_round_trip_is_a_fixed_point_for_random_workflows():
    rng = random.Random(20260110)
    for case in range(200):
        wf = random_workflow(rng, f"random.{case}")
        data = wf.to_dict()
        again = Workflow.from_dict(data)
        assert again.to_dict() == data, case
        assert again.signature() == wf.signature(), case
        assert Workflow.from_dict(json.loads(json.dumps(data))).to_dict() == data, case
