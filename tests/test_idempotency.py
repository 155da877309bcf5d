"""Idempotency helpers: ``ctx.params["__resumed__"]``, ``ctx.partition`` and ``ctx.attempt``.

Every step appends what it saw to a trace file (``workflows_strategies.record``), so the tests
assert what the steps really got, run by run.
"""

from __future__ import annotations

import pytest
from dagster import (
    DailyPartitionsDefinition,
    MultiPartitionKey,
    MultiPartitionsDefinition,
    StaticPartitionsDefinition,
    instance_for_test,
)

import workflows_strategies as wfs
from spine_dagster import CheckpointStore, WorkflowRunner, build_job

DAY = {"date": "2026-01-10"}


@pytest.fixture(scope="module")
def instance():
    """One real, persistent Dagster instance for the module (run ids never collide)."""
    with instance_for_test() as inst:
        yield inst


def _seen(lines, key):
    return [(line["step"], line[key]) for line in lines]


def test_resumed_partition_and_attempt_across_a_resume(database_url, instance, tmp_path):
    runner = WorkflowRunner(database_url=database_url, instance=instance)
    trace = tmp_path / "trace.jsonl"
    failed = runner.execute(wfs.FLAGS, params={"trace": str(trace), "succeed_on": 2},
                            partition=DAY)
    assert (failed.status, failed.error_step) == ("failed", "flaky")
    first = wfs.read_trace(trace)
    assert _seen(first, "resumed") == [(s, "absent") for s in
                                       ("cheap", "expensive", "scratch", "flaky")]
    assert {line["attempt"] for line in first} == {1}
    assert all(line["partition"] == DAY for line in first)
    checkpoint = runner.get_checkpoint(failed.run_id, "expensive")
    assert checkpoint.context_snapshot["partition"] == DAY
    assert runner.get_run(failed.run_id).partition == DAY

    resumed = runner.resume(failed.run_id)
    assert resumed.status == "completed"
    again = wfs.read_trace(trace)[len(first):]
    # "scratch" opted out of checkpoints, so the resume starts there: both ran a second time
    assert _seen(again, "resumed") == [("scratch", True), ("flaky", True)]
    assert _seen(again, "attempt") == [("scratch", 2), ("flaky", 2)]
    assert all(line["partition"] == DAY for line in again), "restored from the checkpoint"
    assert runner.store.step_rows(failed.run_id)["flaky"].attempts == 2
    assert runner.store.step_rows(failed.run_id)["cheap"].attempts == 1

    # a new run with the resumed run's params is not a resume: the flag does not leak into it
    params = dict(runner.get_run(failed.run_id).context.params)
    assert params["__resumed__"] is True
    fresh = runner.execute(wfs.FLAGS, params=params)
    assert (fresh.status, fresh.error_step) == ("failed", "flaky"), "attempt 1 of a new run"
    later = wfs.read_trace(trace)[len(first) + len(again):]
    assert _seen(later, "resumed") == [(s, "absent") for s in
                                       ("cheap", "expensive", "scratch", "flaky")]
    assert {line["attempt"] for line in later} == {1}

    # nor into a new run started from a resumed step's context
    resumed_ctx = runner.get_checkpoint(failed.run_id, "flaky").context
    assert resumed_ctx.params["__resumed__"] is True
    runner.execute(wfs.FLAGS, context=resumed_ctx.with_run_id("fresh-run"), start_from="flaky")
    assert _seen(wfs.read_trace(trace)[-1:], "resumed") == [("flaky", "absent")]


@pytest.mark.parametrize("strategy", ["every_step", "key_steps"])
def test_attempt_counts_retries_within_one_run(database_url, instance, tmp_path, strategy):
    """Under key_steps the retried step's input is not a checkpoint: it must still be there."""
    runner = WorkflowRunner(database_url=database_url, instance=instance,
                            checkpoint_strategy=strategy)
    trace = tmp_path / "trace.jsonl"
    result = runner.execute(wfs.RETRYING, params={"trace": str(trace), "succeed_on": 3})
    assert result.status == "completed", result.error
    assert _seen(wfs.read_trace(trace), "attempt") == [("cheap", 1), ("flaky", 1), ("flaky", 2),
                                                       ("flaky", 3)]
    assert {line["resumed"] for line in wfs.read_trace(trace)} == {"absent"}
    assert result.context.get_output("flaky") == {"attempt": 3}
    assert runner.store.step_rows(result.run_id)["flaky"].attempts == 3


def _launch(job, instance, partition_key, trace, **params):
    return job.execute_in_process(
        instance=instance, partition_key=partition_key, raise_on_error=False,
        run_config={"resources": {"spine": {"config": {"params": {"trace": str(trace),
                                                                   **params}}}}})


def test_partition_is_the_dagster_partition_key(database_url, instance, tmp_path):
    store = CheckpointStore(database_url)
    cases = [
        (DailyPartitionsDefinition(start_date="2026-01-01"), "2026-01-10", "2026-01-10"),
        (StaticPartitionsDefinition(["eu", "us"]), "us", "us"),
    ]
    for number, (partitions_def, key, expected) in enumerate(cases):
        trace = tmp_path / f"trace{number}.jsonl"
        job = build_job(wfs.PARTITIONED, database_url=database_url, partitions_def=partitions_def)
        run = _launch(job, instance, key, trace)
        assert run.success
        assert [line["partition"] for line in wfs.read_trace(trace)] == [expected, expected]
        assert store.get_checkpoint(run.run_id, "cheap").context_snapshot["partition"] == expected


def test_multi_partition_key_is_a_dict_restored_on_resume(database_url, instance, tmp_path):
    partitions_def = MultiPartitionsDefinition({
        "date": DailyPartitionsDefinition(start_date="2026-01-01"),
        "region": StaticPartitionsDefinition(["eu", "us"]),
    })
    expected = {"date": "2026-01-10", "region": "eu"}
    trace = tmp_path / "trace.jsonl"
    job = build_job(wfs.PARTITIONED, database_url=database_url, partitions_def=partitions_def)
    run = _launch(job, instance, MultiPartitionKey(expected), trace, succeed_on=2)
    assert not run.success
    assert [line["partition"] for line in wfs.read_trace(trace)] == [expected, expected]

    runner = WorkflowRunner(database_url=database_url, instance=instance)
    resumed = runner.resume(run.run_id)
    assert resumed.status == "completed"
    assert wfs.read_trace(trace)[2:] == [
        {**wfs.read_trace(trace)[2], "step": "flaky", "attempt": 2, "resumed": True,
         "partition": expected}]
    assert resumed.context.partition == expected
