"""The body of a spine op: run one step, or a fused group of steps, and record each of them.

For each step the op runs, in order:

1. the step's start is counted (``ctx.attempt``); at the run's **boundary** (the first step a
   Dagster run executes) the checkpoints from that step on are superseded in the same
   transaction, and on a re-execution the resume's ``params_override`` and ``__resumed__`` are
   applied;
2. the step runs (:func:`spine_dagster.execution.run_step`), with ``ctx.log`` writing to the
   Dagster run log and :mod:`spine_dagster.services` providing durable map items and waits;
3. its checkpoint (per the checkpoint strategy) and its step row are written in one transaction;
   in a fused op the same transaction also counts the start of the next step.

A fused op that a from-failure re-execution runs again (the UI's "Re-execute from failure", run
retries) skips the steps that already have a usable checkpoint: resume works at step granularity.

Example:
    >>> SpineStepFailure("load", "disk full", "INTERNAL", 2).description
    "step 'load' failed (INTERNAL): disk full"
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import replace
from typing import Any, Iterator, Sequence

import dagster
from dagster import Failure, MetadataValue, MultiPartitionKey, Output, RetryRequested

from . import db
from .context import WorkflowContext
from .errors import CheckpointTooLargeError, CheckpointWriteError, DatabaseUnavailableError
from .execution import FAILED_STEPS, StepOutcome, run_step
from .io_manager import RUN_ID_TAG, SpineCheckpointIOManager, SpineState, in_process, start_context_for
from .model import ErrorPolicy, Step, StepType, Workflow
from .records import REJECTED, RESUMED
from .resources import IO_MANAGER_KEY, run_config_of
from .results import WorkflowStatus
from .run_state import RunState, record_failure
from .serialization import RawJSON, displayable, dumps, dumps_snapshot
from .services import DagsterServices, StepLog
from .snapshot import build_snapshot, context_of

WORKFLOW_TAG = "spine/workflow"
WORKFLOW_REF_TAG = "spine/workflow_ref"
STEP_TAG = "spine/step"
RESUME_RETRY_TAG = "dagster/is_resume_retry"
PROGRESS_SECONDS = 1.0


class SpineStepFailure(Failure):
    """A spine step failed: it returned ``StepResult.fail`` or raised."""

    def __init__(self, step_name: str, error: str, category: str, attempt: int,
                 metadata: dict[str, Any] | None = None) -> None:
        super().__init__(
            description=f"step {step_name!r} failed ({category}): {error}",
            metadata={"spine/step": step_name, "spine/error": error,
                      "spine/error_category": category, "spine/attempt": attempt,
                      **(metadata or {})},
        )
        self.step_name = step_name
        self.error = error
        self.category = category


def run_op(context: Any, workflow: Workflow, indices: Sequence[int], spine_ctx: dict | None, *,
           ref: str | None, upstream_key: str | None, io_manager_key: str = IO_MANAGER_KEY,
           at_boundary: bool = False) -> Output:
    """Run the steps ``indices`` of ``workflow`` (one op), starting from ``spine_ctx``.

    ``upstream_key`` is the step key of the upstream op; ``at_boundary`` says that this run
    does not execute it (an asset-subset run, see :mod:`spine_dagster.assets`).
    """
    io: SpineCheckpointIOManager = getattr(context.resources, io_manager_key)
    run = context.run
    state = io.run_state(run)
    local = in_process(context)
    if not local:
        db.use_step_worker_pools()
    fused = len(indices) > 1
    state.write_behind = local and state.store.is_server and not fused
    _flush(state)  # the previous op's checkpoint is durable before this op runs a step
    config = run_config_of(run)
    names = [workflow.steps[i].name for i in indices]
    boundary = (at_boundary or spine_ctx is None or config.get("start_from") in names
                or (run.step_keys_to_execute is not None
                    and upstream_key not in run.step_keys_to_execute))
    ctx, first = _starting_point(context, workflow, state, config, indices, spine_ctx, boundary)
    ctx = replace(ctx, run_id=state.spine_run_id, workflow_name=workflow.name)
    if first is None:  # a fused op whose every step has a usable checkpoint already
        return _nothing_left(context, workflow, state, indices, ctx)
    if boundary and run.parent_run_id is not None:
        ctx = ctx.with_params({**(config.get("params_override") or {}), RESUMED: True})
    elif boundary and RESUMED in ctx.params:  # a start context taken from a resumed run
        ctx = replace(ctx, params={k: v for k, v in ctx.params.items() if k != RESUMED})
    _register(context, workflow, state, ctx, ref, config, boundary)
    if boundary and run.parent_run_id is not None and first > 0:
        _report_restored(context, state, workflow, first)

    strategy = workflow.checkpoint_strategy or io.checkpoint_strategy
    progress = _Progress(context, [workflow.steps[i].name for i in indices if i >= first])
    report: list[dict[str, Any]] = []
    attempt: int | None = None
    outcome: StepOutcome | None = None
    final: WorkflowStatus | None = None
    size: int | None = None
    for position, index in enumerate(indices):
        if index < first:
            continue
        step = workflow.steps[index]
        at_boundary = boundary and index == first
        services = _services(context, state, workflow, step, index, at_boundary)
        if attempt is None:
            with _as_step(step.name):
                attempt = state.store.start_step(
                    state.spine_run_id, step.name, run.run_id,
                    supersede_from=index if at_boundary else None,
                    keep_items=step.step_type is StepType.MAP)
        started = time.monotonic()
        outcome = _run_one(context, state, step, ctx, attempt, fused, services)
        if outcome.failed:
            progress.flush()
            _fail(context, workflow, state, step, index, outcome, attempt, local, fused)
        final = None
        if index == len(workflow.steps) - 1:
            final = (WorkflowStatus.PARTIAL if outcome.context.metadata.get(FAILED_STEPS)
                     else WorkflowStatus.COMPLETED)
        next_step = (workflow.steps[indices[position + 1]].name
                     if position + 1 < len(indices) else None)
        with _as_step(step.name):
            size, next_attempt = _record(context, io, state, workflow, step, index, outcome,
                                         _wants_checkpoint(strategy, step, outcome), final,
                                         next_step)
            if final is WorkflowStatus.PARTIAL:
                _name_partial_failures(state, outcome.context.metadata[FAILED_STEPS])
        report.append({"step": step.name, "status": _status(outcome),
                       "seconds": round(time.monotonic() - started, 4),
                       "checkpoint_bytes": size, "attempt": attempt})
        if services.map_counts is not None:
            report[-1]["map_items"] = services.map_counts
        progress.step_done(step.name, _status(outcome))
        attempt = next_attempt
        ctx = outcome.context
    progress.flush()
    if not local and final is not None:
        _release_transit(context, state)
    state_obj = SpineState(workflow.name, workflow.steps[indices[-1]].name, indices[-1],
                           ctx.to_dict(), checkpointed=size is not None, final=final is not None,
                           checkpoint_bytes=size,
                           checkpoints_deleted=getattr(state, "checkpoints_deleted", None))
    return Output(state_obj, metadata=_metadata(outcome, report, fused))


def _flush(state: RunState) -> None:
    """Wait for the previous step's background write. When it failed, this op fails *as that
    step*, so the run reports the step whose checkpoint was lost, not the op that found out."""
    try:
        state.flush()
    except CheckpointWriteError as exc:
        raise _outage(getattr(exc, "step_name", None) or "", exc) from exc


@contextlib.contextmanager
def _as_step(step_name: str) -> Iterator[None]:
    """A database outage in here fails the op as step ``step_name`` (``spine/step``): in a fused
    op, the step the outage hit, not the op's first step."""
    try:
        yield
    except (DatabaseUnavailableError, CheckpointWriteError) as exc:
        raise _outage(step_name, exc) from exc


def _outage(step_name: str, exc: Exception) -> Failure:
    return Failure(description=str(exc), metadata={
        "spine/step": step_name, "spine/error": str(exc),
        "spine/error_category": type(exc).__name__})


def _starting_point(context: Any, workflow: Workflow, state: RunState, config: dict[str, Any],
                    indices: Sequence[int], spine_ctx: dict | None,
                    boundary: bool) -> tuple[WorkflowContext, int | None]:
    """The context this op starts from and the first of its steps to run (None: none left)."""
    steps = [workflow.steps[i] for i in indices]
    names = [s.name for s in steps]
    start_from = config.get("start_from")
    if start_from in names:
        first = indices[names.index(start_from)]
        if spine_ctx is None:
            start = start_context_for(config, state.store, state.spine_run_id)
            spine_ctx = start
        if spine_ctx is None:
            return _initial_context(workflow, config, context, state.spine_run_id), first
        return WorkflowContext.from_dict(spine_ctx), first
    ctx = (WorkflowContext.from_dict(spine_ctx) if spine_ctx is not None
           else _initial_context(workflow, config, context, state.spine_run_id))
    if boundary and len(indices) > 1 and context.run.tags.get(RESUME_RETRY_TAG) == "true":
        usable = {i.step_name for i in state.store.checkpoint_index(state.spine_run_id)
                  if i.usable and i.item_index is None}
        done = [position for position, name in enumerate(names) if name in usable]
        if done:
            last = max(done)
            checkpoint = state.store.get_checkpoint(state.spine_run_id, names[last],
                                                    usable_only=True)
            if checkpoint is not None:
                ctx = WorkflowContext.from_dict(context_of(checkpoint.context_snapshot))
                context.log.info(f"spine: steps {names[:last + 1]} of this op have checkpoints; "
                                 f"continuing after {names[last]!r}")
                return ctx, (indices[last + 1] if last + 1 < len(indices) else None)
    return ctx, indices[0]


def _initial_context(workflow: Workflow, config: dict[str, Any], context: Any,
                     run_id: str) -> WorkflowContext:
    params = {**workflow.defaults, **(config.get("params") or {})}
    params.pop(RESUMED, None)
    partition = config.get("partition")
    if partition is None and context.has_partition_key:
        key = context.partition_key
        partition = dict(key.keys_by_dimension) if isinstance(key, MultiPartitionKey) else key
    return WorkflowContext.create(workflow.name, params=params, partition=partition, run_id=run_id)


def _register(context: Any, workflow: Workflow, state: RunState, ctx: WorkflowContext,
              ref: str | None, config: dict[str, Any], boundary: bool) -> None:
    """Put this Dagster run in the spine run's lineage (once per run and process)."""
    if state.registered:
        return
    run = context.run
    if RUN_ID_TAG not in run.tags:
        context.instance.add_run_tags(run.run_id, {RUN_ID_TAG: state.spine_run_id})
    override = config.get("params_override") if boundary and run.parent_run_id else None
    state.store.register_dagster_run(
        run_id=state.spine_run_id, workflow_name=workflow.name, dagster_run_id=run.run_id,
        params={k: v for k, v in ctx.params.items() if k != RESUMED}, partition=ctx.partition,
        workflow_ref=run.tags.get(WORKFLOW_REF_TAG) or ref, job_name=context.job_name,
        signature=workflow.signature(), params_override=override or None)
    state.registered = True


def _report_restored(context: Any, state: RunState, workflow: Workflow, first: int) -> None:
    """A run-level event: which steps this re-execution restored from checkpoints, and whence."""
    position = {s.name: i for i, s in enumerate(workflow.steps)}
    restored = [i for i in state.store.checkpoint_index(state.spine_run_id)
                if i.usable and i.item_index is None and position.get(i.step_name, first) < first]
    if not restored:
        return
    parts = [f"{i.step_name} (checkpoint {i.created_at:%Y-%m-%d %H:%M:%S} UTC, Dagster run "
             f"{(i.dagster_run_id or '?')[:8]})" for i in restored]
    try:
        context.instance.report_engine_event(
            f"spine run {state.spine_run_id} resumes at step {workflow.steps[first].name!r}: "
            f"restored {len(restored)} step(s) from checkpoints: {', '.join(parts)}",
            context.run)
    except Exception as exc:  # noqa: BLE001 - the event is informative; the run goes on
        context.log.warning(f"spine: could not report the restored steps: {exc}")


def _services(context: Any, state: RunState, workflow: Workflow, step: Step, index: int,
              at_boundary: bool) -> DagsterServices:
    prior = upstream_at = None
    if step.step_type is StepType.WAIT and at_boundary:
        prior = state.store.step_rows(state.spine_run_id).get(step.name)
        if index > 0:
            before = state.store.get_checkpoint(state.spine_run_id, workflow.steps[index - 1].name,
                                                usable_only=True)
            upstream_at = before.created_at if before is not None else None
    return DagsterServices(context, state, step, index, prior=prior, upstream_at=upstream_at)


def _run_one(context: Any, state: RunState, step: Step, ctx: WorkflowContext, attempt: int,
             fused: bool, services: DagsterServices) -> StepOutcome:
    op_config = context.op_config or {}
    overrides = op_config.get(step.name) if fused else op_config
    step_ctx = replace(ctx, attempt=attempt, log=StepLog(context.log, step.name))
    try:
        outcome = run_step(step, step_ctx, overrides, services=services)
    except BaseException as exc:  # KeyboardInterrupt, SystemExit: recorded, then they end the run
        record_failure(state.store, state.spine_run_id, context.run.run_id, step.name,
                       RuntimeError(f"the step was interrupted ({type(exc).__name__}: {exc})"),
                       log=context.log.warning)
        raise
    outcome.context = replace(outcome.context, attempt=1, log=ctx.log)
    for event in (outcome.result.events if outcome.result is not None else []):
        _log_event(context, step, event)
    return outcome


def _log_event(context: Any, step: Step, event: Any) -> None:
    """A ``StepResult.events`` entry, as a structured line of the Dagster run log."""
    data = displayable(event) if isinstance(event, dict) else {"event": str(event)}
    level = str(data.get("level", "info")).lower() if isinstance(data, dict) else "info"
    name = data.get("name") or data.get("event") or data.get("type") or "event"
    method = getattr(context.log, level if level in ("debug", "info", "warning", "error") else "info")
    method(f"[{step.name}] spine event {name}: {dumps(data)}")


def _fail(context: Any, workflow: Workflow, state: RunState, step: Step, index: int,
          outcome: StepOutcome, attempt: int, local: bool, fused: bool) -> None:
    run = context.run
    store = state.store
    metadata: dict[str, Any] = {}
    if outcome.result is not None and outcome.result.quality is not None:
        metadata["spine/quality"] = MetadataValue.json(displayable(outcome.result.quality.to_dict()))
    if outcome.rejected is not None:  # keep the metrics to inspect; a resume never reuses it
        try:
            _save(state, workflow, step, index, outcome.rejected.to_dict(), state=REJECTED)
        except Exception as exc:  # noqa: BLE001
            context.log.warning(f"spine: could not keep the rejected output of {step.name!r}: {exc}")
    policy = step.retry_policy
    retry = (not fused and step.on_error is ErrorPolicy.RETRY and policy is not None
             and policy.is_retryable(outcome.error_category)
             and context.retry_number + 1 < policy.max_attempts)
    try:
        store.fail_step(run_id=state.spine_run_id, step_name=step.name, dagster_run_id=run.run_id,
                        error=outcome.error, error_category=outcome.error_category,
                        fail_run=not retry)
    except DatabaseUnavailableError as exc:
        context.log.warning(f"spine: could not record the failure of step {step.name!r}: {exc}")
    if not retry and not local:
        _release_transit(context, state)
    failure = SpineStepFailure(step.name, outcome.error, outcome.error_category, attempt, metadata)
    cause = outcome.exception or (outcome.result.origin if outcome.result is not None else None)
    if retry:
        raise RetryRequested(max_retries=policy.max_attempts - 1,
                             seconds_to_wait=policy.delay_for(attempt)) from failure
    raise failure from cause


def _wants_checkpoint(strategy: str, step: Step, outcome: StepOutcome) -> bool:
    if step.checkpoint is False:
        return False
    if strategy == "every_step":
        return True
    return bool(step.checkpoint) or bool(outcome.wants_checkpoint)


def _status(outcome: StepOutcome) -> str:
    return "failed" if outcome.continued else "skipped" if outcome.skipped else "completed"


def _save(run_state: RunState, workflow: Workflow, step: Step, index: int,
          context: dict[str, Any], **fields: Any) -> tuple[int, int | None]:
    snapshot = build_snapshot(run_state.spine_run_id, workflow.name, step.name, context,
                              dagster_run_id=run_state.dagster_run_id,
                              dagster_version=dagster.__version__)
    text = RawJSON(dumps_snapshot(snapshot, run_state.encoded,
                                  what=f"the checkpoint of step {step.name!r}"))
    return run_state.store.record_checkpoint(
        run_id=run_state.spine_run_id, workflow_name=workflow.name, step_name=step.name,
        step_index=index, dagster_run_id=run_state.dagster_run_id, snapshot=text,
        step_status=None, **fields)


def _record(context: Any, io: SpineCheckpointIOManager, state: RunState, workflow: Workflow,
            step: Step, index: int, outcome: StepOutcome, checkpoint: bool,
            final: WorkflowStatus | None, next_step: str | None) -> tuple[int | None, int | None]:
    """Write the step's checkpoint (or just its row); returns (size or None, next attempt)."""
    store, run_id = state.store, state.spine_run_id
    data = outcome.context.to_dict()
    status = _status(outcome)
    step_error = (outcome.error, outcome.error_category) if outcome.continued else None
    drop = io.delete_checkpoints_on_success and final is WorkflowStatus.COMPLETED
    try:
        if checkpoint and not drop:
            snapshot = build_snapshot(run_id, workflow.name, step.name, data,
                                      dagster_run_id=state.dagster_run_id,
                                      dagster_version=dagster.__version__)
            text = RawJSON(dumps_snapshot(snapshot, state.encoded,
                                          what=f"the checkpoint of step {step.name!r}"))
            size = len(text.encode("utf-8"))
            if size > io.max_checkpoint_bytes:
                raise CheckpointTooLargeError(
                    f"the checkpoint of step {step.name!r} is {size:,} bytes, over the limit of "
                    f"{io.max_checkpoint_bytes:,} bytes (max_checkpoint_bytes). Store the data "
                    f"elsewhere (a table, a file, object storage) and return a reference to it, "
                    f"e.g. {{'record_count': n, 'table': 'staging_records'}}.")
            fields = dict(run_id=run_id, workflow_name=workflow.name, step_name=step.name,
                          step_index=index, dagster_run_id=state.dagster_run_id, snapshot=text,
                          final_status=final, final_context=data if final else None,
                          step_status=status, step_error=step_error)
            if final is None and next_step is None and state.write_behind:
                state.write(step.name, lambda: store.record_checkpoint(**fields), background=True)
                return size, None
            return size, store.record_checkpoint(**fields, next_step=next_step)[1]
        attempt = store.complete_step(run_id, step.name, state.dagster_run_id, final_status=final,
                                      final_context=data if final else None, step_status=status,
                                      step_error=step_error, next_step=next_step)
        if drop:
            state.checkpoints_deleted = _delete_on_success(context, state)
        return None, attempt
    except Exception as exc:
        record_failure(store, run_id, state.dagster_run_id, step.name, exc,
                       log=context.log.warning)
        raise


def _name_partial_failures(state: RunState, failed: dict[str, Any]) -> None:
    """A ``partial`` run names the steps that failed under ``ErrorPolicy.CONTINUE`` as a failed
    run names its step: the first in ``error_step``, ``error`` and ``error_category`` (the others
    are listed in ``error``; every one is in ``context.metadata["failed_steps"]``)."""
    names = list(failed)
    first = failed[names[0]]
    more = (f" (also failed, and continued: {', '.join(names[1:])})" if len(names) > 1 else "")
    state.store.mark_run(state.spine_run_id, WorkflowStatus.PARTIAL,
                         error=f"{first.get('error')}{more}", error_step=names[0],
                         error_category=first.get("error_category"))


def _delete_on_success(context: Any, state: RunState) -> int | None:
    """``delete_checkpoints_on_success``: best effort, the run has completed either way."""
    try:
        deleted = state.store.delete_checkpoints(state.spine_run_id)
    except Exception as exc:  # noqa: BLE001
        context.log.warning(f"spine run {state.spine_run_id} completed, but deleting its "
                            f"checkpoints failed ({exc}); delete them with: spine-dagster delete "
                            f"{state.spine_run_id}")
        return None
    context.log.info(f"spine: deleted {deleted} checkpoint(s) of the completed run")
    return deleted


def _release_transit(context: Any, state: RunState) -> None:
    """The Dagster run ends here: its contexts in transit between step processes are garbage."""
    try:
        state.store.delete_transit(state.dagster_run_id)
    except Exception as exc:  # noqa: BLE001 - garbage stays behind; never hide the step's outcome
        context.log.warning(f"spine: could not delete the run's transit rows: {exc}")


def _nothing_left(context: Any, workflow: Workflow, state: RunState, indices: Sequence[int],
                  ctx: WorkflowContext) -> Output:
    last = indices[-1]
    final = last == len(workflow.steps) - 1
    if final:
        _register(context, workflow, state, ctx, None, {}, False)
        state.store.complete_step(state.spine_run_id, workflow.steps[last].name,
                                  state.dagster_run_id, final_status=WorkflowStatus.COMPLETED,
                                  final_context=ctx.to_dict())
    return Output(SpineState(workflow.name, workflow.steps[last].name, last, ctx.to_dict(),
                             checkpointed=True, final=final),
                  metadata={"spine/skipped_steps": MetadataValue.json(
                      [workflow.steps[i].name for i in indices])})


def _metadata(outcome: StepOutcome | None, report: list[dict[str, Any]],
              fused: bool) -> dict[str, Any]:
    last = report[-1] if report else {}
    metadata: dict[str, Any] = {"spine/step": last.get("step", ""),
                                "spine/attempt": last.get("attempt", 1)}
    if fused:
        metadata["spine/steps"] = MetadataValue.json(report)
    if outcome is None:
        return metadata
    if outcome.result is not None and outcome.result.quality is not None:
        quality = outcome.result.quality
        metadata["spine/quality"] = MetadataValue.json(displayable(quality.to_dict()))
        metadata["dagster/row_count"] = int(quality.record_count)
    if outcome.continued:
        metadata["spine/error_category"] = outcome.error_category
        metadata["spine/error"] = outcome.error
    if outcome.skipped:
        metadata["spine/skipped"] = True
    if "map_items" in last:
        metadata["spine/map_items"] = MetadataValue.json(last["map_items"])
    return metadata


class _Progress:
    """A fused op's step progress in the run log: at most one line a second (failures come as
    Dagster's own failure event)."""

    def __init__(self, context: Any, names: list[str]) -> None:
        self.context, self.total = context, len(names)
        self.enabled = self.total > 1
        self.done = 0
        self._last = time.monotonic()
        self._pending: list[str] = []

    def step_done(self, name: str, status: str) -> None:
        if not self.enabled:
            return
        self.done += 1
        self._pending.append(name if status == "completed" else f"{name} ({status})")
        if time.monotonic() - self._last >= PROGRESS_SECONDS:
            self.flush()

    def flush(self) -> None:
        if not self.enabled or not self._pending:
            return
        self.context.log.info(f"spine: {self.done}/{self.total} steps done: "
                              f"{', '.join(self._pending[-20:])}")
        self._pending = []
        self._last = time.monotonic()
