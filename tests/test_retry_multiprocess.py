"""``ErrorPolicy.RETRY`` under the multiprocess executor: every attempt in a step process of its
own, the attempt count in ``ctx.attempt`` (across retries and resumes) and in the UI (the op's
output metadata, the failure's metadata, the retry events)."""

from __future__ import annotations

import os

import pytest
from dagster import DagsterEventType

from spine_dagster import WorkflowRunner
from step_fixtures import module_instance  # noqa: F401 - fixture
from workflows_steps import RETRYING, call_lines


def events(instance, dagster_run_id: str, kind: DagsterEventType) -> list:
    return [r.event_log_entry.dagster_event
            for r in instance.get_records_for_run(dagster_run_id, of_type=kind).records]


def values(metadata) -> dict:
    return {key: getattr(value, "value", value) for key, value in metadata.items()}


@pytest.mark.slow  # about 20 s a backend: a process per attempt
def test_retry_under_the_multiprocess_executor_counts_every_attempt(
        database_url, module_instance, tmp_path):
    runner = WorkflowRunner(database_url=database_url, instance=module_instance,
                            executor="multiprocess", progress=False)
    calls_file = str(tmp_path / "calls.txt")
    # max_attempts=2 and success only at the third attempt: the run fails after one retry
    first = runner.execute(RETRYING, params={"calls_file": calls_file, "succeed_at": 3})

    assert (first.status, first.error_step, first.error_category) == (
        "failed", "flaky", "TRANSIENT")
    assert first.error == "attempt 2: the API timed out"
    ran = call_lines(calls_file)
    assert [(label, attempt) for label, _, _, attempt in ran] == [("flaky", 1), ("flaky", 2)]
    pids = {pid for _, pid, _, _ in ran}
    assert len(pids) == 2 and os.getpid() not in pids, "each attempt in a step process"
    retries = events(module_instance, first.dagster_run_id, DagsterEventType.STEP_UP_FOR_RETRY)
    assert len(retries) == 1
    assert "step 'flaky' failed (TRANSIENT): attempt 1: the API timed out" in str(
        retries[0].event_specific_data.error.to_string())
    [failure] = events(module_instance, first.dagster_run_id, DagsterEventType.STEP_FAILURE)
    assert values(failure.step_failure_data.user_failure_data.metadata) == {
        "spine/step": "flaky", "spine/error": "attempt 2: the API timed out",
        "spine/error_category": "TRANSIENT", "spine/attempt": 2}
    assert runner.store.step_rows(first.run_id)["flaky"].attempts == 2

    resumed = runner.resume(first.run_id)

    assert resumed.status == "completed", resumed.error
    assert resumed.completed_steps == ["flaky", "finish"]
    assert [(label, resumed_flag, attempt) for label, _, resumed_flag, attempt
            in call_lines(calls_file)[2:]] == [("flaky", 1, 3), ("finish", 1, 1)]
    assert resumed.context.outputs["finish"] == {"flaky_attempt": 3}
    attempts = {event.step_key: values(event.step_output_data.metadata)["spine/attempt"]
                for event in events(module_instance, resumed.dagster_run_id,
                                    DagsterEventType.STEP_OUTPUT)}
    assert attempts == {"flaky": 3, "finish": 1}
