"""``build_definitions``: a Dagster code location for a list of Spine workflows.

Example:
    >>> from spine_dagster import Step, StepResult, Workflow, build_definitions
    >>> wf = Workflow("docs.defs", [Step.lambda_("a", lambda ctx, cfg: StepResult.ok())])
    >>> defs = build_definitions([wf], database_url="sqlite:///checkpoints.db")
    >>> defs.get_job_def("docs__defs").name
    'docs__defs'
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

from dagster import Definitions

from .compiler import build_job
from .io_manager import SpineCheckpointIOManager
from .model import Workflow
from .resources import IO_MANAGER_KEY, RESOURCE_KEY, SpineRunConfig


def build_definitions(
    workflows: Iterable[Workflow],
    *,
    database_url: str | None = None,
    checkpoint_strategy: str | None = None,
    max_checkpoint_bytes: int | None = None,
    executor: str = "in_process",
    jobs: Sequence[Any] = (),
    schedules: Sequence[Any] = (),
    sensors: Sequence[Any] = (),
    resources: Mapping[str, Any] | None = None,
) -> Definitions:
    """One job per workflow, with the checkpoint IO manager and the ``spine`` run-config resource.

    Args:
        workflows: the Spine workflows to serve.
        database_url: checkpoint database (default: see ``SpineCheckpointIOManager``).
        checkpoint_strategy: ``every_step`` (default) or ``key_steps``; a workflow's own wins.
        max_checkpoint_bytes: the largest checkpoint allowed.
        executor: ``in_process`` (default) or ``multiprocess``.
        jobs, schedules, sensors, resources: more definitions to serve alongside.
    """
    settings: dict[str, Any] = {"database_url": database_url}
    if checkpoint_strategy:
        settings["checkpoint_strategy"] = checkpoint_strategy
    if max_checkpoint_bytes:
        settings["max_checkpoint_bytes"] = max_checkpoint_bytes
    io_manager = SpineCheckpointIOManager(**settings)
    spine_jobs = [build_job(wf, io_manager=io_manager, executor=executor) for wf in workflows]
    return Definitions(
        jobs=[*spine_jobs, *jobs],
        schedules=list(schedules),
        sensors=list(sensors),
        resources={IO_MANAGER_KEY: io_manager, RESOURCE_KEY: SpineRunConfig(), **(resources or {})},
    )
