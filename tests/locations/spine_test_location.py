"""The code location of the deployment tests (tests/deployment): served by a real webserver/daemon.

Every step appends its name to ``<params.trace>/<spine run id>.log``: the side-effect counter the
tests read. ``step3`` fails with ``params.category`` (default TRANSIENT) while it has run fewer
than ``params.fail_times`` times before, unless ``params.fixed`` is true. Checkpoints go to
$SPINE_DAGSTER_DATABASE_URL; ``spine_resume`` reaches the webserver at $SPINE_DAGSTER_WEBSERVER_URL.
"""

from __future__ import annotations

import uuid
from pathlib import Path

from spine_dagster import AutoResume, Step, StepResult, Workflow, build_definitions


def _trace(ctx, name: str) -> int:
    """Append ``name`` to the run's trace; returns how many times it ran before."""
    path = Path(ctx.params["trace"]) / f"{ctx.run_id}.log"
    before = path.read_text().split() if path.exists() else []
    with path.open("a") as f:
        f.write(name + "\n")
    return before.count(name)


def step1(ctx, config):
    """Issue a fresh token (the first step of the test workflow)."""
    _trace(ctx, "step1")
    return StepResult.ok(output={"token": uuid.uuid4().hex})


def step2(ctx, config):
    _trace(ctx, "step2")
    return StepResult.ok(output={"token": ctx.outputs["step1"]["token"]})


def step3(ctx, config):
    before = _trace(ctx, "step3")
    if not ctx.params.get("fixed") and before < int(ctx.params.get("fail_times", 0)):
        return StepResult.fail(f"step3 broken (attempt {before + 1})",
                               ctx.params.get("category", "TRANSIENT"))
    return StepResult.ok(output={"seen_token": ctx.outputs["step2"]["token"],
                                 "resumed": bool(ctx.params.get("__resumed__")),
                                 "timeout": ctx.params.get("timeout")})


def step4(ctx, config):
    _trace(ctx, "step4")
    return StepResult.ok(output={"resumed": bool(ctx.params.get("__resumed__"))})


def _steps():
    return [Step.lambda_(f"step{i}", fn) for i, fn in enumerate((step1, step2, step3, step4), 1)]


FLAKY = Workflow("deploy.flaky", _steps())
AUTO = Workflow("deploy.auto", _steps(), auto_resume=AutoResume(max_resumes=1))
FUSED = Workflow("deploy.fused", _steps(), fuse=True)  # one op: step1__thru__step4
# key_steps: checkpoints after step1 and step4 only (the seed's fetch -> ... -> load shape)
KEY = Workflow("deploy.key", [
    Step.lambda_("step1", step1, checkpoint=True), Step.lambda_("step2", step2),
    Step.lambda_("step3", step3), Step.lambda_("step4", step4, checkpoint=True)],
    checkpoint_strategy="key_steps")

defs = build_definitions([FLAKY, AUTO, FUSED, KEY], resume_job=True,
                         checkpoint_retention_days=None)
