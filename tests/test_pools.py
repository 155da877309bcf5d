"""``Step(..., pool="warehouse")``: the step's op is in a Dagster concurrency pool.

Two runs of a workflow are started at the same moment, each in its own process, on one Dagster
instance. The pooled step writes when it starts and ends, and waits (up to 8 s) for the other
run's pooled step to start. With a pool limit of 1 the two steps never overlap; without a limit
they do (so the test can fail). On [sqlite] and [postgres] (instance and checkpoints).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from dagster import DagsterInstance

from spine_dagster import Step, StepResult, Workflow, build_job

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.timeout(300)]

TESTS = Path(__file__).resolve().parent
PARTNER_WAIT_SECONDS = 8.0


def prepare(ctx, config):
    return StepResult.ok(output={"ready": True})


def write(ctx, config):
    """Record [start, end]; wait for the other run's pooled step to start (or give up)."""
    trace = Path(ctx.params["trace"])
    (trace / f"{ctx.run_id}.start").write_text(repr(time.time()))
    deadline = time.monotonic() + PARTNER_WAIT_SECONDS
    while time.monotonic() < deadline:
        if len(list(trace.glob("*.start"))) > 1:
            break
        time.sleep(0.1)
    time.sleep(0.5)
    (trace / f"{ctx.run_id}.end").write_text(repr(time.time()))
    return StepResult.ok(output={"written": True})


# The pool's name: "warehouse", or a name of the test's own (SPINE_TEST_POOL), so that no other
# test's use of the session's Dagster database (limits, claimed slots) can affect this one.
POOL = os.environ.get("SPINE_TEST_POOL", "warehouse")
POOLED = Workflow("pools.warehouse", [Step.lambda_("prepare", prepare),
                                      Step.lambda_("write", write, pool=POOL)])

RUN = """
import json, sys
from dagster import DagsterInstance
from spine_dagster import WorkflowRunner
from test_pools import POOLED
home, database_url, trace = sys.argv[1:4]
instance = DagsterInstance.from_config(home)
result = WorkflowRunner(database_url=database_url, instance=instance, workspace="",
                        progress=False).execute(POOLED, params={"trace": trace})
print(json.dumps({"status": result.status.value, "run": result.run_id}))
"""


def two_concurrent_runs(home: str, database_url: str, trace: Path,
                        pool: str) -> list[tuple[float, float]]:
    env = {**os.environ, "PYTHONPATH": str(TESTS), "DAGSTER_HOME": home, "SPINE_TEST_POOL": pool}
    procs = [subprocess.Popen([sys.executable, "-c", RUN, home, database_url, str(trace)],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outputs = [p.communicate(timeout=240) for p in procs]
    for proc, (out, err) in zip(procs, outputs):
        assert proc.returncode == 0, out + err
        assert json.loads(out.strip().splitlines()[-1])["status"] == "completed", out
    runs = sorted(p.stem for p in trace.glob("*.start"))
    assert len(runs) == 2
    return [(float((trace / f"{r}.start").read_text()), float((trace / f"{r}.end").read_text()))
            for r in runs]


def overlap(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def test_the_step_op_is_in_the_pool():
    job = build_job(POOLED, database_url="sqlite:///unused.db")
    assert job.graph.node_named("write").definition.pool == "warehouse"
    assert job.graph.node_named("prepare").definition.pool is None


@pytest.mark.parametrize("limit", [1, None], ids=["limit-1", "no-limit"])
def test_a_pool_limit_of_one_serializes_the_pooled_step(deployment, tmp_path, limit):
    home, database_url = deployment
    instance = DagsterInstance.from_config(home)  # PostgreSQL: one Dagster database per session
    storage = instance.event_log_storage
    pool = f"warehouse_{uuid.uuid4().hex[:8]}"
    if limit is not None:
        storage.set_concurrency_slots(pool, limit)
    trace = tmp_path / "trace"
    trace.mkdir()

    try:
        first, second = two_concurrent_runs(home, database_url, trace, pool)
    finally:
        if limit is not None:
            storage.delete_concurrency_limit(pool)
        instance.dispose()

    if limit == 1:
        assert not overlap(first, second), (first, second)
    else:
        assert overlap(first, second), (first, second)
