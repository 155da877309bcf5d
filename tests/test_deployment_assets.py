"""The asset view and spine_failure_sensor in a real deployment, driven as the UI drives it.

A ``dagster-webserver`` (and a ``dagster-daemon`` for backfills and sensors) serve
``tests/locations/spine_assets_location.py`` on [postgres-deployment] and [sqlite-deployment]
(instance and checkpoints on the same backend; see ``deployment_support``). Runs, re-executions
("from failure", "from asset failure") and backfills are launched through GraphQL. Which steps ran
is read from the trace the steps write, never assumed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from dagster import AssetKey, DagsterEventType, DagsterRunStatus, RunsFilter
from deployment_support import (  # noqa: F401 - fixtures
    LOCATION_DIR,
    Deployment,
    body_timeout,
    daemon,
    pg_checkpoint_url,
    serve_location,
    wait_until,
)

from spine_dagster import WorkflowMismatchError, WorkflowStatus

pytestmark = [pytest.mark.slow, pytest.mark.postgres, body_timeout(600)]

ASSETS_JOB, DAILY_JOB, SENSED_JOB = "assets__flow", "assets__daily", "sensed__flow"
PREFIX = "assets__flow__steps"


@pytest.fixture(scope="module")
def flags(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("flags")


@pytest.fixture(scope="module", params=["postgres", "sqlite"],
                ids=["postgres-deployment", "sqlite-deployment"])
def deployment(request, tmp_path_factory, flags):
    yield from serve_location(request, tmp_path_factory, "spine_assets_location", ASSETS_JOB,
                              env={"SPINE_TEST_FLAGS": str(flags)})


def trace(flags: Path, spine_id: str) -> list[str]:
    path = flags / f"{spine_id}.log"
    return path.read_text().split() if path.exists() else []


def launch(deployment: Deployment, job: str, **params) -> str:
    return deployment.client.launch_run(
        job, run_config={"resources": {"spine": {"config": {"params": params}}}},
        location_name=deployment.location, repository_name="__repository__")


def failed_asset_run(deployment: Deployment, flags: Path, name: str) -> tuple[str, Path]:
    flag = flags / name
    flag.touch()
    run_id = launch(deployment, ASSETS_JOB, fail_flag=str(flag))
    assert deployment.wait(run_id).status == "FAILURE"
    assert trace(flags, run_id) == ["step1", "step2", "step3"]
    flag.unlink()  # the outage is over
    return run_id, flag


def materialized(deployment: Deployment, run_id: str) -> list[str]:
    records = deployment.instance.get_records_for_run(
        run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION).records
    return sorted(r.event_log_entry.dagster_event.asset_key.path[-1] for r in records)


def checkpoints(deployment: Deployment, spine_id: str) -> dict:
    return {c.step_name: c.dagster_run_id for c in deployment.store.list_checkpoints(spine_id)}


# -- the UI's re-executions of an asset run ------------------------------------------------------
def test_reexecute_from_failure_resumes_the_asset_run(deployment, flags):
    run1, _ = failed_asset_run(deployment, flags, "outage_a")
    assert materialized(deployment, run1) == ["step1", "step2"]

    run2 = deployment.client.reexecute(run1, "FROM_FAILURE")
    child = deployment.wait(run2)

    assert child.status == "SUCCESS" and child.parent_run_id == run1
    assert child.step_keys_to_execute == [f"{PREFIX}.step3", f"{PREFIX}.step4"]
    assert trace(flags, run1) == ["step1", "step2", "step3", "step3", "step4"]
    assert materialized(deployment, run2) == ["step3", "step4"]
    assert checkpoints(deployment, run1) == {"step1": run1, "step2": run1, "step3": run2,
                                             "step4": run2}
    record = deployment.store.get_run(run1)
    assert record.status is WorkflowStatus.COMPLETED and record.dagster_run_ids == [run1, run2]
    final = deployment.store.get_checkpoint(run1, "step4").context_snapshot["context"]["outputs"]
    assert final["step3"] == {"rows": 10, "resumed": True}


def test_reexecute_from_asset_failure_runs_only_the_failed_assets(deployment, flags):
    run1, _ = failed_asset_run(deployment, flags, "outage_b")

    run2 = deployment.client.reexecute(run1, "FROM_ASSET_FAILURE")
    child = deployment.wait(run2)

    assert child.status == "SUCCESS" and child.parent_run_id == run1
    run = deployment.instance.get_run_by_id(run2)
    assert run.asset_selection == {AssetKey(["assets__flow", "step3"]),
                                   AssetKey(["assets__flow", "step4"])}
    assert run.tags["dagster/is_asset_resume_retry"] == "true"
    # step1 and step2 did not run: step3 started from step2's checkpoint, as a resumed step
    assert trace(flags, run1) == ["step1", "step2", "step3", "step3", "step4"]
    assert materialized(deployment, run2) == ["step3", "step4"]
    outputs = deployment.store.get_checkpoint(run1, "step4").context_snapshot["context"]["outputs"]
    assert outputs["step3"] == {"rows": 10, "resumed": True}
    record = deployment.store.get_run(run1)
    assert record.status is WorkflowStatus.COMPLETED and record.dagster_run_ids == [run1, run2]


def test_resume_with_changed_params_through_the_webserver(deployment, flags):
    run1 = launch(deployment, ASSETS_JOB, valid=5)  # step2's quality gate fails: 50% < 80%
    assert deployment.wait(run1).status == "FAILURE"
    assert deployment.store.get_run(run1).error_category == "DATA_QUALITY"
    checks = deployment.instance.get_records_for_run(
        run1, of_type=DagsterEventType.ASSET_CHECK_EVALUATION).records
    assert [r.event_log_entry.dagster_event.event_specific_data.passed for r in checks] == [False]

    run2 = deployment.client.resume(run1, params_override={"valid": 9})
    child = deployment.wait(run2)

    assert child.status == "SUCCESS"
    assert child.step_keys_to_execute == [f"{PREFIX}.step2", f"{PREFIX}.step3",
                                          f"{PREFIX}.step4"]
    assert child.run_config["resources"]["spine"]["config"]["params"]["valid"] == 9
    assert trace(flags, run1) == ["step1", "step2", "step2", "step3", "step4"]
    assert deployment.store.get_run(run1).status is WorkflowStatus.COMPLETED


# -- a backfill of three partitions, one fails ---------------------------------------------------
BACKFILL = """mutation($p: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $p) {
  __typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message } } }"""


# On the PostgreSQL deployment only (the production shape): the backfill daemon works in 30 s
# iterations, and the resume paths it relies on are tested on both backends above.
@pytest.mark.parametrize("deployment", ["postgres"], indirect=True, ids=["postgres-deployment"])
def test_a_backfill_partition_that_failed_resumes_alone(deployment, daemon, flags, monkeypatch):
    days = ["2026-01-02", "2026-01-03", "2026-01-04"]
    (flags / "fail_2026-01-03").touch()
    keys = [{"path": ["assets__daily", f"step{i}"]} for i in range(1, 5)]
    launched = deployment.client.graphql(BACKFILL, {"p": {"assetSelection": keys,
                                                          "partitionNames": days}})
    backfill = launched["launchPartitionBackfill"]
    assert backfill["__typename"] == "LaunchBackfillSuccess", backfill

    def runs():
        found = deployment.instance.get_runs(RunsFilter(tags={
            "dagster/backfill": backfill["backfillId"]}))
        done = [r for r in found if r.is_finished]
        return found if len(done) == 3 else None

    by_day = {r.tags["dagster/partition"]: r
              for r in wait_until("the backfill's three runs", runs, 300, deployment.processes)}
    assert {d: r.status for d, r in by_day.items()} == {
        "2026-01-02": DagsterRunStatus.SUCCESS, "2026-01-03": DagsterRunStatus.FAILURE,
        "2026-01-04": DagsterRunStatus.SUCCESS}
    failed = by_day["2026-01-03"].run_id
    assert trace(flags, failed) == ["step1", "step2", "step3"]
    last = AssetKey(["assets__daily", "step4"])
    assert deployment.instance.get_materialized_partitions(last) == {"2026-01-02", "2026-01-04"}

    (flags / "fail_2026-01-03").unlink()
    # A run of the implicit asset job has no spine job metadata: the UI re-executes it.
    monkeypatch.syspath_prepend(str(LOCATION_DIR))  # the runner imports the workflow
    with pytest.raises(WorkflowMismatchError, match="implicit asset job"):
        deployment.runner().resume(failed)
    with pytest.raises(WorkflowMismatchError, match="not a spine job"):
        deployment.client.resume(failed)
    retry = deployment.client.reexecute(failed, "FROM_FAILURE")
    child = deployment.wait(retry)

    assert child.status == "SUCCESS" and child.tags["dagster/partition"] == "2026-01-03"
    assert trace(flags, failed) == ["step1", "step2", "step3", "step3", "step4"]
    assert deployment.instance.get_materialized_partitions(last) == set(days)
    record = deployment.store.get_run(failed)
    assert record.status is WorkflowStatus.COMPLETED and record.partition == "2026-01-03"
    for day in ("2026-01-02", "2026-01-04"):  # the other partitions ran once
        assert trace(flags, by_day[day].run_id) == ["step1", "step2", "step3", "step4"]


# -- spine_failure_sensor on the daemon ----------------------------------------------------------
def policy_log(flags: Path) -> list[dict]:
    path = flags / "policy.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_failure_sensor_resumes_timeouts_with_a_doubled_timeout(deployment, daemon, flags):
    run1 = launch(deployment, SENSED_JOB, timeout=10, needs=35)

    def settled():
        group = deployment.instance.get_run_group(run1)[1]
        done = [r for r in group if r.is_finished]
        return group if len(group) == 3 and len(done) == 3 else None

    runs = {r.run_id: r for r in wait_until("two resumes by the sensor", settled, 300,
                                             deployment.processes)}
    group = [runs[run1]]
    while len(group) < 3:  # the lineage, by parent
        group.append(next(r for r in runs.values() if r.parent_run_id == group[-1].run_id))
    assert [r.status for r in group] == [DagsterRunStatus.FAILURE, DagsterRunStatus.FAILURE,
                                         DagsterRunStatus.SUCCESS]
    first, second, third = group
    assert second.parent_run_id == first.run_id and third.parent_run_id == second.run_id
    assert third.root_run_id == first.run_id
    for child in (second, third):  # true re-executions from the failed step, launched remotely
        assert list(child.step_keys_to_execute) == ["fetch", "save"]
        assert child.remote_job_origin is not None
    assert [r.run_config["resources"]["spine"]["config"]["params"]["timeout"]
            for r in group] == [10, 20, 40]
    assert first.tags["spine/resumed_as"] == second.run_id
    assert trace(flags, run1) == ["prepare", "fetch", "fetch", "fetch", "save"]
    record = deployment.store.get_run(run1)
    assert record.status is WorkflowStatus.COMPLETED and record.params["timeout"] == 40
    seen = [entry for entry in policy_log(flags) if entry["run"] == run1]
    assert [(e["step"], e["category"], e["resumes"], e["timeout"], e["start_step"], e["reused"])
            for e in seen] == [("fetch", "TIMEOUT", 0, 10, "fetch", ["prepare"]),
                               ("fetch", "TIMEOUT", 1, 20, "fetch", ["prepare"])]


def test_failure_sensor_policy_can_leave_a_run_failed(deployment, daemon, flags):
    run1 = launch(deployment, SENSED_JOB, timeout=10, needs=35, category="DATA_QUALITY")
    assert deployment.wait(run1).status == "FAILURE"

    wait_until("the policy's look at the run",
               lambda: [e for e in policy_log(flags) if e["run"] == run1], 120,
               deployment.processes)
    assert [r.run_id for r in deployment.instance.get_run_group(run1)[1]] == [run1]
    assert "spine/resumed_as" not in deployment.instance.get_run_by_id(run1).tags
    assert deployment.store.get_run(run1).status is WorkflowStatus.FAILED
