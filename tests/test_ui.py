"""What a user sees in (and does from) the Dagster UI, checked through the webserver's GraphQL API.

* Runs that ``WorkflowRunner`` makes carry the code location of the workspace that serves their
  job, so the UI's own re-execution mutation (``launchPipelineReexecution`` with
  ``reexecutionParams``, what the "Re-execute" buttons send) works on them and continues the same
  spine run: from failure, all steps, and from selected steps.
* A resumed run says what it restored (a run-level event, ``spine/restored_from`` on the loaded
  input), is tagged like Dagster's own from-failure re-executions, and a failed step shows the
  user's own code in its cause. Op descriptions are the handlers' docstrings, the Launchpad's
  default config holds only what a user sets, and the launcher tag is short.

One webserver per backend serves ``tests/locations/spine_test_location.py`` (deployment_support).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from deployment_support import (  # noqa: F401 - fixtures
    LOCATION,
    LOCATION_DIR,
    Deployment,
    body_timeout,
    deployment,
    pg_checkpoint_url,
)

from spine_dagster import WorkflowRunner, WorkflowStatus

pytestmark = [pytest.mark.slow, pytest.mark.postgres, body_timeout(300)]

UI_REEXECUTE = """mutation LaunchPipelineReexecution($reexecutionParams: ReexecutionParams) {
  launchPipelineReexecution(reexecutionParams: $reexecutionParams) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message stack }
  }
}"""
UI_REEXECUTE_SELECTED = """mutation LaunchPipelineReexecution($executionParams: ExecutionParams) {
  launchPipelineReexecution(executionParams: $executionParams) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message stack }
  }
}"""
PARENT_RUN = """query Run($runId: ID!) { runOrError(runId: $runId) { __typename
  ... on Run { id rootRunId mode pipelineName solidSelection runConfigYaml tags { key value } } } }"""
RUN_EVENTS = """query RunEvents($runId: ID!) {
  logsForRun(runId: $runId) {
    __typename
    ... on EventConnection {
      events {
        __typename
        ... on MessageEvent { message stepKey eventType }
        ... on DisplayableEvent { metadataEntries { label
            ... on JsonMetadataEntry { jsonString } ... on TextMetadataEntry { text } } }
        ... on ExecutionStepFailureEvent { error { className message stack
            cause { className message stack cause { className message } } } }
      }
    }
  }
}"""
JOB_VIEW = """query JobView($selector: PipelineSelector!) {
  pipelineOrError(params: $selector) {
    __typename
    ... on Pipeline { solidHandles { handleID solid { definition { description } } } }
  }
  runConfigSchemaOrError(selector: $selector) {
    __typename
    ... on RunConfigSchema { rootDefaultYaml }
  }
}"""


def _location_module():
    if str(LOCATION_DIR) not in sys.path:
        sys.path.insert(0, str(LOCATION_DIR))
    return __import__(LOCATION)


@pytest.fixture
def ui_runner(deployment: Deployment, monkeypatch) -> WorkflowRunner:
    """A runner that, like a user's script, uses the deployment's workspace and database."""
    monkeypatch.setenv("SPINE_DAGSTER_DATABASE_URL", deployment.database_url)
    return WorkflowRunner(database_url=deployment.database_url, instance=deployment.instance,
                          workspace=deployment.workspace, progress=False)


def _trace(path: Path, run_id: str) -> list[str]:
    log = path / f"{run_id}.log"
    return log.read_text().split() if log.exists() else []


def _ui(deployment: Deployment, query: str, **variables) -> str:
    data = deployment.client.graphql(query, variables)["launchPipelineReexecution"]
    assert data["__typename"] == "LaunchRunSuccess", data
    return data["run"]["runId"]


def _ui_selected(deployment: Deployment, parent_run_id: str, step_keys: list[str],
                 query: str) -> str:
    """ "Re-execute selected": the ``executionParams`` the UI builds from the parent run it shows
    (dagster-webserver's ``getReexecutionParamsForSelection``: the parent's mode, run config and
    tags without ``dagster/is_resume_retry``, the run-group tags, the step keys)."""
    run = deployment.client.graphql(PARENT_RUN, {"runId": parent_run_id})["runOrError"]
    assert run["__typename"] == "Run", run
    root = run["rootRunId"] or run["id"]
    hidden = {"dagster/is_resume_retry", "dagster/step_selection"}
    tags = [t for t in run["tags"] if t["key"] not in hidden] + [
        {"key": "dagster/parent_run_id", "value": run["id"]},
        {"key": "dagster/root_run_id", "value": root},
        {"key": "dagster/step_selection", "value": query}]
    return _ui(deployment, UI_REEXECUTE_SELECTED, executionParams={
        "mode": run["mode"], "runConfigData": run["runConfigYaml"],
        "executionMetadata": {"parentRunId": run["id"], "rootRunId": root, "tags": tags},
        "selector": {"repositoryLocationName": LOCATION, "repositoryName": "__repository__",
                     "pipelineName": run["pipelineName"], "solidSelection": run["solidSelection"],
                     "assetSelection": [], "assetCheckSelection": []},
        "stepKeys": step_keys})


def _events(deployment: Deployment, run_id: str) -> list[dict]:
    data = deployment.client.graphql(RUN_EVENTS, {"runId": run_id})["logsForRun"]
    return data["events"]


def _metadata(event: dict) -> dict:
    return {m["label"]: m.get("jsonString") or m.get("text") for m in event.get("metadataEntries") or []}


def test_the_ui_reexecutes_a_run_made_by_a_script(deployment: Deployment, ui_runner):
    location = _location_module()
    path = deployment.trace_dir()
    failed = ui_runner.execute(location.FLAKY, params={"trace": str(path), "fail_times": 1})
    assert (failed.status, failed.error_step) == ("failed", "step3")
    origin = deployment.instance.get_run_by_id(failed.dagster_run_id).remote_job_origin
    assert origin is not None and origin.location_name == LOCATION

    # "Re-execute from failure", exactly as the UI sends it (HTTP 500 before the origin fix).
    child = _ui(deployment, UI_REEXECUTE,
                reexecutionParams={"parentRunId": failed.dagster_run_id, "strategy": "FROM_FAILURE"})
    assert deployment.wait(child).status == "SUCCESS"
    record = ui_runner.get_run(failed.run_id)
    assert record.status is WorkflowStatus.COMPLETED
    assert record.dagster_run_ids == [failed.dagster_run_id, child]
    assert _trace(path, failed.run_id) == ["step1", "step2", "step3", "step3", "step4"]

    # "Re-execute all" on the completed run: every step runs again, in the same spine run.
    again = _ui(deployment, UI_REEXECUTE,
                reexecutionParams={"parentRunId": child, "strategy": "ALL_STEPS"})
    assert deployment.wait(again).status == "SUCCESS"
    assert _trace(path, failed.run_id)[5:] == ["step1", "step2", "step3", "step4"]

    # "Re-execute from selected" (step3 and what follows), as the UI sends it.
    selected = _ui_selected(deployment, again, ["step3", "step4"], "step3*")
    assert deployment.wait(selected).status == "SUCCESS"
    assert _trace(path, failed.run_id)[9:] == ["step3", "step4"]
    assert ui_runner.get_run(failed.run_id).dagster_run_ids == [
        failed.dagster_run_id, child, again, selected]


def _failure_messages(deployment: Deployment, run_id: str) -> tuple[str, str]:
    """(step key, the error with its causes) of the run's step failure, as the UI shows it."""
    [failure] = [e for e in _events(deployment, run_id)
                 if e["__typename"] == "ExecutionStepFailureEvent"]
    error, messages = failure["error"], []
    while error is not None:  # Dagster wraps the IO manager's error: the causes say why
        messages.append(f"{error['className']}: {error['message']}")
        error = error.get("cause")
    return failure["stepKey"], "\n".join(messages)


def test_key_steps_reexecution_from_the_ui(deployment: Deployment, ui_runner):
    """Under key_steps the UI's "Re-execute from failure" cannot start at step3 (step2 wrote no
    checkpoint): the run fails with an error that says what to do, and changes no checkpoint.
    "Re-execute selected" from the step after the newest checkpoint (step2) continues the spine
    run. Both are the webserver's own mutation, as the UI sends it."""
    location = _location_module()
    path = deployment.trace_dir()
    failed = ui_runner.execute(location.KEY, params={"trace": str(path), "fail_times": 1})
    assert (failed.status, failed.error_step) == ("failed", "step3")
    assert [c.step_name for c in ui_runner.list_checkpoints(failed.run_id)] == ["step1"]

    child = _ui(deployment, UI_REEXECUTE,
                reexecutionParams={"parentRunId": failed.dagster_run_id, "strategy": "FROM_FAILURE"})
    assert deployment.wait(child).status == "FAILURE"
    step, message = _failure_messages(deployment, child)
    assert step == "step3"
    assert "CheckpointNotFoundError" in message
    assert "needs the context after step 'step2'" in message
    assert "checkpoint_strategy='key_steps'" in message
    assert f"spine-dagster resume {failed.run_id}" in message
    assert "re-execute from the step after 'step1'" in message
    assert _trace(path, failed.run_id) == ["step1", "step2", "step3"], "no step ran"
    record = ui_runner.get_run(failed.run_id)
    assert (record.status, record.error_step) == ("failed", "step3")
    assert "needs the context after step 'step2'" in record.error
    assert [c.step_name for c in ui_runner.list_checkpoints(failed.run_id)] == ["step1"]

    # What the error says to do: "Re-execute selected" from step2, on the failed re-execution.
    selected = _ui_selected(deployment, child, ["step2", "step3", "step4"], "step2*")
    assert deployment.wait(selected).status == "SUCCESS"
    assert _trace(path, failed.run_id)[3:] == ["step2", "step3", "step4"]
    record = ui_runner.get_run(failed.run_id)
    assert record.status is WorkflowStatus.COMPLETED
    # the refused re-execution ran no step of the spine run: not in its lineage
    assert record.dagster_run_ids == [failed.dagster_run_id, selected]
    assert deployment.instance.get_run_by_id(selected).parent_run_id == child
    assert [c.step_name for c in ui_runner.list_checkpoints(failed.run_id)] == ["step1", "step4"]
    assert record.context.outputs["step3"]["seen_token"] == record.context.outputs["step1"]["token"]


def test_a_workflow_no_code_location_serves_still_runs(deployment: Deployment, tmp_path):
    from spine_dagster import Step, StepResult, Workflow

    wf = Workflow("ui.unserved", [Step.lambda_("a", lambda ctx, cfg: StepResult.ok())])
    runner = WorkflowRunner(database_url=deployment.database_url, instance=deployment.instance,
                            workspace=deployment.workspace, progress=False)
    result = runner.execute(wf)
    assert result.status == "completed"
    assert deployment.instance.get_run_by_id(result.dagster_run_id).remote_job_origin is None


def test_what_a_resumed_run_shows_in_the_ui(deployment: Deployment, ui_runner):
    location = _location_module()
    path = deployment.trace_dir()
    failed = ui_runner.execute(location.FLAKY, params={"trace": str(path), "fail_times": 1})
    assert failed.status == "failed"

    # The failed step's cause is the user's own code, with the error it reported.
    failure = next(e for e in _events(deployment, failed.dagster_run_id)
                   if e["__typename"] == "ExecutionStepFailureEvent")
    cause = failure["error"]["cause"]
    assert cause is not None and "step3 broken" in cause["message"]
    assert any("spine_test_location.py" in frame and "in step3" in frame
               for frame in cause["stack"]), cause["stack"]

    resumed = ui_runner.resume(failed.run_id, params_override={"timeout": 120})
    assert resumed.status == "completed"
    run = deployment.instance.get_run_by_id(resumed.dagster_run_id)
    assert run.tags["dagster/is_resume_retry"] == "true"
    assert run.tags["dagster/parent_run_id"] == failed.dagster_run_id
    events = _events(deployment, resumed.dagster_run_id)
    restored = [e for e in events if e["__typename"] == "EngineEvent"
                and "restored 2 step(s) from checkpoints" in e["message"]]
    assert len(restored) == 1 and restored[0]["stepKey"] is None  # a run-level event
    assert "step1 (checkpoint" in restored[0]["message"]
    assert failed.dagster_run_id[:8] in restored[0]["message"]
    loaded = [e for e in events if e["__typename"] == "LoadedInputEvent"]
    restored_from = json.loads(_metadata(loaded[0])["spine/restored_from"])
    assert restored_from["step"] == "step2"
    assert restored_from["dagster_run_id"] == failed.dagster_run_id

    launcher = deployment.instance.get_run_by_id(failed.dagster_run_id).tags["spine/launcher"]
    assert len(launcher) < 64 and not launcher.startswith("{")


def test_op_descriptions_and_the_launchpad_default_config(deployment: Deployment):
    selector = {"repositoryLocationName": LOCATION, "repositoryName": "__repository__",
                "pipelineName": "deploy__flaky"}
    data = deployment.client.graphql(JOB_VIEW, {"selector": selector})
    handles = {h["handleID"]: h["solid"]["definition"]["description"]
               for h in data["pipelineOrError"]["solidHandles"]}
    assert handles["step1"] == "Issue a fresh token (the first step of the test workflow)."
    default = data["runConfigSchemaOrError"]["rootDefaultYaml"]
    assert "params:" in default
    for internal in ("params_override", "start_checkpoint", "start_context", "start_from"):
        assert internal not in default, default


def test_resume_through_the_webserver_with_params_and_run_config(deployment: Deployment,
                                                                 ui_runner):
    location = _location_module()
    path = deployment.trace_dir()
    failed = ui_runner.execute(location.FLAKY, params={"trace": str(path), "fail_times": 1})
    plan = deployment.client.plan_resume(failed.run_id, params_override={"timeout": 99})
    assert plan.start_step == "step3" and plan.reused_steps == ["step1", "step2"]
    result = ui_runner.resume(failed.run_id, params_override={"timeout": 99},
                              webserver=deployment.url,
                              run_config_override={"ops": {"step3": {"config": {"note": "x"}}}})
    assert result.status == "completed" and result.plan.start_step == "step3"
    run = deployment.instance.get_run_by_id(result.dagster_run_id)
    assert run.run_config["ops"]["step3"]["config"] == {"note": "x"}
    assert run.parent_run_id == failed.dagster_run_id and run.remote_job_origin is not None
    assert result.context.outputs["step3"]["timeout"] == 99
    assert _trace(path, failed.run_id) == ["step1", "step2", "step3", "step3", "step4"]
