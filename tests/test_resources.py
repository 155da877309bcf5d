"""The ``spine`` run-config resource: what the Launchpad accepts."""

from __future__ import annotations

from spine_dagster import Step, StepResult, Workflow, build_job, spine_run_config

SEEN: list[dict] = []


def look(ctx, config):
    SEEN.append(dict(ctx.params))
    return StepResult.ok()


def test_null_params_and_overrides_are_accepted(runner):
    """A null param is a valid value; Dagster's plain dict config would reject it."""
    SEEN.clear()
    wf = Workflow("res.nulls", [Step.lambda_("a", look), Step.lambda_(
        "b", lambda ctx, cfg: StepResult.fail("x") if ctx.params.get("boom") else look(ctx, cfg))])
    result = runner.execute(wf, params={"boom": True, "cleared": None, "nested": {"n": None}})
    assert result.status == "failed"
    resumed = runner.resume(result.run_id, params_override={"boom": None})

    assert resumed.status == "completed"
    assert SEEN[0] == {"boom": True, "cleared": None, "nested": {"n": None}}
    assert SEEN[-1]["boom"] is None and SEEN[-1]["__resumed__"] is True


def test_launchpad_config_with_nulls_validates(tmp_path):
    job = build_job(Workflow("res.launch", [Step.lambda_("a", look)]),
                    database_url=f"sqlite:///{tmp_path}/c.db")
    SEEN.clear()
    assert job.execute_in_process(run_config=spine_run_config(
        {"x": None}, partition={"date": None})).success
    assert SEEN == [{"x": None}]
