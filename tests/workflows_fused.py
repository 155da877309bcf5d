"""Module-level workflows for tests/test_fused.py (importable: resumed from new processes too).

Every step appends one JSON line to ``<params.dir>/trace.jsonl``: the step, its ``ctx.attempt``,
whether it saw ``__resumed__``, and its process id; the tests read it to know which steps ran.
A step fails while its name is listed in ``<params.dir>/fail.txt`` (it removes itself as it
fails, so that a resume passes); it holds (writes ``<params.dir>/holding`` with the run id, then
sleeps) when ``params.hold`` names it and it runs for the first time.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from spine_dagster import (
    ErrorCategory,
    ErrorPolicy,
    QualityMetrics,
    QualityThresholds,
    Step,
    StepResult,
    Workflow,
)


def trace(ctx: Any, step: str) -> None:
    directory = Path(ctx.params["dir"])
    line = {"step": step, "attempt": ctx.attempt, "pid": os.getpid(),
            "resumed": bool(ctx.params.get("__resumed__"))}
    with (directory / "trace.jsonl").open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(line) + "\n")


def read_trace(directory: Path) -> list[dict[str, Any]]:
    path = Path(directory) / "trace.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def ran(directory: Path) -> list[str]:
    """The steps that ran, in order."""
    return [line["step"] for line in read_trace(directory)]


def _told_to_fail(ctx: Any, name: str) -> bool:
    flag = Path(ctx.params["dir"]) / "fail.txt"
    names = flag.read_text().split() if flag.exists() else []
    if name not in names:
        return False
    names.remove(name)
    flag.write_text("\n".join(names))
    return True


def _hold(ctx: Any, name: str) -> None:
    if ctx.params.get("hold") != name or ctx.attempt != 1:
        return
    (Path(ctx.params["dir"]) / "holding").write_text(ctx.run_id)
    time.sleep(float(ctx.params.get("hold_seconds", 120)))  # the test kills the process here


def chain_step(name: str):
    def step(ctx, config):
        """A link of the chain: adds its number to the previous link's total."""
        trace(ctx, name)
        _hold(ctx, name)
        if _told_to_fail(ctx, name):
            return StepResult.fail(f"{name} was told to fail", ErrorCategory.TRANSIENT)
        previous = [v for k, v in ctx.outputs.items() if isinstance(v, dict) and "total" in v]
        total = (previous[-1]["total"] if previous else 0) + config["n"]
        return StepResult.ok(output={"total": total, "attempt": ctx.attempt})

    step.__name__ = f"link_{name}"
    return step


NAMES = ["a", "b", "c", "d", "e"]


def chain(name: str, *, fuse: bool, **options: Any) -> Workflow:
    return Workflow(name, [Step.lambda_(n, chain_step(n), {"n": i + 1}, description=(
        f"Link {n} of the chain") if n == "a" else None) for i, n in enumerate(NAMES)],
                    fuse=fuse, **options)


FUSED = chain("fused.chain", fuse=True)
UNFUSED = chain("fused.chain_unfused", fuse=False)


def key_steps(name: str, *, fuse: bool) -> Workflow:
    """b and d are key steps; c asks for a checkpoint in its result."""
    steps = []
    for i, n in enumerate(NAMES):
        handler = chain_step(n)
        if n == "c":
            def handler(ctx, config, inner=handler):  # noqa: E731 - wraps the link
                result = inner(ctx, config)
                return StepResult.ok(output=result.output, checkpoint=True) if result.success \
                    else result
        steps.append(Step.lambda_(n, handler, {"n": i + 1}, checkpoint=True if n in "bd" else None))
    return Workflow(name, steps, fuse=fuse, checkpoint_strategy="key_steps")


FUSED_KEY = key_steps("fused.key_steps", fuse=True)
UNFUSED_KEY = key_steps("fused.key_steps_unfused", fuse=False)


# -- spine semantics inside one fused op ------------------------------------------------------------
def start(ctx, config):
    trace(ctx, "start")
    return StepResult.ok(output={"attempt": ctx.attempt,
                                 "resumed": bool(ctx.params.get("__resumed__"))})


def skipped(ctx, config):
    trace(ctx, "skipped")
    return StepResult.ok(output={"ran": True})


def soft(ctx, config):
    trace(ctx, "soft")
    return StepResult.fail("soft failure, the run goes on", ErrorCategory.DEPENDENCY)


def counted(ctx, config):
    trace(ctx, "counted")
    valid = int(ctx.params.get("valid", 10))
    return StepResult.ok(output={"valid": valid},
                         quality=QualityMetrics(record_count=10, valid_count=valid,
                                                invalid_count=10 - valid))


def finish(ctx, config):
    trace(ctx, "finish")
    return StepResult.ok(output={"attempt": ctx.attempt,
                                 "resumed": bool(ctx.params.get("__resumed__")),
                                 "soft_failed": "soft" in ctx.metadata.get("failed_steps", {})})


SEMANTICS = Workflow("fused.semantics", [
    Step.lambda_("start", start),
    Step.choice("jump", lambda ctx: True, then_step="soft"),
    Step.lambda_("skipped", skipped),
    Step.lambda_("soft", soft, on_error=ErrorPolicy.CONTINUE),
    Step.lambda_("counted", counted, quality_thresholds=QualityThresholds(min_valid_rate=0.9)),
    Step.lambda_("finish", finish),
], fuse=True)


# -- what gets an op of its own ----------------------------------------------------------------------
def _item(ctx, config):
    return StepResult.ok(output={"item": ctx.params["item"]})


ITEMS = Workflow("fused.items", [Step.lambda_("one", _item)])


def _ok(ctx, config):
    return StepResult.ok(output={"ok": True})


MIXED = Workflow("fused.mixed", [
    Step.lambda_("a", _ok), Step.lambda_("b", _ok),
    Step.map("fan", "items", ITEMS),
    Step.lambda_("c", _ok), Step.lambda_("d", _ok),
    Step.lambda_("pooled", _ok, pool="warehouse"),
    Step.lambda_("e", _ok),
    Step.lambda_("retried", _ok, on_error=ErrorPolicy.RETRY),
    Step.lambda_("f", _ok), Step.lambda_("g", _ok),
    Step.lambda_("alone", _ok, fuse=False),
    Step.lambda_("h", _ok),
], fuse=True)


def slow_step(name: str):
    def step(ctx, config):
        trace(ctx, name)
        time.sleep(float(ctx.params.get("sleep", 0.0)))
        if _told_to_fail(ctx, name):
            return StepResult.fail(f"{name} was told to fail", ErrorCategory.TRANSIENT)
        return StepResult.ok(output={"n": config["n"]})

    return step


LONG = Workflow("fused.long", [Step.lambda_(f"s{i:02d}", slow_step(f"s{i:02d}"), {"n": i})
                               for i in range(1, 31)], fuse=True)
