"""Module-level workflows for the bad-input tests (importable, so that a resume can load them)."""

from __future__ import annotations

import enum
import os
import time
from pathlib import Path

from spine_dagster import Step, StepResult, Workflow, pipeline


class Color(enum.Enum):
    RED = "red"


def _deep(levels: int) -> dict:
    value: dict = {}
    for _ in range(levels):
        value = {"d": value}
    return value


@pipeline("faults.ok")
def ok(ctx, config):
    return StepResult.ok(output={"n": 1, "color": Color.RED})


@pipeline("faults.interrupt")
def interrupt(ctx, config):
    raise KeyboardInterrupt


@pipeline("faults.exit")
def exit_(ctx, config):
    raise SystemExit(3)


@pipeline("faults.deep_output")
def deep_output(ctx, config):
    return StepResult.ok(output=_deep(150))


@pipeline("faults.wait_for_file")
def wait_for_file(ctx, config):
    """Waits (at most 60 s) until the file named by param ``release`` exists."""
    path = Path(ctx.params["release"])
    Path(ctx.params["started"]).write_text(str(os.getpid()))
    deadline = time.monotonic() + 60
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return StepResult.ok(output={"released": path.exists()})


INTERRUPTED = Workflow("faults.interrupted", [Step.pipeline("first", "faults.ok"),
                                              Step.pipeline("boom", "faults.interrupt"),
                                              Step.pipeline("last", "faults.ok")])
EXITED = Workflow("faults.exited", [Step.pipeline("first", "faults.ok"),
                                    Step.pipeline("bye", "faults.exit"),
                                    Step.pipeline("last", "faults.ok")])
DEEP = Workflow("faults.deep", [Step.pipeline("first", "faults.ok"),
                                Step.pipeline("deep", "faults.deep_output")])
WAITING = Workflow("faults.waiting", [Step.pipeline("first", "faults.ok"),
                                      Step.pipeline("hold", "faults.wait_for_file")])
