"""Quality gates on a real Dagster instance: ``QualityThresholds`` on lambda and pipeline steps.

A breach fails the step with ``DATA_QUALITY`` and lists every failed threshold with the measured
value and the limit; the metrics are kept in a ``rejected`` checkpoint (shown, never resumed
from); a resume runs the step again.
"""

from __future__ import annotations

from dagster import DagsterEventType

from spine_dagster import ErrorPolicy, QualityThresholds, Step, Workflow
from step_fixtures import module_instance, runner  # noqa: F401 - fixtures
from workflows_steps import GATED, calls, measured


def failure_metadata(instance, dagster_run_id: str) -> dict:
    [record] = instance.get_records_for_run(dagster_run_id,
                                            of_type=DagsterEventType.STEP_FAILURE).records
    data = record.event_log_entry.dagster_event.step_failure_data.user_failure_data
    return {key: getattr(value, "value", value) for key, value in data.metadata.items()}


def test_a_quality_breach_fails_the_step_keeps_the_metrics_and_a_resume_runs_it_again(
        runner, tmp_path):
    calls_file = str(tmp_path / "calls.txt")
    bad = {"rows": 2000, "valid": 1600, "nulls": 200, "count_rows": 5}
    first = runner.execute(GATED, params={"calls_file": calls_file, **bad})

    assert (first.status, first.error_step, first.error_category) == (
        "failed", "measure", "DATA_QUALITY")
    assert first.error == (
        "step 'measure' failed its quality gate: valid_rate 0.8 is below min_valid_rate 0.95; "
        "null_rate 0.1 is above max_null_rate 0.05; record_count 2000 is above max_record_count "
        "1000")
    [rejected] = runner.list_checkpoints(first.run_id)
    assert (rejected.step_name, rejected.state, rejected.usable) == ("measure", "rejected", False)
    checkpoint = runner.get_checkpoint(first.run_id, "measure")
    assert checkpoint.state == "rejected"
    metrics = checkpoint.context_snapshot["quality_metrics"]["measure"]
    assert (metrics["record_count"], metrics["valid_count"], metrics["null_count"]) == (
        2000, 1600, 200)
    assert checkpoint.context.outputs["measure"] == {"rows": 2000}, "kept to inspect"
    shown = failure_metadata(runner.instance, first.dagster_run_id)
    assert shown["spine/error_category"] == "DATA_QUALITY"
    assert shown["spine/quality"]["valid_count"] == 1600

    # the data is still bad: the resume runs the step again, never reusing its rejected output
    again = runner.resume(first.run_id)
    assert (again.status, again.error_step, again.error) == ("failed", "measure", first.error)
    assert calls(calls_file) == ["measure", "measure"]

    # measure passes, the pipeline step's own gate fails
    second = runner.resume(first.run_id, params_override={"rows": 100, "valid": 99, "nulls": 1})
    assert (second.status, second.error_step, second.error_category) == (
        "failed", "count", "DATA_QUALITY")
    assert second.error == ("step 'count' failed its quality gate: record_count 5 is below "
                            "min_record_count 10")
    assert {c.step_name: c.state for c in runner.list_checkpoints(first.run_id)} == {
        "measure": "valid", "count": "rejected"}

    third = runner.resume(first.run_id, params_override={"count_rows": 50})
    assert third.status == "completed", third.error
    assert third.completed_steps == ["count", "after"]
    assert calls(calls_file) == ["measure", "measure", "measure", "count", "count"]
    assert third.context.outputs == {"measure": {"rows": 100}, "count": {"rows": 50},
                                     "after": {"rows": 100}}
    assert {c.step_name: c.state for c in runner.list_checkpoints(first.run_id)} == {
        "measure": "valid", "count": "valid", "after": "valid"}


def test_a_quality_breach_under_continue_keeps_the_metrics_and_the_run_goes_on(runner, tmp_path):
    wf = Workflow("gates.continue", [
        Step.lambda_("measure", measured, on_error=ErrorPolicy.CONTINUE,
                     quality_thresholds=QualityThresholds(min_valid_rate=0.95)),
        Step.lambda_("after", lambda ctx, config: {"after": True}),
    ])
    result = runner.execute(wf, params={"calls_file": str(tmp_path / "calls.txt"), "rows": 10,
                                        "valid": 5, "nulls": 0})
    assert result.status == "partial"
    assert [(e.step_name, e.status, e.error_category) for e in result.step_executions] == [
        ("measure", "failed", "DATA_QUALITY"), ("after", "completed", None)]
    checkpoint = runner.get_checkpoint(result.run_id, "measure")
    assert checkpoint.context_snapshot["quality_metrics"]["measure"]["valid_count"] == 5
    assert result.context.outputs["after"] == {"after": True}
