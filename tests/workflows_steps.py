"""Module-level workflows for the step-type tests (map, wait, retry, logging, quality).

Importable (``PYTHONPATH=tests``), so that a new process, a Dagster run worker and the step
processes of the multiprocess executor can all load them. Steps append one line per call to the
file named by ``params["calls_file"]`` (``"<label> <pid> <resumed> <attempt>"``), so tests see
which steps and which map items ran, in which process and on which attempt. Which items fail comes
from a JSON file (``params["broken_file"]``: item -> ``TRANSIENT``, ``DATA_QUALITY`` ... or
``raise``), like an external service that is down: a resume fixes it by rewriting the file, not
by changing a param that the items read.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from spine_dagster import (
    ErrorCategory,
    ErrorPolicy,
    QualityMetrics,
    QualityThresholds,
    RetryPolicy,
    Step,
    StepResult,
    Workflow,
    pipeline,
)

HOLD_SECONDS = 300.0  # a held step gives up after this: a guard against a hang (tests kill it)


def record(label: str, ctx) -> None:
    path = ctx.params.get("calls_file")
    if path:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(f"{label} {os.getpid()} {int(bool(ctx.params.get('__resumed__')))} "
                     f"{ctx.attempt}\n")


def calls(path) -> list[str]:
    """The labels that ``record`` wrote, in order."""
    return [line.split()[0] for line in _lines(path)]


def call_lines(path) -> list[tuple[str, int, int, int]]:
    """(label, pid, resumed, attempt) of every call, in order."""
    return [(label, int(pid), int(resumed), int(attempt))
            for label, pid, resumed, attempt in (line.split() for line in _lines(path))]


def _lines(path) -> list[str]:
    if not os.path.exists(path):
        return []
    return [line for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


def _broken(ctx) -> dict[str, str]:
    path = ctx.params.get("broken_file")
    if not path or not os.path.exists(path):
        return {}
    return json.loads(Path(path).read_text(encoding="utf-8"))


def _hold(ctx, label: str) -> None:
    """While ``params["hold_file"]`` is set and ``params["release_file"]`` does not exist: write the
    run id to the hold file (the test's signal) and block, like a long call the test kills."""
    hold = ctx.params.get("hold_file")
    release = ctx.params.get("release_file")
    if not hold or not release or os.path.exists(release):
        return
    with open(hold, "a", encoding="utf-8") as fh:
        fh.write(f"{ctx.run_id} {label}\n")
    deadline = time.monotonic() + HOLD_SECONDS
    while not os.path.exists(release):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{release} did not appear within {HOLD_SECONDS:g} s")
        time.sleep(0.05)


# -- map ------------------------------------------------------------------------------------------
def prepare(ctx, config):
    record("prepare", ctx)
    return {"factor": ctx.params.get("factor", 2)}


def work(ctx, config):
    """One map item: doubles it, or fails as ``broken_file`` says; holds from ``hold_from`` on."""
    item = ctx.params["item"]
    record(f"work:{item}", ctx)
    if isinstance(item, int) and item >= ctx.params.get("hold_from", 10**9):
        _hold(ctx, f"work:{item}")
    how = _broken(ctx).get(str(item))
    if how == "raise":
        raise ValueError(f"cannot parse item {item}")
    if how:
        return StepResult.fail(f"item {item} is broken", how)
    return {"item": item, "double": item * 2}


def after(ctx, config):
    record("after", ctx)
    outputs = ctx.get_output("fan", default=[])
    return {"count": len(outputs), "total": sum(o["double"] for o in outputs)}


PER_ITEM = Workflow("steps.per_item", [Step.lambda_("work", work)])

MAPPED = Workflow("steps.mapped", [
    Step.lambda_("prepare", prepare),
    Step.map("fan", "items", PER_ITEM, max_concurrency=4),
    Step.lambda_("after", after),
])

# -- wait -----------------------------------------------------------------------------------------
def before_wait(ctx, config):
    record("before", ctx)
    return {"ready": True}


def after_wait(ctx, config):
    record("after", ctx)
    if _broken(ctx).get("after"):
        return StepResult.fail("the warehouse is down", ErrorCategory.TRANSIENT)
    return {"done": True}


WAITING = Workflow("steps.waiting", [
    Step.lambda_("before", before_wait),
    Step.wait("pause", 4),
    Step.lambda_("after", after_wait),
])

# -- retry under the multiprocess executor --------------------------------------------------------
def flaky(ctx, config):
    """Fails (TRANSIENT) until the attempt named by ``params["succeed_at"]``."""
    record("flaky", ctx)
    if ctx.attempt < ctx.params.get("succeed_at", 1):
        return StepResult.fail(f"attempt {ctx.attempt}: the API timed out", ErrorCategory.TRANSIENT)
    return {"attempt": ctx.attempt}


def finish(ctx, config):
    record("finish", ctx)
    return {"flaky_attempt": ctx.get_output("flaky", "attempt")}


RETRYING = Workflow("steps.retrying", [
    Step.lambda_("flaky", flaky, on_error=ErrorPolicy.RETRY,
                 retry_policy=RetryPolicy(max_attempts=2, initial_delay_seconds=0.01)),
    Step.lambda_("finish", finish),
])

# -- quality --------------------------------------------------------------------------------------
def measured(ctx, config):
    """Reports ``params["rows"]`` records, ``params["valid"]`` of them valid, ``params["nulls"]``
    of them null."""
    record("measure", ctx)
    rows, valid = ctx.params["rows"], ctx.params["valid"]
    metrics = QualityMetrics(record_count=rows, valid_count=valid, invalid_count=rows - valid,
                             null_count=ctx.params["nulls"])
    return StepResult.ok(output={"rows": rows}, quality=metrics)


@pipeline("steps.count")
def count(ctx, config):
    """A pipeline that counts ``config["count_rows"]`` records, all valid."""
    record("count", ctx)
    rows = config["count_rows"]
    return StepResult.ok(output={"rows": rows},
                         quality=QualityMetrics(record_count=rows, valid_count=rows))


GATED = Workflow("steps.gated", [
    Step.lambda_("measure", measured, quality_thresholds=QualityThresholds(
        min_valid_rate=0.95, max_null_rate=0.05, max_record_count=1000)),
    Step.pipeline("count", "steps.count", quality_thresholds=QualityThresholds(
        min_record_count=10)),
    Step.lambda_("after", lambda ctx, config: {"rows": ctx.get_output("measure", "rows")}),
])
