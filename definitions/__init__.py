"""The Dagster code location with the example workflows: ``dagster dev -w workspace.yaml``.

* ``my__workflow``: the seed's four-step workflow (``make demo`` runs it); launch it from the
  Launchpad with ``resources.spine.config.params``.
* ``examples__daily_report``: partitioned by day; the schedule runs yesterday's partition at 01:00.
* ``examples__nightly_digest``: a cron schedule (02:00) with fixed params.
* ``examples__file_ingest``: a sensor launches it for each new ``*.csv`` in the inbox
  (``$SPINE_EXAMPLES_INBOX``).
* ``spine_resume``: resume a failed run with changed params from the Launchpad (it asks the
  webserver at ``$SPINE_DAGSTER_WEBSERVER_URL``, default http://127.0.0.1:3000, to re-execute).
* ``spine_checkpoint_cleanup``: the daily checkpoint retention schedule's job.

Checkpoints go to ``$SPINE_DAGSTER_DATABASE_URL`` (else SQLite under ``$SPINE_DAGSTER_HOME``):
every process that serves or runs this code location must see the same value.
"""

from examples.workflows import (
    DAILY_PARTITIONS,
    DAILY_REPORT,
    FILE_INGEST,
    MY_WORKFLOW,
    NIGHTLY_DIGEST,
    new_inbox_files,
)
from spine_dagster import (
    SpineJob,
    build_definitions,
    spine_partitioned_schedule,
    spine_schedule,
    spine_sensor,
)

DAILY_JOB = SpineJob(DAILY_REPORT, partitions_def=DAILY_PARTITIONS)

defs = build_definitions(
    [MY_WORKFLOW, DAILY_JOB, NIGHTLY_DIGEST, FILE_INGEST],
    schedules=[
        spine_partitioned_schedule(DAILY_JOB, hour_of_day=1),
        spine_schedule(NIGHTLY_DIGEST, "0 2 * * *",
                       params={"tier": "gold", "recipients": ["ops@example.com"]}),
    ],
    sensors=[
        spine_sensor(FILE_INGEST, new_inbox_files, run_key_from_params=True,
                     minimum_interval_seconds=30),
    ],
    resume_job=True,
)
