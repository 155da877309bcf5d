"""Module-level workflows for the run-status and scale-out tests.

Importable (``PYTHONPATH=tests``), so that a new process, a Dagster run worker and the step
processes of the multiprocess executor can all load them. Every step appends
``"<step> <pid> <resumed>"`` to the file named by ``params["calls_file"]``, so tests see which
steps ran, and in which process.
"""

from __future__ import annotations

import os
import time

from spine_dagster import ErrorCategory, Step, StepResult, Workflow

HOLD_SECONDS = 300.0  # a blocked step gives up after this: a guard against a hang


def record(step: str, ctx) -> None:
    path = ctx.params.get("calls_file")
    if path:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(f"{step} {os.getpid()} {int(bool(ctx.params.get('__resumed__')))}\n")


def calls(path) -> list[tuple[str, int, int]]:
    """The (step, pid, resumed) lines that ``record`` wrote, in order."""
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as fh:
        return [(s, int(p), int(r)) for s, p, r in (line.split() for line in fh if line.strip())]


def extract(ctx, config):
    record("extract", ctx)
    return StepResult.ok(output={"rows": 5})


def crash_or_transform(ctx, config):
    """Dies like a killed process (no exception, no cleanup) while ``params["die"]`` is set."""
    record("transform", ctx)
    if ctx.params.get("die"):
        os._exit(17)
    return StepResult.ok(output={"rows": ctx.get_output("extract", "rows") * 2})


def block_or_transform(ctx, config):
    """Waits (like a long step) until the file at ``params["block"]`` exists, if it is set; fails
    after ``HOLD_SECONDS`` (the tests interrupt it long before)."""
    record("transform", ctx)
    release = ctx.params.get("block")
    deadline = time.monotonic() + HOLD_SECONDS
    while release and not os.path.exists(release):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{release} did not appear within {HOLD_SECONDS:g} s")
        time.sleep(0.05)
    return StepResult.ok(output={"rows": ctx.get_output("extract", "rows") * 2})


def fail_or_transform(ctx, config):
    record("transform", ctx)
    if ctx.params.get("fail"):
        return StepResult.fail("upstream service unavailable", ErrorCategory.TRANSIENT)
    return StepResult.ok(output={"rows": ctx.get_output("extract", "rows") * 2})


def load(ctx, config):
    record("load", ctx)
    return StepResult.ok(output={"loaded": ctx.get_output("transform", "rows")})


DYING = Workflow("ops.dying", [Step.lambda_("extract", extract),
                               Step.lambda_("transform", crash_or_transform),
                               Step.lambda_("load", load)])

BLOCKING = Workflow("ops.blocking", [Step.lambda_("extract", extract),
                                     Step.lambda_("transform", block_or_transform),
                                     Step.lambda_("load", load)])

FLAKY = Workflow("ops.flaky", [Step.lambda_("extract", extract),
                               Step.lambda_("transform", fail_or_transform),
                               Step.lambda_("load", load)])
