"""spine_dagster.db: processes that open a new checkpoint database at the same moment.

Each process creates the schema on first use. Without a lock held for the whole creation, one
process saw the other's half-made schema (SQLite runs each CREATE TABLE in a transaction of its
own): "has schema version 0", or "table ... already exists". On [sqlite] and [postgres].
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

FIRST_USE = """
import sys, time
from spine_dagster import CheckpointStore
url, start = sys.argv[1], float(sys.argv[2])
while time.time() < start:
    time.sleep(0.001)
store = CheckpointStore.for_url(url)
print(len(store.list_runs()))
"""
PROCESSES = 4


def first_use_at_once(url: str) -> list[subprocess.CompletedProcess]:
    start = time.time() + 2.5  # after every interpreter has imported spine_dagster
    procs = [subprocess.Popen([sys.executable, "-c", FIRST_USE, url, repr(start)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={**os.environ})
             for _ in range(PROCESSES)]
    return [subprocess.CompletedProcess(p.args, p.wait(timeout=60), *p.communicate())
            for p in procs]


@pytest.mark.timeout(120)
def test_processes_that_open_a_new_database_at_once_all_get_the_schema(database_url, tmp_path):
    urls = ([database_url] if database_url.startswith("postgresql") else
            [f"sqlite:///{tmp_path}/round{i}/checkpoints.db" for i in range(3)])
    for url in urls:
        for done in first_use_at_once(url):
            assert done.returncode == 0 and done.stdout.strip() == "0", done.stderr[-2000:]


@pytest.mark.timeout(60)
def test_a_new_sqlite_database_write_locked_by_another_connection_is_waited_for(tmp_path):
    """Switching a new SQLite file to WAL mode needs an exclusive lock, and SQLite answers
    "database is locked" at once, not after its busy timeout, while another connection holds a
    write lock (seen in CI when four processes opened a new database at once). The first use
    waits for the lock instead, and then works."""
    import sqlite3
    import threading

    from spine_dagster import CheckpointStore

    path = tmp_path / "checkpoints.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # a write lock on a file still in rollback-journal mode
    holder.execute("CREATE TABLE other_tool (x)")
    result: dict = {}

    def first_use() -> None:
        try:
            result["runs"] = CheckpointStore.for_url(f"sqlite:///{path}").list_runs()
        except Exception as exc:  # noqa: BLE001 - reported below
            result["error"] = exc

    worker = threading.Thread(target=first_use)
    worker.start()
    time.sleep(1.0)  # the first use is waiting on the lock now
    assert worker.is_alive() and not result, result
    holder.execute("COMMIT")
    holder.close()
    worker.join(30)
    assert result == {"runs": []}, result
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("SELECT x FROM other_tool").fetchall() == []


@pytest.mark.timeout(60)
def test_a_schema_committed_between_two_reads_is_never_version_0(database_url):
    """Another process commits the whole schema just after this one's first read of it: the
    version read is "no schema yet" (then ``upgrade`` looks again under its lock) or the new
    version, never 0 (which refused the database as out of date: seen in CI)."""
    import threading

    import sqlalchemy as sa

    from spine_dagster import db
    from spine_dagster.schema import SCHEMA_VERSION

    with db.begin(database_url) as conn:
        fired = []

        def commit_schema_elsewhere(*_args) -> None:
            if not fired:
                fired.append(True)
                other = threading.Thread(target=db.upgrade, args=(database_url,))
                other.start()
                other.join(30)

        sa.event.listen(conn, "after_cursor_execute", commit_schema_elsewhere)
        version = db.current_version(conn)
    assert fired
    assert version in (None, SCHEMA_VERSION)
    with db.begin(database_url) as conn:
        assert db.current_version(conn) == SCHEMA_VERSION
