"""Test helpers for your own workflows: a throwaway store and instance, a failure on demand.

* :func:`temporary_store`: a checkpoint database for one test: SQLite in a temporary directory,
  or, given a PostgreSQL URL, a fresh schema in that database, dropped afterwards.
* :func:`temporary_instance`: a temporary persistent Dagster instance (re-execution, and so
  resume, need one that stores runs).
* :func:`spine_test_runner`: a ``WorkflowRunner`` on both, quiet, ignoring any
  ``workspace.yaml``.
* :func:`run_and_fail_at`: run a workflow and make one step fail (that run only), the way a real
  outage would: the steps before it checkpoint, and a resume runs the real step.
* :func:`assert_resumes_from`: the resume started at that step, and no earlier step ran again.

They are context managers and plain functions, so they work in pytest, unittest or a script.

Example:
    >>> from spine_dagster import Step, StepResult, Workflow
    >>> from spine_dagster.testing import assert_resumes_from, run_and_fail_at, spine_test_runner
    >>> NIGHTLY = Workflow("docs.testing", [
    ...     Step.lambda_("extract", lambda ctx, cfg: {"rows": 3}),
    ...     Step.lambda_("load", lambda ctx, cfg: {"loaded": ctx.get_output("extract", "rows")}),
    ... ])
    >>> with spine_test_runner() as runner:
    ...     failed = run_and_fail_at(NIGHTLY, "load", runner=runner)
    ...     resumed = runner.resume(failed.run_id)
    ...     assert_resumes_from(resumed, "load")
    >>> failed.error_step, resumed.status.value, resumed.context.outputs["load"]
    ('load', 'completed', {'loaded': 3})
"""

from __future__ import annotations

import contextlib
import tempfile
import uuid
from typing import Any, Iterator, Mapping

import sqlalchemy as sa
from dagster import DagsterInstance, instance_for_test

from . import db
from .dburl import resolve_url
from .errors import InvalidSettingError, UnknownStepError
from .model import StepType, Workflow
from .results import StepResult, WorkflowResult, WorkflowStatus
from .runner import WorkflowRunner

__all__ = ["assert_resumes_from", "run_and_fail_at", "spine_test_runner", "temporary_instance",
           "temporary_store"]


@contextlib.contextmanager
def temporary_store(database_url: str | None = None) -> Iterator[str]:
    """The URL of a checkpoint database that lives as long as the ``with`` block.

    Args:
        database_url: ``None`` for SQLite in a temporary directory, or a PostgreSQL URL
            (``postgresql+psycopg2://user@host:5432/db``): the block gets a new schema in that
            database (the URL's ``search_path``), dropped with everything in it at the end.
    """
    if database_url is None:
        with tempfile.TemporaryDirectory(prefix="spine_test_") as directory:
            try:
                yield f"sqlite:///{directory}/checkpoints.db"
            finally:
                db.dispose_all()
        return
    url = sa.make_url(resolve_url(database_url))
    if not url.drivername.startswith("postgresql"):
        raise InvalidSettingError(
            f"temporary_store takes a PostgreSQL URL (or None for SQLite), got "
            f"{url.drivername!r}; e.g. postgresql+psycopg2://postgres@127.0.0.1:5432/test")
    schema = f"spine_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(url, poolclass=sa.pool.NullPool, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.schema.CreateSchema(schema))
    try:
        yield url.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
            hide_password=False)
    finally:
        db.dispose_all()
        with admin.connect() as conn:
            conn.execute(sa.schema.DropSchema(schema, cascade=True, if_exists=True))
        admin.dispose()


@contextlib.contextmanager
def temporary_instance() -> Iterator[DagsterInstance]:
    """A Dagster instance in a temporary directory (run and event storage on SQLite), deleted at
    the end of the block; it stores runs, so they can be re-executed and resumed."""
    with instance_for_test() as instance:
        yield instance


@contextlib.contextmanager
def spine_test_runner(database_url: str | None = None, *,
                      instance: DagsterInstance | None = None,
                      **options: Any) -> Iterator[WorkflowRunner]:
    """A ``WorkflowRunner`` on a :func:`temporary_store` and a :func:`temporary_instance`.

    Args:
        database_url: passed to :func:`temporary_store` (None: SQLite).
        instance: use this Dagster instance instead of a temporary one.
        options: more ``WorkflowRunner`` options (``assets=True``, ``checkpoint_strategy``...).
            Step lines are off unless ``progress=True``.
    """
    options.setdefault("progress", False)
    options.setdefault("workspace", "")
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(temporary_store(database_url))
        if instance is None:
            instance = stack.enter_context(temporary_instance())
        yield WorkflowRunner(database_url=url, instance=instance, **options)


def run_and_fail_at(workflow: Workflow, step: str, *, runner: WorkflowRunner,
                    params: Mapping[str, Any] | None = None, partition: Any = None,
                    category: str = "TRANSIENT", error: str | None = None) -> WorkflowResult:
    """Run ``workflow`` so that ``step`` fails in this run, and return the failed result.

    The step is replaced, for this run only and in this process, by one that returns
    ``StepResult.fail(error, category)``; the steps before it run for real and checkpoint. The
    run records the real workflow, so ``runner.resume(result.run_id)`` (from this process or
    another) runs the real step. The runner must use the in-process executor.

    Raises:
        UnknownStepError: the workflow has no step ``step``.
        AssertionError: the run did not fail at ``step`` (an earlier step failed).
    """
    index = workflow.step_index(step)
    if index < 0:
        raise UnknownStepError(f"workflow {workflow.name!r} has no step {step!r}; its steps are "
                               f"{workflow.step_names()}.")
    if runner.executor != "in_process":
        raise InvalidSettingError(
            f"run_and_fail_at needs a runner with executor='in_process' (it has "
            f"{runner.executor!r}): the failure is injected in this process only.")
    target = workflow.steps[index]
    message = error or f"run_and_fail_at: failure injected at step {step!r}"
    saved = (target.step_type, target.handler, target.fuse)
    if target.step_type is StepType.MAP:
        target.fuse = False  # a map step has an op of its own: keep the job's shape
    target.step_type, target.handler = StepType.LAMBDA, (
        lambda ctx, config: StepResult.fail(message, category))
    try:
        result = runner.execute(workflow, params=params, partition=partition)
    finally:
        target.step_type, target.handler, target.fuse = saved
    if result.status is not WorkflowStatus.FAILED or result.error_step != step:
        raise AssertionError(
            f"run_and_fail_at: the run of {workflow.name!r} should have failed at {step!r}, but "
            f"it is {result.status.value} (failed step: {result.error_step!r}, error: "
            f"{result.error!r}).")
    return result


def assert_resumes_from(result: WorkflowResult, step: str) -> None:
    """Assert that the resume ``result`` started at ``step``: that is the first step it ran,
    the steps before it came from checkpoints, and it completed.

    Raises:
        AssertionError: with what happened instead.
    """
    ran = [s.step_name for s in result.step_executions]
    problems = []
    if not ran or ran[0] != step:
        problems.append(f"it ran {ran or 'no steps'}, not starting at {step!r}")
    plan = result.plan
    if plan is None:
        problems.append("it is not a resume (no resume plan: use the result of resume())")
    elif plan.start_step != step:
        problems.append(f"its plan started at {plan.start_step!r} ({plan.start_reason})")
    if result.status is not WorkflowStatus.COMPLETED:
        problems.append(f"it ended {result.status.value} at step {result.error_step!r}: "
                        f"{result.error}")
    if problems:
        raise AssertionError(f"run {result.run_id} did not resume from {step!r}: "
                             + "; ".join(problems))
