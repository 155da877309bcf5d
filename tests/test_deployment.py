"""Spine runs in a real deployment: UI re-execution, resume with changed params, auto-resume.

One ``dagster-webserver`` (and, for auto-resume, one ``dagster-daemon``) serve
``tests/locations/spine_test_location.py`` for the whole module; see ``deployment_support``.
Runs are launched and re-executed through GraphQL, exactly as the UI does. Which steps ran is read
from the side-effect trace the steps write, never assumed.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from dagster import DagsterEventType
from deployment_support import (  # noqa: F401 - fixtures
    Deployment,
    body_timeout,
    daemon,
    deployment,
    free_port,
    pg_checkpoint_url,
    wait_until,
)

from spine_dagster import (
    NothingToResumeError,
    SpineDagsterClient,
    UnknownRunError,
    WebserverQueryError,
    WebserverUnavailableError,
    WorkflowStatus,
)
from spine_dagster.auto_resume import RETRY_ON_FAILURE_TAG

pytestmark = [pytest.mark.slow, pytest.mark.postgres, body_timeout(300)]

FLAKY = "deploy__flaky"
AUTO = "deploy__auto"


def trace(path: Path) -> list[str]:
    """The steps that ran, in order, across every Dagster run of the spine run."""
    logs = list(path.glob("*.log"))
    assert len(logs) <= 1, logs
    return logs[0].read_text().split() if logs else []


def checkpoints(deployment: Deployment, spine_id: str) -> dict:
    return {c.step_name: c for c in deployment.store.list_checkpoints(spine_id)}


def outputs(checkpoint) -> dict:
    return checkpoint.context_snapshot["context"]["outputs"]


def failed_run(deployment: Deployment, job: str = FLAKY, **params) -> tuple[str, Path]:
    """A run that fails at step3 of 4 (after checkpointing step1 and step2)."""
    path = deployment.trace_dir()
    run_id = deployment.launch(job, path, **params)
    assert deployment.wait(run_id).status == "FAILURE"
    assert trace(path) == ["step1", "step2", "step3"]
    return run_id, path


# -- Re-execution from the Dagster UI --------------------------------------------------------------
def test_ui_reexecute_from_failure_resumes_from_the_checkpoints(deployment):
    run1, path = failed_run(deployment, fail_times=1)
    before = checkpoints(deployment, run1)
    assert sorted(before) == ["step1", "step2"]
    assert {c.dagster_run_id for c in before.values()} == {run1}

    # The "Re-execute from failure" button: launchRunReexecution(parentRunId, FROM_FAILURE).
    run2 = deployment.client.reexecute(run1, "FROM_FAILURE")
    child = deployment.wait(run2)

    assert child.status == "SUCCESS"
    assert child.parent_run_id == run1 and child.root_run_id == run1
    assert child.step_keys_to_execute == ["step3", "step4"]
    assert trace(path) == ["step1", "step2", "step3", "step3", "step4"]  # 1 and 2 did not re-run
    assert child.tags["spine/run_id"] == run1  # the spine run id is unchanged

    after = checkpoints(deployment, run1)
    for step in ("step1", "step2"):  # untouched
        assert after[step].dagster_run_id == run1
        assert after[step].created_at == before[step].created_at
    for step in ("step3", "step4"):  # written by the re-execution
        assert after[step].dagster_run_id == run2
        assert after[step].created_at > before["step2"].created_at
    final = outputs(after["step4"])
    # step3 ran on the context loaded from step2's checkpoint (step1's token travelled through it).
    assert final["step3"]["seen_token"] == outputs(before["step2"])["step2"]["token"]
    assert final["step3"]["resumed"] is True and final["step4"]["resumed"] is True

    record = deployment.store.get_run(run2)
    assert record.run_id == run1
    assert record.status is WorkflowStatus.COMPLETED
    assert record.dagster_run_ids == [run1, run2]


def test_ui_reexecute_from_failure_of_a_fused_op_skips_its_checkpointed_steps(deployment):
    run1, path = failed_run(deployment, job="deploy__fused", fail_times=1)
    before = checkpoints(deployment, run1)
    assert sorted(before) == ["step1", "step2"]

    run2 = deployment.client.reexecute(run1, "FROM_FAILURE")  # the UI's button
    child = deployment.wait(run2)

    assert child.status == "SUCCESS"
    assert child.step_keys_to_execute == ["step1__thru__step4"]  # Dagster re-runs the whole op
    assert trace(path) == ["step1", "step2", "step3", "step3", "step4"]  # the op skipped 1 and 2
    after = checkpoints(deployment, run1)
    assert {s: after[s].dagster_run_id for s in after} == {
        "step1": run1, "step2": run1, "step3": run2, "step4": run2}
    final = outputs(after["step4"])
    assert final["step3"]["seen_token"] == outputs(before["step2"])["step2"]["token"]
    assert final["step3"]["resumed"] is True
    events = deployment.instance.all_logs(run2)
    assert any("steps ['step1', 'step2'] of this op have checkpoints; continuing after 'step2'"
               in e.user_message for e in events)
    record = deployment.store.get_run(run1)
    assert (record.status, record.dagster_run_ids) == (WorkflowStatus.COMPLETED, [run1, run2])
    assert deployment.store.step_rows(run1)["step3"].attempts == 2


def test_ui_reexecute_all_and_selected_steps_overwrite_their_checkpoints(deployment):
    run1, path = failed_run(deployment, fail_times=1)
    first = checkpoints(deployment, run1)

    # "Re-execute all": every step runs again and rewrites its checkpoint.
    run2 = deployment.client.reexecute(run1, "ALL_STEPS")
    assert deployment.wait(run2).status == "SUCCESS"
    assert trace(path)[3:] == ["step1", "step2", "step3", "step4"]
    second = checkpoints(deployment, run1)
    assert {s: c.dagster_run_id for s, c in second.items()} == {
        "step1": run2, "step2": run2, "step3": run2, "step4": run2}
    assert second["step1"].created_at > first["step2"].created_at
    token2 = outputs(second["step1"])["step1"]["token"]
    assert token2 != outputs(first["step1"])["step1"]["token"]  # step1 really ran again

    # "Re-execute selected" (step2 onwards): executionParams with stepKeys and parentRunId.
    run3 = deployment.client.reexecute_steps(run2, ["step2", "step3", "step4"])
    child = deployment.wait(run3)
    assert child.status == "SUCCESS"
    assert child.step_keys_to_execute == ["step2", "step3", "step4"]
    assert child.parent_run_id == run2 and child.root_run_id == run1
    assert trace(path)[7:] == ["step2", "step3", "step4"]
    third = checkpoints(deployment, run1)
    assert third["step1"].dagster_run_id == run2
    assert third["step1"].created_at == second["step1"].created_at
    assert {s: third[s].dagster_run_id for s in ("step2", "step3", "step4")} == {
        "step2": run3, "step3": run3, "step4": run3}
    assert outputs(third["step4"])["step3"]["seen_token"] == token2  # step1 from its checkpoint
    assert deployment.store.get_run(run1).dagster_run_ids == [run1, run2, run3]


# -- Resume with changed params, from a deployment -------------------------------------------------
def test_resume_with_changed_params_through_the_webserver(deployment):
    run1, path = failed_run(deployment, fail_times=99, timeout=30)

    result = deployment.runner().resume(run1, params_override={"fixed": True, "timeout": 120},
                                        webserver=deployment.url)

    assert result.status is WorkflowStatus.COMPLETED
    assert result.run_id == run1
    assert [s.step_name for s in result.step_executions] == ["step3", "step4"]
    assert trace(path) == ["step1", "step2", "step3", "step3", "step4"]
    assert result.context.outputs["step3"]["timeout"] == 120
    assert result.context.params["timeout"] == 120 and result.context.params["__resumed__"]

    run2 = result.dagster_run_id
    child = deployment.instance.get_run_by_id(run2)
    assert child.parent_run_id == run1 and child.root_run_id == run1
    assert list(child.step_keys_to_execute) == ["step3", "step4"]
    # Launched by the deployment (it has a code-location origin: the daemon could retry it)...
    assert child.remote_job_origin is not None
    assert child.remote_job_origin.repository_origin.code_location_origin.location_name == \
        "spine_test_location"
    # ...with the parent's config deep-merged with the override...
    spine = child.run_config["resources"]["spine"]["config"]
    assert spine["params"] == {"trace": str(path), "fail_times": 99, "timeout": 120,
                               "fixed": True}
    assert spine["params_override"] == {"fixed": True, "timeout": 120}
    # ...and in the parent's run group, with the spine run id.
    assert child.tags["spine/run_id"] == run1
    assert child.tags["dagster/parent_run_id"] == run1
    root, group = deployment.instance.get_run_group(run2)
    assert root == run1 and {r.run_id for r in group} == {run1, run2}
    assert checkpoints(deployment, run1)["step3"].dagster_run_id == run2

    # A completed run has nothing to resume.
    with pytest.raises(NothingToResumeError, match="completed"):
        deployment.client.resume(run1)
    # The webserver answers FROM_FAILURE on a successful run with HTTP 500 and a PythonError body.
    with pytest.raises(WebserverQueryError, match="not failed or canceled") as info:
        deployment.client.reexecute(run2, "FROM_FAILURE")
    assert info.value.typename == "PythonError"


def test_cli_resume_with_webserver(deployment):
    run1, path = failed_run(deployment, fail_times=99, timeout=30)
    cli = str(Path(sys.executable).parent / "spine-dagster")
    args = [cli, "resume", run1, "--param", "fixed=true", "--param", "timeout=120",
            "--webserver", deployment.url, "--database-url", deployment.database_url]

    done = subprocess.run(args, capture_output=True, text=True, timeout=180)

    assert done.returncode == 0, done.stdout + done.stderr
    assert f"through {deployment.url}" in done.stdout
    assert "steps run: step3, step4" in done.stdout
    record = deployment.store.get_run(run1)
    assert record.status is WorkflowStatus.COMPLETED and len(record.dagster_run_ids) == 2
    child = deployment.instance.get_run_by_id(record.dagster_run_ids[-1])
    assert child.parent_run_id == run1 and child.remote_job_origin is not None
    assert child.run_config["resources"]["spine"]["config"]["params_override"] == {
        "fixed": True, "timeout": 120}
    assert trace(path) == ["step1", "step2", "step3", "step3", "step4"]

    again = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert again.returncode == 1 and "nothing to resume" in again.stderr


def test_resume_and_launch_errors_are_clear(deployment, tmp_path):
    with pytest.raises(UnknownRunError, match="no spine run or Dagster run"):
        deployment.client.resume("no-such-run")
    with pytest.raises(UnknownRunError, match="no Dagster run 'no-such-run'"):
        deployment.client.reexecute("no-such-run")
    closed = SpineDagsterClient(f"127.0.0.1:{free_port()}", database_url=deployment.database_url)
    with pytest.raises(WebserverUnavailableError, match="cannot reach the Dagster webserver"):
        closed.get_run("anything")
    with pytest.raises(WebserverQueryError, match="RunConfigValidationInvalid") as info:
        deployment.client.launch_run(FLAKY, run_config={"resources": {"spine": {"config": {
            "params": "not a dict"}}}})
    assert info.value.typename == "RunConfigValidationInvalid"


def test_spine_resume_job_resumes_from_the_launchpad(deployment):
    run1, path = failed_run(deployment, fail_times=99)

    launcher = deployment.client.launch_run("spine_resume", run_config={"ops": {"spine_resume": {
        "config": {"run_id": run1, "params_override": {"fixed": True}, "wait": True}}}})
    done = deployment.wait(launcher)

    assert done.status == "SUCCESS"
    run2 = done.tags["spine/resumed_dagster_run"]
    child = deployment.client.get_run(run2)
    assert child.status == "SUCCESS" and child.parent_run_id == run1
    assert child.step_keys_to_execute == ["step3", "step4"]
    assert trace(path) == ["step1", "step2", "step3", "step3", "step4"]
    assert {r.run_id for r in deployment.client.run_group(run1)} == {run1, run2}
    assert deployment.store.get_run(run1).status is WorkflowStatus.COMPLETED


# -- Auto-resume: Dagster run retries + the daemon ------------------------------------------------
def _retry_of(deployment: Deployment, run_id: str) -> str:
    return wait_until(f"the daemon to retry {run_id}",
                      lambda: deployment.instance.get_run_by_id(run_id).tags.get(
                          "dagster/auto_retry_run_id"), 240, deployment.processes)


def _will_retry(deployment: Deployment, run_id: str) -> str:
    """Dagster's decision, tagged on the run just after its failure is stored."""
    return wait_until(f"dagster/will_retry on {run_id}",
                      lambda: deployment.instance.get_run_by_id(run_id).tags.get(
                          "dagster/will_retry"), 30, deployment.processes)


# The daemon acts on a failure in its own iterations: on a loaded machine a retry can take
# minutes, so this body has more time than the others.
@body_timeout(600)
def test_auto_resume_retries_retryable_failures_only(deployment, daemon):
    # A: TRANSIENT once -> resumed once, completes. B: TRANSIENT twice -> resumed once, then stays
    # failed (max_resumes=1).
    # B is launched once A's failure is stored. Two runs failing in the same instant can lose one
    # retry to Dagster's daemon (dagster-io/dagster#33741: on PostgreSQL a RUN_FAILURE event
    # that commits after a later one is behind the daemon's cursor; seen here in CI); the
    # README's auto-resume section says so.
    path_a, path_b = deployment.trace_dir(), deployment.trace_dir()
    run_a = deployment.launch(AUTO, path_a, fail_times=1)
    wait_until(f"{run_a} to fail", lambda: deployment.instance.get_run_by_id(run_a).is_finished,
               120, deployment.processes)
    run_b = deployment.launch(AUTO, path_b, fail_times=2)

    retry_a = _retry_of(deployment, run_a)
    done_a = deployment.wait(retry_a)
    assert done_a.status == "SUCCESS"
    assert done_a.parent_run_id == run_a and done_a.step_keys_to_execute == ["step3", "step4"]
    assert done_a.tags["dagster/retry_number"] == "1" and done_a.tags["spine/run_id"] == run_a
    assert trace(path_a) == ["step1", "step2", "step3", "step3", "step4"]
    record = deployment.store.get_run(run_a)
    assert record.status is WorkflowStatus.COMPLETED
    assert record.dagster_run_ids == [run_a, retry_a]
    assert outputs(checkpoints(deployment, run_a)["step4"])["step3"]["resumed"] is True

    retry_b = _retry_of(deployment, run_b)
    assert deployment.wait(retry_b).status == "FAILURE"
    assert trace(path_b) == ["step1", "step2", "step3", "step3"]
    assert _will_retry(deployment, retry_b) == "false"  # max_resumes=1: the group is full

    # C: DATA_QUALITY -> not resumed. Launched after B's retry failed, so once the daemon has
    # acted on C it has also processed B's retry's failure (it reads failures in order).
    path_c = deployment.trace_dir()
    run_c = deployment.launch(AUTO, path_c, fail_times=1, category="DATA_QUALITY")
    assert deployment.wait(run_c).status == "FAILURE"
    assert _will_retry(deployment, run_c) == "false"
    tags_c = deployment.instance.get_run_by_id(run_c).tags
    assert tags_c[RETRY_ON_FAILURE_TAG] == "false"
    assert tags_c["spine/error_category"] == "DATA_QUALITY"

    def daemon_declined() -> bool:
        records = deployment.instance.get_records_for_run(
            run_c, of_type=DagsterEventType.ENGINE_EVENT).records
        return any("Not retrying run" in (r.event_log_entry.message or "") for r in records)

    wait_until("the daemon's decision on the DATA_QUALITY run", daemon_declined, 120,
               deployment.processes)
    assert "dagster/auto_retry_run_id" not in deployment.instance.get_run_by_id(run_c).tags
    assert [r.run_id for r in deployment.instance.get_run_group(run_c)[1]] == [run_c]
    assert trace(path_c) == ["step1", "step2", "step3"]
    assert deployment.store.get_run(run_c).status is WorkflowStatus.FAILED
    assert "dagster/auto_retry_run_id" not in deployment.instance.get_run_by_id(retry_b).tags
    assert {r.run_id for r in deployment.instance.get_run_group(run_b)[1]} == {run_b, retry_b}
