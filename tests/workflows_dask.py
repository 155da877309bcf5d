"""The workflow of tests/test_dask.py, which the Dask workers import too (``tests`` on PYTHONPATH).

Every step appends one JSON line ``{"run", "step", "pid", "n", "resumed"}`` to ``params["side"]``
before it does anything else: the side-effect record the tests read (which step ran, for which
spine run, in which process). Step outputs carry the run id and ``params["n"]``, so a test can see
that no run was handed another run's context.

* ``prepare`` waits, when ``params["meet"]`` is N, until N runs have started it (bounded): it
  proves that N runs of the job ran their steps at the same time.
* ``hold`` waits, while ``params["hold"]`` is set, until the file ``params["release"]`` exists
  (bounded): a step that a test can kill its worker in.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from spine_dagster import Step, StepResult, Workflow

WAIT_SECONDS = 90.0


def record(ctx, step: str) -> None:
    line = {"run": ctx.run_id, "step": step, "pid": os.getpid(), "n": ctx.params.get("n"),
            "resumed": bool(ctx.params.get("__resumed__"))}
    with open(ctx.params["side"], "a", encoding="utf-8") as fh:
        fh.write(json.dumps(line) + "\n")


def records(path) -> list[dict]:
    """Every line that ``record`` wrote, in order."""
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def _wait_for(condition, what: str) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up after {WAIT_SECONDS:g}s waiting for {what}")
        time.sleep(0.05)


def prepare(ctx, config):
    record(ctx, "prepare")
    meet = int(ctx.params.get("meet") or 0)
    if meet:
        _wait_for(lambda: len({r["run"] for r in records(ctx.params["side"])
                               if r["step"] == "prepare"}) >= meet,
                  f"{meet} runs to start 'prepare' at the same time")
    return StepResult.ok(output={"run": ctx.run_id, "n": ctx.params.get("n"), "pid": os.getpid()})


def hold(ctx, config):
    record(ctx, "hold")
    if ctx.params.get("hold"):
        _wait_for(lambda: os.path.exists(ctx.params["release"]), "the release file")
    return StepResult.ok(output={"run": ctx.run_id, "n": ctx.params.get("n"),
                                 "prepared_by": ctx.outputs["prepare"]["run"]})


def finish(ctx, config):
    record(ctx, "finish")
    return StepResult.ok(output={"run": ctx.run_id, "n": ctx.params.get("n"),
                                 "held_by": ctx.outputs["hold"]["run"]})


CHAIN = Workflow("dask.chain", [Step.lambda_("prepare", prepare), Step.lambda_("hold", hold),
                                Step.lambda_("finish", finish)])


def main(argv: list[str]) -> None:
    """``python -c 'import sys, workflows_dask as w; w.main(sys.argv[1:])' DATABASE_URL PARAMS``:
    one run of CHAIN on
    ``executor="dask"`` (the scheduler at $DASK_SCHEDULER_ADDRESS, the Dagster instance at
    $DAGSTER_HOME); prints the result as JSON. Dagster runs one ``execute_job`` per process at a
    time, so a test that wants two runs at once starts the second one here."""
    from dagster import DagsterInstance

    from spine_dagster import WorkflowRunner

    with DagsterInstance.get() as instance:
        runner = WorkflowRunner(database_url=argv[0], instance=instance, executor="dask",
                                progress=False)
        result = runner.execute(CHAIN, params=json.loads(argv[1]))
        print(json.dumps({"run_id": result.run_id, "dagster_run_id": result.dagster_run_id,
                          "status": result.status.value, "steps": result.completed_steps,
                          "error": result.error}))

