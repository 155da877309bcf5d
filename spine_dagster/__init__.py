"""spine_dagster: Spine workflows on Dagster, with spine-format checkpoints and resume.

Names are imported on first use (PEP 562), so that ``import spine_dagster`` and the
``spine-dagster`` command start fast; Dagster is imported only by the names that need it.

Example:
    >>> from spine_dagster import Step, StepResult, Workflow, build_job
    >>> job = build_job(Workflow("docs.init", [Step.lambda_("a", lambda ctx, cfg: StepResult.ok())]))
    >>> job.name
    'docs__init'
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .version import __version__

# public name -> the module that defines it
_EXPORTS: dict[str, str] = {
    "AutoResume": "auto_resume",
    "build_asset_job": "assets", "build_assets": "assets",
    "spine_partitioned_schedule": "automation", "spine_run_config": "automation",
    "spine_schedule": "automation", "spine_sensor": "automation",
    "RemoteRun": "client", "SpineDagsterClient": "client",
    "SpineStepFailure": "engine", "build_job": "compiler", "op_name_for": "compiler",
    "WorkflowContext": "context",
    "SpineJob": "definitions", "build_definitions": "definitions",
    "SpineWorkflowComponent": "component",
    "CheckpointCorruptError": "errors", "CheckpointNotFoundError": "errors",
    "CheckpointSerializationError": "errors", "CheckpointTooLargeError": "errors",
    "CheckpointWriteError": "errors", "DatabaseUnavailableError": "errors",
    "InstanceConfigError": "errors",
    "InvalidAutomationError": "errors", "InvalidDatabaseUrlError": "errors",
    "InvalidParamsError": "errors", "InvalidRetentionError": "errors",
    "InvalidRunIdError": "errors", "InvalidSettingError": "errors",
    "InvalidWorkflowError": "errors", "NothingToResumeError": "errors",
    "RunInProgressError": "errors", "SchemaOutOfDateError": "errors",
    "SpineDagsterError": "errors", "StaleStepsError": "errors",
    "UnknownPipelineError": "errors", "UnknownRunError": "errors", "UnknownStepError": "errors",
    "WebserverQueryError": "errors", "WebserverUnavailableError": "errors",
    "WorkflowChangedError": "errors", "WorkflowMismatchError": "errors",
    "WorkflowNotFoundError": "errors", "ConditionError": "errors",
    "Condition": "conditions", "QualityThresholds": "quality",
    "load_workflow_yaml": "workflow_yaml", "workflow_from_yaml": "workflow_yaml",
    "workflow_to_yaml": "workflow_yaml",
    "SpineCheckpointIOManager": "io_manager",
    "ErrorCategory": "model", "ErrorPolicy": "model", "RetryPolicy": "model", "Step": "model",
    "StepType": "model", "Workflow": "model",
    "pipeline": "pipelines", "registered_pipelines": "pipelines",
    "SpineRunConfig": "resources",
    "QualityMetrics": "results", "StepExecution": "results", "StepResult": "results",
    "WorkflowResult": "results", "WorkflowStatus": "results",
    "ResumePlan": "resume",
    "ResumeDecision": "sensors", "SpineFailure": "sensors", "spine_failure_sensor": "sensors",
    "SpineWebserver": "resume_job", "build_resume_job": "resume_job",
    "CheckpointRetention": "retention", "cleanup_job": "retention",
    "cleanup_schedule": "retention",
    "WorkflowRunner": "runner",
    "spine_dask_executor": "dask_executor",
    "Checkpoint": "records", "DamagedRow": "records", "Listing": "records",
    "RunRecord": "records", "CheckpointStore": "store",
}

__all__ = sorted([*_EXPORTS, "__version__"])


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'spine_dagster' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs
    from .assets import build_asset_job, build_assets  # noqa: F401
    from .auto_resume import AutoResume  # noqa: F401
    from .client import SpineDagsterClient  # noqa: F401
    from .component import SpineWorkflowComponent  # noqa: F401
    from .compiler import build_job, op_name_for  # noqa: F401
    from .context import WorkflowContext  # noqa: F401
    from .dask_executor import spine_dask_executor  # noqa: F401
    from .definitions import SpineJob, build_definitions  # noqa: F401
    from .model import ErrorCategory, ErrorPolicy, RetryPolicy, Step, StepType, Workflow  # noqa: F401
    from .records import Checkpoint, DamagedRow, Listing, RunRecord  # noqa: F401
    from .results import QualityMetrics, StepResult, WorkflowResult, WorkflowStatus  # noqa: F401
    from .runner import WorkflowRunner  # noqa: F401
    from .sensors import ResumeDecision, SpineFailure, spine_failure_sensor  # noqa: F401
    from .store import CheckpointStore  # noqa: F401
