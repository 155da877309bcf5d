"""spine_dagster: Spine workflows on Dagster, with spine-format checkpoints and resume.

Example:
    >>> from spine_dagster import Step, StepResult, Workflow, build_job
    >>> job = build_job(Workflow("docs.init", [Step.lambda_("a", lambda ctx, cfg: StepResult.ok())]))
    >>> job.name
    'docs__init'
"""

from .auto_resume import AutoResume
from .automation import (
    spine_partitioned_schedule,
    spine_run_config,
    spine_schedule,
    spine_sensor,
)
from .client import RemoteRun, SpineDagsterClient
from .compiler import SpineStepFailure, build_job, op_name_for
from .conditions import Condition
from .context import WorkflowContext
from .definitions import SpineJob, build_definitions
from .errors import (
    CheckpointNotFoundError,
    CheckpointSerializationError,
    CheckpointTooLargeError,
    CheckpointWriteError,
    ConditionError,
    DatabaseUnavailableError,
    InvalidAutomationError,
    InvalidRetentionError,
    InvalidWorkflowError,
    NothingToResumeError,
    RunInProgressError,
    SchemaOutOfDateError,
    SpineDagsterError,
    UnknownPipelineError,
    UnknownRunError,
    UnknownStepError,
    WebserverQueryError,
    WebserverUnavailableError,
    WorkflowChangedError,
    WorkflowMismatchError,
    WorkflowNotFoundError,
)
from .io_manager import SpineCheckpointIOManager
from .model import ErrorCategory, ErrorPolicy, RetryPolicy, Step, StepType, Workflow
from .pipelines import pipeline, registered_pipelines
from .quality import QualityThresholds
from .resources import SpineRunConfig
from .results import QualityMetrics, StepExecution, StepResult, WorkflowResult, WorkflowStatus
from .resume_job import SpineWebserver, build_resume_job
from .retention import CheckpointRetention, cleanup_job, cleanup_schedule
from .runner import WorkflowRunner
from .store import Checkpoint, CheckpointStore, RunRecord
from .version import __version__
from .workflow_yaml import load_workflow_yaml, workflow_from_yaml, workflow_to_yaml

__all__ = [
    "AutoResume",
    "Checkpoint",
    "CheckpointNotFoundError",
    "CheckpointRetention",
    "CheckpointSerializationError",
    "CheckpointStore",
    "CheckpointTooLargeError",
    "CheckpointWriteError",
    "Condition",
    "ConditionError",
    "DatabaseUnavailableError",
    "ErrorCategory",
    "ErrorPolicy",
    "InvalidAutomationError",
    "InvalidRetentionError",
    "InvalidWorkflowError",
    "NothingToResumeError",
    "QualityMetrics",
    "QualityThresholds",
    "RemoteRun",
    "RetryPolicy",
    "RunInProgressError",
    "RunRecord",
    "SchemaOutOfDateError",
    "SpineCheckpointIOManager",
    "SpineDagsterClient",
    "SpineDagsterError",
    "SpineJob",
    "SpineRunConfig",
    "SpineStepFailure",
    "SpineWebserver",
    "Step",
    "StepExecution",
    "StepResult",
    "StepType",
    "UnknownPipelineError",
    "UnknownRunError",
    "UnknownStepError",
    "WebserverQueryError",
    "WebserverUnavailableError",
    "Workflow",
    "WorkflowChangedError",
    "WorkflowContext",
    "WorkflowMismatchError",
    "WorkflowNotFoundError",
    "WorkflowResult",
    "WorkflowRunner",
    "WorkflowStatus",
    "__version__",
    "build_definitions",
    "build_job",
    "build_resume_job",
    "cleanup_job",
    "cleanup_schedule",
    "load_workflow_yaml",
    "op_name_for",
    "pipeline",
    "registered_pipelines",
    "spine_partitioned_schedule",
    "spine_run_config",
    "spine_schedule",
    "spine_sensor",
    "workflow_from_yaml",
    "workflow_to_yaml",
]
