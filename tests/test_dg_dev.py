"""``dg dev`` serves examples/dg_project, and its YAML workflow resumes from the UI and from a new
process, on an all-SQLite and an all-PostgreSQL deployment (instance and checkpoints).

``dg dev`` runs in its own session (webserver, daemon, code server); the test queries its GraphQL
API for the jobs and assets, launches a run of the component's workflow that fails at ``load``
(its warehouse directory is missing), re-executes it from failure as the UI's button does, and
resumes a second one with changed params from this process. Teardown stops the whole session and
checks that no process of it survived.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from conftest import write_dagster_home
from dagster import AssetKey, DagsterInstance
from deployment_support import (  # noqa: F401 - fixtures
    STARTUP_SECONDS,
    ProcessSession,
    body_timeout,
    free_port,
    pg_checkpoint_url,
    wait_until,
)

from spine_dagster import SpineDagsterClient, WorkflowRunner, WorkflowStatus
from spine_dagster.errors import SpineDagsterError

pytestmark = [pytest.mark.slow, pytest.mark.postgres, body_timeout(600)]

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "dg_project"
JOBS_QUERY = """{ repositoriesOrError { ... on RepositoryConnection { nodes {
  name location { name } jobs { name tags { key value } } } } } }"""
ASSETS_QUERY = """{ assetNodes { assetKey { path } kinds groupName jobNames } }"""


# PostgreSQL (Dagster storage and checkpoints), the production shape; `dg` on SQLite is
# tests/test_component.py's.
@pytest.fixture(params=["postgres"])
def dg_dev(request, tmp_path, monkeypatch):
    """``dg dev`` on examples/dg_project; yields (client, DAGSTER_HOME, checkpoint URL)."""
    if request.param == "postgres":
        home = write_dagster_home(tmp_path / "dagster_home", "postgres",
                                  request.getfixturevalue("pg_dagster_url"))
        database_url = request.getfixturevalue("pg_schema_url")
    else:
        home = write_dagster_home(tmp_path / "dagster_home", "sqlite")
        database_url = f"sqlite:///{tmp_path}/checkpoints.db"
    port = free_port()
    env = {**os.environ, "DAGSTER_HOME": home, "SPINE_DAGSTER_DATABASE_URL": database_url,
           "SPINE_DAGSTER_HOME": str(tmp_path / "spine_home"),
           "SPINE_DAGSTER_WEBSERVER_URL": f"http://127.0.0.1:{port}", "PYTHONUNBUFFERED": "1"}
    process = ProcessSession(
        "dg dev", [str(Path(sys.executable).parent / "dg"), "dev", "--port", str(port),
                   "--host", "127.0.0.1"],
        env, tmp_path / "dg_dev.log", cwd=EXAMPLE, default_sigint=True)
    client = SpineDagsterClient(f"http://127.0.0.1:{port}", database_url=database_url)
    try:
        def loaded():
            try:
                return client.find_job("orders__daily")
            except SpineDagsterError as exc:
                if "failed to load" in str(exc):
                    raise AssertionError(f"dg dev does not load the project: {exc}") from None
                raise
        wait_until("dg dev to serve the project", loaded, STARTUP_SECONDS, [process])
        monkeypatch.syspath_prepend(str(EXAMPLE))  # this process imports the workflow too
        yield client, home, database_url, tmp_path
    finally:
        process.stop()  # SIGTERM the session, SIGKILL what is left, assert nothing survived
    assert not process.members()


def test_dg_dev_serves_the_project_and_the_yaml_workflow_resumes(dg_dev, monkeypatch):
    client, home, database_url, tmp_path = dg_dev

    # The two workflows are there: the YAML one as assets (component), the Python one as a job.
    [repo] = client.graphql(JOBS_QUERY)["repositoriesOrError"]["nodes"]
    jobs = {job["name"]: {t["key"]: t["value"] for t in job["tags"]} for job in repo["jobs"]}
    assert {"orders__daily", "customers__sync", "spine_resume"} <= set(jobs)
    assert jobs["orders__daily"]["spine/view"] == "assets"
    assert jobs["orders__daily"]["spine/workflow_ref"].startswith("yaml:")
    assert jobs["customers__sync"]["spine/domain"] == "crm"
    nodes = {"/".join(n["assetKey"]["path"]): n for n in client.graphql(ASSETS_QUERY)["assetNodes"]}
    assert {"orders/raw", "orders/clean", "warehouse/orders"} <= set(nodes)
    assert nodes["warehouse/orders"]["kinds"] == ["spine"]
    assert nodes["warehouse/orders"]["groupName"] == "sales"

    # A run whose warehouse is down fails at load; "Re-execute from failure" resumes it.
    warehouse = tmp_path / "warehouse"
    run1 = client.launch_run("orders__daily", tags={"dagster/partition": "2026-01-05"},
                             run_config={"resources": {"spine": {"config": {"params": {
                                 "warehouse_dir": str(warehouse)}}}}})
    assert client.wait_for_run(run1, timeout=180).status == "FAILURE"
    warehouse.mkdir()
    run2 = client.reexecute(run1, "FROM_FAILURE")
    child = client.wait_for_run(run2, timeout=180)

    assert child.status == "SUCCESS" and child.parent_run_id == run1
    assert child.step_keys_to_execute == ["orders__daily__steps.load"]
    written = json.loads((warehouse / "orders_2026-01-05.json").read_text())
    assert written == {"orders": 95, "resumed": True}
    store = client.store
    assert store.get_run(run1).status is WorkflowStatus.COMPLETED
    assert {c.step_name: c.dagster_run_id for c in store.list_checkpoints(run1)} == {
        "extract": run1, "clean": run1, "load": run2}

    # Another failed run resumes from this process (a new process for the code location): the
    # run recorded where its YAML file is, and this runner re-executes it with other params.
    run3 = client.launch_run("orders__daily", tags={"dagster/partition": "2026-01-06"},
                             run_config={"resources": {"spine": {"config": {"params": {
                                 "warehouse_dir": str(tmp_path / "missing")}}}}})
    assert client.wait_for_run(run3, timeout=180).status == "FAILURE"
    assert store.get_run(run3).workflow_ref.startswith("yaml:")
    instance = DagsterInstance.from_config(home)
    try:
        resumed = WorkflowRunner(database_url=database_url, instance=instance,
                                 progress=False).resume(
            run3, params_override={"warehouse_dir": str(warehouse)})
        assert resumed.status is WorkflowStatus.COMPLETED
        assert resumed.completed_steps == ["load"]
        assert (warehouse / "orders_2026-01-06.json").exists()
        assert instance.get_run_by_id(resumed.dagster_run_id).parent_run_id == run3
        assert instance.get_materialized_partitions(AssetKey(["warehouse", "orders"])) == {
            "2026-01-05", "2026-01-06"}

        # A run a script makes in the project (the runner finds the dg project as its
        # workspace, as it does from the project directory) carries the code location that
        # dg dev serves, so the UI's "Re-execute from failure" works on it (it answered HTTP 500).
        monkeypatch.setenv("SPINE_DAGSTER_DATABASE_URL", database_url)  # as dg dev has it
        monkeypatch.delenv("SPINE_DAGSTER_WORKSPACE")  # conftest turns the discovery off
        from spine_dg_example.flows import CUSTOMER_SYNC
        monkeypatch.chdir(EXAMPLE / "spine_dg_example")
        script = WorkflowRunner(database_url=database_url, instance=instance, progress=False)
        assert script.workspace == str(EXAMPLE / "pyproject.toml")
        failed = script.execute(CUSTOMER_SYNC, params={"crm_seconds": "soon"})
        assert (failed.status, failed.error_step) == (WorkflowStatus.FAILED, "fetch")
        origin = instance.get_run_by_id(failed.dagster_run_id).remote_job_origin
        assert origin.location_name == "dg_project"
        run4 = client.reexecute(failed.dagster_run_id, "FROM_FAILURE")
        child = client.wait_for_run(run4, timeout=180)
        assert child.status == "FAILURE" and child.parent_run_id == failed.dagster_run_id
        assert store.get_run(failed.run_id).dagster_run_ids == [failed.dagster_run_id, run4]
    finally:
        instance.dispose()
