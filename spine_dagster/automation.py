"""Schedules and sensors for spine jobs, and the run config they launch with.

* :func:`spine_run_config` builds the run config of a spine run (what the Launchpad shows).
* :func:`spine_schedule` runs a workflow on a cron expression with fixed params.
* :func:`spine_partitioned_schedule` runs a partitioned workflow: the newest ended partition of a
  time-window (e.g. daily) job, or every key of a static one. Steps see it as ``ctx.partition``.
* :func:`spine_sensor` runs a workflow with params that a function computes at tick time.

A target is a :class:`~spine_dagster.definitions.SpineJob`, a ``Workflow``, a job built by
``build_job``, or a job name. The schedules and sensors target the job by name, so pass them to
``build_definitions`` next to the workflows they run.

Example:
    >>> from dagster import DailyPartitionsDefinition
    >>> from spine_dagster import (SpineJob, Step, StepResult, Workflow, build_definitions,
    ...                            spine_partitioned_schedule, spine_schedule, spine_sensor)
    >>> wf = Workflow("docs.auto", [Step.lambda_("a", lambda ctx, cfg: StepResult.ok())])
    >>> daily = SpineJob(Workflow("docs.daily", [Step.lambda_("a", lambda ctx, cfg: StepResult.ok())]),
    ...                  partitions_def=DailyPartitionsDefinition(start_date="2026-01-01"))
    >>> defs = build_definitions(
    ...     [wf, daily], database_url="sqlite:///checkpoints.db",
    ...     schedules=[spine_schedule(wf, "0 2 * * *", params={"tier": "gold"}),
    ...                spine_partitioned_schedule(daily, hour_of_day=1)],
    ...     sensors=[spine_sensor(wf, lambda context: {"tier": "silver"})])
    >>> sorted(s.name for s in defs.schedules)
    ['docs__auto_schedule', 'docs__daily_schedule', 'spine_checkpoint_cleanup_schedule']
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Callable, Iterable, Mapping, Sequence, Union

from dagster import (
    DefaultScheduleStatus,
    DefaultSensorStatus,
    JobDefinition,
    PartitionsDefinition,
    RunRequest,
    ScheduleDefinition,
    ScheduleEvaluationContext,
    SensorDefinition,
    SensorEvaluationContext,
    SkipReason,
    StaticPartitionsDefinition,
    TimeWindowPartitionsDefinition,
    partition_loading_context,
    schedule,
    sensor,
)

from .compiler import op_name_for
from .errors import InvalidAutomationError
from .model import Workflow
from .resources import RESOURCE_KEY
from .serialization import dumps

Params = Mapping[str, Any]
ParamsFn = Callable[[SensorEvaluationContext], Union[Params, Sequence[Params], RunRequest,
                                                    SkipReason, None]]


def spine_run_config(params: Params | None = None, *, partition: Mapping[str, Any] | None = None,
                     step_config: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """The run config of a spine run, as the Launchpad (or a schedule, or a sensor) passes it.

    Args:
        params: workflow params (``ctx.params``), merged over the workflow's ``defaults``.
        partition: the spine partition (``ctx.partition``), for a job that is not partitioned.
            A partitioned job's steps see the run's partition key without it.
        step_config: per-step config by step name, merged over each step's own config.

    Example:
        >>> spine_run_config({"timeout": 120}, step_config={"ingest.fetch": {"limit": 10}})
        {'resources': {'spine': {'config': {'params': {'timeout': 120}}}}, 'ops': {'ingest__fetch': {'config': {'limit': 10}}}}
    """
    spine: dict[str, Any] = {"params": _json(dict(params or {}), "params")}
    if partition is not None:
        spine["partition"] = _json(dict(partition), "partition")
    config: dict[str, Any] = {"resources": {RESOURCE_KEY: {"config": spine}}}
    if step_config:
        config["ops"] = {op_name_for(step): {"config": _json(dict(values), f"step_config[{step!r}]")}
                         for step, values in step_config.items()}
    return config


def _json(value: Any, what: str) -> Any:
    """Run config is stored by Dagster as JSON: dates and the like go in their stored form."""
    return json.loads(dumps(value, what=what))


def _resolve(target: Any) -> tuple[str, PartitionsDefinition | None]:
    """(job name, partitions definition) of a schedule or sensor target."""
    from .definitions import SpineJob  # definitions imports this module

    if isinstance(target, SpineJob):
        return target.job_name, target.partitions_def
    if isinstance(target, Workflow):
        return op_name_for(target.name), None
    if isinstance(target, JobDefinition):
        return target.name, target.partitions_def
    if isinstance(target, str) and target:
        return target, None
    raise InvalidAutomationError(
        f"cannot schedule {target!r}: pass a SpineJob, a Workflow, a job from build_job, or a "
        f"job name.")


def spine_schedule(
    target: Any,
    cron_schedule: str,
    *,
    params: Params | None = None,
    partition: Mapping[str, Any] | None = None,
    step_config: Mapping[str, Mapping[str, Any]] | None = None,
    name: str | None = None,
    tags: Mapping[str, str] | None = None,
    execution_timezone: str | None = None,
    description: str | None = None,
    default_status: DefaultScheduleStatus = DefaultScheduleStatus.STOPPED,
) -> ScheduleDefinition:
    """Run a spine workflow on a cron schedule with fixed params.

    Args:
        target: the workflow (a ``Workflow``, ``SpineJob``, job, or job name).
        cron_schedule: when to run, e.g. ``"0 2 * * *"`` (02:00 every day).
        params, partition, step_config: the run config (see :func:`spine_run_config`).
        name: schedule name (default ``<job>_schedule``).
        tags: extra tags on every run.
        execution_timezone: timezone of the cron expression (default UTC).
        description: shown in the UI.
        default_status: ``RUNNING`` to start ticking as soon as the daemon loads it.

    Example:
        >>> from spine_dagster import Step, StepResult, Workflow, spine_schedule
        >>> wf = Workflow("docs.nightly", [Step.lambda_("a", lambda ctx, cfg: StepResult.ok())])
        >>> spine_schedule(wf, "0 2 * * *", params={"tier": "gold"}).job_name
        'docs__nightly'
    """
    job_name, partitions_def = _resolve(target)
    if partitions_def is not None:
        raise InvalidAutomationError(
            f"job {job_name!r} is partitioned; a run of it needs a partition key. Use "
            f"spine_partitioned_schedule({job_name!r}'s SpineJob, ...) instead.")
    run_config = spine_run_config(params, partition=partition, step_config=step_config)

    @schedule(cron_schedule=cron_schedule, job_name=job_name, name=name or f"{job_name}_schedule",
              execution_timezone=execution_timezone, default_status=default_status,
              description=description or f"Runs spine job {job_name!r} on {cron_schedule!r}.")
    def _spine_schedule(context: ScheduleEvaluationContext) -> RunRequest:
        return RunRequest(run_config=run_config, tags=dict(tags or {}))

    return _spine_schedule


def spine_partitioned_schedule(
    target: Any,
    *,
    params: Params | None = None,
    step_config: Mapping[str, Mapping[str, Any]] | None = None,
    cron_schedule: str | None = None,
    minute_of_hour: int | None = None,
    hour_of_day: int | None = None,
    day_of_week: int | None = None,
    day_of_month: int | None = None,
    partition_keys: Iterable[str] | None = None,
    name: str | None = None,
    tags: Mapping[str, str] | None = None,
    execution_timezone: str | None = None,
    description: str | None = None,
    default_status: DefaultScheduleStatus = DefaultScheduleStatus.STOPPED,
) -> ScheduleDefinition:
    """Run a partitioned spine workflow on a schedule; its steps see the key as ``ctx.partition``.

    * Time-window partitions (daily, hourly...): each tick runs the newest partition that has
      ended (at 00:00 on the 11th, the daily partition ``...-10``), like Dagster's
      ``build_schedule_from_partitioned_job``. The cron defaults to the partitions' own cadence;
      ``minute_of_hour``/``hour_of_day``/... shift it.
    * Static partitions: ``cron_schedule`` is required; each tick runs every key (or only
      ``partition_keys``), one run per key.

    Args:
        target: a ``SpineJob`` (or a job from ``build_job``) with a ``partitions_def``.
        params, step_config: fixed run config (see :func:`spine_run_config`).

    Example:
        >>> from dagster import StaticPartitionsDefinition
        >>> from spine_dagster import SpineJob, Step, StepResult, Workflow, spine_partitioned_schedule
        >>> wf = Workflow("docs.regions", [Step.lambda_("a", lambda ctx, cfg: StepResult.ok())])
        >>> job = SpineJob(wf, partitions_def=StaticPartitionsDefinition(["eu", "us"]))
        >>> spine_partitioned_schedule(job, cron_schedule="0 6 * * *").cron_schedule
        '0 6 * * *'
    """
    job_name, partitions_def = _resolve(target)
    if partitions_def is None:
        raise InvalidAutomationError(
            f"job {job_name!r} has no partitions_def; give it one (SpineJob(workflow, "
            f"partitions_def=DailyPartitionsDefinition(...))), or use spine_schedule.")
    run_config = spine_run_config(params, step_config=step_config)
    run_tags = dict(tags or {})
    timezone = execution_timezone
    if isinstance(partitions_def, TimeWindowPartitionsDefinition):
        cron = cron_schedule or partitions_def.get_cron_schedule(
            minute_of_hour, hour_of_day, day_of_week, day_of_month)
        timezone = timezone or partitions_def.timezone

        def evaluate(context: ScheduleEvaluationContext) -> RunRequest | SkipReason:
            with partition_loading_context(effective_dt=context.scheduled_execution_time):
                key = partitions_def.get_last_partition_key()
            if key is None:
                return SkipReason(f"no partition of {job_name!r} has ended yet")
            return RunRequest(run_key=key, partition_key=key, run_config=run_config,
                              tags=run_tags)
    elif isinstance(partitions_def, StaticPartitionsDefinition):
        if not cron_schedule:
            raise InvalidAutomationError(
                f"job {job_name!r} has static partitions, which have no cadence of their own; "
                f"pass cron_schedule=, e.g. '0 6 * * *'.")
        cron = cron_schedule
        known = partitions_def.get_partition_keys()
        keys = list(partition_keys) if partition_keys is not None else list(known)
        unknown = [k for k in keys if k not in known]
        if unknown:
            raise InvalidAutomationError(
                f"partition_keys {unknown} are not partitions of job {job_name!r}; its "
                f"partitions are {list(known)}.")

        def evaluate(context: ScheduleEvaluationContext) -> list[RunRequest]:
            return [RunRequest(run_key=key, partition_key=key, run_config=run_config,
                               tags=run_tags) for key in keys]
    else:
        raise InvalidAutomationError(
            f"job {job_name!r} has {type(partitions_def).__name__}; spine_partitioned_schedule "
            f"supports time-window (daily, hourly...) and static partitions. For others, write a "
            f"@schedule that returns RunRequest(partition_key=..., run_config=spine_run_config(...)).")

    decorate = schedule(
        cron_schedule=cron, job_name=job_name, name=name or f"{job_name}_schedule",
        execution_timezone=timezone, default_status=default_status,
        description=description or f"Runs spine job {job_name!r} for each new partition.")
    return decorate(evaluate)


def spine_sensor(
    target: Any,
    fn: ParamsFn,
    *,
    name: str | None = None,
    step_config: Mapping[str, Mapping[str, Any]] | None = None,
    tags: Mapping[str, str] | None = None,
    run_key_from_params: bool = False,
    minimum_interval_seconds: int | None = None,
    description: str | None = None,
    default_status: DefaultSensorStatus = DefaultSensorStatus.STOPPED,
) -> SensorDefinition:
    """Run a spine workflow when ``fn`` says so, with the params ``fn`` computes at tick time.

    ``fn(context)`` gets the ``SensorEvaluationContext`` (``context.cursor``,
    ``context.update_cursor``, ``context.instance``...) and returns:

    * ``None`` (or a ``SkipReason``): no run this tick;
    * a mapping: launch one run with these params;
    * a list of mappings: one run per mapping;
    * a ``RunRequest``: launched as is (full control; a partitioned job needs one, with its
      ``partition_key``).

    Args:
        target: the workflow (a ``Workflow``, ``SpineJob``, job, or job name).
        fn: computes the params at each tick.
        name: sensor name (default ``<job>_sensor``).
        step_config: fixed per-step config (see :func:`spine_run_config`).
        tags: extra tags on every run.
        run_key_from_params: give each run a key derived from its params, so that Dagster
            launches each distinct set of params once only.
        minimum_interval_seconds: the least time between two ticks.

    Example:
        >>> from dagster import build_sensor_context
        >>> from spine_dagster import Step, StepResult, Workflow, spine_sensor
        >>> wf = Workflow("docs.sensed", [Step.lambda_("a", lambda ctx, cfg: StepResult.ok())])
        >>> sensor = spine_sensor(wf, lambda context: {"file": "a.csv"})
        >>> request = sensor(build_sensor_context())
        >>> request.run_config["resources"]["spine"]["config"]["params"]
        {'file': 'a.csv'}
    """
    job_name, partitions_def = _resolve(target)
    run_tags = dict(tags or {})
    sensor_name = name or f"{job_name}_sensor"

    def request_for(params: Params) -> RunRequest:
        if partitions_def is not None:
            raise InvalidAutomationError(
                f"sensor {sensor_name!r}: job {job_name!r} is partitioned, so a run of it needs a "
                f"partition key; return RunRequest(partition_key=..., "
                f"run_config=spine_run_config(params)) from the sensor function instead of params.")
        run_config = spine_run_config(params, step_config=step_config)
        key = None
        if run_key_from_params:
            canonical = json.dumps(run_config["resources"][RESOURCE_KEY]["config"]["params"],
                                   sort_keys=True)
            key = hashlib.sha256(canonical.encode()).hexdigest()[:32]
        return RunRequest(run_key=key, run_config=run_config, tags=run_tags)

    def evaluate(context: SensorEvaluationContext):
        produced = fn(context)
        if produced is None:
            return SkipReason(f"{getattr(fn, '__name__', 'the sensor function')} returned None")
        if isinstance(produced, (RunRequest, SkipReason)):
            return produced
        if isinstance(produced, Mapping):
            return request_for(produced)
        if isinstance(produced, Sequence) and not isinstance(produced, (str, bytes)) and all(
                isinstance(p, Mapping) for p in produced):
            return [request_for(p) for p in produced] or SkipReason("no params this tick")
        raise InvalidAutomationError(
            f"sensor {sensor_name!r}: its function returned "
            f"{type(produced).__name__}; return a dict of params, a list of them, a RunRequest, "
            f"or None to skip the tick.")

    decorate = sensor(
        job_name=job_name, name=sensor_name,
        minimum_interval_seconds=minimum_interval_seconds, default_status=default_status,
        description=description or f"Launches spine job {job_name!r} with params computed at "
                                   f"tick time.")
    return decorate(evaluate)
