"""``WorkflowRunner``: the Spine runner API, on Dagster.

``execute`` launches a Dagster run of the compiled job. ``resume`` is a Dagster *re-execution* of the
spine run's last Dagster run: it shows up in the UI's run lineage, and the steps that have a
checkpoint do not run again.

Example:
    >>> import tempfile
    >>> from dagster import instance_for_test
    >>> from spine_dagster import Step, StepResult, Workflow, WorkflowRunner
    >>> wf = Workflow("docs.runner", [Step.lambda_("one", lambda ctx, cfg: {"x": 1})])
    >>> db_url = f"sqlite:///{tempfile.mkdtemp()}/checkpoints.db"
    >>> with instance_for_test() as instance:
    ...     runner = WorkflowRunner(database_url=db_url, instance=instance, log_level="ERROR")
    ...     result = runner.execute(wf, params={"key": "value"})
    ...     checkpoints = runner.list_checkpoints(result.run_id)
    >>> (result.status.value, result.completed_steps, [c.step_name for c in checkpoints])
    ('completed', ['one'], ['one'])
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from datetime import datetime
from typing import Any, Callable, Mapping

from dagster import DagsterInstance, DagsterRunStatus, ReexecutionOptions, execute_job

from . import db
from .compiler import RESUMED, WORKFLOW_TAG, reconstructable_job, step_keys, validate
from .context import WorkflowContext
from .errors import (
    CheckpointNotFoundError,
    CheckpointWriteError,
    InvalidRetentionError,
    InvalidWorkflowError,
    NothingToResumeError,
    RunInProgressError,
    UnknownRunError,
    UnknownStepError,
    WorkflowChangedError,
    WorkflowMismatchError,
    WorkflowNotFoundError,
)
from .io_manager import RUN_ID_TAG, STRATEGIES, flush_checkpoints, store_for
from .liveness import LAUNCHER_TAG, launcher_tag, orphaned_reason
from .locate import is_importable, load_workflow, workflow_ref
from .model import Workflow
from .resources import RESOURCE_KEY
from .retention import DEFAULT_BATCH_SIZE, cutoff_for
from .retention import cleanup_checkpoints as _cleanup_checkpoints
from .results import StepExecution, WorkflowResult, WorkflowStatus
from .serialization import check_json, dumps
from .store import Checkpoint, CheckpointStore, RunRecord, utcnow

LEASE_SECONDS = 60.0
AUTO_CLEANUP_INTERVAL_SECONDS = 3600.0
_last_auto_cleanup: dict[str, float] = {}
_log = logging.getLogger("spine_dagster")
_IN_PROGRESS = {DagsterRunStatus.QUEUED, DagsterRunStatus.NOT_STARTED, DagsterRunStatus.STARTING,
                DagsterRunStatus.STARTED, DagsterRunStatus.CANCELING}
_KEEP_DAGSTER_TAGS = ("dagster/partition",)


def default_instance() -> DagsterInstance:
    """``$DAGSTER_HOME`` when set, else a persistent instance in ``<spine home>/dagster_home``."""
    if os.environ.get("DAGSTER_HOME"):
        return DagsterInstance.get()
    home = db.spine_home() / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text("telemetry:\n  enabled: false\n")
    return DagsterInstance.from_config(str(home))


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``override`` merged into a copy of ``base``; nested dicts merge, everything else replaces."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _spine_config(**values: Any) -> dict[str, Any]:
    return {"resources": {RESOURCE_KEY: {"config": values}}}


def _json_safe(value: Any, what: str) -> Any:
    """Run config must be plain JSON: tagged values (dates...) go in their stored form."""
    import json

    return json.loads(dumps(value, what=what))


def resume_overrides(params_override: Mapping[str, Any] | None) -> dict[str, Any]:
    """The run config a resume merges over the parent's: the params and ``params_override``."""
    check_json(dict(params_override or {}), "params_override")
    override = _json_safe(dict(params_override or {}), "params_override")
    return _spine_config(params=override, params_override=override)


def reexecution_run_config(parent_config: Mapping[str, Any],
                           overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The parent run's config without its one-shot start settings, ``overrides`` merged in.

    A Dagster re-execution does not merge configs: it needs the whole config.
    """
    base = dict(parent_config or {})
    spine = dict(base.get("resources", {}).get(RESOURCE_KEY, {}).get("config", {}))
    for key in ("start_from", "start_checkpoint", "start_context", "params_override"):
        spine.pop(key, None)
    base = deep_merge(base, {"resources": {RESOURCE_KEY: {"config": {}}}})
    base["resources"][RESOURCE_KEY]["config"] = spine
    return deep_merge(base, overrides)


def reexecution_tags(parent_tags: Mapping[str, str], *, parent_run_id: str, root_run_id: str,
                     spine_run_id: str, workflow_name: str) -> dict[str, str]:
    """The parent's own tags (not its launcher), the spine run id, and the run-group tags."""
    tags = {k: v for k, v in parent_tags.items() if k != LAUNCHER_TAG
            and (not k.startswith("dagster/") or k.startswith(_KEEP_DAGSTER_TAGS))}
    tags.update({RUN_ID_TAG: spine_run_id, WORKFLOW_TAG: workflow_name,
                 "dagster/parent_run_id": parent_run_id, "dagster/root_run_id": root_run_id})
    return tags


def resume_index(store: CheckpointStore, run_id: str, step_index: Callable[[str], int]) -> int:
    """Where a resume starts: the step after the checkpoint written last (0 if there is none).

    ``step_index`` maps a step name to its position in the workflow.
    """
    written = store.list_checkpoint_steps(run_id)
    if not written:
        return 0
    _, name = max((created, name) for name, _, created in written)
    return step_index(name) + 1


class _Lease:
    """Holds a run's resume lease and renews it until released."""

    def __init__(self, store: CheckpointStore, run_id: str) -> None:
        self.store, self.run_id = store, run_id
        self.owner = uuid.uuid4().hex
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> _Lease:
        self._thread = threading.Thread(target=self._renew, daemon=True)
        self._thread.start()
        return self

    def _renew(self) -> None:
        while not self._stop.wait(LEASE_SECONDS / 3):
            try:
                self.store.renew_lease(self.run_id, self.owner, LEASE_SECONDS)
            except Exception:  # noqa: BLE001 - the run itself will report a database outage
                pass

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self.store.release_lease(self.run_id, self.owner)


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
            resumes, at most once an hour per database. Deployments that launch runs from the
            Dagster UI use the daily ``retention.cleanup_schedule`` in ``build_definitions``.
        delete_checkpoints_on_success: delete a run's checkpoints as soon as it completes
            successfully (its final context stays in ``get_run``). Set in the job's IO manager, so
            it also holds for the runner's re-executions.
        executor: ``in_process`` (default) or ``multiprocess``.
        max_checkpoint_bytes: the largest checkpoint allowed.
        log_level: level of Dagster's console logger for runs this runner launches (e.g.
            ``"WARNING"``); default: Dagster's (``DEBUG``).
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
    ) -> None:
        if checkpoint_strategy not in STRATEGIES:
            raise InvalidWorkflowError(
                f"unknown checkpoint_strategy {checkpoint_strategy!r}; use one of {STRATEGIES}")
        if checkpoint_retention_days is not None:
            cutoff_for(checkpoint_retention_days)  # refuse a bad period now, not after a run
        self.database_url = db.resolve_url(database_url)
        self.store: CheckpointStore = store_for(self.database_url)
        self._instance = instance
        self.checkpoint_strategy = checkpoint_strategy
        self.checkpoint_retention_days = checkpoint_retention_days
        self.executor = executor
        self.max_checkpoint_bytes = max_checkpoint_bytes
        self.log_level = log_level
        self.delete_checkpoints_on_success = delete_checkpoints_on_success

    @property
    def instance(self) -> DagsterInstance:
        if self._instance is None:
            self._instance = default_instance()
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
        * ``execute(wf, run_id=X, start_from=S)``: continue run X at step S, from the newest
          checkpoint before S (a Dagster re-execution of X).
        * ``execute(wf, context=ctx, start_from=S)``: run from S with ``ctx`` as the context. When
          ``ctx.run_id`` is an existing run, this continues that run.
        """
        validate(workflow)
        keys = step_keys(workflow)
        self.store.check()
        if start_from is not None and workflow.step_index(start_from) < 0:
            raise UnknownStepError(
                f"start_from={start_from!r} names no step of workflow {workflow.name!r}; its steps "
                f"are {workflow.step_names()}")
        start_index = workflow.step_index(start_from) if start_from else 0
        base_params = {k: v for k, v in (params or {}).items() if k != RESUMED}
        check_json(base_params, "params")
        check_json(partition, "partition")
        if context is not None:
            check_json(context.to_dict(), "context")

        existing_id = run_id or (context.run_id if context is not None else None)
        record = self.store.get_run(existing_id) if existing_id else None
        if run_id is not None and record is None:
            raise UnknownRunError(self._unknown(run_id))
        if record is not None:
            self._check_workflow(workflow, record)
            config: dict[str, Any] = {"start_from": workflow.steps[start_index].name}
            if params:
                config["params"] = _json_safe(base_params, "params")
            if context is not None:
                config["start_context"] = _json_safe(context.to_dict(), "context")
            elif start_index > 0:
                config["start_checkpoint"] = self._checkpoint_before(record, workflow, start_index)
            with self._lease(record, statuses=("completed", "failed", "partial", "running")):
                return self._reexecute(workflow, record, _spine_config(**config), keys[start_index:])

        spine_id = (context.run_id if context is not None else None) or str(uuid.uuid4())
        config = {"params": base_params}
        if partition is not None:
            config["partition"] = partition
        selection = None
        if context is not None or start_index > 0:
            start = context or WorkflowContext.create(
                workflow.name, {**workflow.defaults, **base_params}, partition, run_id=spine_id)
            config.update(start_from=workflow.steps[start_index].name,
                          start_context=_json_safe(start.to_dict(), "context"))
            if context is not None and not params:
                config["params"] = _json_safe(dict(context.params), "params")
            selection = [f"{key}*" for key in keys[start_index:start_index + 1]] if start_index else None
        return self._launch(workflow, spine_id, _json_safe(_spine_config(**config), "params"),
                            selection)

    def resume(self, run_id: str, *, params_override: Mapping[str, Any] | None = None,
               workflow: Workflow | None = None, webserver: str | None = None) -> WorkflowResult:
        """Resume a failed run from its last checkpoint, as a Dagster re-execution.

        ``params_override`` is merged into the checkpointed params; the resumed steps see
        ``ctx.params["__resumed__"] == True``. The spine run id does not change.

        With ``webserver="http://HOST:PORT"`` the re-execution is launched through that Dagster
        deployment (its run launcher, run group and run retries; see ``SpineDagsterClient``) and
        this waits for it. The deployment must use this runner's checkpoint database.
        """
        if webserver is not None:
            from .client import SpineDagsterClient  # noqa: PLC0415 - client imports this module

            if workflow is not None:
                self._check_workflow(workflow, self._require_run(run_id))
            return SpineDagsterClient(webserver, database_url=self.database_url).resume_and_wait(
                run_id, params_override=params_override)
        record = self._require_run(run_id)
        if record.status is WorkflowStatus.COMPLETED:
            raise NothingToResumeError(
                f"run {record.run_id!r} completed; there is nothing to resume. To run it again, "
                f"start a new run with execute(workflow, params=runner.get_run("
                f"{record.run_id!r}).context.params), or re-run part of it with "
                f"execute(workflow, run_id={record.run_id!r}, start_from=STEP).")
        if workflow is None:
            if not record.workflow_ref:
                raise WorkflowNotFoundError(
                    f"run {record.run_id!r} did not record where workflow "
                    f"{record.workflow_name!r} is defined; pass workflow= to resume().")
            workflow = load_workflow(record.workflow_ref, workflow_name=record.workflow_name)
        self._check_workflow(workflow, record)
        keys = step_keys(workflow)
        start_index = self._resume_index(workflow, record)
        self._check_unchanged(workflow, record, start_index)
        if start_index >= len(keys):
            raise NothingToResumeError(
                f"run {record.run_id!r}: every step up to the last one has a checkpoint; there "
                f"is nothing to resume.")
        config = resume_overrides(params_override)
        with self._lease(record, statuses=("failed", "partial", "running")):
            return self._reexecute(workflow, record, config, keys[start_index:])

    # -- inspecting -------------------------------------------------------------------------------
    def get_run(self, run_id: str) -> RunRecord:
        """The spine run with this id (or with this Dagster run in its lineage)."""
        record = self._require_run(run_id)
        return self._reconcile(record)

    def list_checkpoints(self, run_id: str) -> list[Checkpoint]:
        return self.store.list_checkpoints(self._require_run(run_id).run_id)

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
        """Delete every checkpoint of a run; returns how many were deleted."""
        return self.store.delete_checkpoints(self._require_run(run_id).run_id)

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
                "no retention period: pass retention_days=N, or create the runner with "
                "WorkflowRunner(checkpoint_retention_days=N).")
        return _cleanup_checkpoints(self.database_url, days, dry_run=dry_run,
                                    batch_size=batch_size)

    # -- internals --------------------------------------------------------------------------------
    def _unknown(self, run_id: str) -> str:
        return (f"no spine run or Dagster run with id {run_id!r} in the checkpoint database at "
                f"{self.store.display_url}. List runs with: spine-dagster runs")

    def _require_run(self, run_id: str) -> RunRecord:
        record = self.store.get_run(run_id) if run_id else None
        if record is None:
            raise UnknownRunError(self._unknown(run_id))
        return record

    def _check_workflow(self, workflow: Workflow, record: RunRecord) -> None:
        if workflow.name != record.workflow_name:
            raise WorkflowMismatchError(
                f"run {record.run_id!r} is a run of workflow {record.workflow_name!r}, not "
                f"{workflow.name!r}; pass the workflow the run was started with.")

    def _check_unchanged(self, workflow: Workflow, record: RunRecord, start_index: int) -> None:
        """The steps whose checkpoints a resume builds on must be the steps that wrote them."""
        recorded = record.workflow_signature
        if recorded is None:
            return
        current = workflow.signature()
        end = start_index + 1
        if [list(s) for s in recorded[:end]] != current[:end]:
            raise WorkflowChangedError(
                f"workflow {workflow.name!r} changed since run {record.run_id!r} wrote its "
                f"checkpoints: its steps up to the resume point were "
                f"{[s[0] for s in recorded[:end]]} ({recorded[:end]}), now "
                f"{[s[0] for s in current[:end]]} ({current[:end]}). Resuming would continue from "
                f"a context the current steps did not produce. Start a new run with "
                f"execute(workflow, params=runner.get_run({record.run_id!r}).context.params), or "
                f"restore the previous workflow to resume.")

    def _checkpoint_before(self, record: RunRecord, workflow: Workflow, index: int) -> str:
        before = [(created, name) for name, i, created in
                  self.store.list_checkpoint_steps(record.run_id) if i < index]
        if not before:
            raise CheckpointNotFoundError(
                f"run {record.run_id!r} has no checkpoint before step "
                f"{workflow.steps[index].name!r}, so there is no context to start it from. Pass "
                f"context= (e.g. from get_checkpoint) or start from an earlier step.")
        return max(before)[1]

    def _resume_index(self, workflow: Workflow, record: RunRecord) -> int:
        return resume_index(self.store, record.run_id, workflow.step_index)

    def _reconcile(self, record: RunRecord) -> RunRecord:
        """A ``running`` run whose Dagster run ended, or whose process died (see liveness.py), is
        ``failed``: its Dagster run too, and the step it was running."""
        if record.status is not WorkflowStatus.RUNNING or not record.last_dagster_run_id:
            return record
        dagster_run = self.instance.get_run_by_id(record.last_dagster_run_id)
        if dagster_run is None or dagster_run.status is DagsterRunStatus.SUCCESS:
            return record
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
            error = (f"Dagster run {dagster_run.run_id} ended {dagster_run.status.value} before "
                     f"the step reported (the process was killed, or the run was canceled)")
        running = [row.step_name for row in self.store.step_rows(record.run_id).values()
                   if row.status == "running" and row.dagster_run_id == dagster_run.run_id]
        if running:
            self.store.fail_step(run_id=record.run_id, step_name=running[0],
                                 dagster_run_id=dagster_run.run_id, error=error,
                                 error_category="INTERNAL")
        else:
            self.store.mark_run(record.run_id, WorkflowStatus.FAILED, error=error,
                                error_step=record.error_step, error_category="INTERNAL")
        return self.store.get_run(record.run_id)

    def _lease(self, record: RunRecord, statuses: tuple[str, ...]) -> _Lease:
        record = self._reconcile(record)
        last = record.last_dagster_run_id
        dagster_run = self.instance.get_run_by_id(last) if last else None
        if dagster_run is not None and dagster_run.status in _IN_PROGRESS:
            raise RunInProgressError(
                f"run {record.run_id!r} is still running (Dagster run {last} is "
                f"{dagster_run.status.value}); wait for it to finish, or terminate it first. If "
                f"the process running it died on another machine, mark it failed first: Terminate "
                f"(force) in the Dagster UI, or instance.report_run_failed(instance.get_run_by_id("
                f"{last!r})).")
        lease = _Lease(self.store, record.run_id)
        if not self.store.acquire_lease(record.run_id, lease.owner, LEASE_SECONDS, statuses):
            owner, until = self.store.lease_of(record.run_id)
            raise RunInProgressError(
                f"another resume of run {record.run_id!r} is in progress (lease held until "
                f"{until.isoformat() if until else '?'}); wait for it to finish and check "
                f"get_run({record.run_id!r}).status.")
        return lease

    def _with_logging(self, run_config: dict[str, Any]) -> dict[str, Any]:
        if not self.log_level:
            return run_config
        return deep_merge(run_config, {"loggers": {"console": {"config": {
            "log_level": self.log_level.upper()}}}})

    def _job(self, workflow: Workflow):
        ref = workflow_ref(workflow)
        if self.executor != "in_process" and not is_importable(ref):
            raise WorkflowNotFoundError(
                f"workflow {workflow.name!r} was built inside a function, so the "
                f"{self.executor} executor's step processes cannot import it. Define it at module "
                f"level in an importable module (or a script), or use executor='in_process'.")
        return reconstructable_job(workflow, ref=ref, database_url=self.database_url,
                                   checkpoint_strategy=self.checkpoint_strategy,
                                   max_checkpoint_bytes=self.max_checkpoint_bytes,
                                   executor=self.executor,
                                   delete_checkpoints_on_success=(
                                       self.delete_checkpoints_on_success or None))

    def _launch(self, workflow: Workflow, spine_id: str, run_config: dict[str, Any],
                selection: list[str] | None) -> WorkflowResult:
        started = utcnow()
        tags = {RUN_ID_TAG: spine_id, WORKFLOW_TAG: workflow.name, LAUNCHER_TAG: launcher_tag()}
        run_config = self._with_logging(run_config)
        result = execute_job(self._job(workflow), instance=self.instance, run_config=run_config,
                             tags=tags, raise_on_error=False, op_selection=selection)
        self._auto_cleanup()
        return self._result(workflow, spine_id, result, started)

    def _reexecute(self, workflow: Workflow, record: RunRecord, overrides: dict[str, Any],
                   selection: list[str]) -> WorkflowResult:
        parent_id = record.last_dagster_run_id
        parent = self.instance.get_run_by_id(parent_id) if parent_id else None
        if parent is None:
            raise UnknownRunError(
                f"run {record.run_id!r} has no Dagster run {parent_id!r} in this Dagster instance "
                f"({self.instance.root_directory}); use the instance the run was started with "
                f"(DAGSTER_HOME).")
        run_config = self._with_logging(reexecution_run_config(parent.run_config or {}, overrides))
        tags = reexecution_tags(parent.tags, parent_run_id=parent.run_id,
                                root_run_id=parent.root_run_id or parent.run_id,
                                spine_run_id=record.run_id, workflow_name=workflow.name)
        tags[LAUNCHER_TAG] = launcher_tag()
        options = ReexecutionOptions(parent_run_id=parent.run_id, step_selection=list(selection))
        # A resume starts from checkpoints only. Transit rows the parent left behind (its process
        # died before the failing step could drop them) are garbage now.
        self.store.delete_transit(parent.run_id)
        started = utcnow()
        result = execute_job(self._job(workflow), instance=self.instance,
                             run_config=run_config, tags=tags, raise_on_error=False,
                             reexecution_options=options)
        self._auto_cleanup()
        return self._result(workflow, record.run_id, result, started)

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

    def _result(self, workflow: Workflow, spine_id: str, result: Any,
                started: datetime) -> WorkflowResult:
        return result_from_store(
            self.store, workflow_name=workflow.name, step_names=workflow.step_names(),
            spine_id=spine_id, dagster_run_id=result.run_id, success=result.success,
            failure=None if result.success else _dagster_failure(result), started=started)


def result_from_store(store: CheckpointStore, *, workflow_name: str, step_names: list[str],
                      spine_id: str, dagster_run_id: str, success: bool, failure: str | None,
                      started: datetime) -> WorkflowResult:
    """The ``WorkflowResult`` of a finished Dagster run of spine run ``spine_id``.

    A run that still says ``running`` although its Dagster run failed (it failed before a step
    could report) becomes ``failed`` with ``failure`` as its error.
    """
    try:
        flush_checkpoints(store, spine_id, dagster_run_id)  # a run that stopped between steps
    except CheckpointWriteError:
        pass  # recorded on the run: it is failed at that step
    record = store.get_run(spine_id)
    if record is None or (record.status is WorkflowStatus.RUNNING and not success):
        error = failure or f"Dagster run {dagster_run_id} failed"
        if record is None:
            raise InvalidWorkflowError(
                f"Dagster run {dagster_run_id} of workflow {workflow_name!r} failed before any "
                f"step started: {error}")
        store.mark_run(spine_id, WorkflowStatus.FAILED, error=error, error_category="INTERNAL")
        record = store.get_run(spine_id)
    rows = store.step_rows(spine_id)
    executions = [
        StepExecution(name, rows[name].status, rows[name].started_at, rows[name].updated_at,
                      rows[name].error, rows[name].error_category, dagster_run_id)
        for name in step_names
        if name in rows and rows[name].dagster_run_id == dagster_run_id
    ]
    return WorkflowResult(
        workflow_name=workflow_name, run_id=spine_id, status=record.status,
        context=record.context, started_at=started, completed_at=utcnow(),
        step_executions=executions, error_step=record.error_step, error=record.error,
        error_category=record.error_category, dagster_run_id=dagster_run_id,
        dagster_run_ids=list(record.dagster_run_ids))


def _dagster_failure(result: Any) -> str:
    event = result.get_run_failure_event() if hasattr(result, "get_run_failure_event") else None
    if event is not None and event.message:
        return event.message
    return f"Dagster run {result.run_id} failed"
