"""``WorkflowRunner``: the Spine runner API, on Dagster.

``execute`` launches a Dagster run of the compiled job. ``resume`` plans with the resume rules
(:mod:`spine_dagster.resume`), then carries the plan out as a Dagster *re-execution* of the spine
run's last Dagster run: it shows up in the UI's run lineage, and the steps that have a usable
checkpoint do not run again. When a code location of the workspace (``workspace=``) serves the
workflow, the runs carry its origin, so the UI can re-execute them too.

A script sees one line per step (name, status, duration) and the outcome; ``log_level=`` brings
Dagster's own console log back (and ``progress=True`` keeps the step lines with it).

Example:
    >>> import tempfile
    >>> from dagster import instance_for_test
    >>> from spine_dagster import Step, StepResult, Workflow, WorkflowRunner
    >>> wf = Workflow("docs.runner", [Step.lambda_("one", lambda ctx, cfg: {"x": 1})])
    >>> db_url = f"sqlite:///{tempfile.mkdtemp()}/checkpoints.db"
    >>> with instance_for_test() as instance:
    ...     runner = WorkflowRunner(database_url=db_url, instance=instance, progress=False)
    ...     result = runner.execute(wf, params={"key": "value"})
    ...     checkpoints = runner.list_checkpoints(result.run_id)
    >>> (result.status.value, result.completed_steps, [c.step_name for c in checkpoints])
    ('completed', ['one'], ['one'])
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from datetime import datetime
from typing import Any, Callable, Mapping

from dagster import (
    DagsterEventType,
    DagsterInstance,
    DagsterRunStatus,
    ReexecutionOptions,
    execute_job,
)

from .assets import PARTITIONS_TAG, VIEW_TAG, asset_step_ops
from .code_origin import attach_origin, find_serving_job, workspace_file
from .compiler import EXECUTORS, fuses, node_name, op_groups, reconstructable_job, step_keys, validate
from .context import WorkflowContext
from .errors import (
    CheckpointNotFoundError,
    InvalidParamsError,
    InvalidRetentionError,
    InvalidSettingError,
    UnknownRunError,
    UnknownStepError,
    WorkflowMismatchError,
    WorkflowNotFoundError,
)
from .instance import checked_instance, default_instance
from .io_manager import STRATEGIES, check_settings
from .liveness import LAUNCHER_TAG, launcher_tag, orphaned_reason
from .locate import is_importable, load_workflow, workflow_ref
from .model import Workflow
from .names import FUSE_TAG
from .outcome import dagster_failure, result_from_store, unreachable_category
from .progress import StepProgress, outcome_line
from .records import RESUMED, Checkpoint, RunRecord
from .resources import RESOURCE_KEY
from .results import WorkflowResult, WorkflowStatus
from .resume import (
    ResumeLease,
    ResumePlan,
    check_params_override,
    deep_merge,
    guard_not_running,
    nodes_from,
    plan_resume,
    resume_run_config,
    resume_tags,
)
from .retention import DEFAULT_BATCH_SIZE, cutoff_for
from .retention import cleanup_checkpoints as _cleanup_checkpoints
from .serialization import check_json, to_json_value
from .snapshot import utcnow
from .store import CheckpointStore

AUTO_CLEANUP_INTERVAL_SECONDS = 3600.0
_last_auto_cleanup: dict[str, float] = {}  # one entry per database
_log = logging.getLogger("spine_dagster")
_IN_PROGRESS = {DagsterRunStatus.QUEUED, DagsterRunStatus.NOT_STARTED, DagsterRunStatus.STARTING,
                DagsterRunStatus.STARTED, DagsterRunStatus.CANCELING}
WORKFLOW_TAG = "spine/workflow"
RUN_ID_TAG = "spine/run_id"
__all__ = ["WorkflowRunner", "default_instance", "deep_merge"]


def _params(value: Any, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidParamsError(
            f"{what} must be a mapping of param names to values, got {type(value).__name__}; "
            f"e.g. {what}={{'timeout': 120}}.")
    return {k: v for k, v in value.items() if k != RESUMED}


class WorkflowRunner:
    """Runs Spine workflows as Dagster jobs, with spine-format checkpoints and resume.

    Args:
        database_url: checkpoint database. Default: ``$SPINE_DAGSTER_DATABASE_URL``, else SQLite at
            ``$SPINE_DAGSTER_HOME/checkpoints.db`` (``~/.spine_dagster/checkpoints.db``).
        instance: the Dagster instance. Default: ``$DAGSTER_HOME`` when set, else a persistent
            instance in ``~/.spine_dagster/dagster_home``.
        checkpoint_strategy: ``every_step`` (default) or ``key_steps``.
        checkpoint_retention_days: keep checkpoints this many days. When set, the runner applies
            the retention policy (see ``cleanup_checkpoints``) after each run it executes or
            resumes, at most once an hour per database.
        delete_checkpoints_on_success: delete a run's checkpoints as soon as it completes.
        executor: ``in_process`` (default), ``multiprocess``, or ``dask`` (each op a task on the
            Dask scheduler at ``$DASK_SCHEDULER_ADDRESS``; see :mod:`spine_dagster.dask_executor`).
            Resume a run with a runner that has the same executor.
        max_checkpoint_bytes: the largest checkpoint allowed (a positive number of bytes).
        log_level: level of Dagster's console log (e.g. ``"INFO"``). Default: Dagster's log is
            off and the runner prints one line per step and the outcome instead.
        workspace: a ``workspace.yaml`` (default: ``$SPINE_DAGSTER_WORKSPACE``, else the one in
            the working directory). When one of its code locations serves the workflow's job with
            the same checkpoint database, runs carry that origin, and the Dagster UI can
            re-execute them. ``""`` turns it off.
        progress: print the step lines (default: when ``log_level`` is not set).
        fuse: run consecutive steps in one op (default: each workflow's ``fuse``).
        assets: run workflows as their asset view (:mod:`spine_dagster.assets`): each step
            materializes its asset. A resume follows the view of the run it resumes.
    """

    def __init__(
        self,
        *,
        database_url: str | None = None,
        instance: DagsterInstance | None = None,
        checkpoint_strategy: str = "every_step",
        checkpoint_retention_days: int | None = None,
        executor: str = "in_process",
        max_checkpoint_bytes: int | None = None,
        log_level: str | None = None,
        delete_checkpoints_on_success: bool = False,
        workspace: str | os.PathLike | None = None,
        progress: bool | None = None,
        fuse: bool | None = None,
        assets: bool = False,
    ) -> None:
        if checkpoint_strategy not in STRATEGIES:
            check_settings(checkpoint_strategy=checkpoint_strategy)
        check_settings(max_checkpoint_bytes=max_checkpoint_bytes)
        if executor not in EXECUTORS:
            raise InvalidSettingError(f"unknown executor {executor!r}; use one of {EXECUTORS}")
        if checkpoint_retention_days is not None:
            cutoff_for(checkpoint_retention_days)  # refuse a bad period now, not after a run
        self.store: CheckpointStore = CheckpointStore.for_url(database_url)
        self.database_url = self.store.url
        self._instance = instance
        self._instance_checked = False
        self.checkpoint_strategy = checkpoint_strategy
        self.checkpoint_retention_days = checkpoint_retention_days
        self.executor = executor
        self.max_checkpoint_bytes = max_checkpoint_bytes
        self.log_level = log_level
        self.delete_checkpoints_on_success = delete_checkpoints_on_success
        self.workspace = workspace_file(workspace)
        self.progress = progress if progress is not None else log_level is None
        self.fuse = fuse
        self.assets = assets
        self.emit: Callable[[str], Any] = print

    @property
    def instance(self) -> DagsterInstance:
        """The Dagster instance, checked on first use (``InstanceConfigError``, before a run)."""
        if not self._instance_checked:
            self._instance = checked_instance(self._instance or default_instance())
            self._instance_checked = True
        return self._instance

    # -- running ----------------------------------------------------------------------------------
    def execute(
        self,
        workflow: Workflow,
        *,
        params: Mapping[str, Any] | None = None,
        partition: Any = None,
        context: WorkflowContext | None = None,
        start_from: str | None = None,
        run_id: str | None = None,
    ) -> WorkflowResult:
        """Run ``workflow``.

        * ``execute(wf, params=...)``: a new spine run with a new run id.
        * ``execute(wf, run_id=X, start_from=S)``: run again from step S in run X, from the newest
          usable checkpoint before S (a Dagster re-execution of X); the checkpoints of S and the
          steps after it are superseded. ``params`` are applied over the checkpointed params.
        * ``execute(wf, context=ctx, start_from=S)``: run from S with ``ctx`` as the context. When
          ``ctx.run_id`` is an existing run, this continues that run.
        """
        validate(workflow)
        base_params = _params(params, "params")
        check_json(base_params, "params")
        check_json(partition, "partition")
        if context is not None:
            if not isinstance(context, WorkflowContext):
                raise InvalidParamsError(
                    f"context must be a WorkflowContext (e.g. get_checkpoint(...).context), got "
                    f"{type(context).__name__}.")
            check_json(context.to_dict(), "context")
        if start_from is not None and workflow.step_index(start_from) < 0:
            raise UnknownStepError(
                f"start_from={start_from!r} names no step of workflow {workflow.name!r}; its "
                f"steps are {workflow.step_names()}.", hint="Pass one of them as start_from=.",
                cli_hint="Pass one of them as --start-from STEP.")
        self.store.check()
        existing_id = run_id or (context.run_id if context is not None else None)
        record = self.store.get_run(existing_id) if existing_id else None
        if run_id is not None and record is None:
            raise UnknownRunError(self._unknown(run_id))
        if record is not None:
            self._check_workflow(workflow, record)
            record = self._reconcile(record)
            plan = plan_resume(self.store, record, workflow.signature(),
                               params_override=base_params or None,
                               start_from=start_from or workflow.steps[0].name,
                               start_context=context is not None,
                               context_outputs=context.outputs if context else None)
            return self._carry_out(workflow, record, plan, resume_retry=False,
                                   start_context=context.to_dict() if context else None,
                                   statuses=("completed", "failed", "partial", "running"))
        spine_id = (context.run_id if context is not None else None) or str(uuid.uuid4())
        config: dict[str, Any] = {"params": base_params}
        if partition is not None:
            config["partition"] = partition
        selection = None
        start_index = workflow.step_index(start_from) if start_from else 0
        if context is not None or start_index > 0:
            start = context or WorkflowContext.create(
                workflow.name, {**workflow.defaults, **base_params}, partition, run_id=spine_id)
            config.update(start_from=workflow.steps[start_index].name,
                          start_context=start.to_dict())
            if context is not None and not params:
                config["params"] = dict(context.params)
            if start_index and self.assets:
                raise InvalidSettingError(
                    "a new run of the asset view cannot start at a later step; run it whole, "
                    "or continue an existing run with execute(wf, run_id=..., start_from=...).")
            if start_index:
                selection = [f"{self._node_of(workflow, start_index)}*"]
        run_config = {"resources": {RESOURCE_KEY: {"config": to_json_value(config, what="params")}}}
        tags = {RUN_ID_TAG: spine_id, WORKFLOW_TAG: workflow.name, LAUNCHER_TAG: launcher_tag()}
        return self._run(workflow, spine_id, run_config, tags, op_selection=selection,
                         fuse=fuses(workflow, self.fuse))

    def plan_resume(self, run_id: str, *, params_override: Mapping[str, Any] | None = None,
                    start_from: str | None = None, workflow: Workflow | None = None,
                    on_stale: str = "warn") -> ResumePlan:
        """What ``resume`` would do, without launching anything (see :mod:`spine_dagster.resume`)."""
        record = self.get_run(run_id)
        workflow = workflow or self._workflow_of(record)
        self._check_workflow(workflow, record)
        return plan_resume(self.store, record, workflow.signature(),
                           params_override=params_override, start_from=start_from,
                           on_stale=on_stale)

    def resume(self, run_id: str, *, params_override: Mapping[str, Any] | None = None,
               workflow: Workflow | None = None, webserver: str | None = None,
               on_stale: str = "warn", run_config_override: Mapping[str, Any] | None = None,
               start_from: str | None = None, **client_options: Any) -> WorkflowResult:
        """Resume a failed run from its last usable checkpoint, as a Dagster re-execution.

        ``params_override`` is merged into the checkpointed params; the resumed steps see
        ``ctx.params["__resumed__"] == True``. The spine run id does not change. ``on_stale``
        (``warn``, ``rerun``, ``error``) says what to do when the override changes a param that a
        reused step read; ``run_config_override`` is deep-merged over the failed run's config (op
        config, resources, executor). See :meth:`plan_resume` for the plan.

        With ``webserver="http://HOST:PORT"`` the re-execution is launched through that Dagster
        deployment (its run launcher, run group and run retries; see ``SpineDagsterClient``;
        ``client_options`` such as ``headers=`` or ``api_token=`` go to it) and this waits for it.
        """
        check_params_override(params_override)
        if webserver is not None:
            from .client import SpineDagsterClient  # noqa: PLC0415 - only this path needs it

            if workflow is not None:
                self._check_workflow(workflow, self._require_run(run_id))
            client = SpineDagsterClient(webserver, database_url=self.database_url,
                                        **client_options)
            return client.resume_and_wait(run_id, params_override=params_override,
                                          on_stale=on_stale, start_from=start_from,
                                          run_config_override=run_config_override)
        record = self.get_run(run_id)
        workflow = workflow or self._workflow_of(record)
        self._check_workflow(workflow, record)
        plan = plan_resume(self.store, record, workflow.signature(),
                           params_override=params_override, start_from=start_from,
                           on_stale=on_stale)
        for warning in plan.warnings:
            _log.warning("spine_dagster: resume of run %s: %s", record.run_id, warning)
            if self.progress:
                self.emit(f"warning: {warning}")
        return self._carry_out(workflow, record, plan, run_config_override=run_config_override,
                               resume_retry=start_from is None,
                               statuses=("failed", "partial", "running") if start_from is None
                               else ("completed", "failed", "partial", "running"))

    # -- inspecting -------------------------------------------------------------------------------
    def get_run(self, run_id: str) -> RunRecord:
        """The spine run with this id (or with this Dagster run in its lineage)."""
        return self._reconcile(self._require_run(run_id))

    def list_checkpoints(self, run_id: str, *, skip_damaged: bool = False) -> list[Checkpoint]:
        """The run's checkpoints in workflow order; superseded ones included (``.state``).
        Damaged rows: see ``CheckpointStore.list_checkpoints``."""
        spine_id = self.store.resolve_run_id(run_id)  # reads nothing that could be damaged
        if spine_id is None:
            raise UnknownRunError(self._unknown(run_id))
        return self.store.list_checkpoints(spine_id, skip_damaged=skip_damaged)

    def get_checkpoint(self, run_id: str, step: str) -> Checkpoint:
        record = self._require_run(run_id)
        checkpoint = self.store.get_checkpoint(record.run_id, step)
        if checkpoint is None:
            have = [c[0] for c in self.store.list_checkpoint_steps(record.run_id)]
            raise CheckpointNotFoundError(
                f"run {record.run_id!r} has no checkpoint for step {step!r}. Steps with a "
                f"checkpoint: {have or 'none'}.")
        return checkpoint

    def delete_checkpoints(self, run_id: str) -> int:
        """Delete every checkpoint of a run, damaged ones too; returns how many were deleted."""
        found = self.store.stored_status(run_id)  # reads no row that could be damaged
        if found is None:
            raise UnknownRunError(self._unknown(run_id))
        return self.store.delete_checkpoints(found[0])

    def cleanup_checkpoints(self, retention_days: float | None = None, *, dry_run: bool = False,
                            batch_size: int = DEFAULT_BATCH_SIZE) -> int:
        """Apply the retention policy; returns how many checkpoints were deleted (or are due).

        Deletes the checkpoints older than ``retention_days`` (default: the runner's
        ``checkpoint_retention_days``), except those of runs that failed within that time.
        Nothing of a running run (or of one being resumed) is touched. Deletes ``batch_size``
        rows per short transaction; ``dry_run`` only counts.
        """
        days = retention_days if retention_days is not None else self.checkpoint_retention_days
        if days is None:
            raise InvalidRetentionError(
                "no retention period given.",
                hint="Pass retention_days=N, or create the runner with "
                     "WorkflowRunner(checkpoint_retention_days=N).",
                cli_hint="Pass --retention-days N (e.g. --retention-days 7).")
        return _cleanup_checkpoints(self.database_url, days, dry_run=dry_run,
                                    batch_size=batch_size)

    # -- internals --------------------------------------------------------------------------------
    def _unknown(self, run_id: str) -> str:
        return (f"no spine run or Dagster run with id {run_id!r} in the checkpoint database at "
                f"{self.store.display_url}. List runs with: spine-dagster runs")

    def _require_run(self, run_id: str) -> RunRecord:
        record = self.store.get_run(run_id)
        if record is None:
            raise UnknownRunError(self._unknown(run_id))
        return record

    def _workflow_of(self, record: RunRecord) -> Workflow:
        if not record.workflow_ref:
            raise WorkflowNotFoundError(
                f"run {record.run_id!r} did not record where workflow {record.workflow_name!r} "
                f"is defined; pass workflow= to resume().")
        return load_workflow(record.workflow_ref, workflow_name=record.workflow_name)

    def _check_workflow(self, workflow: Workflow, record: RunRecord) -> None:
        if workflow.name != record.workflow_name:
            raise WorkflowMismatchError(
                f"run {record.run_id!r} is a run of workflow {record.workflow_name!r}, not "
                f"{workflow.name!r}; pass the workflow the run was started with.")

    def _node_of(self, workflow: Workflow, index: int) -> str:
        keys = step_keys(workflow)
        for group in op_groups(workflow, fuses(workflow, self.fuse)):
            if index in group:
                return node_name(keys, group)
        raise UnknownStepError(f"no op runs step {index}")  # pragma: no cover

    def _ops(self, workflow: Workflow, fuse: bool, assets: bool = False) -> dict[str, list[str]]:
        if assets:
            return asset_step_ops(workflow, fuse)
        keys = step_keys(workflow)
        return {node_name(keys, g): [workflow.steps[i].name for i in g]
                for g in op_groups(workflow, fuse)}

    def _reconcile(self, record: RunRecord) -> RunRecord:
        """A ``running`` run whose Dagster run ended, or whose process died (see liveness.py), is
        ``failed``: its Dagster run too, and the step it was running. Why it failed comes from
        Dagster's own record of the failure (a database outage says so)."""
        if record.status is not WorkflowStatus.RUNNING or not record.last_dagster_run_id:
            return record
        dagster_run = self.instance.get_run_by_id(record.last_dagster_run_id)
        if dagster_run is None or dagster_run.status is DagsterRunStatus.SUCCESS:
            return record
        category = "INTERNAL"
        if dagster_run.status in _IN_PROGRESS:
            orphaned = orphaned_reason(self.instance, dagster_run)
            if orphaned is None:
                return record
            # Its process died (see liveness.py): say so in Dagster too, so that the UI and
            # Dagster's own re-execution see a failed run rather than one running forever.
            self.instance.report_run_failed(dagster_run, f"spine_dagster: {orphaned}")
            self.store.delete_transit(dagster_run.run_id)
            error = orphaned
        else:
            error, category = self._failure_of(dagster_run.run_id)
        running = [row.step_name for row in self.store.step_rows(record.run_id).values()
                   if row.status == "running" and row.dagster_run_id == dagster_run.run_id]
        if running:
            self.store.fail_step(run_id=record.run_id, step_name=running[0],
                                 dagster_run_id=dagster_run.run_id, error=error,
                                 error_category=category)
        else:
            self.store.mark_run(record.run_id, WorkflowStatus.FAILED, error=error,
                                error_step=record.error_step, error_category=category)
        self._attach_origin(record.workflow_name, dagster_run)
        return self.store.get_run(record.run_id)

    def _failure_of(self, dagster_run_id: str) -> tuple[str, str]:
        """Why a Dagster run failed before its step could record it: (error, category)."""
        try:
            records = self.instance.get_records_for_run(
                dagster_run_id, of_type=DagsterEventType.STEP_FAILURE, limit=1).records
        except Exception:  # noqa: BLE001 - then only the generic reason is known
            records = []
        event = records[0].event_log_entry.dagster_event if records else None
        data = event.step_failure_data if event is not None else None
        if data is not None and data.error is not None:
            text = f"{data.error.cls_name}: {data.error.message}"
            cause = data.error.cause
            while cause is not None:
                text += f" (caused by {cause.cls_name}: {cause.message.strip()})"
                cause = cause.cause
            category = unreachable_category(text)
            if category:
                named = (data.user_failure_data.metadata or {}).get("spine/step") \
                    if data.user_failure_data else None
                step = getattr(named, "value", named) or event.step_key
                return (f"the checkpoint database was unreachable during step "
                        f"{step!r}: {text.strip()}", category)
            return text.strip(), "INTERNAL"
        return (f"Dagster run {dagster_run_id} ended before the step reported (the process was "
                f"killed, or the run was canceled)", "INTERNAL")

    def _busy(self, record: RunRecord) -> Callable[[], str | None]:
        def busy() -> str | None:
            last = record.last_dagster_run_id
            dagster_run = self.instance.get_run_by_id(last) if last else None
            if dagster_run is not None and dagster_run.status in _IN_PROGRESS:
                return f"Dagster run {last} is {dagster_run.status.value}"
            return None

        return busy

    def _with_logging(self, run_config: dict[str, Any]) -> dict[str, Any]:
        level = (self.log_level or "CRITICAL").upper()
        return deep_merge(run_config, {"loggers": {"console": {"config": {"log_level": level}}}})

    def _job(self, workflow: Workflow, name: str | None, fuse: bool, assets: bool = False,
             partitions: str | None = None):
        ref = workflow_ref(workflow)
        if self.executor != "in_process" and not is_importable(ref):
            raise WorkflowNotFoundError(
                f"workflow {workflow.name!r} was built inside a function, so the "
                f"{self.executor} executor's step processes cannot import it. Define it at module "
                f"level in an importable module (or a script), or use executor='in_process'.")
        return reconstructable_job(workflow, ref=ref, database_url=self.database_url,
                                   checkpoint_strategy=self.checkpoint_strategy,
                                   max_checkpoint_bytes=self.max_checkpoint_bytes,
                                   executor=self.executor, fuse=fuse, name=name,
                                   delete_checkpoints_on_success=(
                                       self.delete_checkpoints_on_success or None),
                                   loader="load_asset_job" if assets else "load_job",
                                   partitions_def=partitions)

    def _carry_out(self, workflow: Workflow, record: RunRecord, plan: ResumePlan, *,
                   resume_retry: bool,
                   statuses: tuple[str, ...], start_context: Mapping[str, Any] | None = None,
                   run_config_override: Mapping[str, Any] | None = None) -> WorkflowResult:
        """Carry out ``plan``: a re-execution of the run's last Dagster run from its start."""
        parent_id = plan.parent_dagster_run_id
        parent = self.instance.get_run_by_id(parent_id) if parent_id else None
        if parent is None:
            raise UnknownRunError(
                f"run {record.run_id!r} has no Dagster run {parent_id!r} in this Dagster instance "
                f"({self.instance.root_directory}); use the instance the run was started with "
                f"(DAGSTER_HOME).")
        if parent.job_name.startswith("__ASSET_JOB"):
            raise WorkflowMismatchError(
                f"Dagster run {parent.run_id} is a run of Dagster's implicit asset job (the UI's "
                f"Materialize, or an asset backfill): re-execute it from the Dagster UI (from "
                f"failure, or from asset failure), or launch the workflow's own job.")
        guard_not_running(record, self._busy(record))
        with ResumeLease(self.store, record.run_id, statuses,
                         planned_from=record.last_dagster_run_id):
            run_config = resume_run_config(parent.run_config, plan,
                                           run_config_override=run_config_override,
                                           start_context=start_context)
            tags = resume_tags(parent.tags, parent_run_id=parent.run_id,
                               root_run_id=parent.root_run_id or parent.run_id,
                               spine_run_id=record.run_id, workflow_name=workflow.name,
                               resume_retry=resume_retry)
            tags[LAUNCHER_TAG] = launcher_tag()
            assets = parent.tags.get(VIEW_TAG) == "assets"
            partitions = parent.tags.get(PARTITIONS_TAG) if assets else None
            # A re-execution needs the parent's op layout (fused or not), whatever this runner's.
            fuse = {"true": True, "false": False}.get(parent.tags.get(FUSE_TAG),
                                                      fuses(workflow, self.fuse))
            options = ReexecutionOptions(parent_run_id=parent.run_id, step_selection=nodes_from(
                plan, self._ops(workflow, fuse, assets)))
            # A resume starts from checkpoints only: transit rows the parent left behind (its
            # process died before the failing step could drop them) are garbage now.
            self.store.delete_transit(parent.run_id)
            result = self._run(workflow, record.run_id, run_config, tags,
                               reexecution_options=options, job_name=parent.job_name,
                               fuse=fuse, assets=assets, partitions=partitions)
        result.warnings = list(plan.warnings)
        result.plan = plan
        return result

    def _run(self, workflow: Workflow, spine_id: str, run_config: dict[str, Any],
             tags: dict[str, str], *, reexecution_options: ReexecutionOptions | None = None,
             op_selection: list[str] | None = None, job_name: str | None = None,
             fuse: bool = False, assets: bool | None = None,
             partitions: str | None = None) -> WorkflowResult:
        assets = self.assets if assets is None else assets
        instance = self.instance  # a bad dagster.yaml is an error here, before any run exists
        serving = find_serving_job(self.workspace, workflow.name, self.database_url, fuse=fuse)
        name = job_name or (serving.job_name if serving else None)
        job = self._job(workflow, name, fuse, assets, partitions)
        progress = StepProgress(self.store, spine_id, self.emit).start() if self.progress else None
        started = utcnow()
        try:
            result = execute_job(job, instance=instance,
                                 run_config=self._with_logging(run_config), tags=tags,
                                 raise_on_error=False, op_selection=op_selection,
                                 reexecution_options=reexecution_options)
        finally:
            if progress is not None:
                progress.finish()
        if serving is not None:
            attach_origin(instance, result.run_id, serving)
        self._auto_cleanup()
        outcome = self._result(workflow, spine_id, result, started, fuse, assets)
        if progress is not None:
            self.emit(outcome_line(outcome))
        return outcome

    def _attach_origin(self, workflow_name: str, dagster_run: Any) -> None:
        fuse = {"true": True, "false": False}.get(dagster_run.tags.get(FUSE_TAG), False)
        serving = find_serving_job(self.workspace, workflow_name, self.database_url, fuse=fuse)
        if serving is not None:
            attach_origin(self.instance, dagster_run.run_id, serving)

    def _auto_cleanup(self) -> None:
        """With ``checkpoint_retention_days``: the retention policy, at most hourly per database."""
        if self.checkpoint_retention_days is None:
            return
        now = time.monotonic()
        last = _last_auto_cleanup.get(self.database_url)
        if last is not None and now - last < AUTO_CLEANUP_INTERVAL_SECONDS:
            return
        _last_auto_cleanup[self.database_url] = now
        try:
            deleted = self.cleanup_checkpoints()
        except Exception as exc:  # noqa: BLE001 - housekeeping must not turn a run into an error
            _log.warning("spine_dagster: checkpoint cleanup after the run failed: %s", exc)
            return
        if deleted:
            _log.info("spine_dagster: deleted %d checkpoint(s) older than %s days", deleted,
                      self.checkpoint_retention_days)

    def _result(self, workflow: Workflow, spine_id: str, result: Any, started: datetime,
                fuse: bool, assets: bool = False) -> WorkflowResult:
        message, step, cls = (None, None, None) if result.success else dagster_failure(
            result, {node: steps[0] for node, steps in self._ops(workflow, fuse, assets).items()})
        return result_from_store(
            self.store, workflow_name=workflow.name, step_names=workflow.step_names(),
            spine_id=spine_id, dagster_run_id=result.run_id, success=result.success,
            failure=message or (None if result.success else f"Dagster run {result.run_id} failed"),
            started=started, failed_step=step, failure_class=cls)
