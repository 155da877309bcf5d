"""The store-level benchmarks: look-ups at scale, retention while writing, concurrent writers.

These talk to :class:`~spine_dagster.CheckpointStore` directly, in a scratch database of their
own (a second SQLite file, or a second PostgreSQL schema), filled in bulk with SQL: ``COPY`` on
PostgreSQL, ``executemany`` on SQLite. Rows look like real checkpoints: runs of 20 steps with a
small spine-format snapshot each.
"""

from __future__ import annotations

import json
import multiprocessing
import time
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

import sqlalchemy as sa

from spine_dagster import CheckpointStore, WorkflowContext, WorkflowRunner
from spine_dagster import db as spine_db
from spine_dagster.serialization import dumps
from spine_dagster.store import build_snapshot

from .harness import Backend, median

STEPS_PER_RUN = 20
TARGET_RUN = "bench-target-run"


def _snapshot_template() -> str:
    """A real checkpoint snapshot (``build_snapshot``) with ``@RUN@`` / ``@STEP@`` / ``@N@`` holes."""
    context = WorkflowContext.create("bench.scale", {"tier": "gold", "limit": 100},
                                     run_id="@RUN@").with_output("@STEP@", {"index": "@N@"})
    return dumps(build_snapshot("@RUN@", "bench.scale", "@STEP@", context.to_dict(),
                                dagster_run_id="d-@RUN@", dagster_version="bench"))


_TEMPLATE = _snapshot_template()


def _snapshot(run_id: str, step: str, index: int) -> str:
    return (_TEMPLATE.replace("@RUN@", run_id).replace("@STEP@", step)
            .replace('"@N@"', str(index)))


COLUMNS = ("run_id", "step_name", "context_snapshot", "created_at", "workflow_name", "step_index",
           "dagster_run_id", "size_bytes")

# Rows g = 0 .. n-1: run number first_run + g / 20, step g % 20 + 1, written g seconds after
# `created`; run number `target` is TARGET_RUN. The database generates them (generate_series, or
# a recursive CTE on SQLite): a million rows take seconds, not a minute of Python.
_PG_INSERT = f"""
INSERT INTO core_workflow_checkpoints ({", ".join(COLUMNS)})
SELECT run_id, step, CAST(snap AS jsonb), CAST(:created AS timestamptz) + g * interval '1 second',
       'bench.scale', idx, 'd-' || run_id, octet_length(snap)
FROM (SELECT g, run_id, step, idx,
             replace(replace(replace(:tpl, '@RUN@', run_id), '@STEP@', step), '"@N@"',
                     CAST(idx AS text)) AS snap
      FROM (SELECT g, (g % {STEPS_PER_RUN}) + 1 AS idx,
                   's' || lpad(CAST((g % {STEPS_PER_RUN}) + 1 AS text), 3, '0') AS step,
                   CASE WHEN :first_run + g / {STEPS_PER_RUN} = :target THEN '{TARGET_RUN}'
                        ELSE 'bench-' || lpad(CAST(:first_run + g / {STEPS_PER_RUN} AS text), 8, '0')
                   END AS run_id
            FROM generate_series(0, :n - 1) AS g) AS numbered) AS rows
"""
_SQLITE_INSERT = f"""
WITH RECURSIVE series(g) AS (SELECT 0 UNION ALL SELECT g + 1 FROM series WHERE g < :n - 1)
INSERT INTO core_workflow_checkpoints ({", ".join(COLUMNS)})
SELECT run_id, step, snap, strftime('%Y-%m-%d %H:%M:%S', :created, '+' || g || ' seconds'),
       'bench.scale', idx, 'd-' || run_id, length(CAST(snap AS blob))
FROM (SELECT g, run_id, step, idx,
             replace(replace(replace(:tpl, '@RUN@', run_id), '@STEP@', step), '"@N@"', idx) AS snap
      FROM (SELECT g, (g % {STEPS_PER_RUN}) + 1 AS idx,
                   printf('s%03d', (g % {STEPS_PER_RUN}) + 1) AS step,
                   CASE WHEN :first_run + g / {STEPS_PER_RUN} = :target THEN '{TARGET_RUN}'
                        ELSE printf('bench-%08d', :first_run + g / {STEPS_PER_RUN}) END AS run_id
            FROM series))
"""


def bulk_insert(url: str, first_run: int, n_rows: int, created: datetime,
                target: int = -1) -> None:
    """Insert ``n_rows`` checkpoint rows (20 per run) with one SQL statement, then ANALYZE."""
    spine_db.ensure_schema(spine_db.resolve_url(url))
    engine = spine_db.get_engine(url)
    postgres = engine.dialect.name == "postgresql"
    params = {"n": n_rows, "first_run": first_run, "target": target, "tpl": _TEMPLATE,
              "created": (created.isoformat() if postgres
                          else created.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S"))}
    with engine.begin() as conn:
        conn.execute(sa.text(_PG_INSERT if postgres else _SQLITE_INSERT), params)
    with engine.connect() as conn:  # fresh planner statistics, as autovacuum would gather
        conn.execute(sa.text("ANALYZE core_workflow_checkpoints" if postgres else "ANALYZE"))
        conn.commit()


def _per_call(fn: Callable[[], Any], calls: int) -> float:
    """The median time of one call, over ``calls`` calls."""
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return median(times)


def _lookups(store: CheckpointStore) -> dict[str, Callable[[], Any]]:
    def check(value: Any, what: str) -> Any:
        if not value:
            raise RuntimeError(f"{what} of {TARGET_RUN} found nothing")
        return value

    return {
        "get_checkpoint": lambda: check(store.get_checkpoint(TARGET_RUN, "s010"), "get"),
        "list_checkpoints": lambda: check(store.list_checkpoints(TARGET_RUN), "list"),
        "list_checkpoint_steps": lambda: check(store.list_checkpoint_steps(TARGET_RUN), "steps"),
        "latest_checkpoint": lambda: check(store.latest_checkpoint(TARGET_RUN), "latest"),
    }


def _plans(store: CheckpointStore) -> dict[str, str]:
    """The query plan of each look-up, on this store: the statement it really runs, EXPLAINed."""
    seen: list[tuple[str, Any]] = []

    def capture(_conn, _cursor, statement, parameters, _context, _many):
        if statement.lstrip().upper().startswith("SELECT"):
            seen.append((statement, parameters))

    engine = store.engine
    postgres = engine.dialect.name == "postgresql"
    plans: dict[str, str] = {}
    for name, fn in _lookups(store).items():
        seen.clear()
        sa.event.listen(engine, "before_cursor_execute", capture)
        try:
            fn()
        finally:
            sa.event.remove(engine, "before_cursor_execute", capture)
        statement, parameters = seen[-1]
        raw = engine.raw_connection()
        try:
            cursor = raw.cursor()
            cursor.execute(("EXPLAIN " if postgres else "EXPLAIN QUERY PLAN ") + statement,
                           parameters)
            rows = cursor.fetchall()
        finally:
            raw.close()
        plans[name] = " | ".join(str(row[0] if postgres else row[-1]).strip() for row in rows)
    return plans


def store_scale(backend: Backend, small: int, large: int, calls: int, reps: int) -> dict[str, Any]:
    """``store_scale_ratio``: look-ups for one run with ``large`` rows in the table vs. ``small``.

    ``get_checkpoint``, ``list_checkpoints``, and resume's look-up (``list_checkpoint_steps``,
    which ``resume`` uses to find where to restart, and ``latest_checkpoint``, which ``get_run``
    uses). Two tables of their own, one with ``small`` rows and one with ``large``, are measured
    in alternation (so that a busy moment of the machine hits both alike): each sample is the
    median of ``calls`` calls; the figure is the median of ``reps`` samples after a warm-up one.
    The ratio reported is the worst of the four. The query plans are in the result too.
    """
    labels = {"small": f"scale_s_{uuid.uuid4().hex[:8]}", "large": f"scale_l_{uuid.uuid4().hex[:8]}"}
    urls = {size: backend.scratch_url(label) for size, label in labels.items()}
    try:
        created = datetime.now(timezone.utc) - timedelta(days=30)
        load_start = time.perf_counter()
        for size, rows in (("small", small), ("large", large)):
            bulk_insert(urls[size], 0, rows, created, target=(rows // STEPS_PER_RUN) // 2)
        load_s = time.perf_counter() - load_start
        lookups = {size: _lookups(CheckpointStore(url)) for size, url in urls.items()}
        samples: dict[str, dict[str, list[float]]] = {"small": {}, "large": {}}
        for rep in range(reps + 1):
            for name in lookups["small"]:
                order = ("small", "large") if rep % 2 else ("large", "small")
                for size in order:
                    value = _per_call(lookups[size][name], calls)
                    if rep:
                        samples[size].setdefault(name, []).append(value)
        timings = {size: {k: median(v) for k, v in per.items()} for size, per in samples.items()}
        ratios = {k: timings["large"][k] / timings["small"][k] for k in timings["small"]}
        worst = max(ratios, key=ratios.get)
        return {
            "ratio": ratios[worst],
            "worst": worst,
            "ratios": ratios,
            "small_rows": small,
            "large_rows": large,
            "small_median_s": timings["small"],
            "large_median_s": timings["large"],
            "large_plans": _plans(CheckpointStore(urls["large"])),
            "bulk_load_s": load_s,
            "calls_per_sample": calls,
            "reps": reps,
        }
    finally:
        for size, label in labels.items():
            backend.drop_scratch(label, urls[size])


def _age_runs(url: str, older_than: datetime) -> None:
    """A completed run record, as old as its checkpoints, for every run in the table."""
    from spine_dagster.schema import checkpoints, runs

    engine = spine_db.get_engine(url)
    with engine.begin() as conn:
        select = sa.select(
            checkpoints.c.run_id, sa.literal("bench.scale"), sa.literal("completed"),
            sa.literal(0), sa.func.min(checkpoints.c.created_at),
            sa.func.min(checkpoints.c.created_at)).group_by(checkpoints.c.run_id)
        conn.execute(sa.insert(runs).from_select(
            ["run_id", "workflow_name", "status", "attempts", "created_at", "updated_at"], select))
        conn.execute(sa.update(runs).values(updated_at=older_than, created_at=older_than))


def _writer_process(url: str, interval: float, ready, stop, results) -> None:
    """In its own process: write a checkpoint every ``interval`` s; send back the latencies.

    A separate process, like a Dagster run worker next to a cleanup job, so that the writes
    wait only for the database, not for the cleanup's Python thread (the GIL).
    """
    try:
        store = CheckpointStore(url)
        run_id = f"bench-live-{uuid.uuid4().hex[:8]}"
        store.register_dagster_run(run_id=run_id, workflow_name="bench.live",
                                   dagster_run_id=f"d-{run_id}")
        latencies: list[tuple[float, float]] = []
        i = 0
        while not stop.is_set():
            i += 1
            step = f"s{i:06d}"
            start = time.monotonic()
            store.save_checkpoint(run_id=run_id, workflow_name="bench.live", step_name=step,
                                  step_index=i, dagster_run_id=f"d-{run_id}",
                                  snapshot=json.loads(_snapshot(run_id, step, i)))
            latencies.append((start, time.monotonic() - start))
            if i == 1:
                ready.set()
            time.sleep(interval)
        results.put(("ok", latencies))
    except BaseException as exc:  # noqa: BLE001 - reported by the parent
        ready.set()
        results.put(("error", repr(exc)))


def retention_block(backend: Backend, rows: int) -> dict[str, Any]:
    """``retention_block_ms``: the longest checkpoint write while cleanup deletes ``rows`` rows.

    ``rows`` checkpoints of completed runs, 60 days old, are loaded in bulk; then a writer in
    another process, on its own connection, writes a checkpoint every 5 ms while
    ``WorkflowRunner(checkpoint_retention_days=30).cleanup_checkpoints()`` runs here.
    """
    label = f"retention_{uuid.uuid4().hex[:8]}"
    url = backend.scratch_url(label)
    mp = multiprocessing.get_context("fork")  # see write_throughput
    writer = None
    try:
        old = datetime.now(timezone.utc) - timedelta(days=60)
        bulk_insert(url, 0, rows, old)
        _age_runs(url, old)
        runner = WorkflowRunner(database_url=url, instance=backend.instance,
                                checkpoint_retention_days=30)
        ready, stop, results = mp.Event(), mp.Event(), mp.Queue()
        writer = mp.Process(target=_writer_process,
                            args=(_own_engine_url(url), 0.005, ready, stop, results), daemon=True)
        writer.start()
        if not ready.wait(60):
            raise RuntimeError("the writer process did not start writing within 60 s")
        time.sleep(1.0)
        begin = time.monotonic()
        deleted = runner.cleanup_checkpoints()
        end = time.monotonic()
        time.sleep(0.5)
        stop.set()
        status, payload = results.get(timeout=60)
        writer.join(30)
        if status != "ok":
            raise RuntimeError(f"the concurrent writer failed: {payload}")
        during = [lat for at, lat in payload if at + lat >= begin and at <= end]
        before = [lat for at, lat in payload if at + lat < begin]
        # No write overlapping the cleanup (only possible with a tiny table) blocked nothing.
        return {
            "ratio": max(during, default=0.0) * 1000,
            "max_write_ms": max(during, default=0.0) * 1000,
            "median_write_ms_during": median(during) * 1000 if during else None,
            "max_write_ms_before": max(before) * 1000 if before else None,
            "median_write_ms_before": median(before) * 1000 if before else None,
            "writes_during": len(during),
            "rows": rows,
            "deleted": deleted,
            "cleanup_s": end - begin,
        }
    finally:
        if writer is not None and writer.is_alive():
            writer.terminate()
            writer.join(10)
        backend.drop_scratch(label, url)


def _throughput_process(url: str, slot: int, ready, go, stop, results) -> None:
    """In its own process: write checkpoints back to back between ``go`` and ``stop``."""
    try:
        store = CheckpointStore(url)
        run_id = f"bench-writer-{slot}-{uuid.uuid4().hex[:6]}"
        payload = {"records": [{"id": i, "name": f"customer-{i:06d}", "amount": i * 1.5}
                               for i in range(200)]}
        store.register_dagster_run(run_id=run_id, workflow_name="bench.writers",
                                   dagster_run_id=f"d-{run_id}")
        ready.set()
        go.wait()
        count = 0
        while not stop.is_set():
            step = f"s{count + 1:06d}"
            store.save_checkpoint(
                run_id=run_id, workflow_name="bench.writers", step_name=step,
                step_index=count + 1, dagster_run_id=f"d-{run_id}",
                snapshot={"run_id": run_id, "step_name": step, "outputs": {step: payload}})
            count += 1
        results.put(("ok", count, time.monotonic()))
    except BaseException as exc:  # noqa: BLE001 - reported by the parent
        ready.set()
        results.put(("error", repr(exc), time.monotonic()))


def _own_engine_url(url: str) -> str:
    """The same database under another URL (so another engine): a no-op connect argument."""
    parsed = sa.make_url(url)
    extra = ({"application_name": "spine_bench_writer"} if parsed.get_backend_name() == "postgresql"
             else {"timeout": "30"})
    return parsed.update_query_dict(extra).render_as_string(hide_password=False)


def write_throughput(backend: Backend, writers: int, seconds: float) -> dict[str, Any]:
    """Checkpoints per second written by ``writers`` processes at once (like Dagster run workers).

    Each write is a full ``save_checkpoint`` of a ~10 KB context (serialize, upsert the
    checkpoint, upsert the step row, commit) on the writer's own connection.
    """
    label = f"writers_{uuid.uuid4().hex[:8]}"
    url = backend.scratch_url(label)
    spine_db.ensure_schema(spine_db.resolve_url(url))
    # fork: the writers start in milliseconds instead of importing Dagster 8 times. They get a
    # URL of their own, so each opens its own engine and never touches this process's pool.
    child_url = _own_engine_url(url)
    mp = multiprocessing.get_context("fork")
    go, stop, results = mp.Event(), mp.Event(), mp.Queue()
    readies = [mp.Event() for _ in range(writers)]
    procs = [mp.Process(target=_throughput_process,
                        args=(child_url, i, readies[i], go, stop, results), daemon=True)
             for i in range(writers)]
    try:
        for proc in procs:
            proc.start()
        for ready in readies:
            if not ready.wait(120):
                raise RuntimeError("a writer process did not start within 120 s")
        start = time.monotonic()
        go.set()
        time.sleep(seconds)
        stop.set()
        outcomes = [results.get(timeout=60) for _ in procs]
        errors = [o[1] for o in outcomes if o[0] != "ok"]
        if errors:
            raise RuntimeError(f"a writer failed: {errors[0]}")
        elapsed = max(o[2] for o in outcomes) - start
        total = sum(o[1] for o in outcomes)
        return {"ratio": total / elapsed, "checkpoints_per_s": total / elapsed,
                "writers": writers, "seconds": elapsed, "checkpoints": total,
                "context_bytes": len(dumps({"records": [
                    {"id": i, "name": f"customer-{i:06d}", "amount": i * 1.5}
                    for i in range(200)]}))}
    finally:
        for proc in procs:
            proc.join(30)
            if proc.is_alive():
                proc.terminate()
                proc.join(10)
        backend.drop_scratch(label, url)
