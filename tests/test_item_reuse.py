"""The map-item rule (spine_dagster/item_reuse.py) on checkpoint rows built by hand; the map step
and the resume plan applying it to real runs are tested in test_map.py and test_resume.py."""

from __future__ import annotations

from datetime import datetime, timezone

from spine_dagster.item_reuse import (
    ITEM_HASH,
    ITEM_PARAM,
    changed_reads,
    item_hash,
    item_param_of,
    items_path_of,
    plan_items,
    plan_items_again,
)
from spine_dagster.records import Checkpoint


def row(index: int, item, params: dict, reads: dict, *, param: str | None = "item") -> Checkpoint:
    metadata = {ITEM_HASH: item_hash(item), "params_read": reads}
    if param is not None:
        metadata[ITEM_PARAM] = param
    return Checkpoint(run_id="r", workflow_name="w.item", step_name=f"fan[{index}]",
                      context_snapshot={"params": params, "metadata": metadata}, step_outputs={},
                      created_at=datetime.now(timezone.utc), item_index=index)


def test_changed_reads_ignore_the_item_param_and_read_all_means_every_key():
    before = {"item": 1, "bad": [2], "mode": "a"}
    assert changed_reads(before, {"work": ["item", "bad"]}, {"item": 9, "bad": [], "mode": "b"},
                         "item") == ["bad"]
    assert changed_reads(before, {"work": ["*"]}, {"item": 9, "bad": [2], "mode": "b"},
                         "item") == ["mode"]
    assert changed_reads(before, {"work": ["mode"]}, {"item": 9, "mode": "a", "new": 1},
                         "item") == []


def test_rows_written_before_the_item_param_was_recorded_find_it_by_the_item_hash():
    old = row(0, "a.csv", {"file": "a.csv", "mode": "x"}, {"work": ["file"]}, param=None)
    assert item_param_of(old) == "file"
    assert item_param_of(row(0, 3, {"n": 3, "item": 3}, {}, param=None)) == "item"


def test_the_plan_of_a_maps_items():
    assert items_path_of("items=files workflow=per.file") == "files"
    assert items_path_of(None) is None and items_path_of("load.csv") is None
    params = {"files": ["a", "b", "c"], "day": 1}
    rows = {0: row(0, "a", {**params, "item": "a"}, {"work": ["item"]}),
            1: row(1, "x", {**params, "item": "x"}, {"work": ["item"]}),
            2: row(2, "c", {**params, "item": "c"}, {"work": ["day", "item"]})}
    plan = plan_items(rows, "items=files workflow=per.file", {**params, "day": 2})
    assert (plan.total, plan.reused, plan.to_run) == (3, [0], 2)
    assert [(r.index, r.changed) for r in plan.rerun] == [(1, []), (2, ["day"])]
    assert plan.param_note("day", "fan") == (
        "read by 1 completed item of map step fan, which runs again")
    assert plan.lines() == [
        "items: reuse 1, run 2 of 3",
        "completed items 1 run again: other items are at their indexes now",
        "completed items 2 run again: they read day, which changed since they ran"]
    earlier = plan_items_again(sorted(rows), "items=files workflow=per.file", params, "prep")
    assert earlier.reused == [] and [r.index for r in earlier.rerun] == [0, 1, 2]
    unknown = plan_items(rows, None, {**params, "day": 2})  # an old deployment's signature
    assert (unknown.total, unknown.reused) == (None, [0, 1])
    assert unknown.lines()[0] == "items: reuse 2, run ? of ?"
