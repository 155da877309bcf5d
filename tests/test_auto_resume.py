"""Auto-resume: the tags and hook that make Dagster's run retries resume only retryable failures.

Dagster decides ``dagster/will_retry`` when a run fails, from the run's tags; these tests let a
real instance (run retries enabled) make that decision. The daemon that acts on it is exercised in
tests/test_deployment.py.
"""

from __future__ import annotations

import pytest
from dagster import instance_for_test

from spine_dagster import (
    AutoResume,
    ErrorCategory,
    InvalidWorkflowError,
    Step,
    StepResult,
    Workflow,
    build_definitions,
)
from spine_dagster.auto_resume import auto_resume_of
from spine_dagster.hooks import failure_category


def _fail(ctx, config):
    if ctx.params.get("raise"):
        raise RuntimeError("unexpected")
    return StepResult.fail("step b failed", ctx.params["category"])


def _workflow(name: str, auto_resume) -> Workflow:
    return Workflow(name, [Step.lambda_("a", lambda ctx, cfg: StepResult.ok()),
                           Step.lambda_("b", _fail)], auto_resume=auto_resume)


def test_auto_resume_settings_are_validated():
    assert AutoResume().categories == ("TRANSIENT", "TIMEOUT", "DEPENDENCY")
    assert AutoResume(categories=["timeout", ErrorCategory.DATA_QUALITY]).categories == (
        "TIMEOUT", "DATA_QUALITY")
    for bad in (0, -1, True, "2", 1.5):
        with pytest.raises(InvalidWorkflowError, match="max_resumes"):
            AutoResume(max_resumes=bad)
    with pytest.raises(InvalidWorkflowError, match="unknown error category 'FLAKY'"):
        AutoResume(categories=("FLAKY",))
    with pytest.raises(InvalidWorkflowError, match="categories is empty"):
        AutoResume(categories=())


@pytest.mark.parametrize("value, expected", [
    (None, None), (False, None), (True, AutoResume()), (3, AutoResume(max_resumes=3)),
    ({"max_resumes": 2, "categories": ["TIMEOUT"]}, AutoResume(2, ("TIMEOUT",))),
    (AutoResume(max_resumes=4), AutoResume(max_resumes=4)),
])
def test_workflow_auto_resume_forms(value, expected):
    assert auto_resume_of(_workflow("ar.forms", value)) == expected


def test_unsupported_auto_resume_value_is_refused():
    with pytest.raises(InvalidWorkflowError, match="auto_resume='always' is not supported"):
        build_definitions([_workflow("ar.bad", "always")], database_url="sqlite:///x.db")


def test_build_definitions_sets_the_retry_tags_and_hook_only_when_opted_in(tmp_path):
    defs = build_definitions([_workflow("ar.on", AutoResume(max_resumes=2)),
                              _workflow("ar.off", None)],
                             database_url=f"sqlite:///{tmp_path}/c.db")
    defs.get_repository_def()  # loads like a code location (no name conflicts)
    on, off = defs.get_job_def("ar__on"), defs.get_job_def("ar__off")
    assert on.tags["dagster/max_retries"] == "2"
    assert on.tags["dagster/retry_strategy"] == "FROM_FAILURE"
    assert on.tags["dagster/retry_on_asset_or_op_failure"] == "true"
    assert [h.name for h in on.hook_defs] == ["ar__on__auto_resume"]
    assert not any(k.startswith("dagster/") for k in off.tags) and not off.hook_defs


def test_failure_category_follows_the_cause_chain():
    class Categorized(Exception):
        category = "TIMEOUT"

    try:
        try:
            raise Categorized("slow")
        except Categorized as inner:
            raise RuntimeError("wrapped") from inner
    except RuntimeError as outer:
        assert failure_category(outer) == "TIMEOUT"
    assert failure_category(RuntimeError("plain")) == "INTERNAL"
    assert failure_category(None) == "INTERNAL"


@pytest.fixture(scope="module")
def retry_instance():
    """A real instance with run retries enabled: it tags each failed run with its decision."""
    with instance_for_test(overrides={"run_retries": {"enabled": True}}) as instance:
        yield instance


@pytest.mark.parametrize("auto_resume, params, will_retry", [
    (AutoResume(), {"category": "TRANSIENT"}, "true"),
    (AutoResume(), {"category": "DATA_QUALITY"}, "false"),
    (AutoResume(), {"raise": True}, "false"),  # an unexpected exception is INTERNAL
    (AutoResume(categories=("DATA_QUALITY",)), {"category": "DATA_QUALITY"}, "true"),
    (AutoResume(categories=("DATA_QUALITY",)), {"category": "TIMEOUT"}, "false"),
])
def test_dagster_decides_to_retry_by_error_category(tmp_path, retry_instance, auto_resume, params,
                                                     will_retry):
    defs = build_definitions([_workflow("ar.decide", auto_resume)],
                             database_url=f"sqlite:///{tmp_path}/c.db")
    result = defs.get_job_def("ar__decide").execute_in_process(
        instance=retry_instance, raise_on_error=False,
        run_config={"resources": {"spine": {"config": {"params": params}}}})
    tags = retry_instance.get_run_by_id(result.run_id).tags
    assert not result.success
    assert tags["dagster/will_retry"] == will_retry
    assert tags["dagster/retry_on_asset_or_op_failure"] == will_retry
    assert tags["spine/error_category"] == params.get("category", "INTERNAL")
