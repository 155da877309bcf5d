"""``checkpoint_write_vs_driver``: ``save_checkpoint`` of a 5.7 KB row against the raw driver.

Both sides write the same row, a real spine checkpoint snapshot of about 5.7 KB, into the same
``core_workflow_checkpoints`` table of a scratch database, one transaction per write, in
alternation (so that a busy moment of the machine hits both alike):

* spine: ``CheckpointStore.save_checkpoint`` (the checkpoint row *and* the step's row in
  ``core_workflow_steps``, in one transaction); the snapshot is passed as its JSON text, as the
  engine passes it (serializing it is the engine's, measured by the Dagster benchmarks);
* the floor: the driver alone (``sqlite3`` / ``psycopg2``) on a connection of its own, with the
  same durability settings: ``BEGIN IMMEDIATE``, the upsert of the checkpoint row alone,
  ``COMMIT`` on SQLite (WAL, ``synchronous=NORMAL``, as the store's connections); the upsert and
  ``commit()`` on PostgreSQL.

Each side writes 50 step names in turn (inserts first, then updates of existing rows, as resumed
steps do). Also reported: the same floor on a two-column table (``k TEXT PRIMARY KEY, v``), the
figure the issue quoted, which leaves out the checkpoint table's other columns and indexes.
"""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timezone
from typing import Any, Callable

import sqlalchemy as sa

from spine_dagster import CheckpointStore, WorkflowContext
from spine_dagster import db as spine_db
from spine_dagster.serialization import RawJSON, dumps
from spine_dagster.store import build_snapshot

from .harness import Backend, median

KEYS = 50
COLUMNS = ("run_id", "step_name", "context_snapshot", "created_at", "workflow_name", "step_index",
           "dagster_run_id", "size_bytes", "state", "superseded_at", "item_index")


def snapshot_text(run_id: str, step: str, seq: int, records: int = 65) -> RawJSON:
    """A spine checkpoint snapshot (``build_snapshot``) of about 5.7 KB, different per write."""
    context = (WorkflowContext.create("bench.write", {"tier": "gold", "limit": 100, "seq": seq},
                                      run_id=run_id)
               .with_output("extract", {"records": [
                   {"id": i, "name": f"customer-{i:06d}", "amount": round(i * 1.37, 2),
                    "active": i % 3 != 0, "tags": ["a", "b"]} for i in range(records)]})
               .with_output(step, {"seq": seq}))
    return RawJSON(dumps(build_snapshot(run_id, "bench.write", step, context.to_dict(),
                                        dagster_run_id=f"d-{run_id}", dagster_version="bench")))


def _upsert_sql(table: str, placeholders: list[str]) -> str:
    update = ", ".join(f"{c} = excluded.{c}" for c in COLUMNS[2:])
    return (f"INSERT INTO {table} ({', '.join(COLUMNS)}) VALUES ({', '.join(placeholders)}) "
            f"ON CONFLICT (run_id, step_name) DO UPDATE SET {update}")


class _Driver:
    """The floor: the driver on its own connection (see the module docs)."""

    def __init__(self, url: str) -> None:
        parsed = sa.make_url(url)
        self.sqlite = parsed.get_backend_name() == "sqlite"
        if self.sqlite:
            import sqlite3

            self.conn = sqlite3.connect(parsed.database, isolation_level=None, timeout=30)
            for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "busy_timeout=30000"):
                self.conn.execute(f"PRAGMA {pragma}")
            self.sql = _upsert_sql("core_workflow_checkpoints", ["?"] * len(COLUMNS))
            self.conn.execute("CREATE TABLE IF NOT EXISTS bench_floor (k TEXT PRIMARY KEY, "
                              "v TEXT NOT NULL)")
            self.minimal = ("INSERT INTO bench_floor (k, v) VALUES (?, ?) ON CONFLICT (k) DO "
                            "UPDATE SET v = excluded.v")
        else:
            import psycopg2

            engine = spine_db.get_engine(url)  # the same server, database and search_path
            self.conn = psycopg2.connect(**engine.dialect.create_connect_args(engine.url)[1])
            placeholders = ["%s"] * len(COLUMNS)
            placeholders[2] = "%s::jsonb"
            self.sql = _upsert_sql("core_workflow_checkpoints", placeholders)
            with self.conn.cursor() as cur:
                cur.execute("CREATE TABLE IF NOT EXISTS bench_floor (k text PRIMARY KEY, "
                            "v jsonb NOT NULL)")
            self.conn.commit()
            self.minimal = ("INSERT INTO bench_floor (k, v) VALUES (%s, %s::jsonb) ON CONFLICT "
                            "(k) DO UPDATE SET v = EXCLUDED.v")
            self.cur = self.conn.cursor()

    def _run(self, sql: str, values: tuple) -> None:
        if self.sqlite:
            self.conn.execute("BEGIN IMMEDIATE")
            self.conn.execute(sql, values)
            self.conn.execute("COMMIT")
        else:
            self.cur.execute(sql, values)
            self.conn.commit()

    def write(self, run_id: str, step: str, index: int, text: str) -> None:
        now = datetime.now(timezone.utc)
        created = now.strftime("%Y-%m-%d %H:%M:%S.%f") if self.sqlite else now
        self._run(self.sql, (run_id, step, text, created, "bench.write", index, f"d-{run_id}",
                             len(text.encode("utf-8")), "valid", None, None))

    def write_minimal(self, step: str, text: str) -> None:
        self._run(self.minimal, (step, text))

    def close(self) -> None:
        self.conn.close()


def checkpoint_write(backend: Backend, writes: int) -> dict[str, Any]:
    """``checkpoint_write_vs_driver`` on one backend (see the module docs)."""
    label = f"write_{uuid.uuid4().hex[:8]}"
    url = backend.scratch_url(label)
    try:
        store = CheckpointStore(url)
        store.check()
        spine_run, raw_run = f"bench-spine-{label}", f"bench-raw-{label}"
        store.register_dagster_run(run_id=spine_run, workflow_name="bench.write",
                                   dagster_run_id=f"d-{spine_run}")
        texts = [snapshot_text(spine_run, f"s{i % KEYS:03d}", i) for i in range(writes)]
        raw_texts = [snapshot_text(raw_run, f"s{i % KEYS:03d}", i) for i in range(writes)]
        driver = _Driver(url)
        samples: dict[str, list[float]] = {"spine": [], "driver": [], "minimal": []}

        def timed(key: str, fn: Callable[[], Any]) -> None:
            start = time.perf_counter()
            fn()
            samples[key].append(time.perf_counter() - start)

        try:
            for i in range(writes):
                step = f"s{i % KEYS:03d}"
                sides = [
                    ("spine", lambda: store.save_checkpoint(
                        run_id=spine_run, workflow_name="bench.write", step_name=step,
                        step_index=i % KEYS, dagster_run_id=f"d-{spine_run}",
                        snapshot=texts[i])),
                    ("driver", lambda: driver.write(raw_run, step, i % KEYS, raw_texts[i])),
                    ("minimal", lambda: driver.write_minimal(step, raw_texts[i])),
                ]
                for key, fn in (sides if i % 2 == 0 else sides[::-1]):
                    timed(key, fn)
        finally:
            driver.close()
        skip = min(KEYS, writes // 4)  # the first inserts (cold caches) are not the steady state
        spine, floor, minimal = (median(samples[k][skip:]) for k in ("spine", "driver", "minimal"))
        return {
            "ratio": spine / floor,
            "save_checkpoint_ms": spine * 1000,
            "driver_upsert_ms": floor * 1000,
            "ratio_vs_two_column_table": spine / minimal,
            "driver_two_column_table_ms": minimal * 1000,
            "row_bytes": int(median([len(t.encode("utf-8")) for t in texts])),
            "writes": writes - skip,
        }
    finally:
        backend.drop_scratch(label, url)
