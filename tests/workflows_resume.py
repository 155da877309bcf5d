"""Workflows for tests/test_resume.py: steps that say which params they read and what they saw.

``CHAIN`` has five steps; step ``s<i>`` reads only the param ``p<i>`` and the previous step's
value: ``v = 2 * previous v + p<i>``, and it stamps a fresh token, noting the token of the
previous step it was given (``prev``). A step fails when its name is in the ``fail.txt`` file of
the directory in ``params["dir"]`` (read through the file, not a param, so that failing a step is
not a param change): the name is removed as it fails, so a resume passes.

``IMPACT`` is the 3 a.m. workflow: ``load`` reads ``date``, ``enrich`` reads ``tier``, ``publish``
reads ``timeout`` and fails while ``fail.txt`` names it, ``report`` copies the params (reads all).
"""

from __future__ import annotations

import uuid
from pathlib import Path

from spine_dagster import Step, StepResult, Workflow

N = 5


def _maybe_fail(ctx, name: str) -> StepResult | None:
    directory = Path(ctx.params["dir"])
    flag = directory / "fail.txt"
    with (directory / "ran.txt").open("a") as fh:
        fh.write(name + "\n")
    names = flag.read_text().split() if flag.exists() else []
    if name in names:
        names.remove(name)
        flag.write_text("\n".join(names))
        return StepResult.fail(f"{name} was told to fail", "TRANSIENT")
    return None


def _chain_step(index: int):
    name = f"s{index}"

    def step(ctx, config):
        failed = _maybe_fail(ctx, name)
        if failed is not None:
            return failed
        previous = ctx.outputs.get(f"s{index - 1}", {"v": 1, "token": None}) if index else {
            "v": 1, "token": None}
        return {"v": 2 * previous["v"] + ctx.params[f"p{index}"], "token": uuid.uuid4().hex,
                "prev": previous["token"]}

    step.__name__ = name
    return step


CHAIN = Workflow("resume.chain", [Step.lambda_(f"s{i}", _chain_step(i)) for i in range(N)])


def expected_values(params: dict) -> list[int]:
    """The values of an uninterrupted run of CHAIN with these params."""
    values, v = [], 1
    for i in range(N):
        v = 2 * v + params[f"p{i}"]
        values.append(v)
    return values


def load(ctx, config):
    return _maybe_fail(ctx, "load") or {"day": ctx.params["date"]}


def enrich(ctx, config):
    return _maybe_fail(ctx, "enrich") or {"tier": config["tier"] if "tier" in config else None}


def publish(ctx, config):
    failed = _maybe_fail(ctx, "publish")
    return failed or {"timeout": ctx.params.get("timeout")}


def report(ctx, config):
    return _maybe_fail(ctx, "report") or {"params": sorted(dict(ctx.params))}


IMPACT = Workflow("resume.impact", [
    Step.lambda_("load", load),
    Step.pipeline("enrich", "resume.enrich"),
    Step.lambda_("publish", publish),
    Step.lambda_("report", report),
])
ITERATES = Workflow("resume.iterates", [
    Step.lambda_("report", report),
    Step.lambda_("publish", publish),
])

from spine_dagster import pipeline  # noqa: E402

pipeline("resume.enrich")(enrich)
