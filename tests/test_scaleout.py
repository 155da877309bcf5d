"""Scale-out: resume with the multiprocess executor, all shared state in PostgreSQL.

Every step runs in its own process (our stand-in for steps on different machines). The only
state they share is the PostgreSQL-backed Dagster instance and the PostgreSQL checkpoint store.
Slow (a process per step), so one failing run and one resume.
"""

from __future__ import annotations

import os

import pytest
from dagster import DagsterInstance, DagsterRunStatus

from spine_dagster import WorkflowRunner
from workflows_ops import FLAKY, calls


@pytest.mark.slow
@pytest.mark.parametrize("deployment", ["postgres"], indirect=True)
def test_resume_with_a_process_per_step_on_postgres(tmp_path, deployment):
    home, database_url = deployment
    instance = DagsterInstance.from_config(home)
    assert type(instance.run_storage).__name__ == "PostgresRunStorage"
    calls_file = tmp_path / "calls.txt"
    try:
        runner = WorkflowRunner(database_url=database_url, instance=instance,
                                executor="multiprocess", log_level="ERROR")
        first = runner.execute(FLAKY, params={"calls_file": str(calls_file), "fail": True})
        assert (first.status, first.error_step, first.error_category) == (
            "failed", "transform", "TRANSIENT")
        assert [c.step_name for c in runner.list_checkpoints(first.run_id)] == ["extract"]

        resumed = runner.resume(first.run_id, params_override={"fail": False})

        assert (resumed.status, resumed.run_id) == ("completed", first.run_id)
        assert resumed.completed_steps == ["transform", "load"]
        ran = calls(calls_file)
        assert [(step, resumed_flag) for step, _, resumed_flag in ran] == [
            ("extract", 0), ("transform", 0), ("transform", 1), ("load", 1)]
        pids = [pid for _, pid, _ in ran]
        assert len(set(pids)) == 4 and os.getpid() not in pids  # a process per step
        checkpoints = {c.step_name: c.dagster_run_id for c in runner.list_checkpoints(first.run_id)}
        assert checkpoints == {"extract": first.dagster_run_id,
                               "transform": resumed.dagster_run_id,
                               "load": resumed.dagster_run_id}
        assert runner.get_run(first.run_id).context.get_output("load") == {"loaded": 10}
        child = instance.get_run_by_id(resumed.dagster_run_id)
        assert child.parent_run_id == first.dagster_run_id
        assert child.status == DagsterRunStatus.SUCCESS
    finally:
        instance.dispose()
