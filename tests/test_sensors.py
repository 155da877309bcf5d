"""spine_failure_sensor without a daemon: what the policy sees, and when the sensor stays out.

The sensor is evaluated directly on a real failed run (``build_run_status_sensor_context``), on
[sqlite] and [postgres]. No webserver runs here, so the resume plan cannot be computed
(``plan_error`` says why) and a decision to resume is reported as not carried out. The resumes
themselves, on the daemon through the webserver, are in test_deployment_assets.py.
"""

from __future__ import annotations

import pytest
from dagster import SkipReason, build_run_status_sensor_context

from spine_dagster import (
    ErrorCategory,
    InvalidAutomationError,
    ResumeDecision,
    Step,
    StepResult,
    Workflow,
    WorkflowRunner,
    spine_failure_sensor,
)
from spine_dagster.graphql import ENV_WEBSERVER_URL

SEEN = []


def fetch(ctx, config):
    return StepResult.fail("no answer within 10s", ErrorCategory.TIMEOUT)


FLOW = Workflow("sensors.flow", [Step.lambda_("prepare", lambda ctx, cfg: {"ok": 1}),
                                 Step.lambda_("fetch", fetch)], defaults={"timeout": 10})
OTHER = Workflow("sensors.other", [Step.lambda_("a", lambda ctx, cfg: {"ok": 1})])


def evaluate(sensor, instance, run_id: str):
    run = instance.get_run_by_id(run_id)
    context = build_run_status_sensor_context(
        sensor_name=sensor.name, dagster_instance=instance, dagster_run=run,
        dagster_event=instance.get_records_for_run(run_id).records[-1].event_log_entry
        .dagster_event).for_run_failure()
    return sensor(context)


@pytest.fixture
def failed(database_url, instance, monkeypatch):
    monkeypatch.setenv("SPINE_DAGSTER_DATABASE_URL", database_url)
    monkeypatch.setenv(ENV_WEBSERVER_URL, "http://127.0.0.1:9")  # nothing listens there
    result = WorkflowRunner(database_url=database_url, instance=instance,
                            progress=False).execute(FLOW, params={"timeout": 10})
    assert result.error_step == "fetch"
    SEEN.clear()
    return result


def test_the_policy_sees_the_run_step_category_and_params(failed, instance):
    def policy(failure):
        SEEN.append(failure)
        return None

    outcome = evaluate(spine_failure_sensor(FLOW, policy), instance, failed.dagster_run_id)

    assert isinstance(outcome, SkipReason)
    assert "leaves spine run" in outcome.skip_message and "TIMEOUT" in outcome.skip_message
    [failure] = SEEN
    assert (failure.step, failure.category, failure.resumes) == ("fetch", "TIMEOUT", 0)
    assert failure.run.run_id == failed.run_id and failure.params == {"timeout": 10}
    assert failure.dagster_run.run_id == failed.dagster_run_id
    assert failure.error == "no answer within 10s"
    assert failure.plan is None and "cannot reach the Dagster webserver" in failure.plan_error


def test_a_decision_that_cannot_be_carried_out_is_reported(failed, instance):
    sensor = spine_failure_sensor(
        FLOW, lambda failure: ResumeDecision(params_override={"timeout": 20}))
    outcome = evaluate(sensor, instance, failed.dagster_run_id)
    assert isinstance(outcome, SkipReason)
    assert outcome.skip_message.startswith(f"could not resume spine run {failed.run_id}")
    assert "spine/resumed_as" not in instance.get_run_by_id(failed.dagster_run_id).tags


def test_other_jobs_and_bad_policies(failed, instance):
    SEEN.clear()
    sensor = spine_failure_sensor(OTHER, SEEN.append)
    outcome = evaluate(sensor, instance, failed.dagster_run_id)
    assert "not watched here" in outcome.skip_message and SEEN == []

    bad = spine_failure_sensor(FLOW, lambda failure: {"timeout": 20})
    with pytest.raises(InvalidAutomationError, match="return ResumeDecision"):
        evaluate(bad, instance, failed.dagster_run_id)
    with pytest.raises(InvalidAutomationError, match="policy must be a function"):
        spine_failure_sensor(FLOW, "double it")
    with pytest.raises(InvalidAutomationError, match="on_stale"):
        ResumeDecision(on_stale="sometimes")
