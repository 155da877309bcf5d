"""The Spine workflow model: ``Workflow``, ``Step`` and their policies.

Pure Python, no Dagster import. The compiler turns a ``Workflow`` into a Dagster job.

Example:
    >>> from spine_dagster import Step, StepResult, Workflow
    >>> wf = Workflow(
    ...     name="docs.example",
    ...     steps=[Step.lambda_("hello", lambda ctx, config: StepResult.ok(output={"hi": 1}))],
    ... )
    >>> wf.step_names()
    ['hello']
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Callable

from .policies import ErrorCategory, ErrorPolicy, RetryPolicy

__all__ = ["ErrorCategory", "ErrorPolicy", "RetryPolicy", "Step", "StepType", "Workflow"]


class StepType(str, Enum):
    """What a step does."""

    LAMBDA = "lambda"
    PIPELINE = "pipeline"
    CHOICE = "choice"
    WAIT = "wait"
    MAP = "map"


Handler = Callable[..., Any]


@dataclass
class Step:
    """One step of a workflow. Build steps with the factories: ``Step.lambda_``, ``Step.pipeline``..."""

    name: str
    step_type: StepType
    config: dict[str, Any] = field(default_factory=dict)
    on_error: ErrorPolicy = ErrorPolicy.STOP
    retry_policy: RetryPolicy | None = None
    checkpoint: bool | None = None
    handler: Handler | None = None
    pipeline_name: str | None = None
    condition: Callable[..., bool] | None = None
    then_step: str | None = None
    else_step: str | None = None
    duration_seconds: float | None = None
    items_path: str | None = None
    iterator_workflow: Workflow | None = None
    max_concurrency: int = 4
    item_param: str = "item"

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError("a step needs a non-empty string name")
        self.step_type = StepType(self.step_type)
        self.on_error = ErrorPolicy(self.on_error)
        if self.on_error is ErrorPolicy.RETRY and self.retry_policy is None:
            self.retry_policy = RetryPolicy()

    @classmethod
    def lambda_(
        cls,
        name: str,
        handler: Handler,
        config: dict[str, Any] | None = None,
        on_error: ErrorPolicy = ErrorPolicy.STOP,
        *,
        retry_policy: RetryPolicy | None = None,
        checkpoint: bool | None = None,
    ) -> Step:
        """A step that calls ``handler(ctx, config) -> StepResult``."""
        if not callable(handler):
            raise TypeError(f"step {name!r}: handler must be callable, got {handler!r}")
        return cls(name, StepType.LAMBDA, dict(config or {}), on_error, retry_policy, checkpoint,
                   handler=handler)

    @classmethod
    def pipeline(
        cls,
        name: str,
        pipeline_name: str,
        params: dict[str, Any] | None = None,
        on_error: ErrorPolicy = ErrorPolicy.STOP,
        *,
        retry_policy: RetryPolicy | None = None,
        checkpoint: bool | None = None,
    ) -> Step:
        """A step that runs the pipeline registered as ``pipeline_name`` with ``@pipeline``."""
        return cls(name, StepType.PIPELINE, dict(params or {}), on_error, retry_policy, checkpoint,
                   pipeline_name=pipeline_name)

    @classmethod
    def choice(cls, name: str, condition: Callable[..., bool], then_step: str,
               else_step: str | None = None) -> Step:
        """Jump forward to ``then_step`` when ``condition(ctx)`` holds, else to ``else_step``."""
        return cls(name, StepType.CHOICE, condition=condition, then_step=then_step,
                   else_step=else_step)

    @classmethod
    def wait(cls, name: str, duration_seconds: float) -> Step:
        """Pause for ``duration_seconds``."""
        return cls(name, StepType.WAIT, duration_seconds=float(duration_seconds))

    @classmethod
    def map(cls, name: str, items_path: str, iterator_workflow: Workflow, max_concurrency: int = 4,
            item_param: str = "item", *, checkpoint: bool | None = None) -> Step:
        """Run ``iterator_workflow`` once per item of ``ctx.params[items_path]``."""
        return cls(name, StepType.MAP, checkpoint=checkpoint, items_path=items_path,
                   iterator_workflow=iterator_workflow, max_concurrency=max_concurrency,
                   item_param=item_param)

    def signature(self) -> list[Any]:
        """What a checkpoint after this step depends on: name, type and target."""
        target = self.pipeline_name or self.then_step or self.items_path
        return [self.name, self.step_type.value, target]

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"name": self.name, "type": self.step_type.value}
        if self.pipeline_name is not None:
            data["pipeline"] = self.pipeline_name
        if self.config:
            data["config"] = dict(self.config)
        if self.on_error is not ErrorPolicy.STOP:
            data["on_error"] = self.on_error.value
        if self.checkpoint is not None:
            data["checkpoint"] = self.checkpoint
        if self.duration_seconds is not None:
            data["duration_seconds"] = self.duration_seconds
        return data


class Workflow:
    """An ordered list of uniquely named steps that pass one immutable context along.

    The workflow remembers the module that built it, so that a run can be resumed from a new
    Python process: define workflows at module level for that.
    """

    def __init__(
        self,
        name: str,
        steps: list[Step],
        domain: str = "",
        description: str = "",
        version: int = 1,
        defaults: dict[str, Any] | None = None,
        tags: list[str] | None = None,
        *,
        checkpoint_strategy: str | None = None,
        auto_resume: Any = None,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError("a workflow needs a non-empty string name")
        self.name = name
        self.steps = list(steps)
        self.domain = domain
        self.description = description
        self.version = version
        self.defaults = dict(defaults or {})
        self.tags = list(tags or [])
        self.checkpoint_strategy = checkpoint_strategy
        self.auto_resume = auto_resume
        seen: set[str] = set()
        for step in self.steps:
            if not isinstance(step, Step):
                raise TypeError(f"workflow {name!r}: {step!r} is not a Step")
            if step.name in seen:
                raise ValueError(f"workflow {name!r}: duplicate step name {step.name!r}")
            seen.add(step.name)
        for step in self.steps:
            if step.step_type is StepType.CHOICE:
                for target in (step.then_step, step.else_step):
                    if target is not None and target not in seen:
                        raise ValueError(
                            f"workflow {name!r}: choice step {step.name!r} targets unknown step "
                            f"{target!r}"
                        )
        frame = sys._getframe(1)
        while frame is not None and frame.f_globals.get("__name__") == __name__:
            frame = frame.f_back
        self.defined_in: str | None = frame.f_globals.get("__name__") if frame else None
        self.defined_in_file: str | None = frame.f_globals.get("__file__") if frame else None

    def get_step(self, name: str) -> Step | None:
        return next((s for s in self.steps if s.name == name), None)

    def step_names(self) -> list[str]:
        return [s.name for s in self.steps]

    def step_index(self, name: str) -> int:
        for index, step in enumerate(self.steps):
            if step.name == name:
                return index
        return -1

    def signature(self) -> list[list[Any]]:
        """The shape of the workflow, step by step; recorded with each run to detect changes."""
        return [step.signature() for step in self.steps]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "domain": self.domain,
            "description": self.description,
            "defaults": dict(self.defaults),
            "tags": list(self.tags),
            "steps": [s.to_dict() for s in self.steps],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Workflow:
        """Build a workflow from its YAML/JSON form. Only data-only step types are allowed."""
        steps = []
        for raw in data.get("steps", []):
            kind = raw.get("type", "pipeline")
            if kind == StepType.PIPELINE.value:
                steps.append(Step.pipeline(raw["name"], raw["pipeline"], raw.get("config"),
                                           ErrorPolicy(raw.get("on_error", "stop")),
                                           checkpoint=raw.get("checkpoint")))
            elif kind == StepType.WAIT.value:
                steps.append(Step.wait(raw["name"], raw.get("duration_seconds", 0)))
            else:
                raise ValueError(f"step {raw.get('name')!r}: type {kind!r} cannot be built from data")
        return cls(data["name"], steps, domain=data.get("domain", ""),
                   description=data.get("description", ""), version=data.get("version", 1),
                   defaults=data.get("defaults"), tags=data.get("tags"))

    def __repr__(self) -> str:
        return f"Workflow(name={self.name!r}, steps={self.step_names()!r})"
