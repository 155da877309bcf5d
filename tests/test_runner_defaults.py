"""Where the runner keeps things by default, and resumes that must not run twice at once."""

from __future__ import annotations

import threading

import pytest
from dagster import instance_for_test

import seed_workflows as seed
from seed_workflows import SEED
from spine_dagster import (
    RunInProgressError,
    Step,
    StepResult,
    Workflow,
    WorkflowNotFoundError,
    WorkflowRunner,
)


def test_defaults_persist_in_documented_places(tmp_path, monkeypatch):
    monkeypatch.setenv("SPINE_DAGSTER_HOME", str(tmp_path / "home"))
    runner = WorkflowRunner()
    assert runner.database_url == f"sqlite:///{tmp_path / 'home' / 'checkpoints.db'}"
    assert runner.instance.root_directory == str(tmp_path / "home" / "dagster_home")
    assert runner.instance.is_persistent

    seed.reset()
    seed.STATE["api_down"] = False
    result = runner.execute(SEED)
    assert result.status == "completed"
    # a new runner (same defaults) sees the run and its Dagster runs
    again = WorkflowRunner()
    assert again.get_run(result.run_id).status == "completed"
    assert again.instance.get_run_by_id(result.dagster_run_id) is not None
    assert (tmp_path / "home" / "checkpoints.db").exists()


def test_dagster_home_and_database_url_from_the_environment(tmp_path, monkeypatch, pg_schema_url):
    home = tmp_path / "dh"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("SPINE_DAGSTER_DATABASE_URL", pg_schema_url)
    runner = WorkflowRunner()
    assert runner.instance.root_directory == str(home)
    assert runner.database_url == pg_schema_url
    assert runner.store.engine.dialect.name == "postgresql"


def test_two_resumes_of_one_run_at_once(runner):
    entered, release = threading.Event(), threading.Event()
    state = {"fail": True}

    def slow(ctx, config):
        if state["fail"]:
            return StepResult.fail("first try fails")
        entered.set()
        release.wait(60)
        return StepResult.ok(output={"done": True})

    wf = Workflow("lease.wf", [Step.lambda_("a", lambda c, k: {"a": 1}), Step.lambda_("slow", slow)])
    result = runner.execute(wf)
    assert result.status == "failed"
    state["fail"] = False

    outcome = {}
    first = threading.Thread(target=lambda: outcome.setdefault("r", runner.resume(result.run_id)))
    first.start()
    try:
        assert entered.wait(60)
        with pytest.raises(RunInProgressError, match=result.run_id):
            runner.resume(result.run_id)
    finally:
        release.set()
        first.join(240)  # a loaded machine (CI, three workers on two cores) can take a while
    assert not first.is_alive(), "the first resume did not finish within 240 s"
    assert outcome["r"].status == "completed"
    assert runner.get_run(result.run_id).status == "completed"


def test_multiprocess_executor_needs_an_importable_workflow(database_url):
    wf = Workflow("local.mp", [Step.lambda_("a", lambda c, k: {"a": 1})])
    with instance_for_test() as instance:
        runner = WorkflowRunner(database_url=database_url, instance=instance,
                                executor="multiprocess")
        with pytest.raises(WorkflowNotFoundError, match="module level"):
            runner.execute(wf)


def test_a_script_prints_one_line_per_step_and_the_outcome(database_url, instance, capfd):
    from spine_dagster import Step, StepResult, Workflow

    wf = Workflow("defaults.lines", [
        Step.lambda_("fetch", lambda ctx, cfg: {"n": 1}),
        Step.lambda_("load", lambda ctx, cfg: StepResult.fail("disk full", "TRANSIENT")),
    ])
    runner = WorkflowRunner(database_url=database_url, instance=instance)
    result = runner.execute(wf)
    out, err = capfd.readouterr()
    lines = out.splitlines()
    assert lines[0].split()[:2] == ["fetch", "completed"] and lines[0].rstrip().endswith("s")
    assert lines[1].split()[:2] == ["load", "failed"] and "disk full" in lines[1]
    assert lines[2] == (f"run {result.run_id} failed at step load in "
                        f"{result.duration_seconds:.1f}s (TRANSIENT): disk full")
    assert " - dagster - " not in out + err  # Dagster's own log is off

    verbose = WorkflowRunner(database_url=database_url, instance=instance, log_level="INFO")
    verbose.execute(wf)
    out, err = capfd.readouterr()
    assert "RUN_FAILURE" in out + err and " - dagster - " in out + err  # Dagster's log is back
