"""examples/idempotent_load.py: killed midway with SIGKILL, resumed, and no row written twice.

The example runs in a real subprocess that holds halfway through its load (10 of 20 rows
committed); the test kills it by PID. Nothing reports the end of that Dagster run, so the resume
relies on ``spine_dagster.liveness`` to see that the run's process is gone.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from dagster import DagsterRunStatus

from spine_dagster import RunInProgressError, WorkflowRunner

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "idempotent_load.py"


def _wait_for(flag: Path, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 120  # a guard against hanging, not a speed assertion
    while not flag.exists():
        if proc.poll() is not None:
            pytest.fail(f"the example exited ({proc.returncode}) before holding:\n"
                        f"{log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"the example did not hold within 120 s:\n{log.read_text()[-3000:]}")
        time.sleep(0.1)


def _query(url: str, sql: str) -> list[tuple]:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            return [tuple(row) for row in conn.execute(sa.text(sql)).all()]
    finally:
        engine.dispose()


def test_killed_load_resumes_without_writing_a_row_twice(database_url, tmp_path):
    flag, log = tmp_path / "holding", tmp_path / "example.log"
    command = [sys.executable, str(EXAMPLE), "--database-url", database_url,
               "--warehouse-url", database_url, "--rows", "20", "--batch-size", "5",
               "--hold-after-rows", "10", "--hold-flag", str(flag)]
    runner = WorkflowRunner(database_url=database_url, log_level="CRITICAL")
    with open(log, "w") as out:
        proc = subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_for(flag, proc, log)
        run_id = flag.read_text()
        # halfway: two committed batches, and the run is alive, so it cannot be resumed yet
        assert _query(database_url, "SELECT count(*) FROM example_daily_prices") == [(10,)]
        assert runner.get_run(run_id).status == "running"
        with pytest.raises(RunInProgressError, match="still running"):
            runner.resume(run_id)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL

    try:
        record = runner.get_run(run_id)
        assert (record.status, record.error_step) == ("failed", "load")
        assert f"pid {proc.pid}" in record.error and "killed or crashed" in record.error
        killed = runner.instance.get_run_by_id(record.last_dagster_run_id)
        assert killed.status is DagsterRunStatus.FAILURE

        resumed = runner.resume(run_id)
        assert resumed.status == "completed", resumed.error
        assert resumed.completed_steps == ["load", "report"]
        assert resumed.context.get_output("report", "rows_in_table") == 20
        assert [c.step_name for c in runner.list_checkpoints(run_id)] == [
            "extract", "load", "report"]
    finally:
        runner.instance.dispose()

    rows = _query(database_url, "SELECT count(*), count(DISTINCT symbol), min(loaded_attempt), "
                                "max(loaded_attempt) FROM example_daily_prices")
    assert rows == [(20, 20, 2, 2)], "every row once; the re-run rewrote the first half in place"
    log_rows = _query(database_url, "SELECT step, attempt, resumed FROM example_step_log")
    assert sorted(log_rows) == [("extract", 1, 0), ("load", 1, 0), ("load", 2, 1),
                                ("report", 1, 1)], "extract did not run again"
