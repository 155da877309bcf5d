"""``build_definitions``: a Dagster code location for a list of Spine workflows.

Each workflow (a ``Workflow``, a ``SpineJob``, or the path of a YAML workflow file) becomes a job
(see ``build_job``) whose checkpoints go to one database; schedules and sensors from
:mod:`spine_dagster.automation` run them. Put the result in a module that a
``workspace.yaml`` loads, and ``dagster dev`` / ``dagster-webserver`` / ``dagster-daemon`` serve it:
runs launched from the UI, a schedule or a sensor checkpoint and resume like ``WorkflowRunner``
runs. Every process that runs steps must see the same checkpoint ``database_url``. A daily
schedule applies the checkpoint retention policy (see :mod:`spine_dagster.retention`).

Example:
    >>> from dagster import DailyPartitionsDefinition
    >>> from spine_dagster import SpineJob, Step, StepResult, Workflow, build_definitions
    >>> wf = Workflow("docs.defs", [Step.lambda_("a", lambda ctx, cfg: StepResult.ok())])
    >>> daily = SpineJob(Workflow("docs.defs_daily", [Step.lambda_("a", lambda ctx, cfg: StepResult.ok())]),
    ...                  partitions_def=DailyPartitionsDefinition(start_date="2026-01-01"))
    >>> _ = open("pause.yaml", "w").write("{metadata: {name: docs.yaml}, spec: {steps: "
    ...                                   "[{name: nap, type: wait, duration_seconds: 1}]}}")
    >>> defs = build_definitions([wf, daily, "pause.yaml"], database_url="sqlite:///checkpoints.db")
    >>> sorted(job.name for job in defs.jobs)
    ['docs__defs', 'docs__defs_daily', 'docs__yaml']
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from dagster import AssetsDefinition, Definitions, ExecutorDefinition, JobDefinition, PartitionsDefinition

from . import retention
from .assets import build_asset_job, build_assets
from .auto_resume import auto_resume_tags
from .hooks import with_auto_resume
from .compiler import build_job, op_name_for
from .errors import InvalidAutomationError
from .io_manager import SpineCheckpointIOManager
from .model import Workflow
from .resources import IO_MANAGER_KEY, RESOURCE_KEY, RUN_CONFIG
from .resume_job import build_resume_job
from .workflow_yaml import load_workflow_yaml


@dataclass(frozen=True, eq=False)
class SpineJob:
    """A workflow with its per-job options, for ``build_definitions`` and the schedule helpers.

    Args:
        workflow: the Spine workflow.
        partitions_def: a Dagster ``PartitionsDefinition`` (daily, static...); each run's
            partition key is the steps' ``ctx.partition``.
        executor: ``in_process``, ``multiprocess``, ``dask`` or an ``ExecutorDefinition``
            (default: ``build_definitions``'s).
        name: the job name (default: the sanitized workflow name, ``my.flow`` -> ``my__flow``).
        tags: extra tags on the job, so on every run of it.
        assets: serve the workflow as assets (see :mod:`spine_dagster.assets`): one
            graph-backed multi-asset, one op per step, and an asset job named as above.
        fuse: run maximal runs of consecutive fusable steps in one op each (see ``build_job``);
            default: ``build_definitions``'s ``fuse``, else the workflow's own ``fuse``.

    Example:
        >>> from dagster import StaticPartitionsDefinition
        >>> from spine_dagster import SpineJob, Step, StepResult, Workflow
        >>> wf = Workflow("docs.regions", [Step.lambda_("a", lambda ctx, cfg: StepResult.ok())])
        >>> SpineJob(wf, partitions_def=StaticPartitionsDefinition(["eu", "us"])).job_name
        'docs__regions'
    """

    workflow: Workflow
    partitions_def: PartitionsDefinition | None = None
    executor: str | ExecutorDefinition | None = None
    name: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    assets: bool = False
    fuse: bool | None = None

    @property
    def job_name(self) -> str:
        return self.name or op_name_for(self.workflow.name)

    def build(self, *, io_manager: SpineCheckpointIOManager, executor: str | ExecutorDefinition,
              fuse: bool | None = None) -> JobDefinition:
        """Compile the workflow with these options and the code location's IO manager
        (``executor`` and ``fuse``: the code location's defaults)."""
        tags = {**auto_resume_tags(self.workflow), **self.tags}
        job = build_job(self.workflow, io_manager=io_manager, executor=self.executor or executor,
                        name=self.name, tags=tags or None, partitions_def=self.partitions_def,
                        fuse=self.fuse if self.fuse is not None else fuse)
        return with_auto_resume(job, self.workflow)

    def build_assets(self, *, io_manager: SpineCheckpointIOManager, executor: str,
                     fuse: bool | None = None) -> tuple[AssetsDefinition, Any]:
        """The asset view: (the multi-asset, the asset job that materializes it)."""
        fuse = self.fuse if self.fuse is not None else fuse
        assets = build_assets(self.workflow, io_manager=io_manager,
                              partitions_def=self.partitions_def, fuse=fuse)
        job = build_asset_job(self.workflow, assets, name=self.job_name, tags=self.tags,
                              executor=self.executor or executor, fuse=fuse)
        return assets, job


YAML_SUFFIXES = (".yaml", ".yml")


def as_spine_job(item: Workflow | SpineJob | str | os.PathLike[str], *,
                 pipelines_module: str | None = None) -> SpineJob:
    """``item`` as a ``SpineJob``: a bare ``Workflow`` gets the default options, and a path is a
    YAML workflow file, loaded with ``load_workflow_yaml(item, pipelines_module=...)``."""
    if isinstance(item, SpineJob):
        return item
    if isinstance(item, Workflow):
        return SpineJob(item)
    if isinstance(item, (str, os.PathLike)) and os.fspath(item).endswith(YAML_SUFFIXES):
        return SpineJob(load_workflow_yaml(item, pipelines_module=pipelines_module))
    got = f"{item!r}" if isinstance(item, (str, os.PathLike)) else type(item).__name__
    raise InvalidAutomationError(
        f"build_definitions takes Workflow or SpineJob items, or paths of YAML workflow files "
        f"(ending in .yaml or .yml), got {got}; pass other Dagster jobs with jobs=[...].")


def build_definitions(
    workflows: Iterable[Workflow | SpineJob | str | os.PathLike[str]],
    *,
    pipelines_module: str | None = None,
    database_url: str | None = None,
    checkpoint_strategy: str | None = None,
    max_checkpoint_bytes: int | None = None,
    executor: str | ExecutorDefinition = "in_process",
    jobs: Sequence[Any] = (),
    schedules: Sequence[Any] = (),
    sensors: Sequence[Any] = (),
    resources: Mapping[str, Any] | None = None,
    delete_checkpoints_on_success: bool = False,
    checkpoint_retention_days: float | None = retention.DEFAULT_RETENTION_DAYS,
    retention_cron_schedule: str = retention.DEFAULT_CRON_SCHEDULE,
    resume_job: bool = False,
    fuse: bool | None = None,
) -> Definitions:
    """One job per workflow, with the checkpoint IO manager and the ``spine`` run-config resource.

    Args:
        workflows: the Spine workflows to serve: ``Workflow`` objects, ``SpineJob`` for
            per-workflow options (partitions, executor, job name, tags), or paths (``str`` or
            ``Path``, ending in ``.yaml`` or ``.yml``) of YAML workflow files (see
            :mod:`spine_dagster.workflow_yaml`). A relative
            path is taken from the working directory: in a definitions module, build it from
            ``__file__``. For options, wrap a loaded file: ``SpineJob(load_workflow_yaml(path))``.
        pipelines_module: the module that registers the pipelines the YAML files name; imported
            before they load, and again by every process that runs their steps or resumes them.
        database_url: checkpoint database, e.g. ``postgresql+psycopg2://user@host/db``. Default:
            ``$SPINE_DAGSTER_DATABASE_URL``, else SQLite under ``$SPINE_DAGSTER_HOME``; resolved
            in each process, so every process (webserver, daemon, run workers) must agree.
        checkpoint_strategy: ``every_step`` (default) or ``key_steps``; a workflow's own wins.
        max_checkpoint_bytes: the largest checkpoint allowed.
        executor: ``in_process`` (default), ``multiprocess``, ``dask``, or an
            ``ExecutorDefinition`` such as ``spine_dask_executor.configured({"cluster":
            {"existing": {"address": "tcp://dask-scheduler:8786"}}})`` (see
            :mod:`spine_dagster.dask_executor`); a ``SpineJob``'s own wins.
        jobs, schedules, sensors, resources: more definitions to serve alongside, e.g. from
            ``spine_schedule``, ``spine_partitioned_schedule`` and ``spine_sensor``.
        delete_checkpoints_on_success: delete a run's checkpoints once it completes.
        checkpoint_retention_days: the retention period that the cleanup schedule applies
            (``spine_checkpoint_cleanup_schedule``, running by default; it needs the daemon).
            ``None`` leaves the schedule out.
        retention_cron_schedule: when the cleanup runs (default daily at 03:00 UTC).
        resume_job: also serve the ``spine_resume`` job, which resumes a failed run with changed
            params from the Launchpad (see :mod:`spine_dagster.resume_job`).
        fuse: fuse consecutive steps into one op in every job (a ``SpineJob``'s own ``fuse``
            wins; default: each workflow's own ``fuse``). Scripts that run the same workflows
            with ``WorkflowRunner`` need the same setting for the UI to re-execute their runs.

    A workflow with ``auto_resume`` gets Dagster's run-retry tags and the auto-resume hook (see
    :mod:`spine_dagster.auto_resume`). A ``SpineJob(..., assets=True)`` adds its assets and their
    asset job instead of an op job.
    """
    io_manager = SpineCheckpointIOManager.from_settings(
        database_url=database_url, checkpoint_strategy=checkpoint_strategy,
        max_checkpoint_bytes=max_checkpoint_bytes,
        delete_checkpoints_on_success=delete_checkpoints_on_success)
    specs = [as_spine_job(item, pipelines_module=pipelines_module) for item in workflows]
    seen: dict[str, str] = {}
    for spec in specs:
        if spec.job_name in seen:
            raise InvalidAutomationError(
                f"workflows {seen[spec.job_name]!r} and {spec.workflow.name!r} both become the "
                f"Dagster job {spec.job_name!r}; give one of them SpineJob(..., name=...).")
        seen[spec.job_name] = spec.workflow.name
    spine_jobs, spine_assets = [], []
    for spec in specs:
        if spec.assets:
            assets, job = spec.build_assets(io_manager=io_manager, executor=executor, fuse=fuse)
            spine_assets.append(assets)
            spine_jobs.append(job)
        else:
            spine_jobs.append(spec.build(io_manager=io_manager, executor=executor, fuse=fuse))
    if resume_job:
        spine_jobs.append(build_resume_job(io_manager=io_manager))
    cleanup = []
    if checkpoint_retention_days is not None:
        cleanup.append(retention.cleanup_schedule(database_url, checkpoint_retention_days,
                                                  retention_cron_schedule))
    return Definitions(
        assets=spine_assets or None,
        jobs=[*spine_jobs, *jobs],
        schedules=[*schedules, *cleanup],
        sensors=list(sensors),
        resources={IO_MANAGER_KEY: io_manager, RESOURCE_KEY: RUN_CONFIG, **(resources or {})},
    )
