"""The Dagster hooks of spine jobs.

A spine job records its steps' outcomes itself (the op body and the IO manager write the step
and run rows), so it needs no hook for that. The one hook is auto-resume's: when a step fails,
it tells Dagster's run retries whether this failure may be resumed (see
:mod:`spine_dagster.auto_resume`).

Example:
    >>> from spine_dagster import AutoResume, Step, StepResult, Workflow, build_job
    >>> wf = Workflow("docs.hooks", [Step.lambda_("a", lambda ctx, cfg: StepResult.ok())],
    ...               auto_resume=AutoResume())
    >>> sorted(h.name for h in with_auto_resume(build_job(wf), wf).hook_defs)
    ['docs__hooks__auto_resume']
"""

from __future__ import annotations

from dagster import HookContext, HookDefinition, JobDefinition, failure_hook

from .auto_resume import (
    FAILURE_CATEGORY_TAG,
    RETRY_ON_FAILURE_TAG,
    AutoResume,
    auto_resume_of,
)
from .compiler import op_name_for
from .model import ErrorCategory, Workflow


def failure_category(exc: BaseException | None) -> str:
    """The spine error category of a step failure (``INTERNAL`` when it has none)."""
    seen = 0
    while exc is not None and seen < 10:
        category = getattr(exc, "category", None)
        if category is not None:
            value = category.value if isinstance(category, ErrorCategory) else str(category)
            known = {c.value for c in ErrorCategory}
            return value if value in known else ErrorCategory.INTERNAL.value
        exc, seen = exc.__cause__, seen + 1
    return ErrorCategory.INTERNAL.value


def auto_resume_hook(workflow: Workflow, policy: AutoResume) -> HookDefinition:
    """The failure hook that tells Dagster whether this failure may be retried."""

    @failure_hook(name=f"{op_name_for(workflow.name)}__auto_resume")
    def _decide(context: HookContext) -> None:
        category = failure_category(context.op_exception)
        retry = policy.is_retryable(category)
        context.instance.add_run_tags(context.run_id, {
            RETRY_ON_FAILURE_TAG: "true" if retry else "false",
            FAILURE_CATEGORY_TAG: category,
        })
        context.log.info(
            f"auto-resume: step {context.op.name!r} failed with {category}; "
            + ("Dagster may resume the run from its last checkpoint" if retry else
               f"not resumed (auto-resume covers {', '.join(policy.categories)})"))

    return _decide


def with_auto_resume(job: JobDefinition, workflow: Workflow) -> JobDefinition:
    """``job`` with the auto-resume hook when ``workflow`` opts in (build its tags with
    ``build_job(..., tags=auto_resume_tags(workflow))``)."""
    policy = auto_resume_of(workflow)
    if policy is None:
        return job
    return job.with_hooks({auto_resume_hook(workflow, policy)})
