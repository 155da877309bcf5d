"""The asset view: a Spine workflow as Dagster assets, still one op per step.

``build_assets(workflow)`` (or ``SpineJob(workflow, assets=True)`` in ``build_definitions``)
presents the workflow as one graph-backed multi-asset:

* **Which steps are assets.** The steps that declare ``produces="asset/key"``; when no step
  declares one, every step, keyed ``<workflow>/<step>`` (sanitized like op names). Every step
  still runs in its own op, in order, through the same op body and checkpoint IO manager as the op
  job (:mod:`spine_dagster.engine`); the steps that are not assets are ops inside the graph.
* **Lineage.** Each asset depends on the asset of the nearest asset step before it.
* **Presentation.** Kind ``spine``, group = the workflow's ``domain`` (sanitized), owners =
  ``Workflow.owners``, tags = ``Workflow.tags`` (``"name"`` or ``"key=value"``), description =
  the step's (see ``build_job``). The original names are asset metadata (``spine/step``...).
* **Quality checks.** An asset step with ``quality_thresholds`` gets the blocking asset check
  ``spine_quality``: it passes when the step's ``QualityMetrics.passed`` is true and the
  thresholds are met. A failed quality gate (a ``DATA_QUALITY`` step failure) fails the check with
  severity ERROR, so nothing downstream runs; ``passed=False`` reported by a step without a gate
  failure is a WARN check. ``record_count`` is the materialization's ``dagster/row_count``.
* **Re-execution.** Checkpoints, ``WorkflowRunner(assets=True).resume``, ``SpineDagsterClient``
  resumes, and the UI's re-execution ("from failure", and "from asset failure", which re-runs
  only the assets that failed, loading the upstream context from the spine checkpoints) behave
  as for the op job. The multi-asset can be subset, so the UI's "Materialize selected" works too.

The checkpoint IO manager is bound to the assets under Dagster's default key ``io_manager``, not
``spine_io``: subsets of graph-backed assets whose ops use another IO manager key fail
(dagster-io/dagster#32862). It is bound to the spine assets only; other assets keep theirs.
Every spine asset definition of one code location with the same checkpoint settings shares one
IO manager object (Dagster requires that); assets with different checkpoint databases cannot be
in one code location.

Example:
    >>> from spine_dagster import Step, StepResult, Workflow, build_assets
    >>> wf = Workflow("docs.assets", [
    ...     Step.lambda_("extract", lambda ctx, cfg: StepResult.ok(), produces="raw/orders"),
    ...     Step.lambda_("clean", lambda ctx, cfg: StepResult.ok()),
    ...     Step.lambda_("publish", lambda ctx, cfg: StepResult.ok(), produces="mart/orders"),
    ... ], domain="sales", owners=["team:data"])
    >>> assets = build_assets(wf, database_url="sqlite:///checkpoints.db")
    >>> sorted(key.to_user_string() for key in assets.keys)
    ['mart/orders', 'raw/orders']
    >>> [k.to_user_string() for k in assets.asset_deps[AssetKey(["mart", "orders"])]]
    ['raw/orders']
    >>> assets.specs_by_key[AssetKey(["mart", "orders"])].kinds, assets.group_names_by_key[AssetKey(["raw", "orders"])]
    ({'spine'}, 'sales')
"""

from __future__ import annotations

import json
import threading
import warnings
from typing import Any, Iterator, Mapping

import dagster
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetKey,
    AssetSelection,
    AssetsDefinition,
    Definitions,
    DependencyDefinition,
    Field,
    GraphDefinition,
    In,
    JobDefinition,
    MetadataValue,
    NodeInvocation,
    Out,
    OutputMapping,
    Permissive,
    StaticPartitionsDefinition,
    TimeWindowPartitionsDefinition,
    define_asset_job,
)

from .auto_resume import auto_resume_of, auto_resume_tags
from .compiler import (
    _JOBS_ATTR,
    _executor,
    node_name,
    op_groups,
    op_name_for,
    step_description,
    step_keys,
    validate,
)
from .engine import STEP_TAG, WORKFLOW_REF_TAG, WORKFLOW_TAG, SpineStepFailure, run_op
from .errors import InvalidWorkflowError
from .hooks import auto_resume_hook
from .io_manager import SpineCheckpointIOManager
from .locate import is_importable, load_workflow, workflow_ref
from .model import Workflow
from .resources import RESOURCE_KEY, RUN_CONFIG
from .tags import asset_tags, check_owners
from .tags import job_tags as workflow_job_tags

ASSET_IO_MANAGER_KEY = "io_manager"
QUALITY_CHECK = "spine_quality"
KIND_TAG = "dagster/kind/spine"
VIEW_TAG = "spine/view"
PARTITIONS_TAG = "spine/partitions"
__all__ = ["QUALITY_CHECK", "asset_keys", "asset_resources", "build_asset_job", "build_assets",
           "load_asset_job", "shared_resources"]

_shared: dict[tuple, dict[str, Any]] = {}  # one entry per distinct checkpoint setting
_shared_lock = threading.Lock()


def shared_resources(io_manager: SpineCheckpointIOManager | None = None,
                     **settings: Any) -> dict[str, Any]:
    """The checkpoint IO manager bound to spine assets (key ``io_manager``): one object per
    checkpoint setting.

    Dagster refuses two assets in one job (the implicit asset job included) whose bound resources
    under one key are different objects, so equal settings give the very same object. The
    ``spine`` run-config resource cannot be bound to assets (Dagster refuses any other bound key
    that the code location also provides): :func:`asset_resources` gives it.
    """
    io = io_manager or SpineCheckpointIOManager.from_settings(**settings)
    key = (io.database_url, io.checkpoint_strategy, io.max_checkpoint_bytes,
           io.delete_checkpoints_on_success)
    with _shared_lock:
        found = _shared.get(key)
        if found is None:
            found = _shared[key] = {
                ASSET_IO_MANAGER_KEY: io.get_resource_definition(),
                "_io": io,
            }
    return {k: v for k, v in found.items() if not k.startswith("_")}


def asset_resources() -> dict[str, Any]:
    """The code-location resources that spine assets need besides their own: ``spine``, the
    run config (params, partition) that the Launchpad shows. ``build_definitions`` and
    ``SpineWorkflowComponent`` provide it; add it to ``Definitions(resources=...)`` when you
    serve ``build_assets`` output yourself."""
    return {RESOURCE_KEY: RUN_CONFIG}


def asset_keys(workflow: Workflow) -> dict[str, AssetKey]:
    """Step name -> asset key: the steps with ``produces``, else every step."""
    declared = {s.name: AssetKey(s.produces.split("/")) for s in workflow.steps
                if getattr(s, "produces", None)}
    if declared:
        seen: dict[AssetKey, str] = {}
        for name, key in declared.items():
            if key in seen:
                raise InvalidWorkflowError(
                    f"workflow {workflow.name!r}: steps {seen[key]!r} and {name!r} both produce "
                    f"asset {key.to_user_string()!r}; an asset has one producing step.")
            seen[key] = name
        return declared
    prefix = op_name_for(workflow.name)
    return {s.name: AssetKey([prefix, op_name_for(s.name)]) for s in workflow.steps}


def asset_groups(workflow: Workflow, keys: Mapping[str, AssetKey],
                 fuse: bool | None = None) -> list[list[int]]:
    """The op groups of the asset view: as in the op job, each asset step ending its group."""
    groups: list[list[int]] = []
    for group in op_groups(workflow, fuse):
        current: list[int] = []
        for index in group:
            current.append(index)
            if workflow.steps[index].name in keys:
                groups.append(current)
                current = []
        if current:
            groups.append(current)
    return groups


def graph_name(workflow: Workflow) -> str:
    """The multi-asset's graph, ``<workflow>__steps`` (the first part of every step key:
    ``<graph>.<node>``); not the job's name, which Dagster keeps for the job's own graph."""
    return f"{op_name_for(workflow.name)}__steps"


def asset_step_ops(workflow: Workflow, fuse: bool | None = None) -> dict[str, list[str]]:
    """Step key (``<graph>.<node>``) -> the steps its op runs, in order."""
    keys = step_keys(workflow)
    prefix = graph_name(workflow)
    return {f"{prefix}.{node_name(keys, g)}": [workflow.steps[i].name for i in g]
            for g in asset_groups(workflow, asset_keys(workflow), fuse)}


def _check_spec(workflow: Workflow, step: Any, key: AssetKey) -> AssetCheckSpec | None:
    if getattr(step, "quality_thresholds", None) is None:
        return None
    limits = ", ".join(f"{k}={v}" for k, v in step.quality_thresholds.to_dict().items())
    return AssetCheckSpec(
        QUALITY_CHECK, asset=key, blocking=True,
        description=f"Spine quality gate of step {step.name!r}: QualityMetrics.passed and "
                    f"{limits or 'its thresholds'}. A failure stops the run at this step "
                    f"(DATA_QUALITY).")


def _make_op(workflow: Workflow, group: list[int], keys: list[str], ref: str,
             upstream: tuple[str, AssetKey | None] | None, check: AssetCheckSpec | None):
    steps = [workflow.steps[i] for i in group]
    names = [s.name for s in steps]
    node = node_name(keys, group)
    description = (step_description(workflow, steps[0]) if len(group) == 1 else
                   f"Fused spine steps of workflow {workflow.name!r}, run in order, each with "
                   f"its own checkpoint: {', '.join(names)}")
    outs = {"result": Out(dagster.Any, metadata={
        "spine/step": names[-1], "spine/index": group[-1], "spine/steps": names,
        "spine/last_step": names[-1], "spine/last_index": group[-1]})}
    if check is not None:
        outs[check.get_python_identifier()] = Out(dagster.Nothing, is_required=False)
    common: dict[str, Any] = dict(
        name=f"{op_name_for(workflow.name)}__{node}", description=description, out=outs,
        required_resource_keys={RESOURCE_KEY, ASSET_IO_MANAGER_KEY},
        tags={STEP_TAG: ",".join(names)[:500], WORKFLOW_TAG: workflow.name,
              "dagster/compute_kind": "spine"},
        config_schema=Field(Permissive(), is_required=False, default_value={},
                            description="Per-step config, merged over the step's own config "
                                        "(fused ops: by step name)."))
    if getattr(steps[0], "pool", None):
        common["pool"] = steps[0].pool
    upstream_key, upstream_asset = upstream or (None, None)

    def body(context, spine_ctx) -> Iterator[Any]:
        boundary = (upstream_asset is not None
                    and upstream_asset not in context.selected_asset_keys)
        try:
            output = run_op(context, workflow, group, spine_ctx, ref=ref,
                            upstream_key=upstream_key, io_manager_key=ASSET_IO_MANAGER_KEY,
                            at_boundary=boundary)
        except SpineStepFailure as failure:
            if check is not None and failure.category == "DATA_QUALITY":
                yield _check_result(check, False, failure.metadata, failure.description)
            raise
        yield output
        quality = output.metadata.get("spine/quality")
        if check is not None and quality is not None:
            passed = bool(quality.value.get("passed", True))
            yield _check_result(check, passed, output.metadata,
                                "QualityMetrics.passed is false" if not passed else None,
                                AssetCheckSeverity.WARN)

    if upstream is None:
        @dagster.op(**common)
        def first_op(context):
            yield from body(context, None)

        return first_op

    @dagster.op(ins={"spine_ctx": In(dagster.Any, metadata={"spine/step": names[0],
                                                            "spine/steps": names})}, **common)
    def next_op(context, spine_ctx):
        yield from body(context, spine_ctx)

    return next_op


def _check_result(spec: AssetCheckSpec, passed: bool, metadata: Mapping[str, Any],
                  description: str | None,
                  severity: AssetCheckSeverity = AssetCheckSeverity.ERROR) -> AssetCheckResult:
    shown = {k: v for k, v in metadata.items()
             if k in ("spine/quality", "dagster/row_count", "spine/error")}
    return AssetCheckResult(asset_key=spec.asset_key, check_name=spec.name, passed=passed,
                            metadata=shown, description=description,
                            severity=AssetCheckSeverity.ERROR if passed else severity)


def build_assets(
    workflow: Workflow,
    *,
    database_url: str | None = None,
    checkpoint_strategy: str | None = None,
    max_checkpoint_bytes: int | None = None,
    delete_checkpoints_on_success: bool = False,
    partitions_def: Any = None,
    io_manager: SpineCheckpointIOManager | None = None,
    fuse: bool | None = None,
    workflow_ref_value: str | None = None,
) -> AssetsDefinition:
    """``workflow`` as one graph-backed multi-asset, one op per step (see the module docs).

    Args:
        workflow: the Spine workflow.
        database_url, checkpoint_strategy, max_checkpoint_bytes, delete_checkpoints_on_success:
            the checkpoint settings (as for ``build_job``), or ``io_manager``: a configured one.
        partitions_def: a Dagster ``PartitionsDefinition``: every asset is partitioned with it,
            and the steps see the run's key as ``ctx.partition``.
        fuse: fuse consecutive steps that are not assets into the op of the next asset step
            (default: the workflow's ``fuse``).

    Raises:
        InvalidWorkflowError: two steps produce one asset, or the owners or tags are not valid
            for Dagster assets.
    """
    validate(workflow)
    keys = asset_keys(workflow)
    names = step_keys(workflow)
    ref = workflow_ref_value or workflow_ref(workflow)
    prefix = graph_name(workflow)
    groups = asset_groups(workflow, keys, fuse)
    nodes = [node_name(names, g) for g in groups]
    ops, checks = [], []
    output_mappings: list[OutputMapping] = []
    keys_by_output: dict[str, AssetKey] = {}
    deps: dict[str, set[AssetKey]] = {}
    metadata: dict[str, dict[str, Any]] = {}
    descriptions: dict[str, str] = {}
    last_asset: AssetKey | None = None
    for position, group in enumerate(groups):
        step = workflow.steps[group[-1]]
        key = keys.get(step.name)
        check = _check_spec(workflow, step, key) if key is not None else None
        upstream = ((f"{prefix}.{nodes[position - 1]}",
                     keys.get(workflow.steps[groups[position - 1][-1]].name))
                    if position else None)
        ops.append(_make_op(workflow, group, names, ref, upstream, check))
        if key is None:
            continue
        output = nodes[position]
        output_mappings.append(OutputMapping(output, output, "result"))
        keys_by_output[output] = key
        deps[output] = {last_asset} if last_asset is not None else set()
        metadata[output] = {"spine/workflow": workflow.name, "spine/step": step.name,
                            "spine/last_step": step.name, "spine/last_index": group[-1],
                            "spine/steps": MetadataValue.json([workflow.steps[i].name
                                                               for i in group])}
        descriptions[output] = step_description(workflow, step)
        if check is not None:
            checks.append(check)
            name = check.get_python_identifier()
            output_mappings.append(OutputMapping(name, output, name))
        last_asset = key
    dependencies = {
        NodeInvocation(op_def.name, alias=nodes[i]):
            ({"spine_ctx": DependencyDefinition(nodes[i - 1])} if i else {})
        for i, op_def in enumerate(ops)
    }
    graph = GraphDefinition(name=prefix, node_defs=ops, dependencies=dependencies,
                            output_mappings=output_mappings,
                            description=workflow.description or None)
    owners = check_owners(workflow)
    tags = {KIND_TAG: "", **asset_tags(workflow)}
    resources = shared_resources(io_manager, database_url=database_url,
                                 checkpoint_strategy=checkpoint_strategy,
                                 max_checkpoint_bytes=max_checkpoint_bytes,
                                 delete_checkpoints_on_success=delete_checkpoints_on_success)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=dagster.BetaWarning)
        try:
            return AssetsDefinition.from_graph(
                graph, keys_by_output_name=keys_by_output, internal_asset_deps=deps,
                partitions_def=partitions_def, resource_defs=resources,
                group_name=op_name_for(workflow.domain) if workflow.domain else None,
                descriptions_by_output_name=descriptions, metadata_by_output_name=metadata,
                tags_by_output_name={o: tags for o in keys_by_output},
                owners_by_output_name={o: owners for o in keys_by_output} if owners else None,
                can_subset=True, check_specs=checks or None)
        except dagster.DagsterInvalidDefinitionError as exc:
            raise InvalidWorkflowError(
                f"workflow {workflow.name!r} cannot be presented as assets: {exc}") from None


def build_asset_job(
    workflow: Workflow,
    assets: AssetsDefinition,
    *,
    name: str | None = None,
    tags: Mapping[str, str] | None = None,
    executor: Any = "in_process",
    fuse: bool | None = None,
    workflow_ref_value: str | None = None,
) -> Any:
    """The job that materializes ``assets`` (from :func:`build_assets`) with spine semantics.

    It carries the same spine job metadata and tags as the op job (``spine/workflow``,
    ``spine/steps``, ``spine/signature``, ``spine/ops`` keyed by step key), so that
    ``SpineDagsterClient`` resumes its runs, plus ``spine/view: assets``; and the auto-resume
    tags and hook when the workflow has ``auto_resume``. The owners are the assets' (not the
    job's: Dagster's job owners are a beta feature that warns on every load).
    """
    ref = workflow_ref_value or workflow_ref(workflow)
    job_tags = {WORKFLOW_TAG: workflow.name, VIEW_TAG: "assets", **workflow_job_tags(workflow),
                **auto_resume_tags(workflow), **(tags or {})}
    partitions = partitions_tag(assets.partitions_def)
    if partitions:
        job_tags[PARTITIONS_TAG] = partitions
    if is_importable(ref):
        job_tags[WORKFLOW_REF_TAG] = ref
    policy = auto_resume_of(workflow)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=dagster.BetaWarning)
        return define_asset_job(
            name or op_name_for(workflow.name), selection=AssetSelection.assets(assets),
            description=workflow.description or f"Spine workflow {workflow.name!r} (assets)",
            tags=job_tags, executor_def=_executor(executor),
            hooks={auto_resume_hook(workflow, policy)} if policy else None,
            metadata={"spine/workflow": workflow.name,
                      "spine/steps": MetadataValue.json(workflow.step_names()),
                      "spine/signature": MetadataValue.json(workflow.signature()),
                      "spine/ops": MetadataValue.json(asset_step_ops(workflow, fuse))})


def partitions_tag(partitions_def: Any) -> str | None:
    """The job tag that lets another process rebuild the assets' partitions (a resume from a new
    process must materialize the same partition keys); None for none, or a kind it cannot."""
    if isinstance(partitions_def, TimeWindowPartitionsDefinition):
        return json.dumps({"start": partitions_def.start.strftime(partitions_def.fmt),
                           "end": partitions_def.end.strftime(partitions_def.fmt)
                           if partitions_def.end else None,
                           "fmt": partitions_def.fmt, "timezone": partitions_def.timezone,
                           "cron_schedule": partitions_def.cron_schedule,
                           "end_offset": partitions_def.end_offset})
    if isinstance(partitions_def, StaticPartitionsDefinition):
        return json.dumps({"static": partitions_def.get_partition_keys()})
    return None


def partitions_from_tag(value: str | None) -> Any:
    """The partitions definition :func:`partitions_tag` describes."""
    if not value:
        return None
    data = json.loads(value)
    if "static" in data:
        return StaticPartitionsDefinition(list(data["static"]))
    return TimeWindowPartitionsDefinition(**{k: v for k, v in data.items() if v is not None})


def asset_job_definition(workflow: Workflow, *, name: str | None = None,
                         partitions_def: Any = None, executor: Any = "in_process",
                         fuse: bool | None = None, workflow_ref_value: str | None = None,
                         **settings: Any) -> JobDefinition:
    """The asset job of ``workflow``, resolved (for ``execute_job`` and tests)."""
    if isinstance(partitions_def, str):
        partitions_def = partitions_from_tag(partitions_def)
    assets = build_assets(workflow, partitions_def=partitions_def, fuse=fuse,
                          workflow_ref_value=workflow_ref_value, **settings)
    job = build_asset_job(workflow, assets, name=name, executor=executor, fuse=fuse,
                          workflow_ref_value=workflow_ref_value)
    return Definitions(assets=[assets], jobs=[job],
                       resources=asset_resources()).resolve_job_def(job.name)


def load_asset_job(ref: str, **settings: Any) -> JobDefinition:
    """The reconstructable entry point of asset jobs (``WorkflowRunner(assets=True)``): load the
    workflow at ``ref`` and build its asset job; cached on the workflow like ``load_job``."""
    workflow = load_workflow(ref)
    key = ("assets", ref, tuple(sorted(settings.items())))
    shape = (workflow.name, workflow.description, repr(workflow.defaults),
             tuple((id(step), step.name, step.step_type) for step in workflow.steps))
    cache: dict[tuple, tuple[tuple, JobDefinition]] = workflow.__dict__.setdefault(_JOBS_ATTR, {})
    cached = cache.get(key)
    if cached is not None and cached[0] == shape:
        return cached[1]
    job = asset_job_definition(workflow, workflow_ref_value=ref, **settings)
    cache[key] = (shape, job)
    return job
