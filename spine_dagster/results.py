"""What steps and runs return: ``StepResult``, ``QualityMetrics``, ``WorkflowResult``.

Pure Python, no Dagster import.

Example:
    >>> from spine_dagster import ErrorCategory, StepResult
    >>> StepResult.ok(output={"rows": 3}).success
    True
    >>> StepResult.fail("API down", category=ErrorCategory.TRANSIENT).error_category.value
    'TRANSIENT'
"""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any

from .context import WorkflowContext
from .policies import ErrorCategory


class WorkflowStatus(str, Enum):
    """The status of a spine run. A ``str`` enum: ``result.status == "failed"`` holds."""

    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    PARTIAL = "partial"

    def __str__(self) -> str:
        return self.value


@dataclass
class QualityMetrics:
    """Data-quality figures a step reports; kept per step in the checkpoint."""

    record_count: int = 0
    valid_count: int = 0
    invalid_count: int = 0
    null_count: int = 0
    passed: bool = True
    custom_metrics: dict[str, Any] = field(default_factory=dict)
    failure_reasons: list[str] = field(default_factory=list)

    @property
    def valid_rate(self) -> float:
        return self.valid_count / self.record_count if self.record_count else 0.0

    @property
    def null_rate(self) -> float:
        return self.null_count / self.record_count if self.record_count else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "record_count": self.record_count,
            "valid_count": self.valid_count,
            "invalid_count": self.invalid_count,
            "null_count": self.null_count,
            "passed": self.passed,
            "valid_rate": self.valid_rate,
            "null_rate": self.null_rate,
            "custom_metrics": dict(self.custom_metrics),
            "failure_reasons": list(self.failure_reasons),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> QualityMetrics:
        return cls(**{k: data[k] for k in ("record_count", "valid_count", "invalid_count",
                                           "null_count", "passed", "custom_metrics",
                                           "failure_reasons") if k in data})


@dataclass
class StepResult:
    """The outcome of one step: its output, updates to the params, quality, or an error."""

    success: bool
    output: dict[str, Any] = field(default_factory=dict)
    context_updates: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    error_category: ErrorCategory | None = None
    quality: QualityMetrics | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    next_step: str | None = None
    checkpoint: bool | None = None
    origin: BaseException | None = field(default=None, repr=False, compare=False)
    """For a failure returned with ``fail()``: an exception whose traceback is the code that
    called ``fail()``, shown as the cause of the step's failure in the Dagster UI."""

    @classmethod
    def ok(cls, output: dict[str, Any] | None = None, context_updates: dict[str, Any] | None = None,
           quality: QualityMetrics | None = None, events: list[dict[str, Any]] | None = None,
           next_step: str | None = None, checkpoint: bool | None = None) -> StepResult:
        return cls(True, dict(output or {}), dict(context_updates or {}), quality=quality,
                   events=list(events or []), next_step=next_step, checkpoint=checkpoint)

    @classmethod
    def fail(cls, error: str, category: ErrorCategory | str = ErrorCategory.INTERNAL,
             output: dict[str, Any] | None = None, quality: QualityMetrics | None = None,
             events: list[dict[str, Any]] | None = None) -> StepResult:
        return cls(False, dict(output or {}), error=str(error),
                   error_category=ErrorCategory(category), quality=quality,
                   events=list(events or []), origin=_origin(str(error)))

    @classmethod
    def skip(cls, reason: str, output: dict[str, Any] | None = None) -> StepResult:
        return cls(True, {**(output or {}), "skipped": True, "skip_reason": reason})

    @classmethod
    def coerce(cls, value: Any, step_name: str) -> StepResult:
        """A handler may return a ``StepResult``, a plain dict (taken as ``ok(output=...)``) or None."""
        if isinstance(value, StepResult):
            return value
        if value is None:
            return cls.ok()
        if isinstance(value, dict):
            return cls.ok(output=value)
        raise TypeError(
            f"step {step_name!r} returned {type(value).__name__}; return a StepResult or a dict"
        )


class StepFailed(Exception):
    """A step returned ``StepResult.fail(...)``; its traceback is where it did so."""


def _origin(error: str) -> StepFailed:
    """``StepFailed(error)`` with a traceback through the frames that called ``fail()``."""
    tb = None
    frame = sys._getframe(2)
    depth = 0
    while frame is not None and depth < 30:
        if frame.f_globals.get("__name__", "").startswith(("spine_dagster.", "dagster.")):
            break  # the user's frames end where spine_dagster or Dagster called them
        tb = types.TracebackType(tb, frame, frame.f_lasti, frame.f_lineno)
        frame, depth = frame.f_back, depth + 1
    return StepFailed(error).with_traceback(tb)  # built innermost first: outermost at its head


@dataclass
class StepExecution:
    """One step as one execution ran it."""

    step_name: str
    status: str  # "completed" | "failed" | "skipped"
    started_at: datetime | None = None
    completed_at: datetime | None = None
    error: str | None = None
    error_category: str | None = None
    dagster_run_id: str | None = None

    @property
    def duration_seconds(self) -> float | None:
        if self.started_at and self.completed_at:
            return (self.completed_at - self.started_at).total_seconds()
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "step_name": self.step_name,
            "status": self.status,
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "completed_at": self.completed_at.isoformat() if self.completed_at else None,
            "duration_seconds": self.duration_seconds,
            "error": self.error,
            "error_category": self.error_category,
            "dagster_run_id": self.dagster_run_id,
        }


@dataclass
class WorkflowResult:
    """What ``WorkflowRunner.execute`` and ``resume`` return.

    ``completed_steps`` lists only the steps this execution ran to success: a resume lists the
    steps it ran itself. ``dagster_run_id`` is the Dagster run of this execution and
    ``dagster_run_ids`` the whole lineage of the spine run, oldest first.
    """

    workflow_name: str
    run_id: str
    status: WorkflowStatus
    context: WorkflowContext
    started_at: datetime
    completed_at: datetime | None = None
    step_executions: list[StepExecution] = field(default_factory=list)
    error_step: str | None = None
    error: str | None = None
    error_category: str | None = None
    dagster_run_id: str | None = None
    dagster_run_ids: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    plan: Any = field(default=None, repr=False)
    """The :class:`~spine_dagster.resume.ResumePlan` a resume carried out (None otherwise)."""

    @property
    def completed_steps(self) -> list[str]:
        return [s.step_name for s in self.step_executions if s.status == "completed"]

    @property
    def failed_steps(self) -> list[str]:
        return [s.step_name for s in self.step_executions if s.status == "failed"]

    @property
    def total_steps(self) -> int:
        return len(self.step_executions)

    @property
    def duration_seconds(self) -> float | None:
        if self.completed_at:
            return (self.completed_at - self.started_at).total_seconds()
        return None

    @property
    def success(self) -> bool:
        return self.status is WorkflowStatus.COMPLETED

    def to_dict(self) -> dict[str, Any]:
        return {
            "workflow_name": self.workflow_name,
            "run_id": self.run_id,
            "status": self.status.value,
            "started_at": self.started_at.isoformat(),
            "completed_at": self.completed_at.isoformat() if self.completed_at else None,
            "duration_seconds": self.duration_seconds,
            "completed_steps": self.completed_steps,
            "failed_steps": self.failed_steps,
            "error_step": self.error_step,
            "error": self.error,
            "error_category": self.error_category,
            "dagster_run_id": self.dagster_run_id,
            "dagster_run_ids": list(self.dagster_run_ids),
            "warnings": list(self.warnings),
            "step_executions": [s.to_dict() for s in self.step_executions],
        }
