"""Checkpoint retention: the seed's policy, as a function, a Dagster job and a daily schedule.

The policy (written once, in :meth:`CheckpointStore.cleanup`): delete the checkpoints older than
*N* days, except those of runs that failed within the last *N* days (they may still be resumed).
Nothing of a run that is ``running``, or that is being resumed, is ever deleted. Rows go in small
batches, each in its own short transaction, so cleanup never holds up concurrent checkpoint writes
for long (no table lock, on SQLite or PostgreSQL).

Three ways to apply it:

* ``WorkflowRunner(checkpoint_retention_days=N)``: the runner applies it after each run it
  executes or resumes (at most once an hour per database), and ``runner.cleanup_checkpoints()``
  applies it on demand;
* ``cleanup_schedule(...)``: a Dagster schedule (daily at 03:00 UTC by default) for deployments,
  where runs are launched from the UI, schedules and sensors; it needs the Dagster daemon;
* ``spine-dagster cleanup [--retention-days N] [--dry-run]`` from a terminal.

Example:
    >>> from dagster import Definitions
    >>> from spine_dagster.retention import cleanup_schedule
    >>> schedule = cleanup_schedule("sqlite:///checkpoints.db", retention_days=7)
    >>> (schedule.name, schedule.cron_schedule, schedule.job.name)
    ('spine_checkpoint_cleanup_schedule', '0 3 * * *', 'spine_checkpoint_cleanup')
    >>> defs = Definitions(schedules=[schedule])  # the schedule brings its job along
"""

# No `from __future__ import annotations`: Dagster reads the op's Config/resource annotations.
from datetime import datetime, timedelta, timezone
from numbers import Real
from typing import Optional

from dagster import (
    Config,
    ConfigurableResource,
    DefaultScheduleStatus,
    JobDefinition,
    OpExecutionContext,
    Output,
    ScheduleDefinition,
    job,
    op,
)
from pydantic import Field

from .errors import InvalidRetentionError
from .dburl import reference
from .store import CheckpointStore

DEFAULT_RETENTION_DAYS = 7
DEFAULT_BATCH_SIZE = 1000
DEFAULT_CRON_SCHEDULE = "0 3 * * *"
JOB_NAME = "spine_checkpoint_cleanup"
RESOURCE_KEY = "spine_retention"


def cutoff_for(retention_days: float, now: datetime | None = None) -> datetime:
    """The moment before which checkpoints are due: ``now - retention_days`` (UTC)."""
    if isinstance(retention_days, bool) or not isinstance(retention_days, Real) \
            or not retention_days > 0:
        raise InvalidRetentionError(
            f"retention_days must be a positive number of days, got {retention_days!r}; e.g. "
            f"checkpoint_retention_days=7 keeps a week of checkpoints.")
    now = now or datetime.now(timezone.utc)
    return now - timedelta(days=float(retention_days))


def _check_batch_size(batch_size: int) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidRetentionError(
            f"batch_size must be a positive whole number of rows, got {batch_size!r}; the default "
            f"is {DEFAULT_BATCH_SIZE}.")
    return batch_size


def cleanup_checkpoints(database_url: str | None, retention_days: float, *,
                        dry_run: bool = False, batch_size: int = DEFAULT_BATCH_SIZE,
                        now: datetime | None = None) -> int:
    """Apply the retention policy to the checkpoint database; returns rows deleted (or due).

    Example:
        >>> import tempfile
        >>> cleanup_checkpoints(f"sqlite:///{tempfile.mkdtemp()}/c.db", 7, dry_run=True)
        0
    """
    cutoff = cutoff_for(retention_days, now)
    return CheckpointStore.for_url(database_url).cleanup(cutoff, batch_size=_check_batch_size(batch_size),
                                           dry_run=dry_run)


class CheckpointRetention(ConfigurableResource):
    """Where and how the cleanup job applies the retention policy (resource ``spine_retention``)."""

    database_url: Optional[str] = Field(
        default=None, description="Checkpoint database URL. Default: $SPINE_DAGSTER_DATABASE_URL, "
        "else SQLite at $SPINE_DAGSTER_HOME/checkpoints.db (~/.spine_dagster/checkpoints.db).")
    retention_days: float = Field(
        default=DEFAULT_RETENTION_DAYS, description="Delete checkpoints older than this many "
        "days, except those of runs that failed within that time. Running runs are never touched.")
    batch_size: int = Field(
        default=DEFAULT_BATCH_SIZE, description="Rows deleted per transaction.")

    def cleanup(self, *, dry_run: bool = False, retention_days: float | None = None) -> int:
        return cleanup_checkpoints(self.database_url, retention_days or self.retention_days,
                                   dry_run=dry_run, batch_size=self.batch_size)


class CleanupConfig(Config):
    """Launch-time options of one cleanup run."""

    dry_run: bool = Field(default=False, description="Count the checkpoints that are due, "
                          "delete nothing.")
    retention_days: Optional[float] = Field(
        default=None, description="Override the resource's retention_days for this run.")


@op(name="spine_cleanup_checkpoints",
    description="Delete spine checkpoints past their retention period (see spine_retention).")
def cleanup_op(context: OpExecutionContext, config: CleanupConfig,
               spine_retention: CheckpointRetention) -> Output[int]:
    days = config.retention_days or spine_retention.retention_days
    count = spine_retention.cleanup(dry_run=config.dry_run, retention_days=days)
    verb = "would delete" if config.dry_run else "deleted"
    context.log.info(f"{verb} {count} checkpoint(s) older than {days:g} days")
    return Output(count, metadata={"spine/checkpoints_deleted": 0 if config.dry_run else count,
                                   "spine/checkpoints_due": count,
                                   "spine/retention_days": float(days),
                                   "spine/dry_run": config.dry_run})


def cleanup_job(database_url: str | None = None,
                retention_days: float = DEFAULT_RETENTION_DAYS, *,
                batch_size: int = DEFAULT_BATCH_SIZE, name: str = JOB_NAME) -> JobDefinition:
    """A Dagster job that applies the retention policy once.

    Example:
        >>> cleanup_job("sqlite:///checkpoints.db", retention_days=30).name
        'spine_checkpoint_cleanup'
    """
    cutoff_for(retention_days)
    resource = CheckpointRetention(database_url=reference(database_url),
                                   retention_days=retention_days,
                                   batch_size=_check_batch_size(batch_size))

    @job(name=name, resource_defs={RESOURCE_KEY: resource}, tags={"spine/kind": "retention"},
         description=f"Delete spine checkpoints older than {retention_days:g} days, except those "
                     f"of runs that failed within that time; never those of running runs.")
    def _cleanup() -> None:
        cleanup_op()

    return _cleanup


def cleanup_schedule(database_url: str | None = None,
                     retention_days: float = DEFAULT_RETENTION_DAYS,
                     cron_schedule: str = DEFAULT_CRON_SCHEDULE, *,
                     batch_size: int = DEFAULT_BATCH_SIZE, name: str | None = None,
                     job_name: str = JOB_NAME, execution_timezone: str = "UTC",
                     default_status: DefaultScheduleStatus = DefaultScheduleStatus.RUNNING,
                     ) -> ScheduleDefinition:
    """A schedule (daily at 03:00 UTC by default) that runs :func:`cleanup_job`.

    It is ``RUNNING`` by default, so that the retention period applies as soon as the Dagster
    daemon runs; pass ``default_status=DefaultScheduleStatus.STOPPED`` to switch it on by hand.
    """
    target = cleanup_job(database_url, retention_days, batch_size=batch_size, name=job_name)
    return ScheduleDefinition(
        name=name or f"{job_name}_schedule", job=target, cron_schedule=cron_schedule,
        execution_timezone=execution_timezone, default_status=default_status,
        description=f"Apply the spine checkpoint retention policy ({retention_days:g} days).")
