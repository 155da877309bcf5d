"""The names spine_dagster gives things in Dagster: resource keys, run-config keys, run tags.

Pure constants (no Dagster import), so that code that only plans or inspects runs (the CLI's
``resume --plan``) need not import Dagster.

Example:
    >>> RESOURCE_KEY, IO_MANAGER_KEY, RUN_ID_TAG
    ('spine', 'spine_io', 'spine/run_id')
"""

RESOURCE_KEY = "spine"
"""The resource whose config holds a run's params and partition (``SpineRunConfig``)."""
IO_MANAGER_KEY = "spine_io"
"""The checkpoint IO manager (``SpineCheckpointIOManager``)."""
INTERNAL_KEYS = ("start_from", "start_checkpoint", "start_context", "params_override")
"""Run-config keys that spine_dagster sets itself (resume, start_from); never pre-filled."""
RUN_ID_TAG = "spine/run_id"
WORKFLOW_TAG = "spine/workflow"
WORKFLOW_REF_TAG = "spine/workflow_ref"
LAUNCHER_TAG = "spine/launcher"
RESUME_RETRY_TAG = "dagster/is_resume_retry"
FUSE_TAG = "spine/fuse"
"""Job (so run) tag: ``true`` when the job fuses steps. A re-execution needs the same layout."""
