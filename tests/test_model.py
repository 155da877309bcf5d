"""The Spine model, pure Python: Workflow, Step, StepResult, WorkflowContext, pipelines."""

from __future__ import annotations

import pytest

from spine_dagster import (
    ErrorCategory,
    ErrorPolicy,
    QualityMetrics,
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


def test_workflow_refuses_duplicate_step_names():
    with pytest.raises(ValueError, match="duplicate step name 'a'"):
        Workflow("w", [Step.lambda_("a", lambda c, k: None), Step.lambda_("a", lambda c, k: None)])


def test_choice_targets_must_exist():
    with pytest.raises(ValueError, match="unknown step 'nowhere'"):
        Workflow("w", [Step.choice("c", lambda ctx: True, "nowhere")])


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
