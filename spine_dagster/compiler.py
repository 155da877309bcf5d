"""The compiler: a Spine ``Workflow`` becomes a Dagster job with one op per step, chained in order.

* The op *definition* is named ``<workflow>__<step>`` (unique across a ``Definitions``); the node
  alias, which is the step key and the ``run_config["ops"]`` key, is ``<step>``. Names are
  sanitized for Dagster (``[A-Za-z0-9_]``): ``.`` becomes ``__`` and other characters ``_``.
* The original names are kept in op tags (``spine/step``, ``spine/workflow``) and output metadata.
* Each op reads the upstream context through ``SpineCheckpointIOManager`` (resource ``spine_io``)
  and returns a :class:`~spine_dagster.io_manager.SpineState` that the IO manager persists.

Example:
    >>> from spine_dagster import Step, StepResult, Workflow, build_job
    >>> wf = Workflow("docs.compile", [
    ...     Step.lambda_("fetch.data", lambda ctx, cfg: StepResult.ok(output={"n": 1})),
    ...     Step.lambda_("load", lambda ctx, cfg: StepResult.ok()),
    ... ])
    >>> job = build_job(wf)
    >>> (job.name, [node.name for node in job.graph.nodes_in_topological_order])
    ('docs__compile', ['fetch__data', 'load'])
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any, Mapping, Sequence

import dagster
from dagster import (
    DependencyDefinition,
    Failure,
    Field,
    GraphDefinition,
    In,
    JobDefinition,
    MetadataValue,
    MultiPartitionKey,
    NodeInvocation,
    Out,
    Output,
    Permissive,
    RetryRequested,
    in_process_executor,
    multiprocess_executor,
)

from .context import WorkflowContext
from .errors import InvalidWorkflowError
from .execution import FAILED_STEPS, StepOutcome, run_step
from .io_manager import (
    RUN_ID_TAG,
    STRATEGIES,
    SpineCheckpointIOManager,
    SpineState,
    flush_checkpoints,
    release_transit,
    spine_run_id_of,
    start_context_for,
    store_for,
)
from .locate import is_importable, load_workflow, workflow_ref
from .model import ErrorPolicy, Step, StepType, Workflow
from .pipelines import get_pipeline
from .resources import IO_MANAGER_KEY, RESOURCE_KEY, run_config_of, run_config_resource
from .results import WorkflowStatus
from .serialization import displayable

WORKFLOW_TAG = "spine/workflow"
WORKFLOW_REF_TAG = "spine/workflow_ref"
STEP_TAG = "spine/step"
RESUMED = "__resumed__"
EXECUTORS = ("in_process", "multiprocess")

_registered: set[str] = set()


class SpineStepFailure(Failure):
    """A spine step failed: it returned ``StepResult.fail`` or raised."""

    def __init__(self, step_name: str, error: str, category: str, attempt: int) -> None:
        super().__init__(
            description=f"step {step_name!r} failed ({category}): {error}",
            metadata={"spine/step": step_name, "spine/error": error,
                      "spine/error_category": category, "spine/attempt": attempt},
        )
        self.step_name = step_name
        self.error = error
        self.category = category


def op_name_for(name: str) -> str:
    """A Dagster-safe name for a spine name: ``ingest.fetch`` -> ``ingest__fetch``."""
    safe = re.sub(r"[^A-Za-z0-9_]", "_", name.replace(".", "__"))
    return safe if safe and not safe[0].isdigit() else f"s_{safe}"


def step_keys(workflow: Workflow) -> list[str]:
    """The Dagster step key (node alias) of each step, in order. Refuses colliding names."""
    keys: dict[str, str] = {}
    for step in workflow.steps:
        key = op_name_for(step.name)
        if key in keys:
            raise InvalidWorkflowError(
                f"workflow {workflow.name!r}: steps {keys[key]!r} and {step.name!r} both become "
                f"the Dagster op name {key!r}; rename one of them.")
        keys[key] = step.name
    return list(keys)


def validate(workflow: Workflow) -> None:
    """Compile-time checks: step names, registered pipelines, supported step types."""
    if not workflow.steps:
        raise InvalidWorkflowError(f"workflow {workflow.name!r} has no steps")
    step_keys(workflow)
    if workflow.checkpoint_strategy not in (None, *STRATEGIES):
        raise InvalidWorkflowError(
            f"workflow {workflow.name!r}: unknown checkpoint_strategy "
            f"{workflow.checkpoint_strategy!r}; use one of {STRATEGIES}")
    for step in workflow.steps:
        if step.step_type is StepType.PIPELINE:
            get_pipeline(step.pipeline_name, step_name=step.name)
        if step.step_type is StepType.MAP and step.iterator_workflow is not None:
            validate(step.iterator_workflow)


def _initial_context(workflow: Workflow, config: Mapping[str, Any], context: Any,
                     run_id: str) -> WorkflowContext:
    params = {**workflow.defaults, **(config.get("params") or {})}
    params.pop(RESUMED, None)
    partition = config.get("partition")
    if partition is None and context.has_partition_key:
        key = context.partition_key
        partition = dict(key.keys_by_dimension) if isinstance(key, MultiPartitionKey) else key
    return WorkflowContext.create(workflow.name, params=params, partition=partition, run_id=run_id)


def _wants_checkpoint(strategy: str, step: Step, outcome: StepOutcome) -> bool:
    if step.checkpoint is False:
        return False
    if strategy == "every_step":
        return True
    return bool(step.checkpoint) or bool(outcome.wants_checkpoint)


def _make_op(workflow: Workflow, index: int, keys: Sequence[str], ref: str | None):
    step = workflow.steps[index]
    key = keys[index]
    is_last = index == len(workflow.steps) - 1
    upstream_key = keys[index - 1] if index else None

    def body(context, spine_ctx: dict[str, Any] | None):
        run = context.run
        run_id = spine_run_id_of(run)
        config = run_config_of(run)
        io: SpineCheckpointIOManager = getattr(context.resources, IO_MANAGER_KEY)
        store = store_for(io.database_url)
        flush_checkpoints(store, run_id, run.run_id)  # the previous step's checkpoint is durable

        if spine_ctx is None:
            start = start_context_for(config, store, run_id, step.name)
            ctx = (WorkflowContext.from_dict(start) if start is not None
                   else _initial_context(workflow, config, context, run_id))
            at_boundary = True
        else:
            ctx = WorkflowContext.from_dict(spine_ctx)
            selected = run.step_keys_to_execute
            at_boundary = config.get("start_from") == step.name or (
                selected is not None and upstream_key not in selected)
        ctx = replace(ctx, run_id=run_id, workflow_name=workflow.name)
        if at_boundary and run.parent_run_id is not None:
            ctx = ctx.with_params({**(config.get("params_override") or {}), RESUMED: True})
        elif at_boundary and RESUMED in ctx.params:  # a start context taken from a resumed run
            ctx = replace(ctx, params={k: v for k, v in ctx.params.items() if k != RESUMED})

        if run.run_id not in _registered:
            if RUN_ID_TAG not in run.tags:
                context.instance.add_run_tags(run.run_id, {RUN_ID_TAG: run_id})
            store.register_dagster_run(
                run_id=run_id, workflow_name=workflow.name, dagster_run_id=run.run_id,
                params=dict(ctx.params), partition=ctx.partition,
                workflow_ref=run.tags.get(WORKFLOW_REF_TAG) or ref, job_name=context.job_name,
                signature=workflow.signature())
            _registered.add(run.run_id)

        attempt = store.start_step(run_id, step.name, run.run_id)
        outcome = run_step(step, replace(ctx, attempt=attempt), context.op_config)

        if outcome.failed:
            policy = step.retry_policy
            retry = (step.on_error is ErrorPolicy.RETRY and policy is not None
                     and policy.is_retryable(outcome.error_category)
                     and context.retry_number + 1 < policy.max_attempts)
            store.fail_step(run_id=run_id, step_name=step.name, dagster_run_id=run.run_id,
                            error=outcome.error, error_category=outcome.error_category,
                            fail_run=not retry)
            if not retry:  # the Dagster run ends here: its non-checkpoint contexts are garbage
                release_transit(store, run.run_id)
            failure = SpineStepFailure(step.name, outcome.error, outcome.error_category, attempt)
            if retry:
                raise RetryRequested(max_retries=policy.max_attempts - 1,
                                     seconds_to_wait=policy.delay_for(attempt)) from failure
            raise failure from outcome.exception

        new_ctx = outcome.context
        final = None
        if is_last:
            final = (WorkflowStatus.PARTIAL if new_ctx.metadata.get(FAILED_STEPS)
                     else WorkflowStatus.COMPLETED)
        strategy = workflow.checkpoint_strategy or io.checkpoint_strategy
        state = SpineState(workflow_name=workflow.name, step_name=step.name, step_index=index,
                           context=new_ctx.to_dict(),
                           checkpoint=_wants_checkpoint(strategy, step, outcome),
                           step_status=("failed" if outcome.continued else
                                        "skipped" if outcome.skipped else "completed"),
                           step_error=((outcome.error, outcome.error_category)
                                       if outcome.continued else None),
                           final_status=final)
        metadata: dict[str, Any] = {"spine/step": step.name, "spine/attempt": attempt}
        if outcome.result is not None and outcome.result.quality is not None:
            metadata["spine/quality"] = MetadataValue.json(
                displayable(outcome.result.quality.to_dict()))
        if outcome.continued:
            metadata["spine/error_category"] = outcome.error_category
            metadata["spine/error"] = outcome.error
        if outcome.skipped:
            metadata["spine/skipped"] = True
        return Output(state, metadata=metadata)

    common = dict(
        name=f"{op_name_for(workflow.name)}__{key}",
        description=f"Spine step {step.name!r} ({step.step_type.value}) of workflow "
                    f"{workflow.name!r}",
        out=Out(dagster.Any, io_manager_key=IO_MANAGER_KEY,
                metadata={"spine/step": step.name, "spine/index": index}),
        required_resource_keys={RESOURCE_KEY, IO_MANAGER_KEY},
        tags={STEP_TAG: step.name, WORKFLOW_TAG: workflow.name},
        config_schema=Field(Permissive(), is_required=False, default_value={},
                            description=f"Per-step config of step {step.name!r}, merged over the "
                                        f"step's own config (a pipeline step's config starts "
                                        f"from the params)."),
    )
    if index == 0:
        @dagster.op(**common)
        def first_op(context):
            return body(context, None)

        return first_op

    @dagster.op(ins={"spine_ctx": In(dagster.Any, input_manager_key=IO_MANAGER_KEY,
                                     metadata={"spine/step": step.name})}, **common)
    def next_op(context, spine_ctx):
        return body(context, spine_ctx)

    return next_op


def _executor(executor: str):
    if executor == "in_process":
        return in_process_executor
    if executor == "multiprocess":
        return multiprocess_executor.configured(
            {"start_method": {"forkserver": {"preload_modules": ["dagster", "spine_dagster"]}}})
    raise InvalidWorkflowError(f"unknown executor {executor!r}; use one of {EXECUTORS}")


def build_job(
    workflow: Workflow,
    *,
    database_url: str | None = None,
    checkpoint_strategy: str | None = None,
    max_checkpoint_bytes: int | None = None,
    executor: str = "in_process",
    name: str | None = None,
    tags: Mapping[str, str] | None = None,
    partitions_def: Any = None,
    io_manager: SpineCheckpointIOManager | None = None,
    workflow_ref_value: str | None = None,
    delete_checkpoints_on_success: bool = False,
) -> JobDefinition:
    """Compile ``workflow`` to a Dagster job: one op per step, chained in order.

    Args:
        workflow: the Spine workflow.
        database_url: checkpoint database (default: see ``SpineCheckpointIOManager``).
        checkpoint_strategy: ``every_step`` (default) or ``key_steps``; the workflow's own wins.
        max_checkpoint_bytes: largest checkpoint allowed.
        executor: ``in_process`` (default; best for linear chains) or ``multiprocess``.
        name: the job name (default: the sanitized workflow name).
        tags: extra job tags.
        partitions_def: a Dagster ``PartitionsDefinition``; ``ctx.partition`` is the run's key.
        io_manager: a configured IO manager, instead of the settings above and below.
        delete_checkpoints_on_success: delete the run's checkpoints when it completes.
    """
    validate(workflow)
    keys = step_keys(workflow)
    ref = workflow_ref_value or workflow_ref(workflow)
    ops = [_make_op(workflow, i, keys, ref) for i in range(len(keys))]
    deps = {
        NodeInvocation(op_def.name, alias=keys[i]):
            ({"spine_ctx": DependencyDefinition(keys[i - 1])} if i else {})
        for i, op_def in enumerate(ops)
    }
    if io_manager is None:
        io_manager = SpineCheckpointIOManager.from_settings(
            database_url=database_url, checkpoint_strategy=checkpoint_strategy,
            max_checkpoint_bytes=max_checkpoint_bytes,
            delete_checkpoints_on_success=delete_checkpoints_on_success)
    job_tags = {WORKFLOW_TAG: workflow.name, **(tags or {})}
    if is_importable(ref):
        job_tags[WORKFLOW_REF_TAG] = ref
    job_name = name or op_name_for(workflow.name)
    graph = GraphDefinition(name=job_name, node_defs=ops, dependencies=deps,
                            description=workflow.description or None)
    return graph.to_job(
        name=job_name,
        resource_defs={IO_MANAGER_KEY: io_manager,
                       RESOURCE_KEY: run_config_resource(workflow.defaults)},
        executor_def=_executor(executor),
        tags=job_tags,
        partitions_def=partitions_def,
        description=workflow.description or f"Spine workflow {workflow.name!r}",
        metadata={"spine/workflow": workflow.name, "spine/steps": MetadataValue.json(
            [s.name for s in workflow.steps])},
    )


def load_job(ref: str, database_url: str | None = None, checkpoint_strategy: str | None = None,
             max_checkpoint_bytes: int | None = None, executor: str = "in_process",
             delete_checkpoints_on_success: bool = False) -> JobDefinition:
    """The reconstructable entry point: load the workflow at ``ref`` and compile it.

    Dagster calls this three times per ``execute``/``resume`` (to check the pointer, then twice
    while launching), so the compiled job is kept per process and reused while the workflow is
    the same object with the same steps and defaults. Compiling a 20-step workflow costs ~30 ms.
    """
    workflow = load_workflow(ref)
    key = (ref, database_url, checkpoint_strategy, max_checkpoint_bytes, executor,
           delete_checkpoints_on_success)
    shape = (workflow.name, workflow.description, workflow.checkpoint_strategy,
             repr(workflow.defaults),
             tuple((id(step), step.name, step.step_type) for step in workflow.steps))
    cached = _compiled.get(key)
    if cached is not None and cached[0] is workflow and cached[1] == shape:
        return cached[2]
    job = build_job(workflow, database_url=database_url, checkpoint_strategy=checkpoint_strategy,
                    max_checkpoint_bytes=max_checkpoint_bytes, executor=executor,
                    workflow_ref_value=ref,
                    delete_checkpoints_on_success=delete_checkpoints_on_success)
    while len(_compiled) >= _COMPILED_LIMIT:
        _compiled.pop(next(iter(_compiled)))
    _compiled[key] = (workflow, shape, job)
    return job


_COMPILED_LIMIT = 64
_compiled: dict[tuple, tuple[Workflow, tuple, JobDefinition]] = {}


def reconstructable_job(workflow: Workflow, *, ref: str | None = None, **settings: Any):
    """A ``ReconstructableJob`` for ``execute_job``: Dagster rebuilds it from the workflow ref."""
    ref = ref or workflow_ref(workflow)
    kwargs = {k: v for k, v in settings.items() if v is not None}
    return dagster.build_reconstructable_job("spine_dagster.compiler", "load_job",
                                             reconstructable_args=(ref,),
                                             reconstructable_kwargs=kwargs)
