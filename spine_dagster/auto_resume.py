"""Auto-resume: failed runs resume from their last checkpoint, a bounded number of times.

Built on Dagster's own run retries, not on a loop of ours:

* the job gets the run tags ``dagster/max_retries`` (the number of resumes) and
  ``dagster/retry_strategy: FROM_FAILURE``, so the daemon re-executes a failed run from its failed
  step, and the IO manager loads the earlier context from the spine checkpoints;
* a failure hook (:mod:`spine_dagster.hooks`) looks at the failed step's error category *before the run fails* and sets
  ``dagster/retry_on_asset_or_op_failure`` on the run: ``true`` for a retryable category,
  ``false`` otherwise. That is the tag Dagster reads when the run fails to decide
  ``dagster/will_retry``; a ``DATA_QUALITY`` or ``INTERNAL`` failure is therefore never retried.

The deployment needs ``run_retries: {enabled: true}`` in ``dagster.yaml`` and a running
``dagster-daemon``. Only runs launched through a code location (UI, schedules, sensors, GraphQL,
``spine-dagster resume --webserver``) are retried; ``WorkflowRunner.execute`` runs are not.
Dagster counts every run of the run group, so manual re-executions count toward ``max_resumes``.

Example:
    >>> from spine_dagster import AutoResume, Step, StepResult, Workflow, build_definitions
    >>> wf = Workflow("docs.auto", [Step.lambda_("a", lambda ctx, cfg: StepResult.ok())],
    ...               auto_resume=AutoResume(max_resumes=2))
    >>> defs = build_definitions([wf], database_url="sqlite:///checkpoints.db")
    >>> tags = defs.get_job_def("docs__auto").tags
    >>> tags["dagster/max_retries"], tags["dagster/retry_strategy"]
    ('2', 'FROM_FAILURE')
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from .data_checks import check_keys
from .errors import InvalidWorkflowError
from .policies import ErrorCategory, error_categories

DEFAULT_CATEGORIES = (ErrorCategory.TRANSIENT.value, ErrorCategory.TIMEOUT.value,
                      ErrorCategory.DEPENDENCY.value)
MAX_RETRIES_TAG = "dagster/max_retries"
RETRY_STRATEGY_TAG = "dagster/retry_strategy"
RETRY_ON_FAILURE_TAG = "dagster/retry_on_asset_or_op_failure"
AUTO_RESUME_TAG = "spine/auto_resume"
FAILURE_CATEGORY_TAG = "spine/error_category"


@dataclass(frozen=True)
class AutoResume:
    """How a workflow resumes its failed runs automatically.

    Args:
        max_resumes: at most this many automatic resumes per run (Dagster's ``max_retries``).
        categories: the error categories that are resumed (default TRANSIENT, TIMEOUT,
            DEPENDENCY). Any other failure stays failed.
    """

    max_resumes: int = 1
    categories: tuple[str, ...] = DEFAULT_CATEGORIES

    def __post_init__(self) -> None:
        if isinstance(self.max_resumes, bool) or not isinstance(self.max_resumes, int) \
                or self.max_resumes < 1:
            raise InvalidWorkflowError(
                f"AutoResume(max_resumes={self.max_resumes!r}): use a whole number >= 1 (to turn "
                f"auto-resume off, leave Workflow(auto_resume=None)).")
        object.__setattr__(self, "categories",
                           error_categories(self.categories, owner="AutoResume"))

    def is_retryable(self, category: str | ErrorCategory | None) -> bool:
        value = category.value if isinstance(category, ErrorCategory) else category
        return value in self.categories

    def to_dict(self) -> dict[str, Any]:
        """The data form (YAML, JSON): ``{"max_resumes": ..., "categories": [...]}``."""
        return {"max_resumes": self.max_resumes, "categories": list(self.categories)}

    def job_tags(self) -> dict[str, str]:
        """The run tags that turn on Dagster's run retries for the job."""
        return {MAX_RETRIES_TAG: str(self.max_resumes), RETRY_STRATEGY_TAG: "FROM_FAILURE",
                RETRY_ON_FAILURE_TAG: "true", AUTO_RESUME_TAG: ",".join(self.categories)}


def auto_resume_of(workflow: Any) -> AutoResume | None:
    """The ``auto_resume`` of ``workflow`` (a ``Workflow``) as an ``AutoResume``; None when off."""
    return coerce_auto_resume(getattr(workflow, "auto_resume", None), workflow_name=workflow.name)


def coerce_auto_resume(value: Any, *, workflow_name: str) -> AutoResume | None:
    """A workflow's ``auto_resume`` setting as an ``AutoResume`` (None when it is off).

    Accepts ``None``/``False`` (off), ``True`` (defaults), an ``int`` (``max_resumes``), a mapping
    of ``AutoResume`` fields, or an ``AutoResume``.
    """
    if value is None or value is False:
        return None
    if value is True:
        return AutoResume()
    if isinstance(value, AutoResume):
        return value
    if isinstance(value, int):
        return AutoResume(max_resumes=value)
    if isinstance(value, Mapping):
        check_keys(value, ("max_resumes", "categories"), f"workflow {workflow_name!r}: auto_resume")
        return AutoResume(**value)
    raise InvalidWorkflowError(
        f"workflow {workflow_name!r}: auto_resume={value!r} is not supported; use "
        f"AutoResume(max_resumes=..., categories=...), True, or a number of resumes.")


def auto_resume_tags(workflow: Any) -> dict[str, str]:
    """The job tags for ``workflow``'s auto-resume (empty when it is off)."""
    policy = auto_resume_of(workflow)
    return policy.job_tags() if policy else {}
