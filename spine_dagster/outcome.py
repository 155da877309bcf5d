"""The ``WorkflowResult`` of a finished Dagster run of a spine run, read from the store.

Used by every path that runs or resumes a workflow and waits for it: ``WorkflowRunner`` (local
``execute_job``) and ``SpineDagsterClient`` (a run launched through the webserver). When the
checkpoint database cannot be reached after the run, the result is built from what Dagster knows
instead: the run still ends as a failed ``WorkflowResult`` with its run id, never as an exception.

Example:
    >>> unreachable_category("CheckpointWriteError: the checkpoint of step 'a' could not ...")
    'CheckpointWriteError'
"""

from __future__ import annotations

import contextlib
from datetime import datetime
from typing import Any

from . import db
from .context import WorkflowContext
from .errors import DatabaseUnavailableError
from .results import StepExecution, WorkflowResult, WorkflowStatus
from .snapshot import utcnow
from .store import CheckpointStore

UNREACHABLE = ("CheckpointWriteError", "DatabaseUnavailableError")


def unreachable_category(text: str | None) -> str | None:
    """``CheckpointWriteError`` or ``DatabaseUnavailableError`` when ``text`` (an error class name
    or message) says the checkpoint database failed, else None."""
    for name in UNREACHABLE:
        if text and name in text:
            return name
    return None


def result_from_store(store: CheckpointStore, *, workflow_name: str, step_names: list[str],
                      spine_id: str, dagster_run_id: str, success: bool, failure: str | None,
                      started: datetime, failed_step: str | None = None,
                      failure_class: str | None = None) -> WorkflowResult:
    """The ``WorkflowResult`` of a finished Dagster run of spine run ``spine_id``.

    A run that still says ``running`` although its Dagster run failed (it failed before a step
    could report) becomes ``failed`` with ``failure`` as its error. ``failed_step`` and
    ``failure_class`` (from Dagster's step failure event) serve when the store is unreachable.
    """
    # After a run that failed because the database was unreachable: one try, no retries.
    outage = not success and (unreachable_category(failure_class) or
                              unreachable_category(failure))
    try:
        with db.single_attempt() if outage else contextlib.nullcontext():
            return _from_store(store, workflow_name, step_names, spine_id, dagster_run_id,
                               success, failure, started, failed_step, failure_class)
    except DatabaseUnavailableError as exc:
        return _from_dagster(workflow_name, spine_id, dagster_run_id, started,
                             f"the checkpoint database was unreachable: {exc}"
                             + (f" (the run's failure: {failure})" if failure else ""),
                             failed_step, unreachable_category(failure_class)
                             or "DatabaseUnavailableError")


def _from_store(store: CheckpointStore, workflow_name: str, step_names: list[str],
                spine_id: str, dagster_run_id: str, success: bool, failure: str | None,
                started: datetime, failed_step: str | None,
                failure_class: str | None) -> WorkflowResult:
    """The result read from the store (see :func:`result_from_store`)."""
    record = store.get_run(spine_id)
    if record is None or (record.status is WorkflowStatus.RUNNING and not success):
        error = failure or f"Dagster run {dagster_run_id} failed"
        if record is None:
            return _from_dagster(workflow_name, spine_id, dagster_run_id, started, error,
                                 failed_step, failure_class or "INTERNAL")
        category = unreachable_category(failure_class) or unreachable_category(error)
        # A step whose process died (e.g. its Dask worker) never reported: it failed.
        running = [row.step_name for row in store.step_rows(spine_id).values()
                   if row.status == "running" and row.dagster_run_id == dagster_run_id]
        if running and not failed_step:
            store.fail_step(run_id=spine_id, step_name=running[0],
                            dagster_run_id=dagster_run_id, error=error,
                            error_category=category or "INTERNAL")
        else:
            store.mark_run(spine_id, WorkflowStatus.FAILED, error=error,
                           error_step=failed_step or record.error_step,
                           error_category=category or "INTERNAL")
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


def _from_dagster(workflow_name: str, spine_id: str, dagster_run_id: str, started: datetime,
                  error: str, failed_step: str | None, category: str) -> WorkflowResult:
    return WorkflowResult(
        workflow_name=workflow_name, run_id=spine_id, status=WorkflowStatus.FAILED,
        context=WorkflowContext(run_id=spine_id, workflow_name=workflow_name),
        started_at=started, completed_at=utcnow(),
        step_executions=[StepExecution(failed_step, "failed", error=error,
                                       error_category=category, dagster_run_id=dagster_run_id)]
        if failed_step else [],
        error_step=failed_step, error=error, error_category=category,
        dagster_run_id=dagster_run_id, dagster_run_ids=[dagster_run_id])


def _explained(error: Any) -> str:
    """``error``'s message; when it only wraps the real error (Dagster's ``Error occurred while
    executing op ...``, ``Error executing resource_fn ...``), the real one's class and message too."""
    message = error.message.strip()
    inner = error
    while inner.cause is not None and inner.cls_name.startswith("Dagster"):
        inner = inner.cause
    if inner is not error:
        text = inner.message.strip()
        head, sep, rest = text.partition(": ")
        if sep and head.endswith(inner.cls_name):  # Dagster writes "module.Class: message"
            text = rest
        message = f"{message} {inner.cls_name}: {text}"
    return message


def dagster_failure(result: Any, step_of_key: dict[str, str] | None = None
                    ) -> tuple[str | None, str | None, str | None]:
    """(message, failed spine step, error class) of a failed ``execute_job`` result."""
    step = cls = message = None
    for event in result.get_step_failure_events() if hasattr(result, "get_step_failure_events") else []:
        data = event.step_failure_data
        error = data.error if data is not None else None
        metadata = (data.user_failure_data.metadata if data is not None and data.user_failure_data
                    else {}) or {}
        named = metadata.get("spine/step")
        step = getattr(named, "value", named) or (step_of_key or {}).get(event.step_key) or step
        if error is not None:
            cls = error.cls_name
            cause = error.cause
            while cause is not None and not unreachable_category(cls):
                cls = cause.cls_name if unreachable_category(cause.cls_name) else cls
                cause = cause.cause
            message = _explained(error)
        break
    failure = result.get_run_failure_event() if hasattr(result, "get_run_failure_event") else None
    if message is None and failure is not None and failure.message:
        message = failure.message
        # "An exception was thrown during execution": say which (e.g. a lost Dask worker)
        data = getattr(failure, "job_failure_data", None)
        error = getattr(data, "error", None)
        if error is not None:
            message = f"{message} {error.cls_name}: {_explained(error)}"
    return message, step, cls
