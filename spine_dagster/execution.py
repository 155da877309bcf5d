"""How one Spine step runs on a context: pure Python, no Dagster import.

The compiler wraps :func:`run_step` in a Dagster op. Keeping the step semantics here (config
merging, result coercion, choice jumps, ``CONTINUE`` bookkeeping, JSON validation, quality gates,
which params a step read) lets them be tested without Dagster. What a step needs from the runtime
beyond its context (running a map's items with per-item checkpoints, a wait that survives a
restart) comes through :class:`StepServices`; :class:`InlineServices` is the plain in-memory one.

Example:
    >>> from spine_dagster import Step, StepResult, WorkflowContext
    >>> step = Step.lambda_("double", lambda ctx, cfg: StepResult.ok(output={"n": ctx.params["x"] * 2}))
    >>> outcome = run_step(step, WorkflowContext.create("docs.exec", params={"x": 2, "y": 0}))
    >>> outcome.context.outputs["double"], outcome.params_read
    ({'n': 4}, ['x'])
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Mapping

from .context import WorkflowContext
from .errors import CheckpointSerializationError
from .model import ErrorCategory, ErrorPolicy, Step, StepType
from .param_reads import ALL, ParamReads, TrackedParams
from .pipelines import get_pipeline
from .results import StepResult
from .serialization import find_unserializable
from .snapshot import PARAMS_READ

STEP_LOGGER = "spine_dagster.step"
SKIP_TO = "skip_to"
FAILED_STEPS = "failed_steps"
# Most severe first: what a map step reports when its items failed in several ways.
SEVERITY = (ErrorCategory.INTERNAL, ErrorCategory.CONFIGURATION, ErrorCategory.DATA_QUALITY,
            ErrorCategory.DEPENDENCY, ErrorCategory.TIMEOUT, ErrorCategory.TRANSIENT)


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
    params_read: list[str] = field(default_factory=list)
    rejected: WorkflowContext | None = None  # the context whose output failed its quality gate

    @property
    def failed(self) -> bool:
        return self.error is not None and not self.continued

    @property
    def wants_checkpoint(self) -> bool | None:
        return self.result.checkpoint if self.result is not None else None


class StepServices:
    """What the runtime offers a step beyond its context; override to add durability."""

    def run_map(self, step: Step, ctx: WorkflowContext) -> StepResult:
        return run_map_inline(step, ctx, self)

    def wait(self, step: Step, ctx: WorkflowContext) -> StepResult:
        seconds = float(step.duration_seconds or 0)
        time.sleep(seconds)
        return StepResult.ok(output={"waited_seconds": seconds})


InlineServices = StepServices
"""The in-memory services: a map runs its items in threads, a wait sleeps."""


class StepLog:
    """``ctx.log``: a step's messages, prefixed with the step name, to ``log``.

    Under Dagster ``log`` is the op's ``context.log`` (the run log of the op); a step run by
    :func:`run_step` without a Dagster run logs to the Python logger ``spine_dagster.step``.
    Step code never imports Dagster.

    Example:
        >>> import logging
        >>> StepLog(logging.getLogger("docs"), "fetch").prefix
        '[fetch] '
    """

    def __init__(self, log: Any, step_name: str) -> None:
        self._log = log
        self.prefix = f"[{step_name}] "

    def _emit(self, level: str, msg: Any, args: tuple[Any, ...]) -> None:
        text = str(msg) % args if args else str(msg)
        getattr(self._log, level)(self.prefix + text)

    def debug(self, msg: Any, *args: Any) -> None:
        self._emit("debug", msg, args)

    def info(self, msg: Any, *args: Any) -> None:
        self._emit("info", msg, args)

    def warning(self, msg: Any, *args: Any) -> None:
        self._emit("warning", msg, args)

    warn = warning

    def error(self, msg: Any, *args: Any) -> None:
        self._emit("error", msg, args)

    def exception(self, msg: Any, *args: Any) -> None:
        self._emit("error", msg, args)


def step_config(step: Step, params: Mapping[str, Any],
                overrides: Mapping[str, Any] | None) -> dict:
    """The ``config`` a handler receives: pipelines get ``{**ctx.params, **step_params}``."""
    base = {**params, **step.config} if step.step_type is StepType.PIPELINE else dict(step.config)
    return {**base, **(overrides or {})}


def _category_of(exc: BaseException) -> str:
    category = getattr(exc, "category", None)
    try:
        return ErrorCategory(category).value if category is not None else ErrorCategory.INTERNAL.value
    except ValueError:
        return ErrorCategory.INTERNAL.value


def _call_handler(step: Step, ctx: WorkflowContext, config: dict,
                  services: StepServices) -> StepResult:
    if step.step_type is StepType.LAMBDA:
        return StepResult.coerce(step.handler(ctx, config), step.name)
    if step.step_type is StepType.PIPELINE:
        handler = get_pipeline(step.pipeline_name, step_name=step.name)
        return StepResult.coerce(handler(ctx, config), step.name)
    if step.step_type is StepType.CHOICE:
        target = step.then_step if step.condition(ctx) else step.else_step
        return StepResult.ok(output={"branch": target}, next_step=target)
    if step.step_type is StepType.WAIT:
        return services.wait(step, ctx)
    if step.step_type is StepType.MAP:
        return services.run_map(step, ctx)
    raise ValueError(f"step {step.name!r}: unknown step type {step.step_type!r}")


def map_items(step: Step, ctx: WorkflowContext) -> list[Any] | StepResult:
    """The items of a map step, or the failure that says why there are none."""
    if step.items_path not in ctx.params:
        return StepResult.fail(
            f"map step {step.name!r}: params[{step.items_path!r}] is missing (items_path="
            f"{step.items_path!r}); pass the list of items as that param.",
            ErrorCategory.CONFIGURATION)
    items = ctx.params[step.items_path]
    if not isinstance(items, (list, tuple)):
        return StepResult.fail(
            f"map step {step.name!r}: params[{step.items_path!r}] is a "
            f"{type(items).__name__}, not a list (items_path={step.items_path!r}).",
            ErrorCategory.CONFIGURATION)
    return list(items)


def item_context(step: Step, ctx: WorkflowContext, item: Any) -> WorkflowContext:
    """The context one item's run of the iterator workflow starts from."""
    sub = step.iterator_workflow
    params = ctx.params.untracked() if isinstance(ctx.params, TrackedParams) else ctx.params
    return WorkflowContext(run_id=ctx.run_id, workflow_name=sub.name,
                           params={**sub.defaults, **params, step.item_param: item},
                           partition=ctx.partition, metadata={}, attempt=ctx.attempt,
                           log=ctx.log)


def run_item(step: Step, ctx: WorkflowContext, item: Any,
             services: StepServices) -> tuple[WorkflowContext, StepOutcome | None]:
    """Run the iterator workflow on one item: (its final context, the failed outcome or None).

    The params the item's steps read count as read by the map step itself.
    """
    item_ctx = item_context(step, ctx, item)
    failed = None
    for sub_step in step.iterator_workflow.steps:
        outcome = run_step(sub_step, item_ctx, services=services)
        _note_reads(ctx, step, outcome.params_read)
        if outcome.failed:
            failed = outcome
            break
        item_ctx = outcome.context
    return item_ctx, failed


def _note_reads(ctx: WorkflowContext, step: Step, keys: list[str]) -> None:
    if not isinstance(ctx.params, TrackedParams):
        return
    if ALL in keys:
        ctx.params.keys()
        return
    for key in keys:
        if key != step.item_param:
            ctx.params.get(key)


def item_output(step: Step, item_ctx: WorkflowContext) -> Any:
    """A map item's output: the output of the iterator workflow's last step."""
    last = step.iterator_workflow.steps[-1].name if step.iterator_workflow.steps else None
    return item_ctx.outputs.get(last) if last else {}


def most_severe(categories: list[str]) -> str:
    for category in SEVERITY:
        if category.value in categories:
            return category.value
    return ErrorCategory.INTERNAL.value


def map_failure(step: Step, total: int, failures: list[tuple[int, str, str]]) -> StepResult:
    """The failure of a map step whose items ``failures`` (index, error, category) failed."""
    listed = "; ".join(f"item {index}: {error} ({category})" for index, error, category in failures)
    return StepResult.fail(
        f"map step {step.name!r}: {len(failures)} of {total} items failed: {listed}",
        most_severe([category for _, _, category in failures]))


def run_map_inline(step: Step, ctx: WorkflowContext, services: StepServices) -> StepResult:
    """A map step in memory: every item is tried, at most ``max_concurrency`` at a time."""
    items = map_items(step, ctx)
    if isinstance(items, StepResult):
        return items
    with ThreadPoolExecutor(max_workers=max(1, step.max_concurrency)) as pool:
        results = list(pool.map(lambda item: run_item(step, ctx, item, services), items))
    failures = [(i, f"{o.step_name}: {o.error}", o.error_category or "INTERNAL")
                for i, (_, o) in enumerate(results) if o is not None]
    if failures:
        return map_failure(step, len(items), failures)
    return StepResult(True, [item_output(step, c) for c, _ in results])  # type: ignore[arg-type]


def run_step(step: Step, ctx: WorkflowContext, config_overrides: Mapping[str, Any] | None = None,
             *, services: StepServices | None = None,
             call: Callable[..., StepResult] = _call_handler) -> StepOutcome:
    """Run ``step`` on ``ctx`` and derive the next context. Never raises for a step failure.

    (``KeyboardInterrupt`` and ``SystemExit`` are not step failures: they propagate, and the
    runtime records them at the step before re-raising.)
    """
    services = services or StepServices()
    skip_to = ctx.metadata.get(SKIP_TO)
    if skip_to and skip_to != step.name:
        return StepOutcome(step.name, ctx, StepResult.skip(f"choice jumped to {skip_to!r}"),
                           skipped=True)
    if skip_to:
        ctx = ctx.with_metadata({SKIP_TO: None})
    reads = ParamReads(ctx.params)
    tracked = replace(ctx, params=reads.params())
    if ctx.log is logging.getLogger(STEP_LOGGER):  # no Dagster run: Python logging, named
        tracked = replace(tracked, log=StepLog(ctx.log, step.name))
    config = reads.config(step_config(step, ctx.params, config_overrides))
    try:
        result = call(step, tracked, config, services)
    except Exception as exc:  # noqa: BLE001 - a raising step is a failed step
        return _failure(step, ctx, StepResult.fail(str(exc) or type(exc).__name__,
                                                   _category_of(exc)), exc)
    finally:
        reads.stop()
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
    new_ctx = apply_result(ctx, step, result, reads.keys())
    gate = quality_failures(step, result)
    if gate:
        failed = StepResult.fail(f"step {step.name!r} failed its quality gate: {'; '.join(gate)}",
                                 ErrorCategory.DATA_QUALITY, output=result.output,
                                 quality=result.quality)
        outcome = _failure(step, ctx, failed, None)
        outcome.rejected = new_ctx
        return outcome
    return StepOutcome(step.name, new_ctx, result, params_read=reads.keys())


def quality_failures(step: Step, result: StepResult) -> list[str]:
    """The thresholds of ``step`` that ``result``'s quality metrics do not meet (none: [])."""
    thresholds = getattr(step, "quality_thresholds", None)
    if thresholds is None:
        return []
    if result.quality is None:
        return ["the step has quality thresholds but returned no QualityMetrics "
                "(StepResult.ok(..., quality=QualityMetrics(...)))"]
    return list(thresholds.check(result.quality))


def as_stored(value: Any) -> Any:
    """``value`` as a checkpoint gives it back: tuples become lists (JSON has none), so that the
    steps after it see the same types in the first run as after a resume. Containers without a
    tuple inside are returned as they are."""
    kind = type(value)
    if kind is tuple or kind is list:
        items = [as_stored(item) for item in value]
        if kind is list and all(new is old for new, old in zip(items, value)):
            return value
        return items
    if kind is dict:
        changed = {key: as_stored(item) for key, item in value.items()}
        return value if all(changed[key] is item for key, item in value.items()) else changed
    return value


def apply_result(ctx: WorkflowContext, step: Step, result: StepResult,
                 params_read: list[str] | None = None) -> WorkflowContext:
    """The context after a successful step: its output, param updates, quality, jump target."""
    ctx = ctx.with_output(step.name, as_stored(result.output))
    if result.context_updates:
        ctx = ctx.with_params(as_stored(result.context_updates))
    if result.quality is not None:
        ctx = ctx.with_quality(step.name, result.quality.to_dict())
    metadata: dict[str, Any] = {}
    if result.next_step:
        metadata[SKIP_TO] = result.next_step
    if params_read is not None:
        metadata[PARAMS_READ] = {**(ctx.metadata.get(PARAMS_READ) or {}), step.name: params_read}
    return ctx.with_metadata(metadata) if metadata else ctx


def _failure(step: Step, ctx: WorkflowContext, result: StepResult,
             exc: BaseException | None) -> StepOutcome:
    category = (result.error_category or ErrorCategory.INTERNAL)
    category = category.value if isinstance(category, ErrorCategory) else str(category)
    outcome = StepOutcome(step.name, ctx, result, error=result.error or "step failed",
                          error_category=category, exception=exc)
    if step.on_error is ErrorPolicy.CONTINUE:
        failed = {**ctx.metadata.get(FAILED_STEPS, {}),
                  step.name: {"error": outcome.error, "error_category": category}}
        ctx = ctx.with_output(step.name, as_stored(result.output or {}))
        if result.quality is not None:  # e.g. a failed quality gate: its metrics are kept
            ctx = ctx.with_quality(step.name, result.quality.to_dict())
        outcome.context = ctx.with_metadata({FAILED_STEPS: failed})
        outcome.continued = True
    return outcome
