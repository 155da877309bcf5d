"""Map steps on a real Dagster instance: every item tried, one checkpoint row per item, and a
resume that runs only the items without one.

The workflow (``workflows_steps.MAPPED``) is ``prepare -> fan (map over params["items"]) -> after``;
every call is written to a side-effect file, so each test asserts which steps and which items
actually ran, on the first run and on the resume.
"""

from __future__ import annotations

from pathlib import Path

from spine_dagster import (
    ErrorCategory,
    ErrorPolicy,
    RetryPolicy,
    Step,
    StepResult,
    Workflow,
)
from step_fixtures import (  # noqa: F401 - fixtures
    break_items,
    files,
    item_rows,
    messages,
    module_instance,
    output_metadata,
    progress_lines,
    runner,
)
from workflows_steps import MAPPED, call_lines, calls

def test_twenty_items_three_failing_then_a_resume_runs_exactly_those_three(runner, files):
    break_items(files, {3: "TRANSIENT", 7: "DATA_QUALITY", 12: "raise"})
    result = runner.execute(MAPPED, params={"items": list(range(20)), **files})

    assert (result.status, result.error_step) == ("failed", "fan")
    assert result.error_category == "INTERNAL", "the most severe of the items' categories"
    assert result.error == (
        "map step 'fan': 3 of 20 items failed: "
        "item 3: work: item 3 is broken (TRANSIENT); "
        "item 7: work: item 7 is broken (DATA_QUALITY); "
        "item 12: work: cannot parse item 12 (INTERNAL)")
    first = calls(files["calls_file"])
    assert first[0] == "prepare" and "after" not in first
    assert sorted(first[1:]) == sorted(f"work:{i}" for i in range(20)), "every item tried once"
    rows = item_rows(runner, result.run_id)
    ok = [i for i in range(20) if i not in (3, 7, 12)]
    assert sorted(rows) == ok, "one checkpoint row per completed item, none for a failed one"
    assert {rows[i][:2] for i in ok} == {(f"fan[{i}]", "valid") for i in ok}
    assert [c.step_name for c in runner.list_checkpoints(result.run_id)] == ["prepare"]
    assert runner.get_checkpoint(result.run_id, "fan[0]").context.params["item"] == 0
    lines = progress_lines(runner.instance, result.dagster_run_id)
    assert lines[-1] == (17, 3, 0, 20)
    assert any(remaining > 0 for _, _, remaining, _ in lines), "progress shown while running"

    break_items(files, {})
    resumed = runner.resume(result.run_id)

    assert resumed.status == "completed", resumed.error
    assert resumed.completed_steps == ["fan", "after"]
    second = call_lines(files["calls_file"])[len(first):]
    assert sorted(label for label, *_ in second[:-1]) == ["work:12", "work:3", "work:7"]
    assert second[-1][0] == "after" and all(resumed_flag for _, _, resumed_flag, _ in second)
    assert resumed.context.outputs["fan"] == [{"item": i, "double": 2 * i} for i in range(20)]
    assert resumed.context.outputs["after"] == {"count": 20, "total": 380}
    rows = item_rows(runner, result.run_id)
    assert sorted(rows) == list(range(20))
    reads = runner.get_checkpoint(result.run_id, "fan").metadata["params_read"]
    assert reads["fan"] == ["broken_file", "calls_file", "hold_from", "items"], (
        "the map read its items and what its items' steps read; the framework read nothing")
    assert {rows[i][2] for i in ok} == {result.dagster_run_id}, "reused, not rewritten"
    assert {rows[i][2] for i in (3, 7, 12)} == {resumed.dagster_run_id}
    log = messages(runner.instance, resumed.dagster_run_id)
    assert any("[fan] map: reusing the checkpoints of 17 of 20 items; running 3" in m for m in log)
    assert progress_lines(runner.instance, resumed.dagster_run_id)[-1] == (20, 0, 0, 20)
    assert output_metadata(runner.instance, resumed.dagster_run_id, "fan")["spine/map_items"] == {
        "items": 20, "reused": 17, "ran": 3, "failed": 0}


def test_an_empty_item_list_maps_to_an_empty_list(runner, files):
    result = runner.execute(MAPPED, params={"items": [], **files})
    assert result.status == "completed", result.error
    assert result.completed_steps == ["prepare", "fan", "after"]
    assert calls(files["calls_file"]) == ["prepare", "after"]
    assert result.context.outputs["fan"] == []
    assert result.context.outputs["after"] == {"count": 0, "total": 0}
    assert item_rows(runner, result.run_id) == {}


def test_missing_or_non_list_items_name_the_step_and_the_path(runner, files):
    missing = runner.execute(MAPPED, params=files)
    assert (missing.status, missing.error_step, missing.error_category) == (
        "failed", "fan", "CONFIGURATION")
    assert "map step 'fan': params['items'] is missing (items_path='items')" in missing.error
    assert "pass the list of items as that param" in missing.error

    wrong = runner.execute(MAPPED, params={"items": "a,b,c", **files})
    assert (wrong.status, wrong.error_step, wrong.error_category) == (
        "failed", "fan", "CONFIGURATION")
    assert ("map step 'fan': params['items'] is a str, not a list (items_path='items')"
            in wrong.error)
    assert [c for c in calls(files["calls_file"]) if c != "prepare"] == [], "no item ran"


def test_item_checkpoints_are_superseded_by_other_items_and_by_an_earlier_step(runner, files):
    first = runner.execute(MAPPED, params={"items": [0, 1, 2, 3, 4, 5], **files})
    assert first.status == "completed", first.error
    run_id = first.run_id
    seen = len(calls(files["calls_file"]))

    # the map runs again with other items: same item at the same index -> reused
    again = runner.execute(MAPPED, run_id=run_id, start_from="fan",
                           params={"items": [0, 1, 2, 30, 40]})
    assert again.status == "completed", again.error
    assert again.completed_steps == ["fan", "after"]
    ran = calls(files["calls_file"])[seen:]
    assert sorted(ran[:-1]) == ["work:30", "work:40"] and ran[-1] == "after"
    seen += len(ran)
    assert again.context.outputs["fan"] == [{"item": i, "double": 2 * i}
                                            for i in (0, 1, 2, 30, 40)]
    rows = item_rows(runner, run_id)
    assert {i: rows[i][1:] for i in rows} == {
        0: ("valid", first.dagster_run_id), 1: ("valid", first.dagster_run_id),
        2: ("valid", first.dagster_run_id), 3: ("valid", again.dagster_run_id),
        4: ("valid", again.dagster_run_id), 5: ("superseded", first.dagster_run_id)}

    # a param that the items read changes: they all run again
    items = {"items": [0, 1, 2, 30, 40]}  # start_from applies params over prepare's checkpoint
    rerun = runner.execute(MAPPED, run_id=run_id, start_from="fan",
                           params={**items, "hold_from": 100})
    assert rerun.status == "completed", rerun.error
    ran = calls(files["calls_file"])[seen:]
    assert sorted(ran[:-1]) == sorted(f"work:{i}" for i in (0, 1, 2, 30, 40))
    seen += len(ran)

    # a step before the map runs again: every item's checkpoint is stale
    third = runner.execute(MAPPED, run_id=run_id, start_from="prepare", params=items)
    assert third.status == "completed", third.error
    ran = calls(files["calls_file"])[seen:]
    assert ran[0] == "prepare" and ran[-1] == "after"
    assert sorted(ran[1:-1]) == sorted(f"work:{i}" for i in (0, 1, 2, 30, 40))
    assert {i: r[1:] for i, r in item_rows(runner, run_id).items() if r[1] == "valid"} == {
        i: ("valid", third.dagster_run_id) for i in range(5)}


def test_a_retried_map_runs_only_the_items_that_failed(runner, files):
    def flaky(ctx, config):
        item = ctx.params["item"]
        with open(files["calls_file"], "a") as fh:
            fh.write(f"work:{item} {ctx.attempt}\n")
        if item in (2, 5) and ctx.attempt == 1:
            return StepResult.fail(f"item {item}: the API timed out", ErrorCategory.TIMEOUT)
        return {"item": item}

    wf = Workflow("map.retried", [Step.map(
        "fan", "items", Workflow("map.flaky_item", [Step.lambda_("work", flaky)]),
        on_error=ErrorPolicy.RETRY, retry_policy=RetryPolicy(max_attempts=2,
                                                             initial_delay_seconds=0.01))])
    result = runner.execute(wf, params={"items": list(range(8))})

    assert result.status == "completed", result.error
    ran = Path(files["calls_file"]).read_text().split("\n")
    first, second = ran[:8], [line for line in ran[8:] if line]
    assert sorted(first) == sorted(f"work:{i} 1" for i in range(8))
    assert sorted(second) == ["work:2 2", "work:5 2"], "the retry reused the other items"
    assert result.context.outputs["fan"] == [{"item": i} for i in range(8)]
    assert output_metadata(runner.instance, result.dagster_run_id, "fan")["spine/map_items"] == {
        "items": 8, "reused": 6, "ran": 2, "failed": 0}
