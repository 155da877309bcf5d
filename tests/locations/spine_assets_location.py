"""The code location of tests/test_deployment_assets.py: served by a real webserver and daemon.

* ``assets__flow``: a four-step workflow as assets (``SpineJob(assets=True)``); ``step2`` has a
  quality gate (``params.valid`` of 10 rows valid, at least 80%).
* ``assets__daily``: the same steps, as daily-partitioned assets (for backfills).
* ``sensed__flow``: an op job watched by ``spine_failure_sensor``: ``fetch`` times out while
  ``params.timeout`` < ``params.needs``; the policy doubles the timeout on TIMEOUT, and leaves
  any other failure alone.

Every step appends its name to ``$SPINE_TEST_FLAGS/<spine run id>.log``. ``step3`` fails
(TRANSIENT) while the file ``params.fail_flag`` exists, or ``$SPINE_TEST_FLAGS/fail_<partition>``.
The policy appends what it saw to ``$SPINE_TEST_FLAGS/policy.jsonl``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from dagster import DailyPartitionsDefinition

from spine_dagster import (
    ErrorCategory,
    QualityMetrics,
    QualityThresholds,
    ResumeDecision,
    SpineJob,
    Step,
    StepResult,
    Workflow,
    build_definitions,
    spine_failure_sensor,
)

FLAGS = Path(os.environ.get("SPINE_TEST_FLAGS", "/nonexistent"))


def _trace(ctx, name: str) -> None:
    with (FLAGS / f"{ctx.run_id}.log").open("a") as f:
        f.write(name + "\n")


def step1(ctx, config):
    _trace(ctx, "step1")
    return StepResult.ok(output={"rows": 10, "partition": ctx.partition})


def step2(ctx, config):
    _trace(ctx, "step2")
    valid = int(ctx.params.get("valid", 10))
    return StepResult.ok(output={"rows": valid},
                         quality=QualityMetrics(record_count=10, valid_count=valid))


def step3(ctx, config):
    _trace(ctx, "step3")
    flag = ctx.params.get("fail_flag")
    if (flag and Path(flag).exists()) or (FLAGS / f"fail_{ctx.partition}").exists():
        return StepResult.fail("step3 broken", ErrorCategory.TRANSIENT)
    return StepResult.ok(output={"rows": ctx.get_output("step2", "rows"),
                                 "resumed": bool(ctx.params.get("__resumed__"))})


def step4(ctx, config):
    _trace(ctx, "step4")
    return StepResult.ok(output={"resumed": bool(ctx.params.get("__resumed__"))})


def _steps():
    return [Step.lambda_("step1", step1),
            Step.lambda_("step2", step2, quality_thresholds=QualityThresholds(min_valid_rate=0.8)),
            Step.lambda_("step3", step3), Step.lambda_("step4", step4)]


ASSET_FLOW = Workflow("assets.flow", _steps(), domain="tests", owners=["team:data"])
DAILY_FLOW = Workflow("assets.daily", _steps(), domain="tests")


def prepare(ctx, config):
    _trace(ctx, "prepare")
    return StepResult.ok(output={"ready": True})


def fetch(ctx, config):
    _trace(ctx, "fetch")
    if float(ctx.params["timeout"]) < float(ctx.params["needs"]):
        return StepResult.fail(f"no answer within {ctx.params['timeout']}s",
                               ctx.params.get("category", "TIMEOUT"))
    return StepResult.ok(output={"timeout_used": ctx.params["timeout"]})


def save(ctx, config):
    _trace(ctx, "save")
    return StepResult.ok(output={"saved": True})


SENSED = Workflow("sensed.flow", [Step.lambda_("prepare", prepare), Step.lambda_("fetch", fetch),
                                  Step.lambda_("save", save)])


def double_the_timeout(failure):
    """TIMEOUT: resume with twice the timeout (three times at most); anything else: stay failed."""
    with (FLAGS / "policy.jsonl").open("a") as f:
        f.write(json.dumps({
            "run": failure.run.run_id, "dagster_run": failure.dagster_run.run_id,
            "step": failure.step, "category": failure.category, "resumes": failure.resumes,
            "timeout": failure.params.get("timeout"),
            "start_step": failure.plan.start_step if failure.plan else None,
            "reused": failure.plan.reused_steps if failure.plan else None}) + "\n")
    if failure.category == "TIMEOUT" and failure.resumes < 3:
        return ResumeDecision(params_override={"timeout": failure.params["timeout"] * 2})
    return None


DAILY = DailyPartitionsDefinition(start_date="2026-01-01", end_date="2026-01-10")

defs = build_definitions(
    [SpineJob(ASSET_FLOW, assets=True), SpineJob(DAILY_FLOW, assets=True, partitions_def=DAILY),
     SENSED],
    sensors=[spine_failure_sensor(SENSED, double_the_timeout, minimum_interval_seconds=1)],
    checkpoint_retention_days=None)
