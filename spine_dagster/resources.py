"""``SpineRunConfig``: the run-level config of a spine job, as the Launchpad shows it.

Every spine job has a resource ``spine`` of this type. What a user sets is the run's workflow
params and partition::

    resources:
      spine:
        config:
          params: {api_url: "https://api.example.com", timeout: 30}
          partition: {date: "2026-01-10"}      # optional
    ops:
      step3:                                   # the step's op name (see build_job)
        config: {timeout: 120}                 # optional per-step config, merged over the step's

Resumes and ``execute(start_from=...)`` also pass settings of their own here (``start_from``,
``start_checkpoint``, ``start_context``, ``params_override``). They are accepted (the config is
permissive) but are not fields of the schema, so the Launchpad never pre-fills them.

Example:
    >>> run_config_resource({"timeout": 30}).params
    {'timeout': 30}
"""

from __future__ import annotations

import json
from typing import Any, Mapping, Optional

from dagster import ConfigurableResource
from pydantic import ConfigDict, Field

from .names import INTERNAL_KEYS, IO_MANAGER_KEY, RESOURCE_KEY  # noqa: F401 - re-exported
from .serialization import decode, dumps


class SpineRunConfig(ConfigurableResource):
    """Run-level config of a spine job (resource key ``spine``)."""

    model_config = ConfigDict(extra="allow")

    params: dict[str, Optional[Any]] = Field(
        default={}, description="Workflow params (ctx.params), merged over the workflow's "
        "defaults.")
    partition: Any = Field(
        default=None, description="Spine partition (ctx.partition): a dict such as "
        "{date: 2026-01-10}, or a string. Defaults to the run's Dagster partition key, if the job "
        "is partitioned (a dict of dimension keys for multi-partitions).")


def run_config_of(dagster_run: Any) -> dict[str, Any]:
    """The ``spine`` resource config of a Dagster run, as a plain dict.

    Run config is plain JSON, so ``WorkflowRunner`` puts dates, decimals... in their tagged form
    there (see :mod:`spine_dagster.serialization`); they come back as Python values here. Run
    config is stored data too: a tampered value raises ``CheckpointCorruptError``.
    """
    config = (dagster_run.run_config or {}).get("resources", {}).get(RESOURCE_KEY, {})
    return decode(dict(config.get("config", {}) or {}),
                  where=f"the run config of Dagster run {dagster_run.run_id}")


def run_config_resource(defaults: Mapping[str, Any] | None = None) -> SpineRunConfig:
    """The ``spine`` resource of one job: its ``params`` default shows the workflow's defaults.

    The Launchpad then lists the params a workflow knows, with their default values. Defaults that
    Dagster config cannot hold (e.g. a custom object) leave the default empty; they still apply,
    since a run's params are always merged over the workflow's defaults.
    """
    try:
        shown = json.loads(dumps(dict(defaults or {}), what="the workflow defaults"))
    except Exception:  # noqa: BLE001 - only a display default; the real defaults still apply
        shown = {}
    return SpineRunConfig(params=shown)
