"""spine_dagster.lease: one resume of a run at a time, on [sqlite] and [postgres].

The races between whole resumes in separate processes are in tests/faults/test_concurrency.py.
"""

from __future__ import annotations

import pytest

from spine_dagster import CheckpointStore, RunInProgressError
from spine_dagster.lease import ResumeLease, guard_not_running

from checkpoint_rows import make_run

FAILED = ("failed",)


def test_a_second_lease_on_the_same_run_is_refused_until_the_first_is_released(database_url):
    store = CheckpointStore.for_url(database_url)
    make_run(store, "run-a", "failed", checkpoint_days=0)
    make_run(store, "run-b", "failed", checkpoint_days=0)
    with ResumeLease(store, "run-a", FAILED):
        with pytest.raises(RunInProgressError, match="another resume of run 'run-a'"):
            with ResumeLease(store, "run-a", FAILED):
                pass
        with ResumeLease(store, "run-b", FAILED):  # another run is not held up
            pass
    with ResumeLease(store, "run-a", FAILED) as lease:  # released: free again
        assert store.lease_of("run-a")[0] == lease.owner
    assert store.lease_of("run-a")[0] is None


def test_a_run_no_longer_in_the_expected_status_is_refused(database_url):
    store = CheckpointStore.for_url(database_url)
    make_run(store, "done", "completed", checkpoint_days=0)
    with pytest.raises(RunInProgressError, match="is completed now"):
        with ResumeLease(store, "done", FAILED):
            pass


def test_a_run_whose_dagster_run_is_busy_is_refused(database_url):
    store = CheckpointStore.for_url(database_url)
    make_run(store, "busy", "failed", checkpoint_days=0)
    record = store.get_run("busy")
    guard_not_running(record, lambda: None)  # not busy: nothing happens
    with pytest.raises(RunInProgressError, match="still running \\(STARTED\\)"):
        guard_not_running(record, lambda: "STARTED")
