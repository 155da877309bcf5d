"""32 spine runs through the run queue: ``QueuedRunCoordinator`` + ``dagster-daemon``, PostgreSQL.

Runs are launched through the webserver and started by the daemon, at most
``MAX_CONCURRENT_RUNS`` at a time (two cores), each in its own run worker process. Four of them
fail at their second step and are resumed through the webserver (``SpineDagsterClient.resume``),
which queues them again. Checked: no checkpoint is lost, no run sees another run's context, the
queue's limit holds, and the number of PostgreSQL connections stays bounded while 32 runs go
through. The peak and the throughput are printed (see benchmarks/queued_runs.py for runs per
minute against plain Dagster jobs in the same set-up).
"""

from __future__ import annotations

import json
import time
from typing import Iterator

import pytest
from dagster import DagsterRunStatus
from deployment_support import body_timeout
from queued_support import FINISHED, ConnectionMonitor, QueuedDeployment, queued_deployment

from spine_dagster import CheckpointStore

# 36 run worker processes (each imports Dagster and the code location) on two cores: about
# 90 s on a quiet machine; the timeout (of the test body: the webserver's and the daemon's
# start-up have their own deadline, in the fixture) leaves room for a busy one.
pytestmark = [pytest.mark.slow, pytest.mark.postgres, body_timeout(900)]
N_RUNS = 32
FAILING = {3, 11, 19, 27}
MAX_CONCURRENT_RUNS = 2
STEPS = ["begin", "middle", "end"]
# What may hold a connection at one moment, whatever the number of runs: each run worker (spine's
# pool: 1 + 4 overflow; Dagster's storage opens one per call, no pool), the webserver and the
# daemon with their code servers, and this test (client, store). Far below one per run (36).
CONNECTION_BOUND = 5 * MAX_CONCURRENT_RUNS + 16


def _trace(trace_dir, run_id: str) -> list[dict]:
    path = trace_dir / f"{run_id}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture
def dep(tmp_path) -> Iterator[QueuedDeployment]:
    """The webserver and the daemon, serving (started with their own deadline)."""
    with queued_deployment(tmp_path / "deployment",
                           max_concurrent_runs=MAX_CONCURRENT_RUNS) as deployment:
        yield deployment


def test_32_queued_runs_with_failures_and_resumes(dep, tmp_path, capsys, record_property):
    trace = tmp_path / "trace"
    trace.mkdir()
    with ConnectionMonitor([dep.dagster_db, dep.checkpoint_db]) as connections:
        started = time.monotonic()
        first = {n: dep.launch_spine(trace, n=n, fail=n in FAILING) for n in range(N_RUNS)}
        resumed: dict[int, str] = {}

        def resume_the_failed(runs) -> list[str]:
            """Resume each failing run once it has failed, while the queue is still busy."""
            new = []
            for n in sorted(FAILING - set(resumed)):
                run = runs.get(first[n])
                if run is not None and run.status in FINISHED:
                    assert run.status == DagsterRunStatus.FAILURE, (n, run.status)
                    resumed[n] = dep.client.resume(first[n], params_override={"fail": False})
                    new.append(resumed[n])
            return new

        runs = dep.wait_all(first.values(), timeout=840, on_poll=resume_the_failed)
        elapsed = time.monotonic() - started
    overlap = dep.max_overlap(runs)
    assert set(resumed) == FAILING
    assert {n for n, run_id in first.items()
            if runs[run_id].status != DagsterRunStatus.SUCCESS} == FAILING
    assert {runs[run_id].status for run_id in resumed.values()} == {DagsterRunStatus.SUCCESS}
    _check_runs(CheckpointStore.for_url(dep.checkpoint_url), trace, first, resumed, runs)
    assert 0 < overlap <= MAX_CONCURRENT_RUNS  # the queue's limit held
    assert connections.samples > 0
    assert connections.peak <= CONNECTION_BOUND, connections.peak_by_db

    runs_per_minute = len(runs) / elapsed * 60
    record_property("peak_connections", connections.peak)
    record_property("runs_per_minute", round(runs_per_minute, 1))
    with capsys.disabled():
        print(f"\n{len(runs)} queued spine runs ({len(resumed)} of them resumes) in "
              f"{elapsed:.0f}s: "
              f"{runs_per_minute:.1f} runs/min; peak PostgreSQL connections {connections.peak} "
              f"{connections.peak_by_db}; most runs in flight {overlap}")


def _check_runs(store: CheckpointStore, trace, first: dict[int, str], resumed: dict[int, str],
                runs: dict) -> None:
    for n, run_id in first.items():  # a run launched from the webserver: spine id = its run id
        record = store.get_run(run_id)
        assert record.status.value == "completed", (n, record.status, record.error)
        # no checkpoint lost: every step's, valid, written by the Dagster run that ran the step
        checkpoints = store.list_checkpoints(run_id)
        assert [(c.step_name, c.state) for c in checkpoints] == [(s, "valid") for s in STEPS]
        resumed_id = resumed.get(n)
        assert {c.step_name: c.dagster_run_id for c in checkpoints} == {
            "begin": run_id, "middle": resumed_id or run_id, "end": resumed_id or run_id}
        # no context mixed: every output, in every checkpoint, is this run's, with its own n
        for checkpoint in checkpoints:
            outputs = checkpoint.context.outputs
            assert {step: (out["run"], out["n"]) for step, out in outputs.items()} == {
                step: (run_id, n) for step in STEPS[:STEPS.index(checkpoint.step_name) + 1]}
        assert record.context.get_output("end")["chain"] == [[s, run_id, n] for s in STEPS]
        assert record.context.params["n"] == n
        # the side effects: each step once (the failed one again on resume), for this run only
        ran = _trace(trace, run_id)
        expected = ["begin", "middle", "middle", "end"] if n in FAILING else STEPS
        assert [line["step"] for line in ran] == expected
        assert {(line["run"], line["n"]) for line in ran} == {(run_id, n)}
        if resumed_id:
            child = runs[resumed_id]
            assert (child.parent_run_id, child.root_run_id) == (run_id, run_id)
            assert child.tags["spine/run_id"] == run_id
    assert len(list(trace.iterdir())) == len(first)
