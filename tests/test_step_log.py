"""``ctx.log`` and ``StepResult.events``: in the Dagster run log of the op that runs the step, and
in Python logging (``spine_dagster.step``) when no Dagster run is active."""

from __future__ import annotations

import json
import logging

from spine_dagster import Step, StepResult, Workflow, WorkflowContext
from spine_dagster.execution import run_step
from step_fixtures import module_instance, runner  # noqa: F401 - fixtures


def talk(ctx, config):
    ctx.log.debug("debug %d", 1)
    ctx.log.info("loading %s rows", 5)
    ctx.log.warning("2 rows have no key")
    ctx.log.error("the archive is unreachable")
    return StepResult.ok(output={"rows": 5}, events=[
        {"name": "rows_loaded", "level": "warning", "rows": 5, "table": "orders"},
        "cache warmed"])


def item(ctx, config):
    ctx.log.info("item %s", ctx.params["item"])
    return {"item": ctx.params["item"]}


def test_step_logs_and_events_go_to_the_run_log_of_the_op(runner):
    wf = Workflow("log.steps", [
        Step.lambda_("talk", talk),
        Step.map("fan", "items", Workflow("log.item", [Step.lambda_("each", item)])),
    ])
    result = runner.execute(wf, params={"items": [1, 2]})
    assert result.status == "completed", result.error

    entries = [e for e in runner.instance.all_logs(result.dagster_run_id)
               if e.dagster_event is None]
    talk_lines = [(e.level, e.user_message) for e in entries if e.step_key == "talk"]
    assert talk_lines[:4] == [
        (logging.DEBUG, "[talk] debug 1"), (logging.INFO, "[talk] loading 5 rows"),
        (logging.WARNING, "[talk] 2 rows have no key"),
        (logging.ERROR, "[talk] the archive is unreachable")]
    (level, event), (plain_level, plain) = talk_lines[4:]
    prefix = "[talk] spine event rows_loaded: "
    assert level == logging.WARNING and event.startswith(prefix)
    assert json.loads(event[len(prefix):]) == {
        "name": "rows_loaded", "level": "warning", "rows": 5, "table": "orders"}
    assert (plain_level, plain) == (logging.INFO,
                                    '[talk] spine event cache warmed: {"event":"cache warmed"}')
    items = sorted(e.user_message for e in entries
                   if e.step_key == "fan" and "item" in e.user_message)
    assert items == ["[fan] item 1", "[fan] item 2"], "a map item logs into the map's op"


def test_without_a_dagster_run_ctx_log_goes_to_python_logging(caplog):
    caplog.set_level(logging.DEBUG, logger="spine_dagster.step")
    outcome = run_step(Step.lambda_("talk", talk), WorkflowContext.create("log.plain"))
    assert outcome.error is None
    assert [(r.name, r.levelno, r.getMessage()) for r in caplog.records] == [
        ("spine_dagster.step", logging.DEBUG, "[talk] debug 1"),
        ("spine_dagster.step", logging.INFO, "[talk] loading 5 rows"),
        ("spine_dagster.step", logging.WARNING, "[talk] 2 rows have no key"),
        ("spine_dagster.step", logging.ERROR, "[talk] the archive is unreachable")]
