"""The resume rules (spine_dagster/resume.py), on real runs on both databases.

* A property test drives random sequences of ``execute``, ``resume``,
  ``execute(run_id=, start_from=)``, injected step failures and edited params on one spine run,
  and after every action checks what ``get_run`` says, where ``resume`` would start, that no
  superseded checkpoint was ever used, and that a completed run's context equals an uninterrupted
  run's with the same effective params.
* The resume plan: each step's fate, the start step and why, the param diff, the workflow diff.
* Param impact: a change that a reused step read makes it stale (warn / rerun / error).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import workflows_resume as wr
from spine_dagster import (
    CheckpointCorruptError,
    NothingToResumeError,
    StaleStepsError,
    Step,
    StepResult,
    Workflow,
    WorkflowChangedError,
    WorkflowRunner,
    WorkflowStatus,
)
from spine_dagster.cli import main

EXAMPLES = int(os.environ.get("SPINE_RESUME_EXAMPLES", "5"))


def _fail(directory: Path, *names: str) -> None:
    (directory / "fail.txt").write_text("\n".join(names))


def _ran(directory: Path) -> list[str]:
    path = directory / "ran.txt"
    text = path.read_text().split() if path.exists() else []
    path.write_text("")
    return text


# -- the property test --------------------------------------------------------------------------
ACTIONS = st.lists(st.one_of(
    st.tuples(st.just("resume"), st.integers(0, wr.N - 1), st.integers(0, 9),
              st.integers(-1, wr.N - 1)),
    st.tuples(st.just("start_from"), st.integers(0, wr.N - 1), st.integers(0, 9),
              st.integers(-1, wr.N - 1)),
), min_size=1, max_size=4)


def _check_state(runner: WorkflowRunner, run_id: str, params: dict, completed: bool) -> None:
    record = runner.get_run(run_id)
    checkpoints = {c.step_name: c for c in runner.list_checkpoints(run_id)}
    # No superseded checkpoint was ever used: each usable checkpoint of s<i> was computed from
    # the usable checkpoint of s<i-1>.
    for i in range(1, wr.N):
        mine, before = checkpoints.get(f"s{i}"), checkpoints.get(f"s{i - 1}")
        if mine is not None and mine.usable:
            assert before is not None and before.usable, (i, checkpoints)
            assert mine.step_outputs[f"s{i}"]["prev"] == before.step_outputs[f"s{i - 1}"]["token"]
    if completed:
        assert record.status is WorkflowStatus.COMPLETED
        with pytest.raises(NothingToResumeError):
            runner.plan_resume(run_id)
        values = [record.context.outputs[f"s{i}"]["v"] for i in range(wr.N)]
        assert values == wr.expected_values(params)
    else:
        assert record.status is WorkflowStatus.FAILED
        plan = runner.plan_resume(run_id)
        # get_run and resume agree: resume starts at the step get_run says failed.
        assert plan.start_step == record.error_step
        assert plan.reused_steps == [f"s{i}" for i in range(int(record.error_step[1:]))]


@pytest.mark.postgres
@settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(first_failure=st.integers(-1, wr.N - 1), actions=ACTIONS)
def test_get_run_and_resume_always_agree(runner, tmp_path_factory, first_failure, actions):
    directory = tmp_path_factory.mktemp("chain")
    params = {"dir": str(directory), **{f"p{i}": i for i in range(wr.N)}}
    if first_failure >= 0:
        _fail(directory, f"s{first_failure}")
    result = runner.execute(wr.CHAIN, params=params)
    run_id = result.run_id
    _check_state(runner, run_id, params, result.status is WorkflowStatus.COMPLETED)
    for kind, step, value, fail_at in actions:
        if fail_at >= 0:
            _fail(directory, f"s{fail_at}")
        record = runner.get_run(run_id)
        if kind == "resume":
            if record.status is WorkflowStatus.COMPLETED:
                continue
            override = {f"p{step}": value}
            result = runner.resume(run_id, params_override=override, on_stale="rerun")
        else:
            # a re-run from s<step> may change only the params of steps it runs
            override = {f"p{step}": value}
            result = runner.execute(wr.CHAIN, run_id=run_id, start_from=f"s{step}",
                                    params=override)
        params.update(override)
        assert result.run_id == run_id
        _check_state(runner, run_id, params, result.status is WorkflowStatus.COMPLETED)


# -- the plan -------------------------------------------------------------------------------------
def _impact_run(runner, tmp_path) -> tuple[str, Path]:
    _fail(tmp_path, "publish")
    result = runner.execute(wr.IMPACT, params={"dir": str(tmp_path), "date": "2026-01-09",
                                               "tier": "gold", "timeout": 30})
    assert (result.status, result.error_step) == ("failed", "publish")
    _ran(tmp_path)
    return result.run_id, tmp_path


def test_the_plan_says_what_a_resume_will_do(runner, tmp_path):
    run_id, _ = _impact_run(runner, tmp_path)
    plan = runner.plan_resume(run_id, params_override={"timeout": 120})
    assert plan.start_step == "publish" and plan.start_checkpoint == "enrich"
    assert plan.reused_steps == ["load", "enrich"]
    assert plan.steps_to_run == ["publish", "report"]
    assert plan.stale_steps == [] and plan.param_diff == {"timeout": (30, 120)}
    assert plan.safe_keys == ["timeout"]
    assert "the run failed at 'publish'" in plan.start_reason
    assert plan.parent_dagster_run_id == runner.get_run(run_id).last_dagster_run_id
    data = plan.to_dict()
    assert data["param_diff"] == {"timeout": {"old": 30, "new": 120}}
    assert [s["fate"] for s in data["steps"]] == ["reuse", "reuse", "run", "run"]
    assert data["steps"][0]["checkpoint_at"] and data["start_step"] == "publish"
    text = str(plan)
    assert "load" in text and "reuse" in text and "timeout: 30 -> 120" in text


def test_a_change_only_the_failed_step_reads_reuses_everything_before(runner, tmp_path):
    run_id, directory = _impact_run(runner, tmp_path)
    result = runner.resume(run_id, params_override={"timeout": 120})
    assert result.status == "completed" and result.warnings == []
    assert _ran(directory) == ["publish", "report"]
    assert result.context.outputs["publish"] == {"timeout": 120}
    record = runner.get_run(run_id)
    assert record.params["timeout"] == 120 and record.original_params["timeout"] == 30


def test_a_change_a_reused_step_read_makes_it_stale(runner, tmp_path):
    run_id, directory = _impact_run(runner, tmp_path)
    plan = runner.plan_resume(run_id, params_override={"date": "2026-01-10"})
    assert plan.stale_steps == ["load"] and plan.start_step == "publish"
    assert plan.steps[0].changed == ["date"]
    with pytest.raises(StaleStepsError, match="would reuse steps that read params it changes") as info:
        runner.resume(run_id, params_override={"date": "2026-01-10"}, on_stale="error")
    assert info.value.plan.stale_steps == ["load"]
    assert _ran(directory) == []  # refused before anything ran

    warned = runner.resume(run_id, params_override={"date": "2026-01-10"})  # the default: warn
    assert warned.status == "completed"
    assert len(warned.warnings) == 1 and "['load']" in warned.warnings[0]
    assert "date" in warned.warnings[0]
    assert _ran(directory) == ["publish", "report"]
    assert warned.context.outputs["load"] == {"day": "2026-01-09"}  # computed with the old date


def test_rerun_stale_starts_at_the_first_stale_step(runner, tmp_path):
    run_id, directory = _impact_run(runner, tmp_path)
    result = runner.resume(run_id, params_override={"date": "2026-01-10"}, on_stale="rerun")
    assert result.status == "completed"
    assert _ran(directory) == ["load", "enrich", "publish", "report"]
    assert result.context.outputs["load"] == {"day": "2026-01-10"}
    assert result.plan.start_step == "load" and "on_stale='rerun'" in result.plan.start_reason


def test_a_step_that_iterated_its_params_is_stale_for_any_change(runner, tmp_path):
    _fail(tmp_path, "publish")
    failed = runner.execute(wr.ITERATES, params={"dir": str(tmp_path), "timeout": 30})
    plan = runner.plan_resume(failed.run_id, params_override={"anything": 1})
    assert plan.stale_steps == ["report"] and plan.steps[0].reads == ["*"]


def test_the_workflow_change_rule(runner, tmp_path):
    run_id, _ = _impact_run(runner, tmp_path)
    # The failed step and the steps after it may change: that is how a fix is deployed.
    fixed = Workflow("resume.impact", [*wr.IMPACT.steps[:2],
                                       Step.lambda_("publish", lambda ctx, cfg: {"fixed": True}),
                                       Step.lambda_("notify", lambda ctx, cfg: {})])
    plan = runner.plan_resume(run_id, workflow=fixed)
    assert plan.start_step == "publish"
    assert "~ step 4: renamed 'report' -> 'notify'" in plan.workflow_diff
    # A reused step may not change: the diff names it, one line per step.
    changed = Workflow("resume.impact", [wr.IMPACT.steps[0],
                                         Step.pipeline("enrich", "resume.other"),
                                         *wr.IMPACT.steps[2:]])
    with pytest.raises(WorkflowChangedError) as info:
        runner.plan_resume(run_id, workflow=changed)
    message = str(info.value)
    assert "~ enrich: pipeline resume.enrich -> pipeline resume.other" in message
    assert "unchanged (same name, type and target, in the same order)" in message


def test_a_completed_run_and_start_from(runner, tmp_path):
    result = runner.execute(wr.IMPACT, params={"dir": str(tmp_path), "date": "d", "tier": "t",
                                               "timeout": 1})
    assert result.status == "completed"
    with pytest.raises(NothingToResumeError, match="completed; there is nothing to resume"):
        runner.resume(result.run_id)
    _ran(tmp_path)
    again = runner.resume(result.run_id, start_from="publish", params_override={"timeout": 2})
    assert again.status == "completed" and _ran(tmp_path) == ["publish", "report"]
    states = {c.step_name: c.state for c in runner.list_checkpoints(result.run_id)}
    assert states == {"load": "valid", "enrich": "valid", "publish": "valid", "report": "valid"}


def test_a_failed_partial_rerun_supersedes_the_later_checkpoints(runner, tmp_path):
    result = runner.execute(wr.IMPACT, params={"dir": str(tmp_path), "date": "d", "tier": "t",
                                               "timeout": 1})
    _fail(tmp_path, "enrich")
    rerun = runner.execute(wr.IMPACT, run_id=result.run_id, start_from="enrich")
    assert (rerun.status, rerun.error_step) == ("failed", "enrich")
    states = {c.step_name: c.state for c in runner.list_checkpoints(result.run_id)}
    assert states == {"load": "valid", "enrich": "superseded", "publish": "superseded",
                      "report": "superseded"}
    record = runner.get_run(result.run_id)
    assert (record.status.value, record.error_step) == ("failed", "enrich")
    assert runner.plan_resume(result.run_id).start_step == "enrich"
    _ran(tmp_path)
    resumed = runner.resume(result.run_id)
    assert resumed.status == "completed" and _ran(tmp_path) == ["enrich", "publish", "report"]


def test_run_config_override_reaches_the_step(runner, tmp_path):
    seen = []

    def configured(ctx, config):
        if ctx.params.get("fail"):
            return StepResult.fail("not yet")
        seen.append(dict(config))
        return {}

    wf = Workflow("resume.configured", [Step.lambda_("a", lambda ctx, cfg: {}),
                                        Step.lambda_("b", configured)])
    failed = runner.execute(wf, params={"fail": True})
    resumed = runner.resume(failed.run_id, params_override={"fail": False},
                            run_config_override={"ops": {"b": {"config": {"limit": 5}}}})
    assert resumed.status == "completed" and seen == [{"limit": 5}]


def test_overrides_carry_over_resumes_that_wrote_no_checkpoint(runner, tmp_path):
    run_id, directory = _impact_run(runner, tmp_path)
    _fail(directory, "publish")
    again = runner.resume(run_id, params_override={"timeout": 120})  # fails again at publish
    assert (again.status, again.error_step) == ("failed", "publish")
    plan = runner.plan_resume(run_id, params_override={"date": "2026-01-10"})
    assert plan.carried_override == {"timeout": 120}
    assert plan.params_override == {"timeout": 120, "date": "2026-01-10"}
    assert plan.param_diff["timeout"] == (30, 120) and plan.stale_steps == ["load"]
    _ran(directory)
    done = runner.resume(run_id, params_override={"date": "2026-01-10"})
    assert done.status == "completed" and _ran(directory) == ["publish", "report"]
    assert done.context.outputs["publish"] == {"timeout": 120}  # the first override still holds
    assert runner.get_run(run_id).params == {"dir": str(directory), "date": "2026-01-10",
                                             "tier": "gold", "timeout": 120}


# -- map items in the plan: the plan says which completed items run again, the resume does it -----
def _map_run(runner: WorkflowRunner, tmp_path: Path) -> tuple[str, dict[str, str]]:
    """MAPPED over six items, items 1 and 4 broken: it fails at the map, four items completed."""
    from step_fixtures import break_items
    from workflows_steps import MAPPED

    files = {"calls_file": str(tmp_path / "calls.txt"), "broken_file": str(tmp_path / "b.json")}
    break_items(files, {1: "TRANSIENT", 4: "TRANSIENT"})
    result = runner.execute(MAPPED, params={"items": list(range(6)), **files})
    assert (result.status, result.error_step) == ("failed", "fan")
    break_items(files, {})
    Path(files["calls_file"]).write_text("")
    return result.run_id, files


def _items_ran(files: dict[str, str]) -> list[int]:
    from workflows_steps import calls

    return sorted(int(c.split(":")[1]) for c in calls(files["calls_file"]) if c.startswith("work:"))


def _planned_items(plan) -> tuple[list[int], list[int]]:
    """(items the plan says run, completed items it says run again) of the map step ``fan``."""
    fan = next(s.items for s in plan.steps if s.name == "fan")
    return ([i for i in range(fan.total) if i not in fan.reused], [r.index for r in fan.rerun])


def test_a_changed_param_that_completed_map_items_read_is_not_called_safe(runner, tmp_path):
    run_id, files = _map_run(runner, tmp_path)
    plan = runner.plan_resume(run_id, params_override={"hold_from": 100})

    assert plan.start_step == "fan" and plan.safe_keys == [], "the items read hold_from"
    runs, again = _planned_items(plan)
    assert (runs, again) == ([0, 1, 2, 3, 4, 5], [0, 2, 3, 5])
    fan = plan.steps[1].items
    assert fan.reused == [] and {tuple(r.changed) for r in fan.rerun} == {("hold_from",)}
    text = str(plan)
    assert "safe" not in text
    assert ("param hold_from: (absent) -> 100 (read by 4 completed items of map step fan, "
            "which run again)") in text
    assert ("completed items 0, 2, 3, 5 run again: they read hold_from, which changed since they "
            "ran") in text
    assert plan.to_dict()["steps"][1]["items"]["rerun"][0]["changed"] == ["hold_from"]

    resumed = runner.resume(run_id, params_override={"hold_from": 100})
    assert resumed.status == "completed", resumed.error
    assert _items_ran(files) == runs, "the plan named exactly the items the resume ran"
    rows = {c.item_index: c.dagster_run_id
            for c in runner.store.list_checkpoints(run_id, items=True)
            if c.item_index is not None and c.state == "valid"}
    assert rows == {i: resumed.dagster_run_id for i in runs}


def test_a_change_no_map_item_read_reuses_the_completed_items(runner, tmp_path):
    run_id, files = _map_run(runner, tmp_path)
    plan = runner.plan_resume(run_id, params_override={"unread": 1})

    assert plan.safe_keys == ["unread"]
    assert _planned_items(plan) == ([1, 4], [])
    assert "param unread: (absent) -> 1 (no reused step read it: safe)" in str(plan)
    assert "items: reuse 4, run 2 of 6" in str(plan)
    resumed = runner.resume(run_id, params_override={"unread": 1})
    assert resumed.status == "completed", resumed.error
    assert _items_ran(files) == [1, 4]


def test_the_plan_says_a_map_reruns_every_item_when_a_step_before_it_runs(runner, tmp_path):
    from workflows_steps import MAPPED

    run_id, files = _map_run(runner, tmp_path)
    plan = runner.plan_resume(run_id, start_from="prepare", params_override={"unread": 1})

    assert _planned_items(plan) == ([0, 1, 2, 3, 4, 5], [0, 2, 3, 5])
    assert ("completed items 0, 2, 3, 5 run again: 'prepare', before the map, runs again"
            in str(plan))
    again = runner.execute(MAPPED, run_id=run_id, start_from="prepare", params={"unread": 1})
    assert again.status == "completed", again.error
    assert _items_ran(files) == [0, 1, 2, 3, 4, 5]


# -- a resume never starts from a partial context ---------------------------------------------------
def _read_everything(runner: WorkflowRunner, run_id: str) -> None:
    """Every reader of a run's checkpoints, as a resume and an operator use them."""
    record = runner.get_run(run_id)
    for checkpoint in runner.store.list_checkpoints(run_id, items=True):
        runner.get_checkpoint(run_id, checkpoint.step_name).context
    latest = runner.store.latest_checkpoint(run_id)
    if record.status is WorkflowStatus.FAILED:  # its newest context: its newest checkpoint's
        assert record.context.outputs == latest.context.outputs


@pytest.mark.parametrize("workflow", [wr.SHAPES, wr.SHAPES_KEY_FUSED], ids=["every_step",
                                                                            "key_steps-fused"])
def test_no_legitimate_run_looks_partial(runner, tmp_path, workflow):
    """Skipped steps, CONTINUE failures, a step without output, a map and its items, a step never
    checkpointed, key_steps, fused ops, params_override and a partial re-run that supersedes later
    checkpoints: no reader calls any of their checkpoints truncated."""
    every = workflow is wr.SHAPES
    params = {"dir": str(tmp_path), "items": [1, 2], "fail": True}
    failed = runner.execute(workflow, params=params)
    assert (failed.status, failed.error_step) == ("failed", "flaky")
    _read_everything(runner, failed.run_id)
    plan = runner.plan_resume(failed.run_id, params_override={"fail": False})
    assert plan.start_step == "scratch"  # never checkpointed: it runs again

    done = runner.resume(failed.run_id, params_override={"fail": False})
    assert done.status == "partial"  # soft failed, and the run went on
    steps = [s.name for s in workflow.steps if s.name != "skipped"]
    assert sorted(done.context.outputs) == sorted(steps)
    _read_everything(runner, failed.run_id)

    again = runner.execute(workflow, run_id=failed.run_id, start_from="quiet",
                           params={"fail": True})
    assert (again.status, again.error_step) == ("failed", "flaky")
    _read_everything(runner, failed.run_id)
    final = runner.resume(failed.run_id, params_override={"fail": False})
    if every:
        assert final.status == "partial" and sorted(final.context.outputs) == sorted(steps)
    else:  # restored from start's checkpoint: jump and soft are gaps, not in the context
        assert final.status == "completed" and "soft" not in final.context.outputs
    _read_everything(runner, failed.run_id)


def _drop_output(url: str, run_id: str, step: str, lost: str) -> None:
    """Edit the stored row in plain SQL, as someone with access to the database might."""
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    cast = "CAST(context_snapshot AS TEXT)"
    try:
        with engine.begin() as conn:
            where = {"r": run_id, "s": step}
            snapshot = json.loads(conn.execute(sa.text(
                f"SELECT {cast} FROM core_workflow_checkpoints WHERE run_id = :r AND "
                f"step_name = :s"), where).scalar_one())
            del snapshot["outputs"][lost]
            value = ("CAST(:v AS JSONB)" if engine.dialect.name == "postgresql" else ":v")
            conn.execute(sa.text(f"UPDATE core_workflow_checkpoints SET context_snapshot = "
                                 f"{value} WHERE run_id = :r AND step_name = :s"),
                         {**where, "v": json.dumps(snapshot)})
    finally:
        engine.dispose()


def test_every_reader_refuses_a_checkpoint_that_lost_an_earlier_output(runner, database_url,
                                                                        tmp_path, capsys):
    run_id, _ = _impact_run(runner, tmp_path)  # failed at publish
    _fail(tmp_path, "report")
    failed = runner.resume(run_id)  # publish's checkpoint: another Dagster run than load's
    assert (failed.status, failed.error_step) == ("failed", "report")
    _drop_output(database_url, run_id, "publish", "load")
    _ran(tmp_path)

    readers = {
        "get_run": lambda: runner.get_run(run_id),
        "get_checkpoint": lambda: runner.get_checkpoint(run_id, "publish"),
        "list_checkpoints": lambda: runner.list_checkpoints(run_id),
        "plan_resume": lambda: runner.plan_resume(run_id),
        "resume": lambda: runner.resume(run_id),
    }
    messages = set()
    for name, read in readers.items():
        with pytest.raises(CheckpointCorruptError) as info:
            read()
        messages.add(str(info.value))
    for command in (["checkpoints", run_id], ["checkpoint", run_id, "publish"],
                    ["resume", run_id, "--plan"]):
        assert main([*command, "--database-url", database_url]) == 1
        messages.add(capsys.readouterr().err.strip().removeprefix("error: "))
    # every reader says the same (a listing wraps it: how many rows, and skip_damaged=True)
    core = [m for m in messages if m.startswith("the checkpoint of step")]
    assert len(set(core)) == 1 and all(core[0] in m for m in messages), messages
    message = core[0]
    for part in (f"step 'publish' in run {run_id!r}", "lacks the output of step 'load'",
                 "truncated", f"spine-dagster checkpoint {run_id} publish --json"):
        assert part in message
    assert _ran(tmp_path) == []  # nothing ran
    # the raw row is still there to repair; the earlier checkpoints are still readable
    assert main(["checkpoint", run_id, "publish", "--json", "--database-url", database_url]) == 0
    assert '"enrich"' in capsys.readouterr().out
    assert runner.store.get_checkpoint(run_id, "enrich").context.outputs.keys() == {"load",
                                                                                  "enrich"}


def test_a_resume_that_reruns_a_map_whole_does_not_read_its_item_rows(runner, tmp_path):
    """A map after the step a resume starts at runs every item again, its rows superseded
    unread: a damaged item row must not stop the plan or the resume (it did: the plan decoded
    every item row)."""
    from workflows_steps import MAPPED

    run_id, files = _map_run(runner, tmp_path)
    with runner.store.engine.begin() as conn:
        conn.execute(sa.text("UPDATE core_workflow_checkpoints SET context_snapshot = "
                             "'{\"run_id\": 1}' WHERE run_id = :r AND item_index = 0"),
                     {"r": run_id})
    plan = runner.plan_resume(run_id, start_from="prepare")
    assert _planned_items(plan) == ([0, 1, 2, 3, 4, 5], [0, 2, 3, 5])
    again = runner.execute(MAPPED, run_id=run_id, start_from="prepare")
    assert again.status == "completed", again.error
    assert _items_ran(files) == [0, 1, 2, 3, 4, 5]


def test_an_edited_checkpoint_time_is_corruption_for_the_planner_too(runner, database_url):
    """The resume planner reads the checkpoint index (no snapshots): an edited created_at is a
    CheckpointCorruptError there too, not a bare ValueError (SQLite stores any text)."""
    if not database_url.startswith("sqlite"):
        pytest.skip("PostgreSQL refuses a timestamp that is not one")
    result = runner.execute(_failing_three())
    with runner.store.engine.begin() as conn:
        conn.execute(sa.text("UPDATE core_workflow_checkpoints SET created_at = 'garbage' "
                             "WHERE run_id = :r AND step_name = 'a'"), {"r": result.run_id})
    for read in (lambda: runner.plan_resume(result.run_id),
                 lambda: runner.store.checkpoint_index(result.run_id)):
        with pytest.raises(CheckpointCorruptError, match="created_at is 'garbage', not a "
                                                         "timestamp"):
            read()


def _failing_three():
    from spine_dagster import Step, Workflow

    def fail(ctx, config):
        raise RuntimeError("down")

    return Workflow("resume.time_edit", [Step.lambda_("a", lambda c, k: {"x": 1}),
                                         Step.lambda_("a2", lambda c, k: {"y": 2}),
                                         Step.lambda_("b", fail)])
