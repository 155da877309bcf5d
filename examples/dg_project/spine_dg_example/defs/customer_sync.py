"""The Python workflow ``customers.sync`` (flows.py) as an op job, with a failure sensor that
resumes a timed-out run with twice the timeout (at most twice), and the ``spine_resume`` job."""

import dagster as dg

from spine_dagster import (
    ResumeDecision,
    SpineFailure,
    build_definitions,
    spine_failure_sensor,
    spine_schedule,
)
from spine_dg_example.flows import CUSTOMER_SYNC


def double_the_timeout(failure: SpineFailure) -> ResumeDecision | None:
    """A TIMEOUT is resumed with twice the timeout, twice at most; anything else stays failed."""
    if failure.category == "TIMEOUT" and failure.resumes < 2:
        return ResumeDecision(params_override={"timeout": failure.params["timeout"] * 2})
    return None


@dg.definitions
def defs() -> dg.Definitions:
    return build_definitions(
        [CUSTOMER_SYNC],
        schedules=[spine_schedule(CUSTOMER_SYNC, "0 * * * *")],
        sensors=[spine_failure_sensor(CUSTOMER_SYNC, double_the_timeout)],
        resume_job=True)
