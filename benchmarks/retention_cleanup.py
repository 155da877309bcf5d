"""Checkpoint cleanup of many rows while checkpoints are being written: how long do writes wait?

Fills a fresh database with ``--rows`` old checkpoints of completed runs (100 steps per run), then
runs ``CheckpointStore.cleanup`` while another thread keeps writing checkpoints of a running run,
and reports the cleanup's rate and the writer's latencies (the longest is what the issue bounds:
"a cleanup of 1,000,000 rows does not block concurrent checkpoint writes for more than a second").

    .venv/bin/python benchmarks/retention_cleanup.py                       # PostgreSQL, 1,000,000
    .venv/bin/python benchmarks/retention_cleanup.py --backend sqlite --rows 200000
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone

import sqlalchemy as sa

from spine_dagster import CheckpointStore
from spine_dagster import db as spine_db

PG_URL = os.environ.get("SPINE_TEST_PG_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/test")
SNAPSHOT = ('{"params": {"api_url": "https://api.example.com", "timeout": 30}, '
            '"outputs": {"fetch": {"records": 1000, "table": "staging_records", '
            '"partition": "2026-01-10"}}, "quality_metrics": {}, "partition": {}, '
            '"metadata": {"created_at": "2025-12-01T00:00:00+00:00"}}')


def fill(store: CheckpointStore, rows: int) -> None:
    runs = (rows + 99) // 100
    dialect = store.engine.dialect.name
    with store.engine.begin() as conn:
        if dialect == "postgresql":
            old = "now() - interval '30 days'"
            conn.execute(sa.text(
                f"INSERT INTO core_workflow_runs (run_id, workflow_name, status, created_at, "
                f"updated_at) SELECT 'run-' || g, 'bench', 'completed', {old}, {old} "
                f"FROM generate_series(0, {runs - 1}) g"))
            conn.execute(sa.text(
                f"INSERT INTO core_workflow_checkpoints (run_id, step_name, context_snapshot, "
                f"created_at, workflow_name, step_index, size_bytes) SELECT 'run-' || (g / 100), "
                f"'step' || (g % 100), CAST(:snap AS jsonb), {old}, 'bench', g % 100, "
                f"{len(SNAPSHOT)} FROM generate_series(0, {rows - 1}) g"), {"snap": SNAPSHOT})
        else:
            old = "datetime('now', '-30 days')"
            series = "WITH RECURSIVE s(g) AS (SELECT 0 UNION ALL SELECT g + 1 FROM s WHERE g < "
            conn.execute(sa.text(
                f"{series}{runs - 1}) INSERT INTO core_workflow_runs (run_id, workflow_name, "
                f"status, created_at, updated_at) SELECT 'run-' || g, 'bench', 'completed', "
                f"{old}, {old} FROM s"))
            conn.execute(sa.text(
                f"{series}{rows - 1}) INSERT INTO core_workflow_checkpoints (run_id, step_name, "
                f"context_snapshot, created_at, workflow_name, step_index, size_bytes) SELECT "
                f"'run-' || (g / 100), 'step' || (g % 100), :snap, {old}, 'bench', g % 100, "
                f"{len(SNAPSHOT)} FROM s"), {"snap": SNAPSHOT})
    if dialect == "postgresql":
        with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text("VACUUM ANALYZE core_workflow_checkpoints"))


def writer(store: CheckpointStore, stop: threading.Event, latencies: list[float]) -> None:
    store.register_dagster_run(run_id="live", workflow_name="bench.live", dagster_run_id="d-live")
    i = 0
    while not stop.is_set():
        started = time.perf_counter()
        store.save_checkpoint(run_id="live", workflow_name="bench.live", step_name=f"s{i % 50}",
                              step_index=i % 50, dagster_run_id="d-live",
                              snapshot={"params": {"i": i}, "outputs": {}})
        latencies.append(time.perf_counter() - started)
        i += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batch-size", type=int, default=1000)
    args = parser.parse_args()

    schema = f"spine_bench_{uuid.uuid4().hex[:8]}"
    admin = None
    if args.backend == "postgres":
        admin = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        url = f"{PG_URL}?options=-csearch_path%3D{schema}"
    else:
        url = f"sqlite:///{tempfile.mkdtemp()}/bench.db"
    try:
        store = CheckpointStore(url)
        store.list_checkpoints("none")  # creates the tables
        started = time.perf_counter()
        fill(store, args.rows)
        print(f"{args.backend}: filled {args.rows:,} old checkpoints in "
              f"{time.perf_counter() - started:.1f}s")

        baseline: list[float] = []
        stop = threading.Event()
        thread = threading.Thread(target=writer, args=(store, stop, baseline))
        thread.start()
        time.sleep(3)
        stop.set()
        thread.join()

        latencies: list[float] = []
        stop = threading.Event()
        thread = threading.Thread(target=writer, args=(store, stop, latencies))
        thread.start()
        started = time.perf_counter()
        cutoff = datetime.now(timezone.utc) - timedelta(days=7)
        deleted = store.cleanup(cutoff, batch_size=args.batch_size)
        took = time.perf_counter() - started
        stop.set()
        thread.join()

        def ms(values: list[float], q: float) -> str:
            return f"{statistics.quantiles(values, n=1000)[int(q * 1000) - 1] * 1000:.1f}"

        print(f"cleanup: deleted {deleted:,} rows in {took:.1f}s ({deleted / took:,.0f} rows/s, "
              f"batch_size={args.batch_size})")
        print(f"checkpoint writes, no cleanup:     n={len(baseline):,} median="
              f"{statistics.median(baseline) * 1000:.1f}ms p99={ms(baseline, 0.99)}ms "
              f"max={max(baseline) * 1000:.1f}ms")
        print(f"checkpoint writes, during cleanup: n={len(latencies):,} median="
              f"{statistics.median(latencies) * 1000:.1f}ms p99={ms(latencies, 0.99)}ms "
              f"max={max(latencies) * 1000:.1f}ms")
        assert store.list_checkpoints("live"), "the running run's checkpoints must survive"
    finally:
        spine_db.dispose_all()
        if admin is not None:
            with admin.connect() as conn:
                conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))


if __name__ == "__main__":
    main()
