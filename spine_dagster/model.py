"""The Spine workflow model: ``Workflow``, ``Step`` and their policies.

Pure Python, no Dagster import. The compiler turns a ``Workflow`` into a Dagster job. Every step
can be written as data (``Workflow.to_dict()`` / ``Workflow.from_dict()``, and YAML through
:mod:`spine_dagster.workflow_yaml`) except a lambda step and a choice on a Python callable.

Example:
    >>> from spine_dagster import Step, StepResult, Workflow
    >>> wf = Workflow(
    ...     name="docs.example",
    ...     steps=[Step.lambda_("hello", lambda ctx, config: StepResult.ok(output={"hi": 1}))],
    ... )
    >>> wf.step_names()
    ['hello']
    >>> data = Workflow("docs.data", [
    ...     Step.pipeline("fetch", "docs.fetch", {"limit": 10}, pool="warehouse"),
    ...     Step.choice("route", {"param": "mode", "equals": "full"}, then_step="load"),
    ...     Step.wait("cool_down", 5),
    ...     Step.pipeline("load", "docs.load", produces="warehouse/orders"),
    ... ]).to_dict()
    >>> data["steps"][1]
    {'name': 'route', 'type': 'choice', 'condition': {'param': 'mode', 'equals': 'full'},
     'then_step': 'load'}
    >>> Workflow.from_dict(data).to_dict() == data
    True
"""

from __future__ import annotations

import copy
import re
import sys
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Callable, Mapping

from .auto_resume import coerce_auto_resume
from .conditions import Condition
from .data_checks import (
    check_keys,
    describe,
    is_name,
    is_number,
    require_mapping,
    within,
)
from .errors import InvalidWorkflowError
from .policies import ErrorCategory, ErrorPolicy, RetryPolicy
from .quality import QualityThresholds

__all__ = ["ErrorCategory", "ErrorPolicy", "RetryPolicy", "Step", "StepType", "Workflow"]

ASSET_KEY = re.compile(r"[A-Za-z0-9_]+(/[A-Za-z0-9_]+)*")


class StepType(str, Enum):
    """What a step does."""

    LAMBDA = "lambda"
    PIPELINE = "pipeline"
    CHOICE = "choice"
    WAIT = "wait"
    MAP = "map"


Handler = Callable[..., Any]

# The dict form of a step: keys every step may have, and each type's own keys.
COMMON_KEYS = ("description", "on_error", "retry", "checkpoint", "quality_thresholds", "pool",
               "fuse", "produces")
TYPE_KEYS = {
    "pipeline": ("pipeline", "config", "params"),
    "wait": ("duration_seconds",),
    "map": ("items_path", "workflow", "max_concurrency", "item_param"),
    "choice": ("condition", "then_step", "else_step"),
}
REQUIRED_KEYS = {
    "pipeline": {"pipeline": "the name of a pipeline registered with @spine_dagster.pipeline"},
    "wait": {"duration_seconds": "the seconds to wait, e.g. 60"},
    "map": {"items_path": "the param that holds the list of items",
            "workflow": "the workflow to run for each item, e.g. {name: per_item, steps: [...]}"},
    "choice": {"condition": "a data condition, e.g. {param: mode, equals: fast}",
               "then_step": "the step to jump to when the condition holds"},
}


@dataclass
class Step:
    """One step of a workflow. Build steps with the factories: ``Step.lambda_``, ``Step.pipeline``...

    Every factory also takes ``on_error`` and these keyword-only options (default None):
    ``retry_policy``, ``checkpoint`` (True: checkpoint after this step, False: never),
    ``quality_thresholds`` (a ``QualityThresholds``), ``pool`` (a Dagster concurrency pool for the
    step's op), ``fuse`` (False keeps the step out of fused ops), ``produces`` (the asset key the
    step writes, like ``"warehouse/orders"``) and ``description``.
    """

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
    quality_thresholds: QualityThresholds | None = None
    pool: str | None = None
    fuse: bool | None = None
    produces: str | None = None
    description: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise InvalidWorkflowError(f"a step needs a non-empty string name, got "
                                       f"{describe(self.name)}")
        self.step_type = self._enum(StepType, self.step_type, "type")
        self.on_error = self._enum(ErrorPolicy, self.on_error, "on_error")
        if self.on_error is ErrorPolicy.RETRY and self.retry_policy is None:
            self.retry_policy = RetryPolicy()
        self._check_options()
        self._check_own_fields()

    def _fail(self, problem: str) -> InvalidWorkflowError:
        return InvalidWorkflowError(f"step {self.name!r}: {problem}")

    def _enum(self, kind: type[Enum], value: Any, what: str) -> Any:
        try:
            return kind(value)
        except ValueError:
            raise self._fail(f"{what} {value!r} is not valid; use one of "
                             f"{', '.join(m.value for m in kind)}") from None

    def _check_options(self) -> None:
        if not isinstance(self.config, Mapping):
            raise self._fail(f"config must be a dict, got {describe(self.config)}")
        if self.retry_policy is not None and not isinstance(self.retry_policy, RetryPolicy):
            raise self._fail(f"retry_policy must be a RetryPolicy(...), got "
                             f"{describe(self.retry_policy)}")
        for name in ("checkpoint", "fuse"):
            if not isinstance(getattr(self, name), (bool, type(None))):
                raise self._fail(f"{name} must be True, False or None, got "
                                 f"{describe(getattr(self, name))}")
        if self.quality_thresholds is not None \
                and not isinstance(self.quality_thresholds, QualityThresholds):
            raise self._fail(f"quality_thresholds must be a QualityThresholds(...), got "
                             f"{describe(self.quality_thresholds)}")
        if self.pool is not None and not is_name(self.pool):
            raise self._fail(f"pool must be a non-empty string naming a Dagster concurrency "
                             f"pool, got {describe(self.pool)}")
        if self.produces is not None and not (isinstance(self.produces, str)
                                              and ASSET_KEY.fullmatch(self.produces)):
            raise self._fail(f"produces={self.produces!r} is not an asset key; use segments of "
                             f"letters, digits and '_' separated by '/', like 'warehouse/orders'")
        if self.description is not None and not isinstance(self.description, str):
            raise self._fail(f"description must be a string, got {describe(self.description)}")

    def _check_own_fields(self) -> None:
        kind = self.step_type
        if kind is StepType.LAMBDA and not callable(self.handler):
            raise self._fail(f"handler must be callable, got {describe(self.handler)}")
        if kind is StepType.PIPELINE and not is_name(self.pipeline_name):
            raise self._fail(f"pipeline_name must name a registered pipeline, got "
                             f"{describe(self.pipeline_name)}")
        if kind is StepType.CHOICE:
            if isinstance(self.condition, Mapping):
                with within(f"step {self.name!r}"):
                    self.condition = Condition(self.condition)
            if not callable(self.condition):
                raise self._fail(f"condition must be a callable condition(ctx) -> bool or a data "
                                 f"condition like {{'param': 'mode', 'equals': 'fast'}}, got "
                                 f"{describe(self.condition)}")
            if not is_name(self.then_step) or not (self.else_step is None
                                                    or is_name(self.else_step)):
                raise self._fail(f"then_step (and else_step, when given) must name a step, got "
                                 f"{self.then_step!r} / {self.else_step!r}")
        if kind is StepType.WAIT and self.duration_seconds is not None:
            if not is_number(self.duration_seconds) or not self.duration_seconds >= 0:
                raise self._fail(f"duration_seconds must be a number >= 0, got "
                                 f"{describe(self.duration_seconds)}")
            self.duration_seconds = float(self.duration_seconds)
        if kind is StepType.MAP:
            if not is_name(self.items_path):
                raise self._fail(f"items_path must name the param that holds the items, got "
                                 f"{describe(self.items_path)}")
            if not isinstance(self.iterator_workflow, Workflow):
                raise self._fail(f"the iterator workflow must be a Workflow, got "
                                 f"{describe(self.iterator_workflow)}")
            if not isinstance(self.max_concurrency, int) or isinstance(self.max_concurrency, bool) \
                    or self.max_concurrency < 1:
                raise self._fail(f"max_concurrency must be a whole number >= 1, got "
                                 f"{describe(self.max_concurrency)}")
            if not is_name(self.item_param):
                raise self._fail(f"item_param must be a non-empty string, got "
                                 f"{describe(self.item_param)}")

    # -- factories -------------------------------------------------------------------------------
    @classmethod
    def lambda_(cls, name: str, handler: Handler, config: dict[str, Any] | None = None,
                on_error: ErrorPolicy = ErrorPolicy.STOP, *,
                retry_policy: RetryPolicy | None = None, checkpoint: bool | None = None,
                quality_thresholds: QualityThresholds | None = None, pool: str | None = None,
                fuse: bool | None = None, produces: str | None = None,
                description: str | None = None) -> Step:
        """A step that calls ``handler(ctx, config) -> StepResult`` (it cannot be data)."""
        return cls(name, StepType.LAMBDA, dict(config or {}), on_error, retry_policy, checkpoint,
                   handler=handler, quality_thresholds=quality_thresholds, pool=pool, fuse=fuse,
                   produces=produces, description=description)

    @classmethod
    def pipeline(cls, name: str, pipeline_name: str, params: dict[str, Any] | None = None,
                 on_error: ErrorPolicy = ErrorPolicy.STOP, *,
                 retry_policy: RetryPolicy | None = None, checkpoint: bool | None = None,
                 quality_thresholds: QualityThresholds | None = None, pool: str | None = None,
                 fuse: bool | None = None, produces: str | None = None,
                 description: str | None = None) -> Step:
        """A step that runs the pipeline registered as ``pipeline_name`` with ``@pipeline``."""
        return cls(name, StepType.PIPELINE, dict(params or {}), on_error, retry_policy, checkpoint,
                   pipeline_name=pipeline_name, quality_thresholds=quality_thresholds, pool=pool,
                   fuse=fuse, produces=produces, description=description)

    @classmethod
    def choice(cls, name: str, condition: Callable[..., bool] | Mapping[str, Any], then_step: str,
               else_step: str | None = None, *, on_error: ErrorPolicy = ErrorPolicy.STOP,
               retry_policy: RetryPolicy | None = None, checkpoint: bool | None = None,
               quality_thresholds: QualityThresholds | None = None, pool: str | None = None,
               fuse: bool | None = None, produces: str | None = None,
               description: str | None = None) -> Step:
        """Jump forward to ``then_step`` when ``condition(ctx)`` holds, else to ``else_step``.

        ``condition`` is a callable or a data condition (a dict, see :class:`Condition`).
        """
        return cls(name, StepType.CHOICE, on_error=on_error, retry_policy=retry_policy,
                   checkpoint=checkpoint, condition=condition, then_step=then_step,
                   else_step=else_step, quality_thresholds=quality_thresholds, pool=pool,
                   fuse=fuse, produces=produces, description=description)

    @classmethod
    def wait(cls, name: str, duration_seconds: float, *, on_error: ErrorPolicy = ErrorPolicy.STOP,
             retry_policy: RetryPolicy | None = None, checkpoint: bool | None = None,
             quality_thresholds: QualityThresholds | None = None, pool: str | None = None,
             fuse: bool | None = None, produces: str | None = None,
             description: str | None = None) -> Step:
        """Pause for ``duration_seconds``."""
        return cls(name, StepType.WAIT, on_error=on_error, retry_policy=retry_policy,
                   checkpoint=checkpoint, duration_seconds=duration_seconds,
                   quality_thresholds=quality_thresholds, pool=pool, fuse=fuse,
                   produces=produces, description=description)

    @classmethod
    def map(cls, name: str, items_path: str, iterator_workflow: Workflow, max_concurrency: int = 4,
            item_param: str = "item", *, on_error: ErrorPolicy = ErrorPolicy.STOP,
            retry_policy: RetryPolicy | None = None, checkpoint: bool | None = None,
            quality_thresholds: QualityThresholds | None = None, pool: str | None = None,
            fuse: bool | None = None, produces: str | None = None,
            description: str | None = None) -> Step:
        """Run ``iterator_workflow`` once per item of ``ctx.params[items_path]``."""
        return cls(name, StepType.MAP, on_error=on_error, retry_policy=retry_policy,
                   checkpoint=checkpoint, items_path=items_path,
                   iterator_workflow=iterator_workflow, max_concurrency=max_concurrency,
                   item_param=item_param, quality_thresholds=quality_thresholds, pool=pool,
                   fuse=fuse, produces=produces, description=description)

    # -- identity and data form ------------------------------------------------------------------
    def signature(self) -> list[Any]:
        """What a checkpoint after this step depends on: name, type and target."""
        if self.step_type is StepType.CHOICE:
            target = f"then={self.then_step} else={self.else_step}"
        elif self.step_type is StepType.MAP:
            target = f"items={self.items_path} workflow={self.iterator_workflow.name}"
        else:
            target = self.pipeline_name
        return [self.name, self.step_type.value, target]

    def to_dict(self) -> dict[str, Any]:
        """The data form of the step (see ``Workflow.to_dict``).

        Raises:
            InvalidWorkflowError: for a lambda step, or a choice on a Python callable.
        """
        if self.step_type is StepType.LAMBDA:
            raise self._fail(
                "a lambda step runs a Python function, which cannot be written as data. Register "
                "the function with @spine_dagster.pipeline('NAME') and use "
                f"Step.pipeline({self.name!r}, 'NAME') instead")
        data: dict[str, Any] = {"name": self.name, "type": self.step_type.value}
        if self.description is not None:
            data["description"] = self.description
        if self.step_type is StepType.PIPELINE:
            data["pipeline"] = self.pipeline_name
            if self.config:
                data["config"] = copy.deepcopy(dict(self.config))
        elif self.step_type is StepType.WAIT:
            data["duration_seconds"] = self.duration_seconds
        elif self.step_type is StepType.MAP:
            data["items_path"] = self.items_path
            with within(f"step {self.name!r}"):
                data["workflow"] = self.iterator_workflow.to_dict()
            data["max_concurrency"] = self.max_concurrency
            data["item_param"] = self.item_param
        elif self.step_type is StepType.CHOICE:
            if not isinstance(self.condition, Condition):
                raise self._fail(
                    "its condition is a Python callable, which cannot be written as data. Use a "
                    "data condition, e.g. Step.choice(name, {'param': 'mode', 'equals': 'fast'}, "
                    "then_step=...)")
            data["condition"] = self.condition.to_dict()
            data["then_step"] = self.then_step
            if self.else_step is not None:
                data["else_step"] = self.else_step
        if self.on_error is not ErrorPolicy.STOP:
            data["on_error"] = self.on_error.value
        implied = self.on_error is ErrorPolicy.RETRY and self.retry_policy == RetryPolicy()
        if self.retry_policy is not None and not implied:
            data["retry"] = self.retry_policy.to_dict()
        if self.checkpoint is not None:
            data["checkpoint"] = self.checkpoint
        if self.quality_thresholds is not None:
            data["quality_thresholds"] = self.quality_thresholds.to_dict()
        for name in ("pool", "fuse", "produces"):
            if getattr(self, name) is not None:
                data[name] = getattr(self, name)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Step:
        """Build a step from its data form; unknown keys and types are refused with the fix."""
        require_mapping(data, "step")
        name = data.get("name")
        where = f"step {name!r}" if isinstance(name, str) and name else "step"
        kind = _value(data, "type", "pipeline")
        if kind == StepType.LAMBDA.value:
            raise InvalidWorkflowError(
                f"{where}: type 'lambda' cannot be data (a lambda runs a Python function). "
                f"Register the function with @spine_dagster.pipeline('NAME') and use type: "
                f"pipeline, pipeline: NAME")
        if not isinstance(kind, str) or kind not in TYPE_KEYS:
            raise InvalidWorkflowError(f"{where}: unknown type {kind!r}; use one of "
                                       f"{', '.join(TYPE_KEYS)} (the default is pipeline)")
        check_keys(data, ("name", "type", *TYPE_KEYS[kind], *COMMON_KEYS), f"{where} ({kind})",
                   required={"name": "every step needs a unique name", **REQUIRED_KEYS[kind]})
        options: dict[str, Any] = {
            "on_error": _value(data, "on_error", ErrorPolicy.STOP),
            **{key: data.get(key) for key in ("checkpoint", "pool", "fuse", "produces",
                                              "description")}}
        with within(where):
            if _value(data, "retry") is not None:
                options["retry_policy"] = RetryPolicy.from_dict(data["retry"])
            if _value(data, "quality_thresholds") is not None:
                options["quality_thresholds"] = QualityThresholds.from_dict(
                    data["quality_thresholds"])
        if kind == "pipeline":
            if "config" in data and "params" in data:
                raise InvalidWorkflowError(f"{where}: has both 'config' and 'params' (params is "
                                           f"Spine's name for config); keep one")
            config = _value(data, "config", _value(data, "params", {}))
            require_mapping(config, f"{where}: config")
            return cls.pipeline(name, data["pipeline"], config, **options)
        if kind == "wait":
            return cls.wait(name, data["duration_seconds"], **options)
        if kind == "map":
            with within(f"{where}: workflow"):
                iterator = Workflow.from_dict(require_mapping(data["workflow"], "the workflow"))
            return cls.map(name, data["items_path"], iterator, _value(data, "max_concurrency", 4),
                           _value(data, "item_param", "item"), **options)
        return cls.choice(name, data["condition"], data["then_step"], data.get("else_step"),
                          **options)


def _value(data: Mapping[str, Any], key: str, default: Any = None) -> Any:
    """``data[key]``, with a missing key and a YAML null (``key:`` with no value) both default."""
    value = data.get(key)
    return default if value is None else value


WORKFLOW_KEYS = ("name", "version", "domain", "description", "defaults", "tags", "owners",
                 "checkpoint_strategy", "fuse", "auto_resume", "steps")


class Workflow:
    """An ordered list of uniquely named steps that pass one immutable context along.

    The workflow remembers the module that built it, so that a run can be resumed from a new
    Python process: define workflows at module level for that. A workflow loaded from YAML
    remembers its file instead (``source_file``, ``pipelines_module``).

    Args:
        name: the workflow name.
        steps: the steps, in order; names are unique and choice targets name steps.
        domain, description, version, defaults, tags: as in Spine; ``defaults`` are merged under
            the run's params.
        checkpoint_strategy: ``every_step`` or ``key_steps`` (default: the runner's).
        auto_resume: an ``AutoResume``, ``True``, a number of resumes, or a mapping of its fields.
        fuse: True lets the compiler fuse consecutive steps into one op (a step opts out with
            ``fuse=False``).
        owners: who owns the workflow (e.g. ``["team:data", "ana@example.com"]``).
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
        fuse: bool = False,
        owners: list[str] | None = None,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise InvalidWorkflowError(f"a workflow needs a non-empty string name, got "
                                       f"{describe(name)}")
        where = f"workflow {name!r}"
        _expect(isinstance(steps, (list, tuple)), where, "steps must be a list of Step objects",
                steps)
        for step in steps:
            _expect(isinstance(step, Step), where, "every step must be a Step (build it with "
                    "Step.pipeline(...), Step.lambda_(...)...)", step)
        _expect(isinstance(domain, str), where, "domain must be a string", domain)
        _expect(isinstance(description, str), where, "description must be a string", description)
        _expect(isinstance(version, int) and not isinstance(version, bool) and version >= 1,
                where, "version must be a whole number >= 1", version)
        _expect(defaults is None or isinstance(defaults, Mapping), where,
                "defaults must be a dict of param values", defaults)
        for label, values in (("tags", tags), ("owners", owners)):
            _expect(values is None or (isinstance(values, (list, tuple))
                                       and all(is_name(v) for v in values)),
                    where, f"{label} must be a list of non-empty strings", values)
        _expect(checkpoint_strategy is None or isinstance(checkpoint_strategy, str), where,
                "checkpoint_strategy must be a string such as 'every_step' or 'key_steps'",
                checkpoint_strategy)
        _expect(isinstance(fuse, bool), where, "fuse must be True or False", fuse)
        self.name = name
        self.steps = list(steps)
        self.domain = domain
        self.description = description
        self.version = version
        self.defaults = dict(defaults or {})
        self.tags = list(tags or [])
        self.checkpoint_strategy = checkpoint_strategy
        self.auto_resume = auto_resume
        self.fuse = fuse
        self.owners = list(owners or [])
        self.source_file: str | None = None  # set when loaded from YAML
        self.pipelines_module: str | None = None
        self._check_steps()
        frame = sys._getframe(1)
        while frame is not None and frame.f_globals.get("__name__") == __name__:
            frame = frame.f_back
        self.defined_in: str | None = frame.f_globals.get("__name__") if frame else None
        self.defined_in_file: str | None = frame.f_globals.get("__file__") if frame else None

    def _check_steps(self) -> None:
        """Spine's own checks, with Spine's messages (``pytest.raises(ValueError, match=...)``)."""
        seen: set[str] = set()
        for step in self.steps:
            if step.name in seen:
                raise InvalidWorkflowError(f"Duplicate step name: {step.name}")
            seen.add(step.name)
        for step in self.steps:
            if step.step_type is StepType.CHOICE:
                if step.then_step not in seen:
                    raise InvalidWorkflowError(
                        f"Choice step '{step.name}' references unknown then_step: {step.then_step}")
                if step.else_step is not None and step.else_step not in seen:
                    raise InvalidWorkflowError(
                        f"Choice step '{step.name}' references unknown else_step: {step.else_step}")

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
        """The data form (JSON, and YAML's ``metadata`` and ``spec`` merged); see ``from_dict``.

        Raises:
            InvalidWorkflowError: a step cannot be data (a lambda, or a choice on a callable).
        """
        data: dict[str, Any] = {
            "name": self.name,
            "version": self.version,
            "domain": self.domain,
            "description": self.description,
            "defaults": copy.deepcopy(self.defaults),
            "tags": list(self.tags),
            "owners": list(self.owners),
            "fuse": self.fuse,
        }
        if self.checkpoint_strategy is not None:
            data["checkpoint_strategy"] = self.checkpoint_strategy
        auto_resume = coerce_auto_resume(self.auto_resume, workflow_name=self.name)
        if auto_resume is not None:
            data["auto_resume"] = auto_resume.to_dict()
        with within(f"workflow {self.name!r}"):
            data["steps"] = [step.to_dict() for step in self.steps]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Workflow:
        """Build a workflow from its data form: ``{"name", "steps": [...], ...}``.

        Each step is ``{"name", "type", ...}`` with ``type`` one of pipeline (the default), wait,
        map, choice; errors name the step (``steps[2]: step 'load': ...``) and the fix.
        """
        require_mapping(data, "workflow")
        check_keys(data, WORKFLOW_KEYS, "workflow",
                   required={"name": "the workflow name", "steps": "the list of steps"})
        name = data["name"]
        raw_steps = data["steps"]
        if not isinstance(raw_steps, list):
            raise InvalidWorkflowError(f"workflow {name!r}: steps must be a list, got "
                                       f"{describe(raw_steps)}")
        steps = []
        for index, raw in enumerate(raw_steps):
            with within(f"steps[{index}]"):
                steps.append(Step.from_dict(raw))
        auto_resume = data.get("auto_resume")
        if auto_resume is not None:
            auto_resume = coerce_auto_resume(auto_resume, workflow_name=str(name))
        return cls(name, steps, domain=_value(data, "domain", ""),
                   description=_value(data, "description", ""), version=_value(data, "version", 1),
                   defaults=data.get("defaults"), tags=data.get("tags"),
                   checkpoint_strategy=data.get("checkpoint_strategy"), auto_resume=auto_resume,
                   fuse=_value(data, "fuse", False), owners=data.get("owners"))

    def __repr__(self) -> str:
        return f"Workflow(name={self.name!r}, steps={self.step_names()!r})"


def _expect(ok: bool, where: str, problem: str, value: Any) -> None:
    if not ok:
        raise InvalidWorkflowError(f"{where}: {problem}, got {describe(value)}")
