"""An idempotent load: a step that survives being killed halfway and resumed.

The seed's "Idempotency Considerations": when a run is resumed, the step that failed runs again,
and it may already have written part of its data. ``load`` below writes the day's prices to a real
SQL table (SQLite or PostgreSQL) in committed batches with ``INSERT ... ON CONFLICT DO UPDATE``
keyed by ``(price_date, symbol)``, so writing a row a second time replaces it instead of
duplicating it. Its inputs are deterministic (the partition's date and a row count kept in the
checkpoint), so the re-run writes the same rows. ``ctx.attempt`` and ``ctx.params["__resumed__"]``
say that this is a retry; ``report`` uses them for its message, as the seed's notification
step does.

Try it (``kill -9`` the process while ``load`` holds, then resume)::

    python examples/idempotent_load.py --hold-after-rows 10      # prints its pid and the run id
    kill -9 <pid>                                                 # from another terminal
    python examples/idempotent_load.py --resume <run id>          # loads the rest, no duplicates

``extract`` is not run again by the resume: its checkpoint holds its output.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from spine_dagster import Step, StepResult, Workflow, WorkflowRunner  # noqa: E402
from spine_dagster.db import spine_home  # noqa: E402

TABLE = "example_daily_prices"
STEP_LOG = "example_step_log"
DDL = (
    f"CREATE TABLE IF NOT EXISTS {TABLE} (price_date VARCHAR(10) NOT NULL, "
    f"symbol VARCHAR(16) NOT NULL, price_cents INTEGER NOT NULL, spine_run_id VARCHAR(64) NOT NULL, "
    f"loaded_attempt INTEGER NOT NULL, PRIMARY KEY (price_date, symbol))",
    f"CREATE TABLE IF NOT EXISTS {STEP_LOG} (spine_run_id VARCHAR(64) NOT NULL, "
    f"step VARCHAR(64) NOT NULL, attempt INTEGER NOT NULL, resumed INTEGER NOT NULL)",
)
# The same statement works on SQLite (3.24+) and PostgreSQL.
UPSERT = sa.text(
    f"INSERT INTO {TABLE} (price_date, symbol, price_cents, spine_run_id, loaded_attempt) "
    f"VALUES (:price_date, :symbol, :price_cents, :spine_run_id, :loaded_attempt) "
    f"ON CONFLICT (price_date, symbol) DO UPDATE SET price_cents = excluded.price_cents, "
    f"spine_run_id = excluded.spine_run_id, loaded_attempt = excluded.loaded_attempt")


def warehouse(ctx) -> sa.Engine:
    """The target database (``params["warehouse_url"]``), with its tables created."""
    engine = sa.create_engine(ctx.params["warehouse_url"], poolclass=sa.pool.NullPool)
    with engine.begin() as conn:
        for statement in DDL:
            conn.execute(sa.text(statement))
    return engine


def log_step(engine: sa.Engine, ctx, step: str) -> None:
    """An audit row per execution of a step (plain INSERT: it shows every try)."""
    with engine.begin() as conn:
        conn.execute(sa.text(f"INSERT INTO {STEP_LOG} VALUES (:r, :s, :a, :z)"),
                     {"r": ctx.run_id, "s": step, "a": ctx.attempt,
                      "z": int(bool(ctx.params.get("__resumed__")))})


def prices_for(date: str, count: int) -> list[dict[str, Any]]:
    """Deterministic rows for a date: the same on every try (the seed's "Design for Resume")."""
    return [{"price_date": date, "symbol": f"SYM{i:03d}", "price_cents": 10_000 + 125 * i}
            for i in range(count)]


def extract(ctx, config) -> StepResult:
    engine = warehouse(ctx)
    log_step(engine, ctx, "extract")
    date = ctx.partition["date"]
    # Store a reference, not the data: load re-derives the rows from the date and the count.
    return StepResult.ok(output={"date": date, "row_count": int(ctx.params.get("rows", 20))})


def load(ctx, config) -> StepResult:
    engine = warehouse(ctx)
    log_step(engine, ctx, "load")
    source = ctx.get_output("extract")
    rows = [{**row, "spine_run_id": ctx.run_id, "loaded_attempt": ctx.attempt}
            for row in prices_for(source["date"], source["row_count"])]
    batch = int(ctx.params.get("batch_size", 5))
    hold_after = ctx.params.get("hold_after_rows")
    written = 0
    for start in range(0, len(rows), batch):
        with engine.begin() as conn:  # each batch commits: a kill leaves a partial load behind
            conn.execute(UPSERT, rows[start:start + batch])
        written += len(rows[start:start + batch])
        if hold_after and ctx.attempt == 1 and written >= hold_after and written < len(rows):
            hold(ctx, written)
    return StepResult.ok(output={"table": TABLE, "date": source["date"], "rows_written": written,
                                 "attempt": ctx.attempt})


def hold(ctx, written: int) -> None:
    """Stand still halfway through the load, so that someone can kill the process."""
    message = (f"load holds after {written} rows: spine run {ctx.run_id}, pid {os.getpid()}. "
               f"kill -9 {os.getpid()}, then: python examples/idempotent_load.py --resume "
               f"{ctx.run_id}")
    print(message, flush=True)
    flag = ctx.params.get("hold_flag")
    if flag:
        Path(flag).write_text(ctx.run_id)
    deadline = time.monotonic() + float(ctx.params.get("hold_seconds", 600))
    while time.monotonic() < deadline:
        time.sleep(0.2)
    raise RuntimeError(f"nobody killed the process within {ctx.params.get('hold_seconds', 600)}s")


def report(ctx, config) -> StepResult:
    engine = warehouse(ctx)
    log_step(engine, ctx, "report")
    date = ctx.get_output("extract", "date")
    with engine.connect() as conn:
        count = conn.execute(sa.text(f"SELECT count(*) FROM {TABLE} WHERE price_date = :d"),
                             {"d": date}).scalar_one()
    resumed = ctx.params.get("__resumed__", False)
    message = (f"{'RESUMED and completed' if resumed else 'completed'}: {count} rows for {date} "
               f"in {TABLE}")
    return StepResult.ok(output={"rows_in_table": count, "message": message})


IDEMPOTENT_LOAD = Workflow(
    name="examples.idempotent_load",
    description="Load a day's prices idempotently (INSERT ... ON CONFLICT), resumable midway.",
    steps=[
        Step.lambda_("extract", extract),
        Step.lambda_("load", load),
        Step.lambda_("report", report),
    ],
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--date", default="2026-01-10", help="the partition to load")
    parser.add_argument("--rows", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=5)
    parser.add_argument("--hold-after-rows", type=int, default=None,
                        help="stand still after this many rows, to be killed (first try only)")
    parser.add_argument("--hold-flag", default=None, help="file to write the run id to on hold")
    parser.add_argument("--database-url", default=None, help="checkpoint database")
    parser.add_argument("--warehouse-url", default=None,
                        help=f"where {TABLE} lives (default: SQLite in the spine home)")
    parser.add_argument("--resume", metavar="RUN_ID", default=None)
    args = parser.parse_args(argv)

    runner = WorkflowRunner(database_url=args.database_url, log_level="CRITICAL")
    if args.resume:
        result = runner.resume(args.resume)
    else:
        if not args.warehouse_url:
            spine_home().mkdir(parents=True, exist_ok=True)
        params = {"warehouse_url": args.warehouse_url or f"sqlite:///{spine_home() / 'warehouse.db'}",
                  "rows": args.rows, "batch_size": args.batch_size,
                  "hold_after_rows": args.hold_after_rows, "hold_flag": args.hold_flag}
        result = runner.execute(IDEMPOTENT_LOAD, params=params, partition={"date": args.date})
    print(f"run {result.run_id}: {result.status}; steps run: {result.completed_steps}")
    if result.status == "completed":
        print(result.context.get_output("report", "message"))
    else:
        print(f"failed at {result.error_step}: {result.error}")
    return 0 if result.status == "completed" else 1


if __name__ == "__main__":
    sys.exit(main())
