"""Module-level workflows for the seed scenarios (importable, so a new process can resume them).

Every step records that it ran in ``CALLS`` (and, across processes, in the file named by
``SEED_CALLS_FILE``), so tests assert which steps ran instead of assuming it.
"""

from __future__ import annotations

import os

from spine_dagster import ErrorCategory, QualityMetrics, Step, StepResult, Workflow, pipeline

CALLS: list[str] = []
SEEN: dict[str, dict] = {}  # step -> params it saw
STATE = {"api_down": True, "min_timeout": 0}


def record(step: str, ctx) -> None:
    CALLS.append(step)
    SEEN[step] = dict(ctx.params)
    path = os.environ.get("SEED_CALLS_FILE")
    if path:
        with open(path, "a") as fh:
            fh.write(f"{step} {int(bool(ctx.params.get('__resumed__')))} "
                     f"{ctx.params.get('timeout')}\n")


def reset() -> None:
    CALLS.clear()
    SEEN.clear()
    STATE.update(api_down=True, min_timeout=0)


def api_down() -> bool:
    if "SEED_API_DOWN" in os.environ:
        return os.environ["SEED_API_DOWN"] == "1"
    return STATE["api_down"]


@pipeline("seed.step1")
def step1(ctx, config):
    record("step1", ctx)
    return StepResult.ok(output={"records": 1000},
                         quality=QualityMetrics(record_count=1000, valid_count=1000))


@pipeline("seed.step2")
def step2(ctx, config):
    record("step2", ctx)
    return StepResult.ok(output={"processed": ctx.get_output("step1", "records") - 50},
                         context_updates={"derived_key": "computed_value"})


@pipeline("seed.step3")
def step3(ctx, config):
    record("step3", ctx)
    if api_down():
        return StepResult.fail("External API timeout", ErrorCategory.TIMEOUT)
    if config.get("timeout", 0) < STATE["min_timeout"]:
        return StepResult.fail(f"External API timeout after {config['timeout']}s",
                               ErrorCategory.TIMEOUT)
    return StepResult.ok(output={"enriched": True, "timeout": config.get("timeout"),
                                 "force_refresh": config.get("force_refresh", False)})


@pipeline("seed.step4")
def step4(ctx, config):
    record("step4", ctx)
    return StepResult.ok(output={"sent": True,
                                 "resumed": bool(ctx.params.get("__resumed__", False))})


SEED = Workflow(
    name="my.workflow",
    steps=[
        Step.pipeline("step1", "seed.step1"),
        Step.pipeline("step2", "seed.step2"),
        Step.pipeline("step3", "seed.step3"),
        Step.pipeline("step4", "seed.step4"),
    ],
)

OTHER = Workflow(name="other.workflow", steps=[Step.pipeline("step1", "seed.step1")])
