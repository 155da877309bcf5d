"""``make demo``, then ``make ui``: the demo's failed run can be re-executed from the UI.

The demo (``examples/demo.py``) runs in a fresh ``SPINE_DAGSTER_HOME`` from the repository root, so
its runner finds ``workspace.yaml``; ``make ui PORT=...`` opens the instance the demo wrote to
(``dagster dev`` on that port). The test then sends the UI's own "Re-execute from failure"
mutation for the demo's failed Dagster run, on an all-SQLite home (the demo's default) and on an
all-PostgreSQL one.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from deployment_support import STARTUP_SECONDS, ProcessSession, body_timeout, free_port, wait_until

from spine_dagster import SpineDagsterClient
from spine_dagster.store import CheckpointStore

pytestmark = [pytest.mark.slow, body_timeout(300)]

ROOT = Path(__file__).resolve().parent.parent
UI_REEXECUTE = """mutation LaunchPipelineReexecution($reexecutionParams: ReexecutionParams) {
  launchPipelineReexecution(reexecutionParams: $reexecutionParams) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
  }
}"""


@pytest.fixture
def demo_env(tmp_path):
    """`make demo` as documented: embedded SQLite, in a home of the test's own. (The PostgreSQL
    deployment shape is served by tests/test_dg_dev.py and the deployment tests.)"""
    home = tmp_path / "spine_home"
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "DAGSTER_HOME", "SPINE_DAGSTER_DATABASE_URL",
                        "SPINE_DAGSTER_WORKSPACE", "SPINE_DAGSTER_WEBSERVER_URL")}
    env.update(SPINE_DAGSTER_HOME=str(home), PYTHONUNBUFFERED="1")
    return env


@pytest.fixture
def demo_then_ui(demo_env, tmp_path, monkeypatch):
    """``make demo``, then ``make ui`` serving its instance: the set-up, with its own deadlines
    (the demo's 300 s, the UI's ``STARTUP_SECONDS``), outside the test body's timeout.

    Yields (store, the demo's spine run id, its Dagster run lineage, the client).
    """
    demo = subprocess.run([sys.executable, "examples/demo.py"], cwd=ROOT, env=demo_env,
                          capture_output=True, text=True, timeout=300)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    store = CheckpointStore.for_url(demo_env.get("SPINE_DAGSTER_DATABASE_URL") or
                                    f"sqlite:///{demo_env['SPINE_DAGSTER_HOME']}/checkpoints.db")
    (record,) = store.list_runs()
    lineage = store.get_run(record.run_id).dagster_run_ids

    port = free_port()
    # `-o`: the test environment is installed already; never reinstall from inside a test.
    ui = ProcessSession("make ui", ["make", "-s", "-C", str(ROOT), "-o", ".venv/bin/.installed",
                                    "ui", f"PORT={port}"], dict(demo_env), tmp_path / "ui.log")
    try:
        recorded = Path(demo_env["SPINE_DAGSTER_HOME"]) / "webserver_url"
        wait_until("make ui to record its URL", recorded.exists, 60, [ui])
        assert recorded.read_text().strip() == f"http://127.0.0.1:{port}"
        # The client finds the webserver where make ui recorded it.
        monkeypatch.setenv("SPINE_DAGSTER_HOME", demo_env["SPINE_DAGSTER_HOME"])
        monkeypatch.delenv("SPINE_DAGSTER_WEBSERVER_URL", raising=False)
        client = SpineDagsterClient(database_url=store.url)
        assert client.base_url == f"http://127.0.0.1:{port}"
        wait_until("the UI to serve the demo's job", lambda: client.find_job("my__workflow"),
                   STARTUP_SECONDS, [ui])
        yield store, record.run_id, lineage, client
    finally:
        ui.stop()


def test_make_demo_then_make_ui_reexecutes_the_failed_run(demo_then_ui):
    store, run_id, lineage, client = demo_then_ui
    data = client.graphql(UI_REEXECUTE, {"reexecutionParams": {
        "parentRunId": lineage[0], "strategy": "FROM_FAILURE"}})
    launched = data["launchPipelineReexecution"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    child = launched["run"]["runId"]
    run = client.wait_for_run(child, timeout=180)
    # The demo's API is gone, so step3 fails again: but it ran, in the same spine run.
    assert run.status == "FAILURE" and run.step_keys_to_execute == ["step3", "step4"]
    after = store.get_run(run_id)
    assert after.dagster_run_ids == [*lineage, child]
    assert (after.status.value, after.error_step) == ("failed", "step3")
