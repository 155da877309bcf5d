"""Wait steps on a real Dagster instance: a resume never waits again for a completed wait, and a
run killed during a wait resumes with only the remaining time."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from dagster import DagsterInstance

from spine_dagster import ErrorCategory, Step, StepResult, Workflow, WorkflowRunner
from step_fixtures import module_instance, runner  # noqa: F401 - fixtures
from workflows_steps import calls

TESTS_DIR = Path(__file__).resolve().parent


def waiting(name: str, seconds: float, broken: dict[str, bool], ran: list[str],
            **options) -> Workflow:
    def step(label):
        def handler(ctx, config):
            ran.append(label)
            if broken.get(label):
                return StepResult.fail("the warehouse is down", ErrorCategory.TRANSIENT)
            return {"ran": label}
        return handler

    return Workflow(name, [Step.lambda_("before", step("before")),
                           Step.wait("pause", seconds, **options),
                           Step.lambda_("after", step("after"))])


def messages(runner: WorkflowRunner, dagster_run_id: str) -> list[str]:
    return [entry.user_message for entry in runner.instance.all_logs(dagster_run_id)]


def test_a_resume_after_a_checkpointed_wait_starts_after_it(runner):
    broken, ran = {"after": True}, []
    wf = waiting("wait.checkpointed", 1, broken, ran)
    first = runner.execute(wf)
    assert (first.status, first.error_step) == ("failed", "after")
    assert first.context.outputs["pause"] == {"waited_seconds": 1.0, "slept_seconds": 1.0}
    assert [e.step_name for e in first.step_executions] == ["before", "pause", "after"]

    broken["after"] = False
    started = time.monotonic()
    resumed = runner.resume(first.run_id)
    assert resumed.status == "completed", resumed.error
    assert resumed.completed_steps == ["after"], "the wait did not run again"
    assert [e.step_name for e in resumed.step_executions] == ["after"]
    assert ran == ["before", "after", "after"]
    assert time.monotonic() - started < 60  # a guard only; the steps above are the assertion


def test_a_resume_at_a_completed_wait_without_a_checkpoint_does_not_wait_again(runner):
    broken, ran = {"after": True}, []
    wf = waiting("wait.unsaved", 1, broken, ran, checkpoint=False)
    first = runner.execute(wf)
    assert (first.status, first.error_step) == ("failed", "after")
    assert [c.step_name for c in runner.list_checkpoints(first.run_id)] == ["before"]

    broken["after"] = False
    resumed = runner.resume(first.run_id)
    assert resumed.status == "completed", resumed.error
    assert resumed.completed_steps == ["pause", "after"], "no checkpoint: the resume starts there"
    assert resumed.context.outputs["pause"] == {"waited_seconds": 1.0, "slept_seconds": 0.0}
    assert ran == ["before", "after", "after"]
    log = messages(runner, resumed.dagster_run_id)
    assert any("[pause] continuing the wait started at" in m and "0.0s of 1s left" in m
               for m in log)

    # a step before the wait runs again: the wait starts over, in full
    again = runner.execute(wf, run_id=first.run_id, start_from="before")
    assert again.status == "completed", again.error
    assert again.context.outputs["pause"] == {"waited_seconds": 1.0, "slept_seconds": 1.0}


SCRIPT = """
import json, sys
from workflows_steps import WAITING
from spine_dagster import WorkflowRunner
WorkflowRunner(log_level="ERROR").execute(WAITING, params=json.loads(sys.argv[1]))
"""


def _wait_for(what: str, done, proc: subprocess.Popen, log: Path):
    deadline = time.monotonic() + 120  # a guard against hanging, not a speed assertion
    while True:
        value = done()
        if value:
            return value
        if proc.poll() is not None:
            pytest.fail(f"the run exited ({proc.returncode}) before {what}:\n"
                        f"{log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} within 120 s:\n{log.read_text()[-3000:]}")
        time.sleep(0.1)


def test_a_run_killed_during_a_wait_resumes_with_the_remaining_time(database_url, tmp_path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    calls_file, log = tmp_path / "calls.txt", tmp_path / "run.log"
    env = {**os.environ, "DAGSTER_HOME": str(home), "SPINE_DAGSTER_DATABASE_URL": database_url,
           "PYTHONPATH": str(TESTS_DIR)}
    instance = DagsterInstance.from_config(str(home))
    runner = WorkflowRunner(database_url=database_url, instance=instance, progress=False)
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", SCRIPT, json.dumps({"calls_file": str(calls_file)})],
            env=env, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT)
    try:
        run_id = _wait_for("a Dagster run", lambda: next(
            (r.tags["spine/run_id"] for r in instance.get_runs() if "spine/run_id" in r.tags),
            None), proc, log)
        _wait_for("the wait", lambda: getattr(runner.store.step_rows(run_id).get("pause"),
                                              "status", None) == "running", proc, log)
        time.sleep(1.0)  # a part of the 4 s wait passes
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert calls(calls_file) == ["before"]

    try:
        resumed = runner.resume(run_id)
        assert resumed.status == "completed", resumed.error
        assert resumed.completed_steps == ["pause", "after"]
        assert calls(calls_file) == ["before", "after"], "before was not run again"
        pause = resumed.context.outputs["pause"]
        assert pause["waited_seconds"] == 4.0
        assert pause["slept_seconds"] < 4.0 - 1.0, "only the remaining time"
        assert any("[pause] continuing the wait started at" in m
                   for m in messages(runner, resumed.dagster_run_id))
    finally:
        instance.dispose()
