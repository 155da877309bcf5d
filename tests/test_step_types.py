"""The rest of the Spine step model on Dagster: choice jumps, CONTINUE (a partial run), RETRY."""

from __future__ import annotations

import pytest
from dagster import DagsterEventType

from spine_dagster import (
    ErrorCategory,
    ErrorPolicy,
    NothingToResumeError,
    RetryPolicy,
    Step,
    StepResult,
    Workflow,
    WorkflowStatus,
)


def test_a_choice_jumps_forward_and_a_resume_keeps_the_jump(runner):
    calls = []
    broken = {"on": True}

    def record(name):
        def handler(ctx, config):
            calls.append(name)
            if name == "load" and broken["on"]:
                return StepResult.fail("warehouse down", ErrorCategory.TRANSIENT)
            return {"ran": name}
        return handler

    def fast(ctx):
        calls.append("route")
        return ctx.params["fast"]

    wf = Workflow("types.choice", [
        Step.lambda_("fetch", record("fetch")),
        Step.choice("route", fast, then_step="load"),
        Step.lambda_("slow_path", record("slow_path")),
        Step.lambda_("load", record("load")),
    ])
    result = runner.execute(wf, params={"fast": True})
    assert result.status == "failed" and result.error_step == "load"
    assert calls == ["fetch", "route", "load"], "the choice skipped slow_path"
    assert [(e.step_name, e.status) for e in result.step_executions] == [
        ("fetch", "completed"), ("route", "completed"), ("slow_path", "skipped"),
        ("load", "failed")]
    skipped = {event.step_key: event.step_output_data.metadata.get("spine/skipped")
               for event in (r.event_log_entry.dagster_event for r in runner.instance
                             .get_records_for_run(result.dagster_run_id,
                                                  of_type=DagsterEventType.STEP_OUTPUT).records)}
    assert {key: getattr(value, "value", value) for key, value in skipped.items()} == {
        "fetch": None, "route": None, "slow_path": True}, "the UI shows the skipped op"
    broken["on"] = False
    calls.clear()

    resumed = runner.resume(result.run_id, params_override={"fast": False})
    assert resumed.status == "completed"
    assert calls == ["load"], "the choice was not evaluated again, even with other params"
    assert [(e.step_name, e.status) for e in resumed.step_executions] == [("load", "completed")]
    assert resumed.context.outputs["route"] == {"branch": "load"}
    assert "slow_path" not in resumed.context.outputs


def test_continue_policy_ends_the_run_partial(runner):
    wf = Workflow("types.partial", [
        Step.lambda_("optional", lambda c, k: StepResult.fail("no enrichment today"),
                     on_error=ErrorPolicy.CONTINUE),
        Step.lambda_("load", lambda c, k: {"loaded": True}),
    ])
    result = runner.execute(wf)
    assert result.status == WorkflowStatus.PARTIAL
    assert result.context.outputs["load"] == {"loaded": True}
    assert result.failed_steps == ["optional"]
    # the run names the step that failed, as a failed run does (get_run, the result, the CLI)
    record = runner.get_run(result.run_id)
    assert record.status == "partial"
    assert (record.error_step, record.error, record.error_category) == (
        "optional", "no enrichment today", "INTERNAL")
    assert (result.error_step, result.error) == ("optional", "no enrichment today")
    with pytest.raises(NothingToResumeError) as refused:
        runner.resume(result.run_id)
    assert "step 'optional' failed and the run continued" in str(refused.value)
    assert "start_from='optional'" in str(refused.value)
    again = runner.execute(wf, run_id=result.run_id, start_from="optional")
    assert again.status == WorkflowStatus.PARTIAL and again.error_step == "optional"


def test_a_partial_run_with_two_continued_failures_names_both(runner):
    wf = Workflow("types.partial2", [
        Step.lambda_("a", lambda c, k: StepResult.fail("a is down", category="TRANSIENT"),
                     on_error=ErrorPolicy.CONTINUE),
        Step.lambda_("b", lambda c, k: StepResult.fail("b is down"),
                     on_error=ErrorPolicy.CONTINUE),
        Step.lambda_("c", lambda c, k: {"done": True}),
    ])
    record = runner.get_run(runner.execute(wf).run_id)
    assert (record.status, record.error_step, record.error_category) == ("partial", "a",
                                                                          "TRANSIENT")
    assert record.error == "a is down (also failed, and continued: b)"


def test_retry_policy_retries_retryable_failures_within_the_run(runner):
    attempts = []

    def flaky(ctx, config):
        attempts.append(ctx.attempt)
        if ctx.attempt < 3:
            return StepResult.fail("timeout", ErrorCategory.TIMEOUT)
        return {"attempt": ctx.attempt}

    policy = RetryPolicy(max_attempts=3, initial_delay_seconds=0.01)
    wf = Workflow("types.retry", [Step.lambda_("flaky", flaky, on_error=ErrorPolicy.RETRY,
                                               retry_policy=policy)])
    result = runner.execute(wf)
    assert result.status == "completed" and attempts == [1, 2, 3]

    quality = []

    def bad_data(ctx, config):
        quality.append(ctx.attempt)
        return StepResult.fail("nulls in key column", ErrorCategory.DATA_QUALITY)

    wf2 = Workflow("types.noretry", [Step.lambda_("check", bad_data, on_error=ErrorPolicy.RETRY,
                                                  retry_policy=policy)])
    failed = runner.execute(wf2)
    assert failed.status == "failed" and quality == [1], "DATA_QUALITY is not retryable"
    assert failed.error_category == "DATA_QUALITY"


def test_a_tuple_output_is_a_list_in_the_first_run_as_after_a_resume(runner, tmp_path):
    """JSON has no tuples: a checkpoint gives a tuple back as a list. The steps after it see a
    list in the first run too, so that a step never meets another type after a resume."""
    flag = tmp_path / "broken"
    flag.write_text("1")
    seen = []

    def fetch(ctx, config):
        return {"pair": (1, 2), "rows": [(3, "a")], "plain": [1, [2]]}

    def check(ctx, config):
        out = ctx.get_output("fetch")
        seen.append((type(out["pair"]), type(out["rows"][0]), out["plain"]))
        if flag.exists():
            return StepResult.fail("down", category="TRANSIENT")
        return {"pair": out["pair"]}

    wf = Workflow("types.tuples", [Step.lambda_("fetch", fetch), Step.lambda_("check", check)])
    failed = runner.execute(wf)
    assert failed.status == WorkflowStatus.FAILED
    flag.unlink()
    done = runner.resume(failed.run_id, workflow=wf)
    assert done.status == WorkflowStatus.COMPLETED
    assert seen == [(list, list, [1, [2]])] * 2  # first run and resume alike
    assert done.context.get_output("check") == {"pair": [1, 2]}
