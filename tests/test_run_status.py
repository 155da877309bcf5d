"""Run status from every path: ``get_run`` is right whatever launched the run, however it ended.

* A run launched from the code location the way a schedule or sensor launches it (no
  ``spine/run_id`` tag) is its own spine run, and a Dagster re-execution of it joins that run.
* ``dagster job launch`` launches from the workspace through the instance's run launcher: the
  run worker is another process that loads the code location.
* A run whose process died, or that was interrupted, does not stay ``running`` once Dagster knows
  it ended.

Deployments are all-SQLite or all-PostgreSQL (instance storage and checkpoints).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
from dagster import (
    DagsterInstance,
    DagsterRunStatus,
    ReexecutionOptions,
    build_schedule_context,
    execute_job,
)

import definitions as example_location
from examples.demo import ExternalAPI
from examples.workflows import MY_WORKFLOW
from spine_dagster import CheckpointStore, WorkflowRunner, spine_schedule
from spine_dagster.compiler import reconstructable_job
from workflows_ops import calls

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent


@pytest.fixture
def instance(deployment):
    instance = DagsterInstance.from_config(deployment[0])
    try:
        yield instance
    finally:
        instance.dispose()


@pytest.fixture
def database_url(deployment, monkeypatch):
    monkeypatch.setenv("SPINE_DAGSTER_DATABASE_URL", deployment[1])  # what the code location uses
    return deployment[1]


def env_for(deployment, **extra) -> dict[str, str]:
    return {**os.environ, "DAGSTER_HOME": deployment[0], "SPINE_DAGSTER_DATABASE_URL": deployment[1],
            "PYTHONPATH": os.pathsep.join([str(TESTS), str(ROOT)]), **extra}


# -- launched from the code location, like a schedule or a sensor --------------------------------
def test_a_run_launched_without_a_spine_run_id_is_its_own_spine_run(deployment, instance,
                                                                    database_url):
    api = ExternalAPI()  # down for now
    job = example_location.defs.get_repository_def().get_job("my__workflow")
    schedule = spine_schedule(MY_WORKFLOW, "0 * * * *", params={"api_url": api.url})
    request = schedule(build_schedule_context(
        instance=instance, scheduled_execution_time=datetime(2026, 1, 10, tzinfo=timezone.utc)))
    first = job.execute_in_process(
        run_config=request.run_config, instance=instance, raise_on_error=False,
        tags={**request.tags, "dagster/schedule_name": schedule.name})
    assert not first.success

    runner = WorkflowRunner(database_url=database_url, instance=instance)
    record = runner.get_run(first.run_id)
    assert record.run_id == first.run_id
    assert instance.get_run_by_id(first.run_id).tags["spine/run_id"] == first.run_id
    assert (record.status, record.error_step, record.error_category) == (
        "failed", "step3", "TRANSIENT")
    assert "External API unavailable" in record.error
    assert (record.attempts, record.dagster_run_ids) == (1, [first.run_id])
    assert record.job_name == "my__workflow"
    assert record.workflow_ref == "examples.workflows:MY_WORKFLOW"

    # Dagster's own re-execution from failure, with no spine tags at all, joins the same run.
    api.start()
    try:
        parent = instance.get_run_by_id(first.run_id)
        second = execute_job(
            reconstructable_job(MY_WORKFLOW), instance=instance, run_config=parent.run_config,
            reexecution_options=ReexecutionOptions.from_failure(first.run_id, instance))
    finally:
        api.stop()
    assert second.success
    record = runner.get_run(second.run_id)
    assert record.run_id == first.run_id
    assert (record.status, record.error_step, record.error) == ("completed", None, None)
    assert (record.attempts, record.dagster_run_ids) == (2, [first.run_id, second.run_id])
    assert instance.get_run_by_id(second.run_id).tags["spine/run_id"] == first.run_id
    steps = CheckpointStore(database_url).step_rows(first.run_id)
    assert {name: row.dagster_run_id for name, row in steps.items()} == {
        "step1": first.run_id, "step2": first.run_id,
        "step3": second.run_id, "step4": second.run_id}
    assert record.context.get_output("step4", "message") == (
        "Workflow RESUMED and completed successfully")


@pytest.mark.slow
@pytest.mark.parametrize("deployment", ["postgres"], indirect=True)  # sqlite: see test_dagster_dev
def test_dagster_job_launch_from_the_workspace(deployment, instance, database_url, tmp_path):
    run_id = "0f0e0d0c-0000-4000-8000-00000000abcd"
    config = {"resources": {"spine": {"config": {"params": {"tier": "gold",
                                                            "recipients": ["ops@example.com"]}}}}}
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "dagster"), "job", "launch", "-w", "workspace.yaml",
         "-j", "examples__nightly_digest", "--run-id", run_id,
         "--config-json", json.dumps(config),
         "--tags", json.dumps({"dagster/schedule_name": "examples__nightly_digest_schedule"})],
        cwd=ROOT, env=env_for(deployment, SPINE_DAGSTER_HOME=str(tmp_path / "spine")),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=180)
        assert proc.returncode == 0, output[-3000:]
        deadline = time.monotonic() + 120
        while instance.get_run_by_id(run_id).status not in (DagsterRunStatus.SUCCESS,
                                                            DagsterRunStatus.FAILURE):
            assert time.monotonic() < deadline, "the launched run did not finish"
            time.sleep(0.5)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # the CLI, its code server and run worker
            proc.wait()

    dagster_run = instance.get_run_by_id(run_id)
    assert dagster_run.status == DagsterRunStatus.SUCCESS
    assert dagster_run.tags["spine/run_id"] == run_id
    record = WorkflowRunner(database_url=database_url, instance=instance).get_run(run_id)
    assert (record.run_id, record.status, record.attempts) == (run_id, "completed", 1)
    assert record.dagster_run_ids == [run_id]
    assert record.context.get_output("send") == {"sent_to": ["ops@example.com"], "items": 3}
    [checkpoint] = [c for c in WorkflowRunner(database_url=database_url, instance=instance)
                    .list_checkpoints(run_id) if c.step_name == "send"]
    assert checkpoint.dagster_run_id == run_id


# -- a run that died, or was interrupted -----------------------------------------------------------
# Like a run worker: Dagster executes the job; no WorkflowRunner is there to record the end.
RUN_DYING = """
    from dagster import DagsterInstance, execute_job
    from spine_dagster import spine_run_config
    from spine_dagster.compiler import reconstructable_job
    import workflows_ops
    execute_job(reconstructable_job(workflows_ops.{workflow}), instance=DagsterInstance.get(),
                run_config=spine_run_config({{"calls_file": {calls!r}, "die": True,
                                             "block": {block!r}}}))
"""


def start_dying_run(deployment, workflow: str, calls_file: Path, block: str | None = None):
    code = textwrap.dedent(RUN_DYING.format(workflow=workflow, calls=str(calls_file),
                                            block=block))
    return subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env_for(deployment),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def the_only_run(runner):
    [record] = runner.store.list_runs()
    return runner.get_run(record.run_id)


@pytest.mark.parametrize("ending", ["process_died", "interrupted"])
def test_a_run_that_ended_without_reporting_is_not_running_forever(deployment, instance,
                                                                   database_url, tmp_path, ending):
    calls_file = tmp_path / "calls.txt"
    if ending == "process_died":
        proc = start_dying_run(deployment, "DYING", calls_file)
        output, _ = proc.communicate(timeout=180)
        assert proc.returncode == 17, output[-3000:]  # os._exit(17) inside the step
    else:
        release = tmp_path / "never"
        proc = start_dying_run(deployment, "BLOCKING", calls_file, block=str(release))
        try:
            deadline = time.monotonic() + 120
            while [c[0] for c in calls(calls_file)] != ["extract", "transform"]:
                assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read()
                time.sleep(0.2)
            os.kill(proc.pid, signal.SIGINT)  # Ctrl-C / a terminate request
            proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert [c[0] for c in calls(calls_file)] == ["extract", "transform"]

    runner = WorkflowRunner(database_url=database_url, instance=instance)
    record = the_only_run(runner)
    dagster_run = instance.get_run_by_id(record.last_dagster_run_id)
    if ending == "process_died":
        # Nobody reported the end yet: Dagster itself still says STARTED, so does get_run.
        assert dagster_run.status == DagsterRunStatus.STARTED
        assert runner.get_run(record.run_id).status == "running"
        # Dagster's run monitoring (or an operator) marks the dead run failed or canceled.
        instance.report_run_canceled(dagster_run, message="worker process was lost")
    assert instance.get_run_by_id(dagster_run.run_id).status in (DagsterRunStatus.CANCELED,
                                                                 DagsterRunStatus.FAILURE)

    record = runner.get_run(record.run_id)
    assert record.status == "failed"
    if ending == "process_died":
        assert f"Dagster run {dagster_run.run_id} ended" in record.error
    else:  # the interrupted step recorded it on its way out
        assert "the step was interrupted" in record.error, record.error
        assert record.error_step == "transform"
    assert record.run_id == dagster_run.run_id
    assert record.attempts == 1 and record.dagster_run_ids == [dagster_run.run_id]
    assert runner.get_run(record.run_id).status == "failed"  # stays so

    resumed = runner.resume(record.run_id, params_override={"die": False, "block": None})
    assert resumed.status == "completed"
    assert [c[0] for c in calls(calls_file)][2:] == ["transform", "load"]
    assert runner.get_run(record.run_id).dagster_run_ids == [dagster_run.run_id,
                                                             resumed.dagster_run_id]
