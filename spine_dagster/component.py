"""``SpineWorkflowComponent``: a Spine workflow in a ``dg`` project, declared in ``defs.yaml``.

``dg scaffold defs spine_dagster.SpineWorkflowComponent nightly`` creates ``defs/nightly/`` with a
``defs.yaml``, a Spine ``workflow.yaml`` and the ``pipelines.py`` its steps call; ``dg check defs``
validates it and ``dg dev`` serves it. A ``defs.yaml``::

    type: spine_dagster.SpineWorkflowComponent
    attributes:
      workflow: workflow.yaml            # next to defs.yaml; or my_pkg.flows:NIGHTLY (Python)
      pipelines_module: .pipelines       # imported first ("." = this folder's module)
      checkpoint_strategy: every_step
      schedule: {cron_schedule: "0 2 * * *", params: {tier: gold}}
      partitions: {daily: {start_date: "2026-01-01"}}
      auto_resume: {max_resumes: 2, categories: [TRANSIENT, TIMEOUT]}
      assets: false                      # true: the asset view (spine_dagster.assets)

Every attribute is documented in the component's schema (``dg utils inspect-component
spine_dagster.SpineWorkflowComponent``). The component is a thin layer over the functions a
Python user calls: :func:`~spine_dagster.load_workflow_yaml`, :class:`~spine_dagster.SpineJob`
(``build_job`` / ``build_assets``), :func:`~spine_dagster.spine_schedule` and
:func:`~spine_dagster.spine_partitioned_schedule`. A run records where its workflow is
(``yaml:/abs/path/workflow.yaml#pkg.defs.nightly.pipelines``), so ``WorkflowRunner().resume``
from another process, and the UI's re-execution, resume it like any spine run.

Example:
    >>> SpineWorkflowComponent(workflow="workflow.yaml", assets=True).assets
    True
"""

# No `from __future__ import annotations`: Dagster reads the attribute types at runtime.

import importlib
import textwrap
from pathlib import Path
from typing import Annotated, Any, Literal, Optional

import dagster as dg
from pydantic import Field

from .auto_resume import AutoResume
from .assets import asset_resources
from .automation import spine_partitioned_schedule, spine_schedule
from .definitions import SpineJob
from .errors import InvalidSettingError, WorkflowNotFoundError
from .io_manager import SpineCheckpointIOManager
from .locate import load_workflow, variant
from .model import Workflow
from .workflow_yaml import load_workflow_yaml

Category = Literal["INTERNAL", "DATA_QUALITY", "TRANSIENT", "TIMEOUT", "DEPENDENCY",
                   "CONFIGURATION"]
__all__ = ["SpineWorkflowComponent"]


def _doc(text: str) -> Any:
    # A field with a default keeps its description in the schema only this way (Dagster 1.13).
    return dg.Resolver.default(description=text)


class ScheduleModel(dg.Resolvable, dg.Model):
    """A cron schedule for the workflow (``spine_schedule``)."""

    cron_schedule: str = Field(description="When to run, as a cron expression, e.g. '0 2 * * *' "
                               "(02:00 every day). For a partitioned workflow each tick runs the "
                               "newest partition that has ended (static partitions: every key).")
    params: Annotated[dict[str, Any], _doc(
        "Workflow params of every scheduled run (ctx.params), merged over the workflow's "
        "defaults.")] = {}
    execution_timezone: Annotated[Optional[str], _doc(
        "Timezone of the cron expression, e.g. Europe/Paris (default: UTC, or the partitions' "
        "timezone).")] = None


class DailyPartitionsModel(dg.Resolvable, dg.Model):
    """Daily partitions: each run handles one day, ``ctx.partition`` = ``YYYY-MM-DD``."""

    start_date: str = Field(description="The first day, YYYY-MM-DD.")
    end_date: Annotated[Optional[str], _doc("The day after the last one, YYYY-MM-DD (default: "
                                            "open-ended).")] = None
    timezone: Annotated[Optional[str], _doc("Timezone of the day boundaries (default: UTC).")] \
        = None


class HourlyPartitionsModel(dg.Resolvable, dg.Model):
    """Hourly partitions: ``ctx.partition`` = ``YYYY-MM-DD-HH:MM``."""

    start_date: str = Field(description="The first hour, YYYY-MM-DD-HH:MM (or YYYY-MM-DD).")
    end_date: Annotated[Optional[str], _doc("The hour after the last one (default: "
                                            "open-ended).")] = None
    timezone: Annotated[Optional[str], _doc("Timezone of the hours (default: UTC).")] = None


class PartitionsModel(dg.Resolvable, dg.Model):
    """How the workflow is partitioned: exactly one of ``daily``, ``hourly``, ``static``."""

    daily: Annotated[Optional[DailyPartitionsModel], _doc(
        "Daily partitions, e.g. {start_date: '2026-01-01'}.")] = None
    hourly: Annotated[Optional[HourlyPartitionsModel], _doc(
        "Hourly partitions, e.g. {start_date: '2026-01-01-00:00'}.")] = None
    static: Annotated[Optional[list[str]], _doc(
        "A fixed list of partition keys, e.g. [eu, us].")] = None

    def build(self) -> dg.PartitionsDefinition:
        chosen = [name for name in ("daily", "hourly", "static") if getattr(self, name)]
        if len(chosen) != 1:
            raise InvalidSettingError(
                f"partitions: give exactly one of daily, hourly or static (got "
                f"{chosen or 'none'}), e.g. partitions: {{daily: {{start_date: '2026-01-01'}}}}")
        if self.static:
            return dg.StaticPartitionsDefinition(list(self.static))
        spec = self.daily or self.hourly
        kind = dg.DailyPartitionsDefinition if self.daily else dg.HourlyPartitionsDefinition
        options = {"end_date": spec.end_date, "timezone": spec.timezone}
        return kind(start_date=spec.start_date, **{k: v for k, v in options.items() if v})


class AutoResumeModel(dg.Resolvable, dg.Model):
    """Resume failed runs automatically with Dagster's run retries (see ``AutoResume``)."""

    max_resumes: Annotated[int, _doc("At most this many automatic resumes per run (>= 1).")] = 1
    categories: Annotated[list[Category], _doc(
        "The error categories that are resumed; any other failure stays failed.")] = [
        "TRANSIENT", "TIMEOUT", "DEPENDENCY"]


def _import(module: str, context: dg.ComponentLoadContext) -> None:
    try:
        importlib.import_module(module)
    except Exception as exc:  # noqa: BLE001 - any failure while importing user code
        raise WorkflowNotFoundError(
            f"{context.path}: pipelines_module {module!r} could not be imported "
            f"({type(exc).__name__}: {exc}). Check the module name, and that its package is "
            f"installed in the project's environment.") from exc


class SpineWorkflowScaffolder(dg.Scaffolder):
    """Writes ``defs.yaml``, a two-step ``workflow.yaml`` and its ``pipelines.py``."""

    def scaffold(self, request: dg.ScaffoldRequest) -> None:
        folder = request.target_path
        folder.mkdir(parents=True, exist_ok=True)
        name = folder.name
        (folder / "defs.yaml").write_text(textwrap.dedent(f"""\
            type: {request.type_name}

            attributes:
              workflow: workflow.yaml          # the Spine workflow, next to this file
              pipelines_module: .pipelines     # registers the pipelines its steps call
              # checkpoint_strategy: every_step
              # schedule: {{cron_schedule: "0 2 * * *", params: {{tier: gold}}}}
              # partitions: {{daily: {{start_date: "2026-01-01"}}}}
              # auto_resume: {{max_resumes: 2, categories: [TRANSIENT, TIMEOUT]}}
              # assets: true                   # each step materializes an asset
              # database_url: prefer $SPINE_DAGSTER_DATABASE_URL in every process
            """))
        (folder / "workflow.yaml").write_text(textwrap.dedent(f"""\
            apiVersion: spine.io/v1
            kind: Workflow
            metadata:
              name: {name}
              description: Extract records, then load them.
            spec:
              defaults: {{limit: 100}}
              steps:
                - {{name: extract, pipeline: {name}.extract}}
                - {{name: load, pipeline: {name}.load}}
            """))
        (folder / "pipelines.py").write_text(textwrap.dedent(f'''\
            """The pipelines of workflow {name!r}: replace their bodies with your own code."""

            from spine_dagster import StepResult, pipeline


            @pipeline("{name}.extract")
            def extract(ctx, config):
                """Read the records to load."""
                records = list(range(int(config["limit"])))
                return StepResult.ok(output={{"record_count": len(records)}})


            @pipeline("{name}.load")
            def load(ctx, config):
                """Load what extract read."""
                return {{"loaded": ctx.get_output("extract", "record_count")}}
            '''))


@dg.scaffold_with(SpineWorkflowScaffolder)
class SpineWorkflowComponent(dg.Component, dg.Resolvable, dg.Model):
    """A Spine workflow: a Dagster job (one op per step) or assets, checkpointed and resumable."""

    workflow: str = Field(description=(
        "The Spine workflow: a YAML file (apiVersion: spine.io/v1, kind: Workflow), relative to "
        "this defs.yaml, e.g. workflow.yaml; or a Python object as module:ATTR, e.g. "
        "my_pkg.flows:NIGHTLY (a leading '.' is this folder's module)."))
    pipelines_module: Annotated[Optional[str], _doc(
        "A module to import first: the one whose @spine_dagster.pipeline functions the steps "
        "call, e.g. my_pkg.pipelines, or .pipelines for pipelines.py next to this "
        "defs.yaml.")] = None
    checkpoint_strategy: Annotated[Optional[Literal["every_step", "key_steps"]], _doc(
        "every_step (default): a checkpoint after each successful step; key_steps: only after "
        "steps declared checkpoint: true. A strategy set in the workflow itself wins.")] = None
    database_url: Annotated[Optional[str], _doc(
        "The checkpoint database, e.g. postgresql+psycopg2://user@host:5432/db. Prefer "
        "$SPINE_DAGSTER_DATABASE_URL, set for the webserver, the daemon and the run workers "
        "alike (default: that variable, else SQLite under $SPINE_DAGSTER_HOME).")] = None
    job_name: Annotated[Optional[str], _doc(
        "The Dagster job name (default: the workflow name, '.' becoming '__').")] = None
    schedule: Annotated[Optional[ScheduleModel], _doc(
        "Run the workflow on a cron schedule, with fixed params.")] = None
    partitions: Annotated[Optional[PartitionsModel], _doc(
        "Partition the workflow (daily, hourly or static keys); steps see the run's key as "
        "ctx.partition.")] = None
    auto_resume: Annotated[Optional[AutoResumeModel], _doc(
        "Resume failed runs from their last checkpoint automatically (Dagster run retries; "
        "needs run_retries enabled and the daemon). Overrides the workflow's own.")] = None
    assets: Annotated[bool, _doc(
        "false (default): one job, one op per step. true: the asset view: each step (or each "
        "step with produces:) is an asset of one multi-asset, with quality checks; the job "
        "materializes them.")] = False
    fuse: Annotated[Optional[bool], _doc(
        "Run consecutive steps in one op (each still checkpointed); default: the workflow's "
        "fuse.")] = None

    def load_workflow(self, context: dg.ComponentLoadContext) -> Workflow:
        """The workflow ``workflow`` names, with ``auto_resume`` applied."""
        pipelines = self._module(self.pipelines_module, context)
        spec = self.workflow.strip()
        if spec.endswith((".yaml", ".yml")):
            path = Path(spec) if Path(spec).is_absolute() else Path(context.path) / spec
            workflow = load_workflow_yaml(path, pipelines_module=pipelines)
        elif ":" in spec:
            if pipelines:
                _import(pipelines, context)
            module, _, attr = spec.rpartition(":")
            workflow = load_workflow(f"{self._module(module, context)}:{attr}")
        else:
            raise WorkflowNotFoundError(
                f"{context.path}: workflow: {spec!r} is neither a YAML file (workflow.yaml) nor a "
                f"Python object (my_pkg.flows:NIGHTLY).")
        if self.auto_resume is not None:
            workflow = variant(workflow, auto_resume=AutoResume(
                max_resumes=self.auto_resume.max_resumes,
                categories=tuple(self.auto_resume.categories)))
        return workflow

    @staticmethod
    def _module(name: Optional[str], context: dg.ComponentLoadContext) -> Optional[str]:
        if name and name.startswith("."):
            return f"{context.defs_relative_module_name(Path(context.path))}{name}"
        return name

    def spine_job(self, context: dg.ComponentLoadContext) -> SpineJob:
        """The ``SpineJob`` this component serves."""
        return SpineJob(self.load_workflow(context),
                        partitions_def=self.partitions.build() if self.partitions else None,
                        name=self.job_name, assets=self.assets, fuse=self.fuse)

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        job = self.spine_job(context)
        io_manager = SpineCheckpointIOManager.from_settings(
            database_url=self.database_url, checkpoint_strategy=self.checkpoint_strategy)
        assets = []
        if job.assets:
            multi_asset, job_def = job.build_assets(io_manager=io_manager, executor="in_process")
            assets.append(multi_asset)
        else:
            job_def = job.build(io_manager=io_manager, executor="in_process")
        schedules = []
        if self.schedule is not None:
            options = dict(params=self.schedule.params,
                           execution_timezone=self.schedule.execution_timezone)
            schedules.append(
                spine_partitioned_schedule(job, cron_schedule=self.schedule.cron_schedule,
                                           **options)
                if job.partitions_def is not None else
                spine_schedule(job, self.schedule.cron_schedule, **options))
        return dg.Definitions(assets=assets or None, jobs=[job_def], schedules=schedules or None,
                              resources=asset_resources() if assets else None)
