"""The per-step write path (``db.write``): one transaction per step, no ping per write, and the
same failure handling as every other transaction (a lost connection is retried, a database
error is reported and leaves the connection usable). Both backends, real databases.
"""

from __future__ import annotations

import multiprocessing
import os

import pytest
import sqlalchemy as sa
from conftest import require_postgres

from spine_dagster import CheckpointStore
from spine_dagster import db as spine_db
from spine_dagster.errors import DatabaseUnavailableError
from spine_dagster.snapshot import utcnow

RUN = "write-path-run"


def _store(database_url: str) -> CheckpointStore:
    store = CheckpointStore(database_url)
    store.register_dagster_run(run_id=RUN, workflow_name="wp", dagster_run_id="d1")
    return store


def _snapshot(step: str) -> dict:
    return {"run_id": RUN, "workflow_name": "wp", "step_name": step, "params": {},
            "outputs": {step: {"n": 1}}, "metadata": {}}


def _write(store: CheckpointStore, step: str, next_step: str | None = None):
    return store.record_checkpoint(run_id=RUN, workflow_name="wp", step_name=step,
                                   step_index=0, dagster_run_id="d1", snapshot=_snapshot(step),
                                   next_step=next_step)


def test_a_step_is_one_transaction(database_url):
    store = _store(database_url)
    store.start_step(RUN, "a", "d1")
    engine = store.engine
    if engine.dialect.name == "sqlite":
        statements: list[str] = []
        spine_db.dispose_all()  # the next write opens a new connection: trace it
        sa.event.listen(spine_db.get_engine(store.url), "connect",
                        lambda conn, _record: conn.set_trace_callback(statements.append))
        size, attempt = _write(store, "a", next_step="b")
        assert [s.split()[0].upper() for s in statements] == [
            "BEGIN", "INSERT", "INSERT", "INSERT", "COMMIT"]  # checkpoint, step a, step b
    else:
        size, attempt = _write(store, "a", next_step="b")
        with engine.connect() as conn:  # every row a transaction wrote carries its id
            xmins = conn.execute(sa.text(
                "SELECT xmin::text FROM core_workflow_checkpoints WHERE run_id = :r "
                "UNION ALL SELECT xmin::text FROM core_workflow_steps WHERE run_id = :r"),
                {"r": RUN}).scalars().all()
        assert len(xmins) == 3 and len(set(xmins)) == 1
    assert attempt == 1 and size == store.get_checkpoint(RUN, "a").size_bytes > 0
    rows = store.step_rows(RUN)
    assert (rows["a"].status, rows["b"].status, rows["b"].attempts) == ("completed", "running", 1)
    assert store.get_checkpoint(RUN, "a").step_outputs == {"a": {"n": 1}}


def test_a_database_error_is_reported_and_the_next_write_works(database_url):
    store = _store(database_url)
    _write(store, "a")
    with store.engine.begin() as conn:  # a unique violation inside the write's transaction
        conn.execute(sa.text("CREATE UNIQUE INDEX wp_unique_size ON core_workflow_checkpoints "
                             "(size_bytes)"))
    with pytest.raises(sa.exc.IntegrityError):
        _write(store, "b")  # same size as a's row: refused, and nothing of it was written
    assert store.get_checkpoint(RUN, "b") is None and "b" not in store.step_rows(RUN)
    with store.engine.begin() as conn:
        conn.execute(sa.text("DROP INDEX wp_unique_size"))
    _write(store, "b", next_step="c")
    assert [c.step_name for c in store.list_checkpoints(RUN)] == ["a", "b"]


def _backend_pid(store: CheckpointStore) -> int:
    with store.engine.connect() as conn:  # the pool's one connection, as the next write gets it
        return conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()


def _terminate(pid: int) -> None:
    admin = require_postgres()
    with admin.connect() as conn:
        assert conn.execute(sa.text("SELECT pg_terminate_backend(:p)"), {"p": pid}).scalar_one()


@pytest.mark.postgres
def test_no_ping_per_write_and_a_lost_connection_is_retried(pg_schema_url):
    store = _store(pg_schema_url)
    _write(store, "a")
    batch = [store._step_started(RUN, "x", "d1", utcnow())]

    _terminate(_backend_pid(store))
    # Not pinged (it was used a moment ago), the dead connection fails the write; without the
    # retry delays the failure surfaces, as a lost connection.
    with pytest.raises(DatabaseUnavailableError, match="cannot reach the checkpoint database"):
        spine_db.write(store.url, batch, delays=())
    assert spine_db.write(store.url, batch, delays=()) == [(1,)]  # a new connection

    _terminate(_backend_pid(store))
    _write(store, "b")  # the store's writes retry after a lost connection
    assert [c.step_name for c in store.list_checkpoints(RUN)] == ["a", "b"]


@pytest.mark.postgres
def test_a_connection_idle_for_long_is_pinged_before_a_write(pg_schema_url, monkeypatch):
    store = _store(pg_schema_url)
    _write(store, "a")
    _terminate(_backend_pid(store))
    monkeypatch.setattr(spine_db, "STALE_AFTER_SECONDS", 0.0)  # every pooled connection is stale
    batch = [store._step_started(RUN, "x", "d1", utcnow())]
    assert spine_db.write(store.url, batch, delays=()) == [(1,)]  # pinged, found dead, replaced


def _child_writes(url: str, queue) -> None:
    try:
        store = CheckpointStore(url)
        _write(store, "child")
        queue.put("ok")
    except BaseException as exc:  # noqa: BLE001 - reported to the parent
        queue.put(repr(exc))


def test_a_forked_process_writes_on_its_own_connection(tmp_path):
    url = f"sqlite:///{tmp_path}/fork.db"
    store = _store(url)
    _write(store, "parent")  # the parent holds its SQLite write connection now
    mp = multiprocessing.get_context("fork")
    queue = mp.Queue()
    child = mp.Process(target=_child_writes, args=(url, queue))
    child.start()
    assert queue.get(timeout=60) == "ok"
    child.join(60)
    assert child.exitcode == 0
    _write(store, "parent_again")
    assert sorted(c.step_name for c in store.list_checkpoints(RUN)) == [
        "child", "parent", "parent_again"]
    assert os.getpid() == spine_db._pinned[store.url].pid
