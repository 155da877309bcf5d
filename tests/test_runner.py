"""The seed's scenarios through WorkflowRunner, on real Dagster, on [sqlite] and [postgres].

Sections covered: Basic Resume, Resume with Modified Parameters, Manual Checkpoint Operations,
Resume Scenarios, Checkpoint Context. Each test asserts which steps actually ran.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from dagster import DagsterRunStatus

import seed_workflows as seed
from seed_workflows import SEED
from spine_dagster import (
    Checkpoint,
    CheckpointCorruptError,
    ErrorCategory,
    Step,
    StepResult,
    Workflow,
    WorkflowContext,
    WorkflowResult,
    WorkflowRunner,
    WorkflowStatus,
)


@pytest.fixture(autouse=True)
def _reset_seed():
    seed.reset()
    yield
    seed.reset()


def failed_run(runner: WorkflowRunner, **params) -> WorkflowResult:
    result = runner.execute(SEED, params={"key": "value", **params})
    assert result.status == WorkflowStatus.FAILED
    seed.CALLS.clear()
    return result


# -- Basic Resume -------------------------------------------------------------------------------
def test_workflow_fails_mid_execution(runner):
    result = runner.execute(SEED, params={"key": "value"})

    assert result.status == "failed"
    assert result.status is WorkflowStatus.FAILED
    assert result.error_step == "step3"
    assert result.error == "External API timeout"
    assert result.error_category == ErrorCategory.TIMEOUT.value
    assert result.completed_steps == ["step1", "step2"]
    assert result.failed_steps == ["step3"]
    assert seed.CALLS == ["step1", "step2", "step3"]
    assert isinstance(result.run_id, str) and result.run_id

    stored = runner.get_run(result.run_id)
    assert (stored.status, stored.error_step, stored.error) == (
        WorkflowStatus.FAILED, "step3", "External API timeout")
    assert stored.error_category == "TIMEOUT"


def test_fix_issue_and_resume(runner, instance):
    result = failed_run(runner)
    seed.STATE["api_down"] = False

    resumed = runner.resume(result.run_id)

    assert resumed.status == "completed"
    assert resumed.run_id == result.run_id
    assert resumed.completed_steps == ["step3", "step4"]
    assert seed.CALLS == ["step3", "step4"], "step1 and step2 must not run again"
    # step3 continued from step2's checkpoint
    assert seed.SEEN["step3"]["derived_key"] == "computed_value"
    assert resumed.context.outputs["step1"] == {"records": 1000}
    assert resumed.context.outputs["step4"] == {"sent": True, "resumed": True}
    assert runner.get_run(result.run_id).status is WorkflowStatus.COMPLETED


def test_resume_is_a_dagster_reexecution_in_the_parents_run_group(runner, instance):
    result = failed_run(runner)
    seed.STATE["api_down"] = False

    resumed = runner.resume(result.run_id)

    parent = instance.get_run_by_id(result.dagster_run_id)
    child = instance.get_run_by_id(resumed.dagster_run_id)
    assert parent.status == DagsterRunStatus.FAILURE
    assert child.status == DagsterRunStatus.SUCCESS
    assert child.parent_run_id == parent.run_id
    assert child.root_run_id == parent.run_id
    assert child.tags["dagster/parent_run_id"] == parent.run_id
    assert child.tags["dagster/root_run_id"] == parent.run_id
    assert child.tags["spine/run_id"] == parent.tags["spine/run_id"] == result.run_id
    assert set(child.step_keys_to_execute) == {"step3", "step4"}
    _, group = instance.get_run_group(child.run_id)
    assert {r.run_id for r in group} == {parent.run_id, child.run_id}
    assert resumed.dagster_run_ids == [parent.run_id, child.run_id]
    assert runner.get_run(result.run_id).dagster_run_ids == [parent.run_id, child.run_id]


def test_resume_and_get_run_accept_any_dagster_run_id_of_the_lineage(runner):
    result = failed_run(runner)
    seed.STATE["api_down"] = False

    assert runner.get_run(result.dagster_run_id).run_id == result.run_id
    resumed = runner.resume(result.dagster_run_id)

    assert resumed.run_id == result.run_id
    assert runner.get_run(resumed.dagster_run_id).status is WorkflowStatus.COMPLETED


def test_a_raising_step_fails_the_run_with_the_exception_text(runner):
    def boom(ctx, config):
        raise RuntimeError("disk full on /data")

    wf = Workflow("raising.wf", [Step.pipeline("step1", "seed.step1"), Step.lambda_("boom", boom)])
    result = runner.execute(wf)

    assert result.status == "failed"
    assert (result.error_step, result.error, result.error_category) == (
        "boom", "disk full on /data", "INTERNAL")
    stored = runner.get_run(result.run_id)
    assert (stored.error_step, stored.error) == ("boom", "disk full on /data")


def test_a_second_failure_and_a_second_resume_keep_the_run_id(runner):
    result = failed_run(runner)

    again = runner.resume(result.run_id)  # the API is still down
    assert again.status == "failed" and again.run_id == result.run_id
    assert seed.CALLS == ["step3"]
    seed.CALLS.clear()
    seed.STATE["api_down"] = False

    done = runner.resume(result.run_id)
    assert done.status == "completed" and done.completed_steps == ["step3", "step4"]
    assert seed.CALLS == ["step3", "step4"]
    assert len(done.dagster_run_ids) == 3
    assert runner.get_run(result.run_id).attempts == 3


# -- Resume with Modified Parameters -------------------------------------------------------------
def test_resume_with_modified_parameters(runner, instance):
    seed.STATE.update(api_down=False, min_timeout=60)
    result = runner.execute(SEED, params={"api_url": "https://api.example.com", "timeout": 30})
    assert result.status == "failed" and result.error_step == "step3"
    assert "timeout" in result.error
    seed.CALLS.clear()

    resumed = runner.resume(result.run_id, params_override={"timeout": 120})

    assert resumed.status == "completed"
    assert seed.CALLS == ["step3", "step4"]
    assert seed.SEEN["step3"]["timeout"] == 120
    assert seed.SEEN["step3"]["api_url"] == "https://api.example.com"
    assert seed.SEEN["step3"]["derived_key"] == "computed_value"
    assert seed.SEEN["step3"]["__resumed__"] is True
    assert seed.SEEN["step4"]["__resumed__"] is True
    assert resumed.context.outputs["step3"]["timeout"] == 120
    # the resumed run's config is the parent's, deep-merged with the override
    child = instance.get_run_by_id(resumed.dagster_run_id)
    params = child.run_config["resources"]["spine"]["config"]["params"]
    assert params == {"api_url": "https://api.example.com", "timeout": 120}
    # the checkpoint rows of the resumed steps carry the new params; earlier ones are untouched
    assert runner.get_checkpoint(result.run_id, step="step3").context.params["timeout"] == 120
    assert runner.get_checkpoint(result.run_id, step="step2").context.params["timeout"] == 30


def test_resumed_flag_is_absent_in_a_fresh_run(runner):
    seed.STATE["api_down"] = False
    result = runner.execute(SEED, params={"timeout": 5, "__resumed__": True})
    assert result.status == "completed"
    assert all("__resumed__" not in seen for seen in seed.SEEN.values())


# -- Manual Checkpoint Operations ----------------------------------------------------------------
def test_list_inspect_and_delete_checkpoints(runner):
    result = failed_run(runner)

    checkpoints = runner.list_checkpoints(result.run_id)
    assert [cp.step_name for cp in checkpoints] == ["step1", "step2"]
    assert all(isinstance(cp, Checkpoint) for cp in checkpoints)
    assert checkpoints[0].created_at <= checkpoints[1].created_at
    assert checkpoints[0].created_at.tzinfo is not None

    checkpoint = runner.get_checkpoint(result.run_id, step="step2")
    assert (checkpoint.run_id, checkpoint.workflow_name, checkpoint.step_name) == (
        result.run_id, "my.workflow", "step2")
    assert isinstance(checkpoint.context, WorkflowContext)
    assert checkpoint.context.params == {"key": "value", "derived_key": "computed_value"}
    assert checkpoint.context.outputs == {"step1": {"records": 1000},
                                          "step2": {"processed": 950}}
    assert checkpoint.step_outputs == checkpoint.context.outputs

    assert runner.delete_checkpoints(result.run_id) == 2
    assert runner.list_checkpoints(result.run_id) == []


# -- Resume Scenarios ----------------------------------------------------------------------------
def test_resume_from_specific_step_skips_step3(runner):
    result = failed_run(runner)

    skipped = runner.execute(SEED, run_id=result.run_id, start_from="step4")

    assert skipped.status == "completed"
    assert skipped.run_id == result.run_id
    assert seed.CALLS == ["step4"]
    assert skipped.completed_steps == ["step4"]
    assert skipped.context.outputs["step2"] == {"processed": 950}  # from step2's checkpoint
    assert "step3" not in skipped.context.outputs
    assert [c.step_name for c in runner.list_checkpoints(result.run_id)] == [
        "step1", "step2", "step4"]


def test_rerun_from_beginning_with_same_params(runner):
    result = failed_run(runner, timeout=30)
    seed.STATE["api_down"] = False

    params = runner.get_run(result.run_id).context.params
    fresh = runner.execute(SEED, params=params)

    assert fresh.run_id != result.run_id
    assert fresh.status == "completed"
    assert seed.CALLS == ["step1", "step2", "step3", "step4"]
    assert seed.SEEN["step1"]["key"] == "value" and seed.SEEN["step1"]["timeout"] == 30
    assert runner.get_run(result.run_id).status is WorkflowStatus.FAILED


def test_resume_with_context_override(runner):
    result = failed_run(runner)
    seed.STATE["api_down"] = False

    checkpoint = runner.get_checkpoint(result.run_id, step="step2")
    context = checkpoint.context.with_params({"force_refresh": True})
    resumed = runner.execute(SEED, context=context, start_from="step3")

    assert resumed.status == "completed"
    assert resumed.run_id == result.run_id
    assert seed.CALLS == ["step3", "step4"]
    assert seed.SEEN["step3"]["force_refresh"] is True
    assert resumed.context.outputs["step3"]["force_refresh"] is True
    assert resumed.context.outputs["step1"] == {"records": 1000}


def test_context_override_into_a_new_run(runner):
    seed.STATE["api_down"] = False
    context = WorkflowContext.create("my.workflow", params={"key": "v2"}, run_id="ctx-run-1")
    context = context.with_output("step1", {"records": 10}).with_output("step2", {"processed": 5})

    result = runner.execute(SEED, context=context, start_from="step3")

    assert result.status == "completed" and result.run_id == "ctx-run-1"
    assert seed.CALLS == ["step3", "step4"]
    assert result.context.outputs["step2"] == {"processed": 5}
    assert [c.step_name for c in runner.list_checkpoints("ctx-run-1")] == ["step3", "step4"]


def test_fresh_run_started_at_a_later_step(runner):
    seed.STATE["api_down"] = False
    result = runner.execute(SEED, params={"timeout": 1}, start_from="step3")
    assert result.status == "completed"
    assert seed.CALLS == ["step3", "step4"]


# -- Checkpoint Context --------------------------------------------------------------------------
def test_what_gets_saved(runner):
    result = runner.execute(SEED, params={"key": "value"}, partition={"date": "2026-01-10"})
    assert result.status == "failed"

    snapshot = runner.get_checkpoint(result.run_id, step="step2").context_snapshot
    assert snapshot["run_id"] == result.run_id
    assert snapshot["workflow_name"] == "my.workflow"
    assert snapshot["step_name"] == "step2"
    context = snapshot["context"]
    assert context["params"] == {"key": "value", "derived_key": "computed_value"}
    assert context["outputs"] == {"step1": {"records": 1000}, "step2": {"processed": 950}}
    assert context["quality_metrics"]["step1"]["passed"] is True
    assert context["quality_metrics"]["step1"]["record_count"] == 1000
    assert context["partition"] == {"date": "2026-01-10"}
    assert set(snapshot["metadata"]) >= {"created_at", "python_version", "spine_version",
                                         "spine_dagster_version", "dagster_version"}
    assert runner.get_checkpoint(result.run_id, step="step2").context.partition == {
        "date": "2026-01-10"}


def test_partition_survives_a_resume(runner):
    result = runner.execute(SEED, params={"key": "value"}, partition={"date": "2026-01-10"})
    seed.STATE["api_down"] = False
    seed.CALLS.clear()

    resumed = runner.resume(result.run_id)
    assert resumed.context.partition == {"date": "2026-01-10"}
    assert runner.get_checkpoint(result.run_id, step="step4").context.partition == {
        "date": "2026-01-10"}


# -- Workflows built in a function ---------------------------------------------------------------
def test_workflow_built_inside_a_function_runs_and_resumes_in_process(runner):
    calls = []
    broken = {"on": True}

    def make() -> Workflow:
        def flaky(ctx, config):
            calls.append("flaky")
            if broken["on"]:
                return StepResult.fail("not yet", ErrorCategory.TRANSIENT)
            return StepResult.ok(output={"total": ctx.get_output("first", "n") * 2})

        return Workflow("local.wf", [
            Step.lambda_("first", lambda ctx, cfg: calls.append("first") or {"n": 21}),
            Step.lambda_("flaky", flaky),
        ])

    result = runner.execute(make(), params={})
    assert result.status == "failed" and calls == ["first", "flaky"]
    broken["on"] = False

    resumed = runner.resume(result.run_id)

    assert resumed.status == "completed"
    assert calls == ["first", "flaky", "flaky"]
    assert resumed.context.outputs["flaky"] == {"total": 42}


def test_list_checkpoints_names_a_damaged_row_and_can_skip_it(runner, database_url):
    """The newest checkpoint edited: list_checkpoints names it (and how to list the others), and
    skip_damaged=True lists the others, the damaged one in .damaged (it used to fail on the run's
    newest checkpoint before listing anything)."""
    result = runner.execute(Workflow("tests.damaged", [
        Step.lambda_(name, lambda ctx, cfg: {"x": 1}) for name in ("a", "b", "c")]))
    engine = sa.create_engine(database_url, poolclass=sa.pool.NullPool)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE core_workflow_checkpoints SET context_snapshot = '[]' "
                             "WHERE run_id = :r AND step_name = 'c'"), {"r": result.run_id})
    engine.dispose()
    with pytest.raises(CheckpointCorruptError, match="step 'c'.*skip_damaged=True"):
        runner.list_checkpoints(result.run_id)
    listing = runner.list_checkpoints(result.run_id, skip_damaged=True)
    assert [c.step_name for c in listing] == ["a", "b"]
    assert [(d.run_id, d.step_name) for d in listing.damaged] == [(result.run_id, "c")]
