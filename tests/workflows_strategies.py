"""Module-level workflows for the strategy and idempotency tests.

They live in an importable module (not inside a test function) because the multiprocess executor
rebuilds the job in every step process, and a resume may load the workflow again.

Every step appends one JSON line to the file named by ``params["trace"]``: which step ran, in
which process, with which ``attempt``, ``__resumed__`` and ``partition``. The file is the
side-effect counter the tests read; it works across processes.
"""

from __future__ import annotations

import json
import os
from typing import Any

from spine_dagster import ErrorCategory, ErrorPolicy, RetryPolicy, Step, StepResult, Workflow, pipeline


def record(ctx: Any, step: str) -> None:
    """Append what ``step`` saw to the trace file, if the run has one."""
    path = ctx.params.get("trace")
    if not path:
        return
    line = {"step": step, "pid": os.getpid(), "attempt": ctx.attempt,
            "resumed": ctx.params.get("__resumed__", "absent"), "partition": ctx.partition}
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(line) + "\n")


def read_trace(path: Any) -> list[dict[str, Any]]:
    """The trace lines written so far (an empty list when no step ran)."""
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


@pipeline("strategies.fetch")
def fetch(ctx, config):
    record(ctx, "fetch")
    return StepResult.ok(output={"records": 3})


@pipeline("strategies.transform1")
def transform1(ctx, config):
    record(ctx, "transform1")
    return StepResult.ok(output={"doubled": ctx.get_output("fetch", "records") * 2})


@pipeline("strategies.transform2")
def transform2(ctx, config):
    record(ctx, "transform2")
    return StepResult.ok(output={"plus_one": ctx.get_output("transform1", "doubled") + 1})


@pipeline("strategies.load")
def load(ctx, config):
    record(ctx, "load")
    if config.get("fail_load"):
        return StepResult.fail("warehouse is down", category=ErrorCategory.TRANSIENT)
    return StepResult.ok(output={"loaded": ctx.get_output("transform2", "plus_one")})


# The seed's "Checkpoint at Key Steps" workflow, with its strategy left to the runner.
SEED_KEY_STEPS = Workflow(
    name="strategies.seed",
    steps=[
        Step.pipeline("fetch", "strategies.fetch", checkpoint=True),
        Step.pipeline("transform1", "strategies.transform1"),
        Step.pipeline("transform2", "strategies.transform2"),
        Step.pipeline("load", "strategies.load", checkpoint=True),
    ],
)

# The same steps, with key_steps set on the workflow itself.
SEED_OWN_STRATEGY = Workflow(
    name="strategies.seed_own",
    steps=[
        Step.pipeline("fetch", "strategies.fetch", checkpoint=True),
        Step.pipeline("transform1", "strategies.transform1"),
        Step.pipeline("transform2", "strategies.transform2"),
        Step.pipeline("load", "strategies.load", checkpoint=True),
    ],
    checkpoint_strategy="key_steps",
)


def _expensive(ctx, config):
    record(ctx, "expensive")
    return StepResult.ok(output={"minutes": 30}, checkpoint=True)


def _cheap(ctx, config):
    record(ctx, "cheap")
    return StepResult.ok(output={"cheap": True})


def _scratch(ctx, config):
    record(ctx, "scratch")
    return StepResult.ok(output={"tmp": 1})


def _flaky(ctx, config):
    """Fails with a TRANSIENT error until ``params["succeed_on"]`` attempts were made."""
    record(ctx, "flaky")
    if ctx.attempt < ctx.params.get("succeed_on", 1):
        return StepResult.fail(f"attempt {ctx.attempt} failed", category=ErrorCategory.TRANSIENT)
    return StepResult.ok(output={"attempt": ctx.attempt})


# A result-level checkpoint (StepResult.ok(checkpoint=True)) and a step-level opt-out.
FLAGS = Workflow(
    name="strategies.flags",
    steps=[
        Step.lambda_("cheap", _cheap),
        Step.lambda_("expensive", _expensive),
        Step.lambda_("scratch", _scratch, checkpoint=False),
        Step.lambda_("flaky", _flaky),
    ],
)

RETRYING = Workflow(
    name="strategies.retrying",
    steps=[
        Step.lambda_("cheap", _cheap),
        Step.lambda_("flaky", _flaky, on_error=ErrorPolicy.RETRY,
                     retry_policy=RetryPolicy(max_attempts=3, initial_delay_seconds=0.01,
                                              backoff_multiplier=1.0)),
    ],
)

# Partitioned in the tests (build_job(..., partitions_def=...)): the steps see the run's key.
PARTITIONED = Workflow(
    name="strategies.partitioned",
    steps=[Step.lambda_("cheap", _cheap), Step.lambda_("flaky", _flaky)],
)
