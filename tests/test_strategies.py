"""Checkpoint strategies: ``every_step`` (default), ``key_steps``, and resume under each.

The seed's example: ``fetch (checkpoint) -> transform1 -> transform2 -> load (checkpoint)``; when
``load`` fails under ``key_steps``, the resume runs ``transform1, transform2, load`` and not
``fetch``. Every test records the steps that really ran in a trace file (see
``workflows_strategies.record``). The UI's re-executions of a ``key_steps`` run go through a real
webserver: tests/test_ui.py::test_key_steps_reexecution_from_the_ui.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from dagster import DagsterEventType, instance_for_test

import workflows_strategies as wfs
from spine_dagster import (
    InvalidWorkflowError,
    SpineCheckpointIOManager,
    Step,
    Workflow,
    WorkflowRunner,
    build_definitions,
    build_job,
)
from spine_dagster.schema import transit


@pytest.fixture(scope="module")
def instance():
    """One real, persistent Dagster instance for the module: runs never share ids, and creating
    an instance costs about a second."""
    with instance_for_test() as inst:
        yield inst


def _steps(lines):
    return [line["step"] for line in lines]


def _checkpoint_steps(runner, run_id):
    return [c.step_name for c in runner.list_checkpoints(run_id)]


def _transit_rows(database_url):
    engine = sa.create_engine(database_url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.select(transit.c.dagster_run_id, transit.c.step_name)).all()
    finally:
        engine.dispose()


def _seed_fail_then_resume(runner, workflow, trace):
    """Run the seed workflow with a failing load, check it, resume it, check again."""
    failed = runner.execute(workflow, params={"trace": str(trace), "fail_load": True})
    assert failed.status == "failed"
    assert failed.error_step == "load"
    assert _steps(wfs.read_trace(trace)) == ["fetch", "transform1", "transform2", "load"]
    assert _checkpoint_steps(runner, failed.run_id) == ["fetch"]

    before = len(wfs.read_trace(trace))
    resumed = runner.resume(failed.run_id, params_override={"fail_load": False})
    ran = wfs.read_trace(trace)[before:]
    assert resumed.status == "completed", resumed.error
    assert resumed.run_id == failed.run_id
    assert _steps(ran) == ["transform1", "transform2", "load"]  # fetch did not run again
    assert resumed.completed_steps == ["transform1", "transform2", "load"]
    assert all(line["resumed"] is True for line in ran)
    assert _checkpoint_steps(runner, failed.run_id) == ["fetch", "load"]
    assert resumed.context.get_output("load") == {"loaded": 7}
    return failed, resumed, ran


def test_key_steps_resume_restarts_after_newest_checkpoint(database_url, instance, tmp_path):
    runner = WorkflowRunner(database_url=database_url, instance=instance,
                            checkpoint_strategy="key_steps")
    failed, _, _ = _seed_fail_then_resume(runner, wfs.SEED_KEY_STEPS, tmp_path / "trace.jsonl")
    # the UI shows a checkpoint's size on the key steps only
    sizes = {}
    for record in instance.get_records_for_run(failed.dagster_run_id,
                                               of_type=DagsterEventType.HANDLED_OUTPUT).records:
        event = record.event_log_entry.dagster_event
        sizes[event.step_key] = event.event_specific_data.metadata.get("spine/checkpoint_bytes")
    assert set(sizes) == {"fetch", "transform1", "transform2"}
    assert sizes["fetch"].value == runner.get_checkpoint(failed.run_id, "fetch").size_bytes
    assert sizes["transform1"] is None and sizes["transform2"] is None


def test_key_steps_multiprocess_executor(database_url, instance, tmp_path):
    """Each step runs in its own process; non-checkpoint contexts travel through the transit
    table, never appear as checkpoints, are not used by the resume, and are cleaned up."""
    runner = WorkflowRunner(database_url=database_url, instance=instance,
                            checkpoint_strategy="key_steps", executor="multiprocess")
    trace = tmp_path / "trace.jsonl"
    failed, resumed, ran = _seed_fail_then_resume(runner, wfs.SEED_KEY_STEPS, trace)
    pids = {line["pid"] for line in wfs.read_trace(trace)}
    assert len(pids) == 7, "every step ran in a process of its own"
    assert _transit_rows(database_url) == []
    assert instance.get_run_by_id(failed.dagster_run_id).job_name == "strategies__seed"


def test_every_step_is_the_default_and_a_step_can_opt_out(database_url, instance, tmp_path):
    runner = WorkflowRunner(database_url=database_url, instance=instance)
    trace = tmp_path / "trace.jsonl"
    result = runner.execute(wfs.FLAGS, params={"trace": str(trace)})
    assert result.status == "completed"
    assert _steps(wfs.read_trace(trace)) == ["cheap", "expensive", "scratch", "flaky"]
    assert _checkpoint_steps(runner, result.run_id) == ["cheap", "expensive", "flaky"]


def test_key_steps_honours_result_checkpoint_flag(database_url, instance, tmp_path):
    """Under key_steps only ``StepResult.ok(checkpoint=True)`` checkpoints here; a failure at the
    last step resumes after it, re-running the opted-out step too."""
    runner = WorkflowRunner(database_url=database_url, instance=instance,
                            checkpoint_strategy="key_steps")
    trace = tmp_path / "trace.jsonl"
    failed = runner.execute(wfs.FLAGS, params={"trace": str(trace), "succeed_on": 2})
    assert (failed.status, failed.error_step) == ("failed", "flaky")
    assert _checkpoint_steps(runner, failed.run_id) == ["expensive"]
    resumed = runner.resume(failed.run_id)
    assert resumed.status == "completed"
    assert _steps(wfs.read_trace(trace)[4:]) == ["scratch", "flaky"]
    assert _checkpoint_steps(runner, failed.run_id) == ["expensive"]
    assert resumed.context.get_output("flaky") == {"attempt": 2}


def test_strategy_set_on_the_workflow_wins_over_the_runner(database_url, instance, tmp_path):
    default_runner = WorkflowRunner(database_url=database_url, instance=instance)
    trace = tmp_path / "trace.jsonl"
    own = default_runner.execute(wfs.SEED_OWN_STRATEGY,
                                 params={"trace": str(trace), "fail_load": True})
    assert _checkpoint_steps(default_runner, own.run_id) == ["fetch"]

    every = Workflow("strategies.every", [Step.lambda_("a", wfs._cheap), Step.lambda_("b", wfs._cheap)],
                     checkpoint_strategy="every_step")
    key_runner = WorkflowRunner(database_url=database_url, instance=instance,
                                checkpoint_strategy="key_steps")
    result = key_runner.execute(every)
    assert _checkpoint_steps(key_runner, result.run_id) == ["a", "b"]


def test_io_manager_config_sets_the_strategy_for_ui_runs(database_url, instance, tmp_path):
    """Runs launched without the runner (the UI, schedules) follow the IO manager's config:
    set in code, or in the Launchpad's run config."""
    from spine_dagster import CheckpointStore

    store = CheckpointStore(database_url)
    trace = tmp_path / "trace.jsonl"
    params = {"resources": {"spine": {"config": {"params": {"trace": str(trace)}}}}}

    in_code = build_job(wfs.SEED_KEY_STEPS, io_manager=SpineCheckpointIOManager(
        database_url=database_url, checkpoint_strategy="key_steps"))
    run = in_code.execute_in_process(instance=instance, run_config=params)
    assert run.success
    assert [c.step_name for c in store.list_checkpoints(run.run_id)] == ["fetch", "load"]

    # Dagster replaces (does not merge) a resource's code config with the run config's, so a
    # Launchpad override repeats database_url (unless it comes from SPINE_DAGSTER_DATABASE_URL).
    default = build_job(wfs.SEED_KEY_STEPS, database_url=database_url)
    launchpad = {**params, "resources": {**params["resources"], "spine_io": {"config": {
        "database_url": database_url, "checkpoint_strategy": "key_steps"}}}}
    run = default.execute_in_process(instance=instance, run_config=launchpad)
    assert run.success
    assert [c.step_name for c in store.list_checkpoints(run.run_id)] == ["fetch", "load"]

    defs = build_definitions([wfs.SEED_KEY_STEPS], database_url=database_url,
                             checkpoint_strategy="key_steps", checkpoint_retention_days=None)
    run = defs.get_job_def("strategies__seed").execute_in_process(instance=instance,
                                                                  run_config=params)
    assert run.success
    assert [c.step_name for c in store.list_checkpoints(run.run_id)] == ["fetch", "load"]
    assert _steps(wfs.read_trace(trace)) == ["fetch", "transform1", "transform2", "load"] * 3


def test_unknown_strategy_is_refused_everywhere(tmp_path):
    from dagster import DagsterInvalidConfigError

    url = f"sqlite:///{tmp_path}/c.db"
    with pytest.raises(InvalidWorkflowError, match="unknown checkpoint_strategy 'key_step'"):
        WorkflowRunner(database_url=url, checkpoint_strategy="key_step")
    with pytest.raises(InvalidWorkflowError, match="use one of"):
        build_job(wfs.SEED_KEY_STEPS, checkpoint_strategy="every")
    with pytest.raises(InvalidWorkflowError, match="unknown checkpoint_strategy 'keysteps'"):
        build_definitions([wfs.SEED_KEY_STEPS], database_url=url, checkpoint_strategy="keysteps")
    bad = Workflow("strategies.bad", [Step.lambda_("a", wfs._cheap)], checkpoint_strategy="some")
    with pytest.raises(InvalidWorkflowError, match="unknown checkpoint_strategy 'some'"):
        build_job(bad)
    with pytest.raises(InvalidWorkflowError, match="every_step"):
        SpineCheckpointIOManager(checkpoint_strategy="sometimes")
    job = build_job(wfs.SEED_KEY_STEPS, database_url=url)
    with pytest.raises(DagsterInvalidConfigError, match="checkpoint_strategy"):
        job.execute_in_process(run_config={"resources": {"spine_io": {"config": {
            "checkpoint_strategy": "sometimes"}}}})
