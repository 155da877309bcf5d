"""How one Spine step runs on a context: pure Python, no Dagster import.

The compiler wraps :func:`run_step` in a Dagster op. Keeping the step semantics here (config
merging, result coercion, choice jumps, ``CONTINUE`` bookkeeping, JSON validation) lets them be
tested without Dagster and reused by future step types.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from .context import WorkflowContext
from .errors import CheckpointSerializationError
from .model import ErrorCategory, ErrorPolicy, Step, StepType
from .pipelines import get_pipeline
from .results import StepResult
from .serialization import find_unserializable

SKIP_TO = "skip_to"
FAILED_STEPS = "failed_steps"


@dataclass
class StepOutcome:
    """What happened when a step ran: the context after it, or why it failed."""

    step_name: str
    context: WorkflowContext
    result: StepResult | None = None
    error: str | None = None
    error_category: str | None = None
    exception: BaseException | None = None
    skipped: bool = False
    continued: bool = False  # failed under ErrorPolicy.CONTINUE; the run goes on

    @property
    def failed(self) -> bool:
        return self.error is not None and not self.continued

    @property
    def wants_checkpoint(self) -> bool | None:
        return self.result.checkpoint if self.result is not None else None


def step_config(step: Step, ctx: WorkflowContext, overrides: Mapping[str, Any] | None) -> dict:
    """The ``config`` a handler receives: pipelines get ``{**ctx.params, **step_params}``."""
    base = {**ctx.params, **step.config} if step.step_type is StepType.PIPELINE else dict(step.config)
    return {**base, **(overrides or {})}


def _category_of(exc: BaseException) -> str:
    category = getattr(exc, "category", None)
    try:
        return ErrorCategory(category).value if category is not None else ErrorCategory.INTERNAL.value
    except ValueError:
        return ErrorCategory.INTERNAL.value


def _call_handler(step: Step, ctx: WorkflowContext, config: dict) -> StepResult:
    if step.step_type is StepType.LAMBDA:
        return StepResult.coerce(step.handler(ctx, config), step.name)
    if step.step_type is StepType.PIPELINE:
        handler = get_pipeline(step.pipeline_name, step_name=step.name)
        return StepResult.coerce(handler(ctx, config), step.name)
    if step.step_type is StepType.CHOICE:
        target = step.then_step if step.condition(ctx) else step.else_step
        return StepResult.ok(output={"branch": target}, next_step=target)
    if step.step_type is StepType.WAIT:
        time.sleep(step.duration_seconds or 0)
        return StepResult.ok(output={"waited_seconds": step.duration_seconds})
    if step.step_type is StepType.MAP:
        return _run_map(step, ctx)
    raise ValueError(f"step {step.name!r}: unknown step type {step.step_type!r}")


def _run_map(step: Step, ctx: WorkflowContext) -> StepResult:
    items = ctx.params.get(step.items_path)
    if not isinstance(items, (list, tuple)):
        return StepResult.fail(f"map step {step.name!r}: params[{step.items_path!r}] is not a list",
                               ErrorCategory.CONFIGURATION)
    sub = step.iterator_workflow

    def run_item(item: Any) -> dict[str, Any]:
        item_ctx = WorkflowContext(run_id=ctx.run_id, workflow_name=sub.name,
                                   params={**sub.defaults, **ctx.params, step.item_param: item},
                                   partition=ctx.partition, metadata=dict(ctx.metadata))
        for sub_step in sub.steps:
            outcome = run_step(sub_step, item_ctx)
            if outcome.failed:
                return {"ok": False, "error": f"{sub_step.name}: {outcome.error}"}
            item_ctx = outcome.context
        return {"ok": True, "outputs": dict(item_ctx.outputs)}

    with ThreadPoolExecutor(max_workers=max(1, step.max_concurrency)) as pool:
        results = list(pool.map(run_item, items))
    failed = [i for i, r in enumerate(results) if not r["ok"]]
    if failed:
        errors = "; ".join(f"item {i}: {results[i]['error']}" for i in failed)
        return StepResult.fail(f"map step {step.name!r}: {len(failed)} of {len(items)} items "
                               f"failed: {errors}")
    return StepResult.ok(output={"count": len(items), "items": [r["outputs"] for r in results]})


def run_step(step: Step, ctx: WorkflowContext, config_overrides: Mapping[str, Any] | None = None,
             *, call: Callable[[Step, WorkflowContext, dict], StepResult] = _call_handler
             ) -> StepOutcome:
    """Run ``step`` on ``ctx`` and derive the next context. Never raises for a step failure."""
    skip_to = ctx.metadata.get(SKIP_TO)
    if skip_to and skip_to != step.name:
        return StepOutcome(step.name, ctx, StepResult.skip(f"choice jumped to {skip_to!r}"),
                           skipped=True)
    if skip_to:
        ctx = ctx.with_metadata({SKIP_TO: None})
    try:
        result = call(step, ctx, step_config(step, ctx, config_overrides))
    except Exception as exc:  # noqa: BLE001 - a raising step is a failed step
        return _failure(step, ctx, StepResult.fail(str(exc) or type(exc).__name__,
                                                   _category_of(exc)), exc)
    if not result.success:
        return _failure(step, ctx, result, None)
    problem = (find_unserializable(result.output, f"outputs.{step.name}")
               or find_unserializable(result.context_updates, "params")
               or (find_unserializable(result.quality.to_dict(), f"quality_metrics.{step.name}")
                   if result.quality is not None else None))
    if problem:
        exc = CheckpointSerializationError(
            f"step {step.name!r} returned a value that cannot be stored as JSON: {problem}. "
            f"Return JSON values, or store the data elsewhere and return a reference to it."
        )
        return _failure(step, ctx, StepResult.fail(str(exc)), exc)
    return StepOutcome(step.name, apply_result(ctx, step, result), result)


def apply_result(ctx: WorkflowContext, step: Step, result: StepResult) -> WorkflowContext:
    """The context after a successful step: its output, param updates, quality, jump target."""
    ctx = ctx.with_output(step.name, result.output)
    if result.context_updates:
        ctx = ctx.with_params(result.context_updates)
    if result.quality is not None:
        ctx = ctx.with_quality(step.name, result.quality.to_dict())
    if result.next_step:
        ctx = ctx.with_metadata({SKIP_TO: result.next_step})
    return ctx


def _failure(step: Step, ctx: WorkflowContext, result: StepResult,
             exc: BaseException | None) -> StepOutcome:
    category = (result.error_category or ErrorCategory.INTERNAL)
    category = category.value if isinstance(category, ErrorCategory) else str(category)
    outcome = StepOutcome(step.name, ctx, result, error=result.error or "step failed",
                          error_category=category, exception=exc)
    if step.on_error is ErrorPolicy.CONTINUE:
        failed = {**ctx.metadata.get(FAILED_STEPS, {}),
                  step.name: {"error": outcome.error, "error_category": category}}
        outcome.context = ctx.with_output(step.name, result.output or {}).with_metadata(
            {FAILED_STEPS: failed})
        outcome.continued = True
    return outcome
