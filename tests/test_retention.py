"""Checkpoint retention on both backends, with rows aged by SQL directly on the tables."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from dagster import DefaultScheduleStatus, Definitions, build_schedule_context

from spine_dagster import (
    CheckpointStore,
    InvalidRetentionError,
    SpineCheckpointIOManager,
    Step,
    StepResult,
    Workflow,
    WorkflowRunner,
    WorkflowStatus,
    build_job,
    cleanup_schedule,
)
from spine_dagster.retention import JOB_NAME, cleanup_checkpoints

from checkpoint_rows import KEPT_AFTER_POLICY, WF, make_run, remaining, seed_policy_cases


@pytest.fixture
def store(database_url) -> CheckpointStore:
    return CheckpointStore(database_url)


def test_sqlite_timestamps_are_text_that_sorts_as_time(tmp_path):
    store = CheckpointStore(f"sqlite:///{tmp_path}/fmt.db")
    make_run(store, "r", "completed", checkpoint_days=3, run_days=3, steps=1)
    store.save_checkpoint(run_id="r", workflow_name=WF, step_name="fresh", step_index=1,
                          dagster_run_id="d", snapshot={"context": {}})
    with store.engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT step_name, created_at, typeof(created_at) "
                                    "FROM core_workflow_checkpoints ORDER BY created_at")).all()
    pattern = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d{1,6})?$")
    assert [r[0] for r in rows] == ["s0", "fresh"]
    assert all(r[2] == "text" and pattern.match(r[1]) for r in rows), rows


def test_policy_dry_run_then_cleanup(store):
    seed_policy_cases(store)
    before = remaining(store)
    assert store.cleanup(datetime.now(timezone.utc) - timedelta(days=7), dry_run=True) == 6
    assert cleanup_checkpoints(store.url, 7, dry_run=True) == 6
    assert remaining(store) == before  # a dry run deletes nothing

    assert cleanup_checkpoints(store.url, 7) == 6
    assert remaining(store) == KEPT_AFTER_POLICY
    assert cleanup_checkpoints(store.url, 7) == 0
    # the run records themselves stay: only checkpoints are subject to retention
    assert store.get_run("done-old").status is WorkflowStatus.COMPLETED


def test_running_runs_are_never_touched(store):
    make_run(store, "running-ancient", "running", checkpoint_days=400, run_days=400)
    assert cleanup_checkpoints(store.url, 0.001) == 0
    assert remaining(store) == {"running-ancient": 2}


def test_batches_delete_everything_due(store):
    make_run(store, "big-done", "completed", checkpoint_days=10, run_days=10, steps=7)
    make_run(store, "keep-running", "running", checkpoint_days=10, run_days=10, steps=3)
    make_run(store, "keep-new", "completed", checkpoint_days=1, run_days=1, steps=2)
    deletes: list[str] = []

    def count(conn, cursor, statement, *args):
        if statement.lstrip().upper().startswith("DELETE FROM CORE_WORKFLOW_CHECKPOINTS"):
            deletes.append(statement)

    sa.event.listen(store.engine, "before_cursor_execute", count)
    try:
        assert cleanup_checkpoints(store.url, 7, batch_size=2) == 7
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", count)
    assert len(deletes) == 4  # 2 + 2 + 2 + 1, one transaction each
    assert remaining(store) == {"keep-running": 3, "keep-new": 2}


def test_bad_retention_settings_are_refused(database_url, tmp_path):
    with pytest.raises(InvalidRetentionError, match="checkpoint_retention_days=N"):
        WorkflowRunner(database_url=database_url).cleanup_checkpoints()
    for bad in (0, -1, "7", True):
        with pytest.raises(InvalidRetentionError, match="positive number of days"):
            WorkflowRunner(database_url=database_url, checkpoint_retention_days=bad)
    with pytest.raises(InvalidRetentionError, match="batch_size"):
        WorkflowRunner(database_url=database_url).cleanup_checkpoints(7, batch_size=0)


# -- with Dagster -----------------------------------------------------------------------------
RAN: list[str] = []
FAIL_AT: set[str] = set()


def _step(name: str):
    def handler(ctx, cfg):
        RAN.append(name)
        if name in FAIL_AT:
            raise RuntimeError(f"{name} is down")
        return StepResult.ok(output={"step": name})
    return handler


retention_wf = Workflow("tests.retention.wf", [Step.lambda_(n, _step(n)) for n in ("a", "b", "c")])


@pytest.fixture(autouse=True)
def _reset():
    RAN.clear()
    FAIL_AT.clear()


def test_runner_applies_retention_after_its_runs(database_url, instance, store):
    make_run(store, "done-old", "completed", checkpoint_days=10, run_days=10)
    make_run(store, "failed-recently", "failed", checkpoint_days=10, run_days=1)
    runner = WorkflowRunner(database_url=database_url, instance=instance,
                            checkpoint_retention_days=7)
    result = runner.execute(retention_wf)
    assert result.status == "completed" and RAN == ["a", "b", "c"]
    assert remaining(store) == {"failed-recently": 2, result.run_id: 3}
    assert runner.cleanup_checkpoints() == 0


def test_delete_checkpoints_on_success_with_the_runner(database_url, instance, store):
    runner = WorkflowRunner(database_url=database_url, instance=instance,
                            delete_checkpoints_on_success=True)
    ok = runner.execute(retention_wf, params={"n": 1})
    assert ok.status == "completed"
    assert runner.list_checkpoints(ok.run_id) == []
    assert runner.get_run(ok.run_id).context.outputs["c"] == {"step": "c"}  # final context kept

    FAIL_AT.add("b")
    failed = runner.execute(retention_wf)
    assert failed.status == "failed"
    assert [c.step_name for c in runner.list_checkpoints(failed.run_id)] == ["a"]  # resumable
    FAIL_AT.clear()
    RAN.clear()
    resumed = runner.resume(failed.run_id)
    assert resumed.status == "completed" and RAN == ["b", "c"]
    assert runner.list_checkpoints(failed.run_id) == []


def test_delete_checkpoints_on_success_as_io_manager_config(database_url, instance, store):
    """What a run launched from the Dagster UI does: the option lives in the job's IO manager."""
    io = SpineCheckpointIOManager(database_url=database_url, delete_checkpoints_on_success=True)
    result = build_job(retention_wf, io_manager=io).execute_in_process(instance=instance)
    assert result.success and RAN == ["a", "b", "c"]
    record = store.get_run(result.run_id)
    assert record.status is WorkflowStatus.COMPLETED
    assert store.list_checkpoints(record.run_id) == []
    handled = [e for e in result.all_events if e.event_type_value == "HANDLED_OUTPUT"]
    assert handled[-1].step_key == "c"  # the last step reports what it deleted: a's and b's
    assert handled[-1].event_specific_data.metadata["spine/checkpoints_deleted"].value == 2


def test_cleanup_schedule_is_daily_and_targets_the_cleanup_job():
    schedule = cleanup_schedule("sqlite:///unused.db", retention_days=14)
    assert (schedule.cron_schedule, schedule.execution_timezone) == ("0 3 * * *", "UTC")
    assert schedule.default_status is DefaultScheduleStatus.RUNNING
    defs = Definitions(schedules=[schedule])
    Definitions.validate_loadable(defs)
    assert defs.resolve_job_def(JOB_NAME).name == JOB_NAME


def test_cleanup_schedule_tick_runs_the_job_on_a_real_instance(database_url, instance, store):
    seed_policy_cases(store)
    schedule = cleanup_schedule(database_url, retention_days=7)
    job = Definitions(schedules=[schedule]).resolve_job_def(JOB_NAME)
    context = build_schedule_context(
        instance=instance, scheduled_execution_time=datetime(2026, 1, 10, 3, tzinfo=timezone.utc))
    tick = schedule.evaluate_tick(context)
    assert len(tick.run_requests) == 1
    request = tick.run_requests[0]

    dry = job.execute_in_process(
        instance=instance, tags=request.tags,
        run_config={"ops": {"spine_cleanup_checkpoints": {"config": {"dry_run": True}}}})
    assert dry.success and dry.output_for_node("spine_cleanup_checkpoints") == 6
    assert sum(remaining(store).values()) == sum(KEPT_AFTER_POLICY.values()) + 6

    run = job.execute_in_process(instance=instance, run_config=request.run_config,
                                 tags=request.tags)
    assert run.success and run.output_for_node("spine_cleanup_checkpoints") == 6
    assert remaining(store) == KEPT_AFTER_POLICY
    assert instance.get_run_by_id(run.run_id).job_name == JOB_NAME
