"""The compiler: a Spine ``Workflow`` becomes a Dagster job, one op per step, chained in order.

* The op *definition* is named ``<workflow>__<step>`` (unique across a ``Definitions``); the node
  alias, which is the step key and the ``run_config["ops"]`` key, is ``<step>``. Names are
  sanitized for Dagster (``[A-Za-z0-9_]``): ``.`` becomes ``__`` and other characters ``_``.
* The original names are kept in op tags (``spine/step``, ``spine/workflow``) and output metadata.
  An op's description is its step's own (``Step(description=...)``, else the handler's
  docstring).
* **Fused mode** (``Workflow(fuse=True)`` or ``build_job(fuse=True)``): each maximal run of
  consecutive fusable steps becomes one op (node ``<first>__thru__<last>``), which runs its steps
  in order, each with its own checkpoint and step row (see :mod:`spine_dagster.engine`). A step
  opts out with ``Step(fuse=False)``; map steps, steps with a ``pool``, and steps that retry with
  ``ErrorPolicy.RETRY`` (a Dagster op retry) always get their own op. A fused op's config is keyed
  by step name: ``ops: {a__thru__c: {config: {b: {...}}}}``.
* Each op reads the upstream context through ``SpineCheckpointIOManager`` (resource ``spine_io``)
  and returns a :class:`~spine_dagster.io_manager.SpineState`.

Example:
    >>> from spine_dagster import Step, StepResult, Workflow, build_job
    >>> wf = Workflow("docs.compile", [
    ...     Step.lambda_("fetch.data", lambda ctx, cfg: StepResult.ok(output={"n": 1})),
    ...     Step.lambda_("load", lambda ctx, cfg: StepResult.ok()),
    ... ])
    >>> job = build_job(wf)
    >>> (job.name, [node.name for node in job.graph.nodes_in_topological_order])
    ('docs__compile', ['fetch__data', 'load'])
    >>> [node.name for node in build_job(wf, fuse=True).graph.nodes_in_topological_order]
    ['fetch__data__thru__load']
"""

from __future__ import annotations

import inspect
import re
import warnings
from typing import Any, Mapping, Sequence

import dagster
from dagster import (
    DependencyDefinition,
    Field,
    GraphDefinition,
    In,
    JobDefinition,
    MetadataValue,
    NodeInvocation,
    Out,
    Permissive,
    in_process_executor,
    multiprocess_executor,
)

from .dburl import reference
from .engine import STEP_TAG, WORKFLOW_REF_TAG, WORKFLOW_TAG, run_op
from .errors import InvalidSettingError, InvalidWorkflowError
from .io_manager import STRATEGIES, SpineCheckpointIOManager, check_settings
from .locate import is_importable, load_workflow, workflow_ref
from .model import ErrorPolicy, Step, StepType, Workflow
from .names import FUSE_TAG
from .pipelines import get_pipeline
from .resources import IO_MANAGER_KEY, RESOURCE_KEY, run_config_resource
from .tags import COMPUTE_KIND_TAG, check_owners
from .tags import job_tags as workflow_job_tags

EXECUTORS = ("in_process", "multiprocess", "dask")
FUSED_SEPARATOR = "__thru__"
_JOBS_ATTR = "_spine_compiled_jobs"  # compiled jobs live on their workflow, not in a registry


def op_name_for(name: str) -> str:
    """A Dagster-safe name for a spine name: ``ingest.fetch`` -> ``ingest__fetch``."""
    safe = re.sub(r"[^A-Za-z0-9_]", "_", name.replace(".", "__"))
    return safe if safe and not safe[0].isdigit() else f"s_{safe}"


def step_keys(workflow: Workflow) -> list[str]:
    """The Dagster name of each step, in order. Refuses colliding names."""
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
        raise InvalidWorkflowError(
            f"workflow {workflow.name!r} has no steps; a Dagster job needs at least one. Add a "
            f"step before compiling or running it.")
    step_keys(workflow)
    if workflow.checkpoint_strategy not in (None, *STRATEGIES):
        raise InvalidWorkflowError(
            f"workflow {workflow.name!r}: unknown checkpoint_strategy "
            f"{workflow.checkpoint_strategy!r}; use one of {STRATEGIES}")
    for step in workflow.steps:
        if step.step_type is StepType.PIPELINE:
            get_pipeline(step.pipeline_name, step_name=step.name)
        if step.step_type is StepType.MAP:
            if step.iterator_workflow is None:
                raise InvalidWorkflowError(
                    f"map step {step.name!r} of workflow {workflow.name!r} has no iterator "
                    f"workflow; pass Step.map(name, items_path, iterator_workflow).")
            validate(step.iterator_workflow)


def fusable(step: Step) -> bool:
    """May ``step`` share an op with its neighbours?"""
    return (getattr(step, "fuse", None) is not False and step.step_type is not StepType.MAP
            and not getattr(step, "pool", None) and step.on_error is not ErrorPolicy.RETRY)


def fuses(workflow: Workflow, fuse: bool | None = None) -> bool:
    """Whether the job fuses steps: ``fuse``, else the workflow's own ``fuse``."""
    return bool(fuse if fuse is not None else getattr(workflow, "fuse", False))


def op_groups(workflow: Workflow, fuse: bool | None = None) -> list[list[int]]:
    """The steps of each op, in order: one step per op, or (fused) maximal fusable runs."""
    if not fuses(workflow, fuse):
        return [[i] for i in range(len(workflow.steps))]
    groups: list[list[int]] = []
    for index, step in enumerate(workflow.steps):
        if fusable(step) and groups and len(groups[-1]) >= 1 and fusable(
                workflow.steps[groups[-1][-1]]):
            groups[-1].append(index)
        else:
            groups.append([index])
    return groups


def node_name(keys: Sequence[str], group: Sequence[int]) -> str:
    """The node (step key) of the op that runs ``group``."""
    if len(group) == 1:
        return keys[group[0]]
    return f"{keys[group[0]]}{FUSED_SEPARATOR}{keys[group[-1]]}"


def step_description(workflow: Workflow, step: Step) -> str:
    """The step's own description, else its handler's docstring, else a generic line."""
    own = getattr(step, "description", None)
    if own:
        return own
    handler = step.handler
    if step.step_type is StepType.PIPELINE:
        try:
            handler = get_pipeline(step.pipeline_name)
        except Exception:  # noqa: BLE001 - validate() reports unknown pipelines
            handler = None
    doc = inspect.getdoc(handler) if handler is not None and not _is_lambda(handler) else None
    if doc:
        return doc
    return f"Spine step {step.name!r} ({step.step_type.value}) of workflow {workflow.name!r}"


def _is_lambda(fn: Any) -> bool:
    return getattr(fn, "__name__", "") == "<lambda>"


def _make_op(workflow: Workflow, group: list[int], keys: Sequence[str], ref: str | None,
             upstream_key: str | None):
    steps = [workflow.steps[i] for i in group]
    names = [s.name for s in steps]
    fused = len(group) > 1
    key = node_name(keys, group)
    if fused:
        listed = "\n".join(
            f"{n}. {s.name}: {(step_description(workflow, s).strip().splitlines() or [''])[0]}"
            for n, s in enumerate(steps, 1))
        description = (f"{len(steps)} fused spine steps of workflow {workflow.name!r}, run in "
                       f"order in this op, each with its own checkpoint and step row:\n{listed}")
        config = Field(Permissive(), is_required=False, default_value={},
                       description="Per-step config, by step name: {step: {...}}, each merged "
                                   "over that step's own config.")
    else:
        description = step_description(workflow, steps[0])
        config = Field(Permissive(), is_required=False, default_value={},
                       description=f"Per-step config of step {names[0]!r}, merged over the "
                                   f"step's own config (a pipeline step's config starts from "
                                   f"the params).")
    out_metadata = {"spine/step": names[-1], "spine/index": group[-1], "spine/steps": names,
                    "spine/last_step": names[-1], "spine/last_index": group[-1]}
    common: dict[str, Any] = dict(
        name=f"{op_name_for(workflow.name)}__{key}",
        description=description,
        out=Out(dagster.Any, io_manager_key=IO_MANAGER_KEY, metadata=out_metadata),
        required_resource_keys={RESOURCE_KEY, IO_MANAGER_KEY},
        tags={STEP_TAG: names[0] if not fused else ",".join(names)[:500],
              WORKFLOW_TAG: workflow.name, COMPUTE_KIND_TAG: "spine"},
        config_schema=config,
    )
    pool = getattr(steps[0], "pool", None)
    if pool:
        common["pool"] = pool

    def body(context, spine_ctx):
        return run_op(context, workflow, group, spine_ctx, ref=ref, upstream_key=upstream_key)

    if upstream_key is None:
        @dagster.op(**common)
        def first_op(context):
            return body(context, None)

        return first_op

    @dagster.op(ins={"spine_ctx": In(dagster.Any, input_manager_key=IO_MANAGER_KEY,
                                     metadata={"spine/step": names[0], "spine/steps": names})},
                **common)
    def next_op(context, spine_ctx):
        return body(context, spine_ctx)

    return next_op


def _executor(executor: str):
    if executor == "in_process":
        return in_process_executor
    if executor == "multiprocess":
        return multiprocess_executor.configured(
            {"start_method": {"forkserver": {"preload_modules": ["dagster", "spine_dagster"]}}})
    if executor == "dask":
        try:
            from .dask_executor import spine_dask_executor  # noqa: PLC0415 - optional extra
        except ImportError as exc:
            raise InvalidSettingError(
                f"executor='dask' needs dagster-dask and distributed ({exc}); install them with "
                f"pip install 'spine-dagster[dask]'.") from None
        return spine_dask_executor
    if not isinstance(executor, str):
        return executor  # an ExecutorDefinition (e.g. spine_dask_executor.configured(...))
    raise InvalidWorkflowError(f"unknown executor {executor!r}; use one of {EXECUTORS}, or pass "
                               f"an ExecutorDefinition")


def build_job(
    workflow: Workflow,
    *,
    database_url: str | None = None,
    checkpoint_strategy: str | None = None,
    max_checkpoint_bytes: int | None = None,
    executor: Any = "in_process",
    name: str | None = None,
    tags: Mapping[str, str] | None = None,
    partitions_def: Any = None,
    io_manager: SpineCheckpointIOManager | None = None,
    workflow_ref_value: str | None = None,
    delete_checkpoints_on_success: bool = False,
    fuse: bool | None = None,
) -> JobDefinition:
    """Compile ``workflow`` to a Dagster job: one op per step (or per fused group), in order.

    Args:
        workflow: the Spine workflow.
        database_url: checkpoint database (default: see ``SpineCheckpointIOManager``).
        checkpoint_strategy: ``every_step`` (default) or ``key_steps``; the workflow's own wins.
        max_checkpoint_bytes: largest checkpoint allowed.
        executor: ``in_process`` (default; best for linear chains), ``multiprocess``, ``dask``
            (:mod:`spine_dagster.dask_executor`), or an ``ExecutorDefinition`` such as
            ``spine_dask_executor.configured({...})``. (``dagster_dask.dask_executor`` itself
            cannot re-execute a subset of ops, so it cannot resume a spine run.)
        name: the job name (default: the sanitized workflow name).
        tags: extra job tags.
        partitions_def: a Dagster ``PartitionsDefinition``; ``ctx.partition`` is the run's key.
        io_manager: a configured IO manager, instead of the settings above and below.
        delete_checkpoints_on_success: delete the run's checkpoints when it completes.
        fuse: fuse consecutive steps into one op (default: the workflow's ``fuse``).
    """
    validate(workflow)
    check_settings(checkpoint_strategy=checkpoint_strategy,
                   max_checkpoint_bytes=max_checkpoint_bytes)
    keys = step_keys(workflow)
    ref = workflow_ref_value or workflow_ref(workflow)
    groups = op_groups(workflow, fuse)
    nodes = [node_name(keys, g) for g in groups]
    ops = [_make_op(workflow, g, keys, ref, nodes[i - 1] if i else None)
           for i, g in enumerate(groups)]
    deps = {
        NodeInvocation(op_def.name, alias=nodes[i]):
            ({"spine_ctx": DependencyDefinition(nodes[i - 1])} if i else {})
        for i, op_def in enumerate(ops)
    }
    if io_manager is None:
        io_manager = SpineCheckpointIOManager.from_settings(
            database_url=database_url, checkpoint_strategy=checkpoint_strategy,
            max_checkpoint_bytes=max_checkpoint_bytes,
            delete_checkpoints_on_success=delete_checkpoints_on_success)
    job_tags = {WORKFLOW_TAG: workflow.name, FUSE_TAG: str(fuses(workflow, fuse)).lower(),
                **workflow_job_tags(workflow), **(tags or {})}
    owners = check_owners(workflow)
    if is_importable(ref):
        job_tags[WORKFLOW_REF_TAG] = ref
    job_name = name or op_name_for(workflow.name)
    graph = GraphDefinition(name=job_name, node_defs=ops, dependencies=deps,
                            description=workflow.description or None)
    with warnings.catch_warnings():  # job owners are a beta feature of Dagster
        warnings.simplefilter("ignore", category=dagster.BetaWarning)
        job = graph.to_job(
            name=job_name,
            resource_defs={IO_MANAGER_KEY: io_manager,
                           RESOURCE_KEY: run_config_resource(workflow.defaults)},
            executor_def=_executor(executor),
            tags=job_tags,
            partitions_def=partitions_def,
            description=workflow.description or f"Spine workflow {workflow.name!r}",
            metadata={"spine/workflow": workflow.name,
                      "spine/steps": MetadataValue.json([s.name for s in workflow.steps]),
                      "spine/signature": MetadataValue.json(workflow.signature()),
                      "spine/ops": MetadataValue.json({n: [workflow.steps[i].name for i in g]
                                                       for n, g in zip(nodes, groups)})},
            owners=owners or None,
        )
    return job


def load_job(ref: str, database_url: str | None = None, checkpoint_strategy: str | None = None,
             max_checkpoint_bytes: int | None = None, executor: str = "in_process",
             delete_checkpoints_on_success: bool = False, fuse: bool | None = None,
             name: str | None = None) -> JobDefinition:
    """The reconstructable entry point: load the workflow at ``ref`` and compile it.

    Dagster calls this several times per ``execute``/``resume`` (to check the pointer, then while
    launching), so the compiled job is kept on the workflow object itself (it goes when the
    workflow goes) and reused while the workflow has the same steps and defaults.
    """
    workflow = load_workflow(ref)
    key = (ref, database_url, checkpoint_strategy, max_checkpoint_bytes, executor,
           delete_checkpoints_on_success, fuse, name)
    shape = (workflow.name, workflow.description, workflow.checkpoint_strategy,
             repr(workflow.defaults), getattr(workflow, "fuse", False),
             tuple((id(step), step.name, step.step_type) for step in workflow.steps))
    cache: dict[tuple, tuple[tuple, JobDefinition]] = workflow.__dict__.setdefault(_JOBS_ATTR, {})
    cached = cache.get(key)
    if cached is not None and cached[0] == shape:
        return cached[1]
    job = build_job(workflow, database_url=database_url, checkpoint_strategy=checkpoint_strategy,
                    max_checkpoint_bytes=max_checkpoint_bytes, executor=executor,
                    workflow_ref_value=ref, fuse=fuse, name=name,
                    delete_checkpoints_on_success=delete_checkpoints_on_success)
    cache[key] = (shape, job)
    return job


def reconstructable_job(workflow: Workflow, *, ref: str | None = None, loader: str = "load_job",
                        **settings: Any):
    """A ``ReconstructableJob`` for ``execute_job``: Dagster rebuilds it from the workflow ref
    with ``loader`` (``load_job``, or ``load_asset_job`` of :mod:`spine_dagster.assets`).

    Its arguments are stored by Dagster (the run's ``job_code_origin``), so a database URL goes
    in as its reference: a password is masked (see :mod:`spine_dagster.dburl`).
    """
    ref = ref or workflow_ref(workflow)
    if settings.get("database_url"):
        settings["database_url"] = reference(settings["database_url"],
                                             export=settings.get("executor") != "in_process")
    kwargs = {k: v for k, v in settings.items() if v is not None}
    module = "spine_dagster.compiler" if loader == "load_job" else "spine_dagster.assets"
    return dagster.build_reconstructable_job(module, loader,
                                             reconstructable_args=(ref,),
                                             reconstructable_kwargs=kwargs)
