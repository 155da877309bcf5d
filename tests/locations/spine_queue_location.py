"""The code location of the queued-runs test and benchmark (tests/test_queued_runs.py,
benchmarks/queued_runs.py): one spine job and a plain Dagster job with the same op bodies.

* ``queue__spine``: the spine workflow ``queue.spine`` (``begin`` -> ``middle`` -> ``end``),
  checkpoints in $SPINE_DAGSTER_DATABASE_URL. ``middle`` fails while ``params.fail`` is set.
* ``queue_plain``: the same three bodies as plain ops (Dagster's default IO manager), params in
  each op's config, on the in-process executor like the spine job.

Every body appends one JSON line ``{"run", "step", "n", "pid"}`` to ``<params.trace>/<run>.jsonl``
(the spine run id, or the plain run's Dagster run id) and returns its run id and ``n`` next to
what it got from upstream: the tests read both to see that no run got another run's context.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from dagster import in_process_executor, job, op

from spine_dagster import ErrorCategory, Step, StepResult, Workflow, build_definitions


def body(step: str, run_id: str, params: dict[str, Any], upstream: dict[str, Any] | None
         ) -> dict[str, Any]:
    """One step's work, the same for both jobs: record that it ran, pass the chain on."""
    line = {"run": run_id, "step": step, "n": params.get("n"), "pid": os.getpid()}
    with (Path(params["trace"]) / f"{run_id}.jsonl").open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(line) + "\n")
    chain = [*(upstream or {}).get("chain", []), [step, run_id, params.get("n")]]
    return {"run": run_id, "n": params.get("n"), "chain": chain}


def begin(ctx, config):
    return StepResult.ok(output=body("begin", ctx.run_id, ctx.params, None))


def middle(ctx, config):
    output = body("middle", ctx.run_id, ctx.params, ctx.outputs["begin"])
    if ctx.params.get("fail"):
        return StepResult.fail("middle: the service is down", ErrorCategory.TRANSIENT)
    return StepResult.ok(output=output)


def end(ctx, config):
    return StepResult.ok(output=body("end", ctx.run_id, ctx.params, ctx.outputs["middle"]))


SPINE = Workflow("queue.spine", [Step.lambda_("begin", begin), Step.lambda_("middle", middle),
                                 Step.lambda_("end", end)])

_CONFIG = {"trace": str, "n": int}


@op(name="begin", config_schema=_CONFIG)
def plain_begin(context) -> dict:
    return body("begin", context.run_id, context.op_config, None)


@op(name="middle", config_schema=_CONFIG)
def plain_middle(context, upstream: dict) -> dict:
    return body("middle", context.run_id, context.op_config, upstream)


@op(name="end", config_schema=_CONFIG)
def plain_end(context, upstream: dict) -> dict:
    return body("end", context.run_id, context.op_config, upstream)


@job(name="queue_plain", executor_def=in_process_executor)  # ops in the run worker, as spine's
def queue_plain():
    plain_end(plain_middle(plain_begin()))


defs = build_definitions([SPINE], jobs=[queue_plain], checkpoint_retention_days=None)
