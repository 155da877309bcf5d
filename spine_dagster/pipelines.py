"""The registry of named pipelines that ``Step.pipeline(step_name, pipeline_name)`` runs.

Pure Python, no Dagster import.

Example:
    >>> from spine_dagster import StepResult, pipeline
    >>> @pipeline("docs.double")
    ... def double(ctx, config):
    ...     return StepResult.ok(output={"value": config["x"] * 2})
    >>> "docs.double" in registered_pipelines()
    True
"""

from __future__ import annotations

import logging
from typing import Any, Callable

from .errors import UnknownPipelineError

PipelineHandler = Callable[..., Any]

_PIPELINES: dict[str, PipelineHandler] = {}
_log = logging.getLogger("spine_dagster")


def _origin(fn: PipelineHandler) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"


def pipeline(name: str) -> Callable[[PipelineHandler], PipelineHandler]:
    """Register ``fn(ctx, config) -> StepResult | dict`` as the pipeline called ``name``.

    ``config`` is ``{**ctx.params, **step_params}``. A plain dict result is taken as
    ``StepResult.ok(output=that_dict)``. Registering a name twice replaces the handler; when
    the new handler is another function (not the same one imported again), a warning names
    both: two pipelines under one name run whichever was imported last.
    """
    if not isinstance(name, str) or not name:
        raise ValueError("a pipeline needs a non-empty string name")

    def register(fn: PipelineHandler) -> PipelineHandler:
        if not callable(fn):
            raise TypeError(f"pipeline {name!r}: {fn!r} is not callable")
        previous = _PIPELINES.get(name)
        if previous is not None and _origin(previous) != _origin(fn):
            _log.warning("spine_dagster: pipeline %r, registered by %s, is now %s: steps that "
                         "name it run whichever was imported last. Give one of them another "
                         "name.", name, _origin(previous), _origin(fn))
        _PIPELINES[name] = fn
        return fn

    return register


def registered_pipelines() -> list[str]:
    """The names of every registered pipeline, sorted."""
    return sorted(_PIPELINES)


def get_pipeline(name: str, *, step_name: str | None = None) -> PipelineHandler:
    """The handler registered as ``name``; the error lists the registered names."""
    try:
        return _PIPELINES[name]
    except KeyError:
        where = f"step {step_name!r} names pipeline {name!r}" if step_name else f"pipeline {name!r}"
        known = ", ".join(repr(n) for n in registered_pipelines()) or "none"
        raise UnknownPipelineError(
            f"{where}, which is not registered. Registered pipelines: {known}. Register it with "
            f"@spine_dagster.pipeline({name!r}) in a module that is imported before the workflow "
            f"is compiled."
        ) from None


def unregister_pipeline(name: str) -> None:
    """Forget a registered pipeline (for tests)."""
    _PIPELINES.pop(name, None)
