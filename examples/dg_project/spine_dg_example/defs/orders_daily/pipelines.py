"""The pipelines of ``orders.daily`` (workflow.yaml). Each returns a small summary: the orders
themselves stay out of the checkpoints."""

import json
from pathlib import Path

from spine_dagster import ErrorCategory, QualityMetrics, StepResult, pipeline
from spine_dagster.dburl import spine_home


@pipeline("orders.extract")
def extract(ctx, config):
    """Read the day's orders from the shop (here: made up)."""
    count = int(config["order_count"])
    return StepResult.ok(output={"day": ctx.partition, "orders": count},
                         quality=QualityMetrics(record_count=count, valid_count=count))


@pipeline("orders.clean")
def clean(ctx, config):
    """Drop the orders without a customer (here: one in twenty)."""
    orders = ctx.get_output("extract", "orders")
    valid = orders - orders // 20
    return StepResult.ok(output={"orders": valid},
                         quality=QualityMetrics(record_count=orders, valid_count=valid,
                                                invalid_count=orders - valid))


@pipeline("orders.load")
def load(ctx, config):
    """Write the day's orders to the warehouse: ``params.warehouse_dir`` (default: under
    $SPINE_DAGSTER_HOME). A missing warehouse directory is an outage: TRANSIENT, so resume it
    once the warehouse is back. Writing the same day twice replaces it (idempotent)."""
    folder = Path(config["warehouse_dir"]) if config.get("warehouse_dir") else None
    if folder is None:
        folder = spine_home() / "warehouse"
        folder.mkdir(parents=True, exist_ok=True)
    if not folder.is_dir():
        return StepResult.fail(f"the warehouse at {folder} is unavailable",
                               ErrorCategory.TRANSIENT)
    target = folder / f"orders_{ctx.partition or 'all'}.json"
    target.write_text(json.dumps({"orders": ctx.get_output("clean", "orders"),
                                  "resumed": bool(ctx.params.get("__resumed__"))}))
    return StepResult.ok(output={"path": str(target)})
