"""Bad input gets a clear error, a specific SpineDagsterError, and changes nothing in the store."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

import seed_workflows as seed
from seed_workflows import OTHER, SEED
from spine_dagster import (
    CheckpointNotFoundError,
    DatabaseUnavailableError,
    NothingToResumeError,
    SpineDagsterError,
    Step,
    UnknownPipelineError,
    UnknownRunError,
    UnknownStepError,
    Workflow,
    WorkflowChangedError,
    WorkflowMismatchError,
    WorkflowRunner,
    build_job,
)


@pytest.fixture(autouse=True)
def _reset_seed():
    seed.reset()
    yield
    seed.reset()


def store_rows(database_url: str) -> list[tuple]:
    """Every checkpoint and run row, as plain SQL sees them."""
    engine = sa.create_engine(database_url, poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        checkpoints = conn.execute(sa.text(
            "SELECT run_id, step_name, CAST(context_snapshot AS TEXT), created_at "
            "FROM core_workflow_checkpoints ORDER BY run_id, step_name")).all()
        runs = conn.execute(sa.text(
            "SELECT run_id, status, error_step, error, updated_at FROM core_workflow_runs "
            "ORDER BY run_id")).all()
    engine.dispose()
    return [tuple(r) for r in checkpoints] + [tuple(r) for r in runs]


@pytest.fixture
def failed(runner):
    result = runner.execute(SEED, params={"key": "value"})
    assert result.status == "failed"
    return result


def test_unknown_run_id(runner, database_url, failed):
    before = store_rows(database_url)
    for call in (lambda: runner.resume("no-such-run"),
                 lambda: runner.get_run("no-such-run"),
                 lambda: runner.list_checkpoints("no-such-run"),
                 lambda: runner.get_checkpoint("no-such-run", step="step1"),
                 lambda: runner.delete_checkpoints("no-such-run"),
                 lambda: runner.execute(SEED, run_id="no-such-run", start_from="step2")):
        with pytest.raises(UnknownRunError) as info:
            call()
        assert "no-such-run" in str(info.value)
        assert "spine-dagster runs" in str(info.value)
        assert isinstance(info.value, SpineDagsterError)
    assert store_rows(database_url) == before


def test_resuming_a_completed_run(runner, database_url):
    seed.STATE["api_down"] = False
    result = runner.execute(SEED)
    assert result.status == "completed"
    seed.CALLS.clear()
    before = store_rows(database_url)

    with pytest.raises(NothingToResumeError, match="nothing to resume"):
        runner.resume(result.run_id)

    assert seed.CALLS == []
    assert store_rows(database_url) == before


def test_resuming_with_a_workflow_of_another_name(runner, database_url, failed):
    before = store_rows(database_url)
    with pytest.raises(WorkflowMismatchError, match="'my.workflow', not 'other.workflow'"):
        runner.resume(failed.run_id, workflow=OTHER)
    with pytest.raises(WorkflowMismatchError):
        runner.execute(OTHER, run_id=failed.run_id, start_from="step1")
    assert seed.CALLS == ["step1", "step2", "step3"]
    assert store_rows(database_url) == before


def test_start_from_naming_no_step(runner, database_url, failed):
    before = store_rows(database_url)
    with pytest.raises(UnknownStepError, match="'step9'.*'step1', 'step2', 'step3', 'step4'"):
        runner.execute(SEED, run_id=failed.run_id, start_from="step9")
    with pytest.raises(UnknownStepError):
        runner.execute(SEED, params={}, start_from="nope")
    assert store_rows(database_url) == before


def test_get_checkpoint_of_a_step_without_one(runner, database_url, failed):
    before = store_rows(database_url)
    with pytest.raises(CheckpointNotFoundError) as info:
        runner.get_checkpoint(failed.run_id, step="step3")
    assert "step3" in str(info.value) and "['step1', 'step2']" in str(info.value)
    assert store_rows(database_url) == before


def test_unreachable_database_hides_the_password(instance):
    url = "postgresql+psycopg2://spine:s3cr3t-pw@127.0.0.1:1/nodb"
    runner = WorkflowRunner(database_url=url, instance=instance)
    with pytest.raises(DatabaseUnavailableError) as info:
        runner.get_run("anything")
    message = str(info.value)
    assert "s3cr3t-pw" not in message
    assert "127.0.0.1:1" in message and "***" in message
    assert "SPINE_DAGSTER_DATABASE_URL" in message


def test_unreachable_database_fails_a_run_clearly(instance):
    runner = WorkflowRunner(database_url="postgresql+psycopg2://u:topsecret@127.0.0.1:1/x",
                            instance=instance)
    with pytest.raises(DatabaseUnavailableError) as info:
        runner.execute(SEED)
    assert "topsecret" not in str(info.value)


def test_unregistered_pipeline_fails_at_compile_time_listing_registered_names(runner):
    wf = Workflow("bad.pipeline", [Step.pipeline("s", "no.such.pipeline")])
    with pytest.raises(UnknownPipelineError) as info:
        build_job(wf)
    assert "no.such.pipeline" in str(info.value)
    assert "'seed.step1'" in str(info.value)
    with pytest.raises(UnknownPipelineError):
        runner.execute(wf)


def test_a_workflow_whose_earlier_steps_changed_is_not_resumed(runner, database_url, failed):
    before = store_rows(database_url)
    renamed = Workflow("my.workflow", [Step.pipeline("fetch", "seed.step1"),
                                       Step.pipeline("step2", "seed.step2"),
                                       Step.pipeline("step3", "seed.step3"),
                                       Step.pipeline("step4", "seed.step4")])
    with pytest.raises(WorkflowChangedError, match="changed since run"):
        runner.resume(failed.run_id, workflow=renamed)
    assert store_rows(database_url) == before


def test_a_workflow_whose_later_steps_changed_still_resumes(runner, failed):
    seed.STATE["api_down"] = False
    seed.CALLS.clear()
    extended = Workflow("my.workflow", [*SEED.steps, Step.pipeline("step5", "seed.step4")])
    result = runner.resume(failed.run_id, workflow=extended)
    assert result.status == "completed"
    assert seed.CALLS == ["step3", "step4", "step4"]
