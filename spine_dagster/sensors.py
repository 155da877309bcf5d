"""``spine_failure_sensor``: resume failed spine runs by a policy of your own.

A run-failure sensor for spine jobs. For each failed run of the jobs it watches, it asks
``policy(failure)``, where ``failure`` is a :class:`SpineFailure`: the spine run record, the
failed step, its error category and message, the failed Dagster run, how many re-executions the
run group has had, and the resume plan (:meth:`SpineDagsterClient.plan_resume`). The policy
returns a :class:`ResumeDecision` (resume, with ``params_override`` and/or
``run_config_override``) or ``None`` (leave the run failed).

A decision is carried out by :meth:`SpineDagsterClient.resume`, the function behind
``WorkflowRunner.resume(webserver=...)``, ``spine-dagster resume --webserver`` and the
``spine_resume`` job: a true re-execution of the failed run from its newest usable checkpoint,
launched by the deployment, in the failed run's run group. Dagster's own run retries cannot
change the config of a retry (dagster-io/dagster#7474); this can, for example to double a
timeout after a ``TIMEOUT``.

The sensor runs in the code location's process and reaches the webserver's GraphQL API, at
``webserver=`` (a URL or a ``SpineWebserver``), else ``$SPINE_DAGSTER_WEBSERVER_URL``, else
``http://127.0.0.1:3000``. It reads the checkpoints at ``database_url`` (default:
``$SPINE_DAGSTER_DATABASE_URL``). It needs the daemon (``dagster-daemon run``, or ``dagster
dev``/``dg dev``). Runs of the implicit asset job (the UI's "Materialize", asset backfills) are
not watched: watch the workflow's own job.

Example:
    >>> from spine_dagster import (ResumeDecision, SpineJob, Step, StepResult, Workflow,
    ...                            build_definitions, spine_failure_sensor)
    >>> wf = Workflow("docs.sensed_failure", [Step.lambda_("a", lambda ctx, cfg: StepResult.ok())],
    ...               defaults={"timeout": 30})
    >>> def double_timeout(failure):
    ...     if failure.category == "TIMEOUT" and failure.resumes < 2:
    ...         return ResumeDecision(params_override={"timeout": failure.params["timeout"] * 2})
    ...     return None                               # anything else stays failed
    >>> sensor = spine_failure_sensor(wf, double_timeout)
    >>> defs = build_definitions([wf], sensors=[sensor], database_url="sqlite:///c.db")
    >>> sensor.name
    'docs__sensed_failure_failure_sensor'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

from dagster import (
    DefaultSensorStatus,
    RunFailureSensorContext,
    SensorDefinition,
    SkipReason,
    run_failure_sensor,
)

from .automation import _resolve
from .client import SpineDagsterClient
from .errors import InvalidAutomationError, SpineDagsterError
from .records import RunRecord
from .resume import ON_STALE, ResumePlan
from .resume_job import SpineWebserver
from .store import CheckpointStore

RESUMED_AS_TAG = "spine/resumed_as"
__all__ = ["ResumeDecision", "SpineFailure", "spine_failure_sensor"]


@dataclass(frozen=True)
class ResumeDecision:
    """What ``spine_failure_sensor`` does with a failed run: resume it, like ``resume()``.

    Args:
        params_override: params to change, merged over the run's params.
        run_config_override: run config deep-merged over the failed run's (op config,
            resources, executor).
        start_from: run again from this step instead of after the newest checkpoint.
        on_stale: ``warn``, ``rerun`` or ``error`` (see ``WorkflowRunner.resume``).
    """

    params_override: Mapping[str, Any] | None = None
    run_config_override: Mapping[str, Any] | None = None
    start_from: str | None = None
    on_stale: str = "warn"

    def __post_init__(self) -> None:
        if self.on_stale not in ON_STALE:
            raise InvalidAutomationError(
                f"ResumeDecision(on_stale={self.on_stale!r}): use one of {ON_STALE}.")


@dataclass(frozen=True)
class SpineFailure:
    """A failed spine run, as ``policy`` sees it.

    Attributes:
        run: the spine run record (``run.params``, ``run.partition``, ``run.dagster_run_ids``).
        dagster_run: the failed Dagster run (``.run_id``, ``.tags``, ``.run_config``).
        step: the spine step that failed (None if the run died before a step reported).
        category: its error category (``TRANSIENT``, ``TIMEOUT``, ``DATA_QUALITY``...).
        error: its error message.
        resumes: how many re-executions the run group has had so far.
        plan: what a resume with no override would do; None when it cannot be planned
            (``plan_error`` says why, e.g. the workflow changed before the resume point).
    """

    run: RunRecord
    dagster_run: Any
    step: str | None
    category: str | None
    error: str | None
    resumes: int
    plan: ResumePlan | None
    plan_error: str | None = None

    @property
    def params(self) -> dict[str, Any]:
        """The run's effective params."""
        return self.run.params


Policy = Callable[[SpineFailure], "ResumeDecision | None"]


def _webserver(webserver: str | SpineWebserver | None) -> tuple[str, str | None]:
    if isinstance(webserver, SpineWebserver):
        return webserver.get_url(), webserver.api_token
    return (webserver or SpineWebserver().get_url()), None


def spine_failure_sensor(
    target: Any,
    policy: Policy,
    *,
    webserver: str | SpineWebserver | None = None,
    database_url: str | None = None,
    name: str | None = None,
    minimum_interval_seconds: int | None = None,
    default_status: DefaultSensorStatus = DefaultSensorStatus.RUNNING,
    description: str | None = None,
) -> SensorDefinition:
    """A run-failure sensor that resumes the failed runs of ``target`` when ``policy`` says so.

    Args:
        target: the workflow(s) to watch: a ``Workflow``, ``SpineJob``, spine job, job name, or
            a list of them.
        policy: ``policy(failure: SpineFailure) -> ResumeDecision | None``.
        webserver: the webserver URL, or a ``SpineWebserver`` (default: ``SpineWebserver()``,
            i.e. ``$SPINE_DAGSTER_WEBSERVER_URL``).
        database_url: the checkpoint database (default: ``$SPINE_DAGSTER_DATABASE_URL``).
        name: sensor name (default ``<job>_failure_sensor``).
        minimum_interval_seconds: the least time between two ticks.
        default_status: ``RUNNING`` (default) starts it as soon as the daemon loads it.
    """
    targets = list(target) if isinstance(target, (list, tuple)) else [target]
    if not targets:
        raise InvalidAutomationError("spine_failure_sensor needs at least one workflow to watch.")
    if not callable(policy):
        raise InvalidAutomationError(
            f"spine_failure_sensor: policy must be a function of the failure returning "
            f"ResumeDecision or None, got {type(policy).__name__}.")
    job_names = [_resolve(t)[0] for t in targets]
    url, token = _webserver(webserver)

    def evaluate(context: RunFailureSensorContext):
        failed = context.dagster_run
        if failed.job_name not in job_names:
            return SkipReason(f"run {failed.run_id} is a run of {failed.job_name!r}, not "
                              f"watched here")
        if failed.tags.get(RESUMED_AS_TAG):
            return SkipReason(f"run {failed.run_id} was resumed already")
        client = SpineDagsterClient(url, database_url=database_url, api_token=token)
        store: CheckpointStore = client.store
        record = store.get_run(failed.run_id)
        if record is None:
            return SkipReason(f"run {failed.run_id} has no spine run record in "
                              f"{store.display_url}")
        if record.last_dagster_run_id != failed.run_id:
            return SkipReason(f"spine run {record.run_id} went on after {failed.run_id}")
        _, group = context.instance.get_run_group(failed.run_id)
        plan, plan_error = None, None
        try:
            plan = client.plan_resume(record.run_id)
        except SpineDagsterError as exc:
            plan_error = str(exc)
        failure = SpineFailure(run=record, dagster_run=failed, step=record.error_step,
                               category=record.error_category, error=record.error,
                               resumes=max(len(group) - 1, 0), plan=plan, plan_error=plan_error)
        decision = policy(failure)
        if decision is None:
            return SkipReason(f"the policy leaves spine run {record.run_id} failed "
                              f"(step {failure.step!r}, {failure.category})")
        if not isinstance(decision, ResumeDecision):
            raise InvalidAutomationError(
                f"{getattr(policy, '__name__', 'the policy')} returned "
                f"{type(decision).__name__}; return ResumeDecision(...) or None.")
        try:
            new_run = client.resume(record.run_id, params_override=decision.params_override,
                                    run_config_override=decision.run_config_override,
                                    start_from=decision.start_from, on_stale=decision.on_stale)
        except SpineDagsterError as exc:
            context.log.warning(f"could not resume spine run {record.run_id}: {exc}")
            return SkipReason(f"could not resume spine run {record.run_id}: {exc}")
        context.instance.add_run_tags(failed.run_id, {RESUMED_AS_TAG: new_run})
        context.log.info(f"resumed spine run {record.run_id} (step {failure.step!r}, "
                         f"{failure.category}) as Dagster run {new_run}")
        return SkipReason(f"resumed spine run {record.run_id} as Dagster run {new_run}")

    evaluate.__name__ = name or f"{job_names[0]}_failure_sensor"
    return run_failure_sensor(
        name=name or f"{job_names[0]}_failure_sensor",
        minimum_interval_seconds=minimum_interval_seconds, default_status=default_status,
        description=description or f"Resumes failed runs of {', '.join(job_names)} when its "
                                   f"policy says so (spine_failure_sensor).")(evaluate)
