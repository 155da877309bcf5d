"""A workflow's ``domain``, ``tags`` and ``owners`` as Dagster sees them.

Pure Python, no Dagster import. The op job (``build_job``) and the asset view
(:mod:`spine_dagster.assets`) both use these:

* ``Workflow.tags``: each tag is ``"name"`` (a Dagster tag with an empty value, shown as a label)
  or ``"key=value"``. Keys are letters, digits, ``_``, ``.`` and ``-`` (at most 63 characters),
  with an optional ``prefix/``; values the same characters, at most 63. They become job tags (so
  every run of the job carries them) and asset tags.
* ``Workflow.domain``: the job tag ``spine/domain``, and the assets' group.
* ``Workflow.owners``: the job's and the assets' owners: e-mail addresses or ``team:name``.
* Kinds: assets get the kind ``spine``; every spine op has the compute kind ``spine``.

Example:
    >>> from spine_dagster import Step, StepResult, Workflow
    >>> wf = Workflow("docs.tags", [Step.lambda_("a", lambda ctx, cfg: StepResult.ok())],
    ...               domain="finance", tags=["daily", "tier=gold"], owners=["team:data"])
    >>> job_tags(wf)
    {'spine/domain': 'finance', 'daily': '', 'tier': 'gold'}
    >>> check_owners(wf)
    ['team:data']
"""

from __future__ import annotations

import re
from typing import Any

from .errors import InvalidWorkflowError

DOMAIN_TAG = "spine/domain"
COMPUTE_KIND_TAG = "dagster/compute_kind"
_NAME = r"[A-Za-z0-9_.-]{1,63}"
TAG_KEY = re.compile(rf"({_NAME}/)?{_NAME}")
TAG_VALUE = re.compile(r"[A-Za-z0-9_.-]{0,63}")
EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


def asset_tags(workflow: Any) -> dict[str, str]:
    """``Workflow.tags`` as Dagster tags (see the module docs); refuses a tag Dagster would."""
    tags: dict[str, str] = {}
    for tag in workflow.tags:
        key, _, value = tag.partition("=")
        if not TAG_KEY.fullmatch(key) or not TAG_VALUE.fullmatch(value):
            raise InvalidWorkflowError(
                f"workflow {workflow.name!r}: tag {tag!r} is not a valid Dagster tag. Write "
                f"'name' or 'key=value' with letters, digits, '_', '.' and '-' only (at most 63 "
                f"characters each; the key may have one 'prefix/'), e.g. 'tier=gold'.")
        tags[key] = value
    return tags


def job_tags(workflow: Any) -> dict[str, str]:
    """The job tags of a workflow: its domain (``spine/domain``) and its tags."""
    tags = {DOMAIN_TAG: workflow.domain} if workflow.domain else {}
    tags.update(asset_tags(workflow))
    return tags


def check_owners(workflow: Any) -> list[str]:
    """``Workflow.owners``, each an e-mail address or ``team:name`` (as Dagster requires)."""
    for owner in workflow.owners:
        if not (EMAIL.fullmatch(owner) or (owner.startswith("team:") and len(owner) > 5)):
            raise InvalidWorkflowError(
                f"workflow {workflow.name!r}: owner {owner!r} is neither an e-mail address nor "
                f"a team; Dagster shows owners as 'ana@example.com' or 'team:data'. Use one of "
                f"those forms.")
    return list(workflow.owners)
