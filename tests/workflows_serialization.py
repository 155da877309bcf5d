"""Module-level workflows and types for the serialization tests.

The enum and the pydantic model live at module level so that a checkpoint can name them by
``module:Qualname`` and a resume can rebuild them.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime, time, timezone
from decimal import Decimal
from enum import Enum

from pydantic import BaseModel

from spine_dagster import QualityMetrics, Step, StepResult, Workflow


class Tier(str, Enum):
    GOLD = "gold"
    SILVER = "silver"


class Quote(BaseModel):
    symbol: str
    price: Decimal
    as_of: date


TYPED_OUTPUT = {
    "as_of": date(2026, 1, 10),
    "loaded_at": datetime(2026, 1, 10, 12, 0, 5, 120000, tzinfo=timezone.utc),
    "naive": datetime(2026, 1, 10, 12, 0),
    "cutoff": time(17, 30),
    "price": Decimal("10.50"),
    "batch": uuid.UUID("12345678-1234-5678-1234-567812345678"),
    "tier": Tier.GOLD,
    "quote": Quote(symbol="ACME", price=Decimal("1.10"), as_of=date(2026, 1, 9)),
    "nested": [{"when": date(2026, 1, 1), "tiers": [Tier.SILVER]}],
}


def _produce(ctx, config):
    """The first step: also notes the types of the run's own params and partition."""
    seen = {"since_type": type(ctx.params.get("since")).__name__,
            "day_type": type(ctx.partition.get("day")).__name__}
    return StepResult.ok(output=dict(TYPED_OUTPUT),
                         context_updates={"as_of": date(2026, 1, 10), **seen},
                         quality=QualityMetrics(record_count=2, valid_count=2,
                                                custom_metrics={"max_price": Decimal("10.50")}))


def _check(ctx, config):
    """Fails while ``params["fail_check"]``; else reports the types it received."""
    if ctx.params.get("fail_check"):
        return StepResult.fail("checker is down")
    seen = ctx.get_output("produce")
    return StepResult.ok(output={
        "types": {key: type(value).__name__ for key, value in seen.items()},
        "equal": {key: value == TYPED_OUTPUT[key] for key, value in seen.items()},
        "as_of_param": type(ctx.params["as_of"]).__name__,
        "partition_day": type(ctx.partition["day"]).__name__,
        "quality": ctx.quality_metrics["produce"]["custom_metrics"]["max_price"] == Decimal("10.50"),
    })


TYPED = Workflow("serialization.typed", [Step.lambda_("produce", _produce),
                                         Step.lambda_("check", _check)])


def _first(ctx, config):
    return StepResult.ok(output={"ok": True})


def _fetch(ctx, config):
    """Returns a set at ``records[3]`` unless ``params["good"]``."""
    records = [1, 2, 3, [4] if ctx.params.get("good") else {4}]
    return StepResult.ok(output={"records": records})


def _big(ctx, config):
    return StepResult.ok(output={"blob": "x" * int(ctx.params.get("size", 10))})


UNSERIALIZABLE = Workflow("serialization.unserializable", [
    Step.lambda_("first", _first), Step.lambda_("fetch", _fetch), Step.lambda_("after", _first)])

BIG = Workflow("serialization.big", [
    Step.lambda_("small", _first), Step.lambda_("big", _big), Step.lambda_("after", _first)])
