"""Workflows of the fault tests. Module level, so that step processes (the multiprocess executor)
and resumes in other processes import them.

Every step appends ``<step> <resumed> <pid>`` to the file in param ``calls_file``, so tests
assert which steps ran. A step stops at its **gate** while ``<gate_dir>/<step>.hold`` exists: it
writes ``<step>.entered`` (its pid) and waits for the file to go, so a test can act (stop the
database) while the step is in the middle of running. Outputs derive from the run-unique param
``tag``, so a context mixed up between runs, or a step run from the wrong context, shows.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from spine_dagster import ErrorCategory, Step, StepResult, Workflow


def called(ctx, config, step: str) -> None:
    if config.get("calls_file"):
        with open(config["calls_file"], "a") as fh:
            fh.write(f"{step} {int(bool(ctx.params.get('__resumed__')))} {os.getpid()}\n")


def gate(config, step: str) -> None:
    if not config.get("gate_dir"):
        return
    hold = Path(config["gate_dir"], f"{step}.hold")
    if hold.exists():
        Path(config["gate_dir"], f"{step}.entered").write_text(str(os.getpid()))
        deadline = time.monotonic() + 120
        while hold.exists() and time.monotonic() < deadline:
            time.sleep(0.01)


def calls(path) -> list[tuple[str, int]]:
    """(step, resumed) for each step run recorded in ``path``."""
    if not os.path.exists(path):
        return []
    return [(line.split()[0], int(line.split()[1])) for line in Path(path).read_text().splitlines()]


def load(ctx, config):
    config = {**ctx.params, **(config or {})}
    called(ctx, config, "load")
    gate(config, "load")
    tag = config["tag"]
    return {"tag": tag, "n": len(tag) * 10 + int(config.get("base", 0))}


def enrich(ctx, config):
    config = {**ctx.params, **(config or {})}
    called(ctx, config, "enrich")
    if config.get("pool_probe"):  # which pool this (step) process uses for the checkpoints
        from spine_dagster import db  # noqa: PLC0415

        Path(config["gate_dir"], "enrich.pool").write_text(db.pool_class(config["pool_probe"]))
    gate(config, "enrich")
    n = ctx.get_output("load", "n")
    return {"v": n * 7 + 1, "tag": ctx.get_output("load", "tag") + ":enriched"}


def publish(ctx, config):
    config = {**ctx.params, **(config or {})}
    called(ctx, config, "publish")
    gate(config, "publish")
    if config.get("fail_file") and os.path.exists(config["fail_file"]):
        return StepResult.fail("the warehouse is down", ErrorCategory.TRANSIENT)
    rows = int(config.get("rows", 0))
    tag = ctx.get_output("enrich", "tag")
    return {"rows": [{"i": i, "tag": tag} for i in range(rows)],
            "sum": ctx.get_output("enrich", "v") + rows}


def report(ctx, config):
    config = {**ctx.params, **(config or {})}
    called(ctx, config, "report")
    gate(config, "report")
    return {"summary": f"{ctx.get_output('enrich', 'tag')}|{ctx.get_output('publish', 'sum')}"}


OUTAGE = Workflow("faults.outage", [
    Step.lambda_("load", load),
    Step.lambda_("enrich", enrich),
    Step.lambda_("publish", publish),
    Step.lambda_("report", report),
])
STEPS = OUTAGE.step_names()


def expected_outputs(tag: str, base: int = 0, rows: int = 0) -> dict:
    """The outputs of an uninterrupted run of ``OUTAGE`` (what every resumed run must end with)."""
    n = len(tag) * 10 + base
    enriched = f"{tag}:enriched"
    return {"load": {"tag": tag, "n": n}, "enrich": {"v": n * 7 + 1, "tag": enriched},
            "publish": {"rows": [{"i": i, "tag": enriched} for i in range(rows)],
                        "sum": n * 7 + 1 + rows},
            "report": {"summary": f"{enriched}|{n * 7 + 1 + rows}"}}
