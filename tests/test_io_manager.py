"""The IO manager's checkpoint writes: durable before the next step starts, and a write that
fails stops the run at the step whose checkpoint was lost, so a resume re-runs that step."""

from __future__ import annotations

import sqlalchemy as sa

from spine_dagster import Step, StepResult, Workflow, WorkflowStatus


def plain(url: str) -> sa.Engine:
    return sa.create_engine(url, poolclass=sa.pool.NullPool)


def test_a_steps_checkpoint_is_durable_before_the_next_step_starts(runner, database_url):
    seen = {}

    def second(ctx, config):
        with plain(database_url).connect() as conn:  # another connection, as another process
            seen["first"] = conn.execute(sa.text(
                "SELECT count(*) FROM core_workflow_checkpoints WHERE run_id = :r AND "
                "step_name = 'first'"), {"r": ctx.run_id}).scalar_one()
        return {"ok": True}

    wf = Workflow("io.durable", [Step.lambda_("first", lambda c, k: {"n": 1}),
                                 Step.lambda_("second", second)])
    assert runner.execute(wf).status == "completed"
    assert seen == {"first": 1}


def refuse_checkpoints_of(database_url: str, step: str) -> None:
    """A database-side failure: inserting that step's checkpoint raises in the database."""
    with plain(database_url).begin() as conn:
        if conn.dialect.name == "sqlite":
            conn.execute(sa.text(
                f"CREATE TRIGGER refuse BEFORE INSERT ON core_workflow_checkpoints "
                f"WHEN NEW.step_name = '{step}' BEGIN SELECT RAISE(ABORT, 'disk full'); END"))
        else:
            conn.execute(sa.text(
                f"CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN IF NEW.step_name = '{step}' "
                f"THEN RAISE EXCEPTION 'disk full'; END IF; RETURN NEW; END $$ LANGUAGE plpgsql"))
            conn.execute(sa.text("CREATE TRIGGER refuse BEFORE INSERT ON "
                                 "core_workflow_checkpoints FOR EACH ROW EXECUTE FUNCTION refuse()"))


def accept_checkpoints(database_url: str) -> None:
    with plain(database_url).begin() as conn:
        if conn.dialect.name == "sqlite":
            conn.execute(sa.text("DROP TRIGGER refuse"))
        else:
            conn.execute(sa.text("DROP TRIGGER refuse ON core_workflow_checkpoints"))


def test_a_checkpoint_that_cannot_be_written_stops_the_run_at_its_step(runner, database_url):
    calls = []
    outage = {"on": True}

    def second(ctx, config):
        calls.append("second")
        if outage["on"]:  # the database starts refusing this step's checkpoint while it runs
            refuse_checkpoints_of(database_url, "second")
        return {"n": 2}

    wf = Workflow("io.outage", [Step.lambda_("first", lambda c, k: calls.append("first") or {}),
                                Step.lambda_("second", second),
                                Step.lambda_("third", lambda c, k: calls.append("third") or {})])
    result = runner.execute(wf)
    accept_checkpoints(database_url)

    assert result.status == WorkflowStatus.FAILED
    assert result.error_step == "second"
    assert "disk full" in result.error
    assert calls == ["first", "second"], "third must not start without second's checkpoint"
    assert [c.step_name for c in runner.list_checkpoints(result.run_id)] == ["first"]

    outage["on"] = False
    calls.clear()
    resumed = runner.resume(result.run_id)
    assert resumed.status == WorkflowStatus.COMPLETED
    assert calls == ["second", "third"]
