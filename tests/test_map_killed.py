"""A map killed halfway with SIGKILL resumes without running its completed items again.

The run is a real subprocess (``workflows_steps.MAPPED`` over 10 items, 4 at a time) whose items
from 4 on hold until the test releases them; the test kills it by PID while items 0-3 are done
and 4-7 hold. Nothing reports the end of that Dagster run, so the resume relies on
``spine_dagster.liveness`` to see that its process is gone.
"""

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

from spine_dagster import WorkflowRunner
from step_fixtures import files, item_rows, progress_lines  # noqa: F401 - fixture
from workflows_steps import calls

TESTS_DIR = Path(__file__).resolve().parent
SCRIPT = """
import json, sys
from workflows_steps import MAPPED
from spine_dagster import WorkflowRunner
WorkflowRunner(log_level="ERROR").execute(MAPPED, params=json.loads(sys.argv[1]))
"""


def _wait(what: str, done, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 120  # a guard against hanging, not a speed assertion
    while not done():
        if proc.poll() is not None:
            pytest.fail(f"the run exited ({proc.returncode}) before {what}:\n"
                        f"{log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} within 120 s:\n{log.read_text()[-3000:]}")
        time.sleep(0.1)


def test_a_map_killed_halfway_resumes_without_rerunning_completed_items(
        database_url, tmp_path, files):
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    hold, release, log = tmp_path / "holding", tmp_path / "release", tmp_path / "run.log"
    params = {"items": list(range(10)), "hold_from": 4, "hold_file": str(hold),
              "release_file": str(release), **files}
    env = {**os.environ, "DAGSTER_HOME": str(home), "SPINE_DAGSTER_DATABASE_URL": database_url,
           "PYTHONPATH": str(TESTS_DIR)}
    instance = DagsterInstance.from_config(str(home))
    runner = WorkflowRunner(database_url=database_url, instance=instance, progress=False)
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-c", SCRIPT, json.dumps(params)], env=env,
                                cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT)
    try:
        # max_concurrency=4: items 0-3 complete, then items 4-7 hold and 8-9 wait for a worker
        _wait("four held items", lambda: hold.exists() and len(hold.read_text().split("\n")) > 4,
              proc, log)
        run_id = hold.read_text().split()[0]
        dagster_run_id = runner.store.get_run(run_id).last_dagster_run_id
        assert sorted(item_rows(runner, run_id)) == [0, 1, 2, 3]
        _wait("a progress line for the four completed items",
              lambda: (4, 0, 6, 10) in progress_lines(instance, dagster_run_id), proc, log)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    first = calls(files["calls_file"])
    assert first[0] == "prepare"
    assert sorted(first[1:]) == sorted(f"work:{i}" for i in range(8))

    try:
        release.write_text("go")
        resumed = runner.resume(run_id)
        assert resumed.status == "completed", resumed.error
        assert resumed.completed_steps == ["fan", "after"]
        second = calls(files["calls_file"])[len(first):]
        assert sorted(second[:-1]) == sorted(f"work:{i}" for i in range(4, 10)), (
            "the held items (4-7) and those never started (8-9); not 0-3")
        assert second[-1] == "after"
        assert resumed.context.outputs["fan"] == [{"item": i, "double": 2 * i} for i in range(10)]
        rows = item_rows(runner, run_id)
        assert {rows[i][2] for i in range(4)} == {dagster_run_id}
        assert {rows[i][2] for i in range(4, 10)} == {resumed.dagster_run_id}
    finally:
        instance.dispose()
