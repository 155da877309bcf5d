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

from spine_dagster import ErrorPolicy, Step, StepResult, Workflow

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


# -- every shape of step, for the partial-context check --------------------------------------------
def _shape_step(name: str, output: dict | None = None):
    def step(ctx, config):
        Path(ctx.params["dir"], "ran.txt").open("a").write(f"{name}\n")
        if name == "flaky" and ctx.params.get("fail"):
            return StepResult.fail("flaky: the API is down")
        if name == "soft":
            return StepResult.fail("soft failure, the run goes on")
        return output
    return step


def _item(ctx, config):
    return {"item": ctx.params["item"]}


SHAPE_ITEMS = Workflow("resume.shape_items", [Step.lambda_("one", _item)])


def shapes(name: str, *, strategy: str = "every_step", fuse: bool = False) -> Workflow:
    """A choice that skips a step, an ``ErrorPolicy.CONTINUE`` failure, a step that returns
    nothing, a map, a step that is never checkpointed, and ``flaky``, which fails while the param
    ``fail`` is true (``key_steps``: only ``start``, ``fan`` and ``finish`` are checkpointed)."""
    key = strategy == "key_steps"
    return Workflow(name, [
        Step.lambda_("start", _shape_step("start", {"n": 1}), checkpoint=key or None),
        Step.choice("jump", lambda ctx: True, then_step="soft"),
        Step.lambda_("skipped", _shape_step("skipped", {"ran": True})),
        Step.lambda_("soft", _shape_step("soft"), on_error=ErrorPolicy.CONTINUE),
        Step.lambda_("quiet", _shape_step("quiet")),
        Step.map("fan", "items", SHAPE_ITEMS, checkpoint=key or None),
        Step.lambda_("scratch", _shape_step("scratch", {"s": 1}), checkpoint=False),
        Step.lambda_("flaky", _shape_step("flaky", {"ok": True})),
        Step.lambda_("finish", _shape_step("finish", {"done": True}), checkpoint=key or None),
    ], checkpoint_strategy=strategy, fuse=fuse)


SHAPES = shapes("resume.shapes")
SHAPES_KEY_FUSED = shapes("resume.shapes_key_fused", strategy="key_steps", fuse=True)
