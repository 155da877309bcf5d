"""Run state lives with the run: 18 runs in one process grow no module-level container of
spine_dagster, no thread and no database connection.

The runs mix workflows built inside a function (closures; half of them failed, then resumed) with
module-level ones, failed-then-resumed and plain (see ``run_soak.py``). Every mutable
module-level container of every spine_dagster module is measured, found by walking the modules,
so a registry added later that keeps something per run (a dict keyed by run id, a list of
workflows) fails this test. ``benchmarks/soak.py --runs 1000`` is the long version, with RSS.
"""

from __future__ import annotations

import os
import tempfile

import pytest
from dagster import DagsterInstance

import run_soak
from spine_dagster import WorkflowRunner

RUNS, WARM = 18, 6


@pytest.fixture
def soak_instance(tmp_path):
    """A Dagster instance on tmpfs when there is one (Dagster's event log syncs every event)."""
    shm = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
    with tempfile.TemporaryDirectory(prefix="spine_runstate_", dir=shm or tmp_path) as home:
        with open(os.path.join(home, "dagster.yaml"), "w") as fh:
            fh.write("telemetry:\n  enabled: false\n")
        instance = DagsterInstance.from_config(home)
        try:
            yield instance
        finally:
            instance.dispose()


def test_the_measure_sees_a_registry_that_grows():
    """The watch works: a module-level dict that gains an entry shows up in ``grown``."""
    from spine_dagster import runner as runner_module

    before = run_soak.measure()
    runner_module._last_auto_cleanup["sqlite:///soak-probe.db"] = 0.0
    try:
        assert "runner._last_auto_cleanup" in run_soak.grown(before, run_soak.measure())
    finally:
        del runner_module._last_auto_cleanup["sqlite:///soak-probe.db"]


@pytest.mark.slow
def test_runs_grow_no_module_level_state(database_url, soak_instance):
    pg_count = None
    if not database_url.startswith("sqlite"):
        name = f"spine_runstate_{os.getpid()}"
        pg_count = run_soak.pg_counter(database_url.split("?")[0], name)
        database_url = run_soak.with_application_name(database_url, name)
    runner = WorkflowRunner(database_url=database_url, instance=soak_instance, progress=False)
    points = run_soak.soak(runner, RUNS, WARM, pg_count=pg_count)
    first, last = points[WARM], points[RUNS]
    report = "\n".join(run_soak.line(i, p) for i, p in points.items())
    print("\n" + report)

    assert run_soak.grown(first, last) == {}, report
    # the function-built workflows are gone with their runs (other tests of this process may
    # hold a few of their own: none is added)
    assert last["caches"]["locate._LOCAL"] <= first["caches"]["locate._LOCAL"], report
    if pg_count is not None:
        assert 0 < last["pg_connections"] <= 5, report
