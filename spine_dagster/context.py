"""``WorkflowContext``: the immutable context that flows from step to step.

Pure Python, no Dagster import.

Example:
    >>> from spine_dagster import WorkflowContext
    >>> ctx = WorkflowContext.create("docs.example", params={"tier": "gold"})
    >>> ctx2 = ctx.with_output("fetch", {"records": 10}).with_params({"derived": True})
    >>> (ctx.has_output("fetch"), ctx2.get_output("fetch", "records"), ctx2.params["derived"])
    (False, 10, True)
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from types import MappingProxyType
from typing import Any, Mapping

from .param_reads import TrackedParams

_step_log = logging.getLogger("spine_dagster.step")


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _frozen(value: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return MappingProxyType(dict(value or {}))


@dataclass(frozen=True)
class WorkflowContext:
    """Params and per-step outputs of one run. Never mutated: the ``with_*`` methods derive a new one.

    ``params``, ``outputs``, ``quality_metrics`` and ``metadata`` are read-only mappings. ``attempt``
    tells a step how many times it has been tried within this spine run (1 on the first try),
    across resumes and retries. ``log`` (``info``, ``warning``, ``error``, ``debug``) writes to the
    Dagster run log of the op that runs the step, and to Python logging (``spine_dagster.step``)
    when no Dagster run is active: step code never imports Dagster. Neither is part of the
    checkpoint.
    """

    run_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    workflow_name: str = ""
    params: Mapping[str, Any] = field(default_factory=dict)
    outputs: Mapping[str, Any] = field(default_factory=dict)
    partition: Any = field(default_factory=dict)
    started_at: datetime = field(default_factory=_now)
    metadata: Mapping[str, Any] = field(default_factory=dict)
    quality_metrics: Mapping[str, Any] = field(default_factory=dict)
    attempt: int = 1
    log: Any = field(default=_step_log, compare=False, repr=False)

    def __post_init__(self) -> None:
        for name in ("params", "outputs", "metadata", "quality_metrics"):
            value = getattr(self, name)
            if not isinstance(value, (MappingProxyType, TrackedParams)):
                object.__setattr__(self, name, _frozen(value))
        if self.partition is None:
            object.__setattr__(self, "partition", {})

    @classmethod
    def create(
        cls,
        workflow_name: str,
        params: Mapping[str, Any] | None = None,
        partition: Any = None,
        run_id: str | None = None,
        dry_run: bool = False,
    ) -> WorkflowContext:
        return cls(
            run_id=run_id or str(uuid.uuid4()),
            workflow_name=workflow_name,
            params=dict(params or {}),
            partition=partition if partition is not None else {},
            metadata={"dry_run": dry_run},
        )

    # -- reading ---------------------------------------------------------------------------------
    def get_param(self, key: str, default: Any = None) -> Any:
        return self.params.get(key, default)

    def get_output(self, step_name: str, key: str | None = None, default: Any = None) -> Any:
        step_output = self.outputs.get(step_name)
        if key is None:
            return step_output if step_output else default
        if not isinstance(step_output, Mapping):
            return default
        return step_output.get(key, default)

    def has_output(self, step_name: str) -> bool:
        return step_name in self.outputs

    @property
    def is_dry_run(self) -> bool:
        return bool(self.metadata.get("dry_run", False))

    @property
    def is_resumed(self) -> bool:
        """True in every step that a resume (a Dagster re-execution) runs."""
        return bool(self.params.get("__resumed__", False))

    # -- deriving --------------------------------------------------------------------------------
    def with_output(self, step_name: str, output: Mapping[str, Any]) -> WorkflowContext:
        return replace(self, outputs={**self.outputs, step_name: output})

    def with_params(self, updates: Mapping[str, Any]) -> WorkflowContext:
        return replace(self, params={**self.params, **updates})

    def with_metadata(self, updates: Mapping[str, Any]) -> WorkflowContext:
        return replace(self, metadata={**self.metadata, **updates})

    def with_quality(self, step_name: str, metrics: Mapping[str, Any]) -> WorkflowContext:
        return replace(self, quality_metrics={**self.quality_metrics, step_name: metrics})

    def with_run_id(self, run_id: str) -> WorkflowContext:
        return replace(self, run_id=run_id)

    # -- serialization ---------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The spine checkpoint form of the context: plain dicts (nested values are shared)."""
        return {
            "run_id": self.run_id,
            "workflow_name": self.workflow_name,
            "params": dict(self.params),
            "outputs": dict(self.outputs),
            "quality_metrics": dict(self.quality_metrics),
            "partition": self.partition,
            "started_at": self.started_at.isoformat(),
            "metadata": dict(self.metadata),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WorkflowContext:
        started_at = data.get("started_at")
        if isinstance(started_at, str):
            started_at = datetime.fromisoformat(started_at)
        return cls(
            run_id=data.get("run_id") or str(uuid.uuid4()),
            workflow_name=data.get("workflow_name", ""),
            params=dict(data.get("params") or {}),
            outputs=dict(data.get("outputs") or {}),
            partition=data.get("partition") if data.get("partition") is not None else {},
            started_at=started_at or _now(),
            metadata=dict(data.get("metadata") or {}),
            quality_metrics=dict(data.get("quality_metrics") or {}),
        )

    def __repr__(self) -> str:
        return (f"WorkflowContext(run_id={self.run_id!r}, workflow={self.workflow_name!r}, "
                f"steps={list(self.outputs)!r})")
