"""DBOS, the durable-steps-in-SQL yardstick: 100 trivial steps per workflow, in this process.

DBOS (``pip install -e '.[bench]'``) is an optional benchmark dependency, never a runtime one.
Without it, :func:`unavailable` says why and the DBOS comparisons are reported as skipped.

:class:`DbosSide` launches DBOS on the backend's kind of database (a SQLite file in the
benchmark's temporary directory, or a temporary PostgreSQL database on the same server), runs
its workflows, reports its durability settings, and destroys it (dropping the database) at the
end. Its steps are registered when this module is imported, as DBOS requires.

Example:
    >>> unavailable() is None or unavailable().startswith("DBOS is not installed")
    True
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
import uuid
from typing import Any, Iterator

import sqlalchemy as sa

try:  # optional: the `bench` extra
    from dbos import DBOS

    _IMPORT_ERROR: str | None = None
except ImportError as exc:  # pragma: no cover - depends on the environment
    DBOS = None  # type: ignore[assignment,misc]
    _IMPORT_ERROR = str(exc)


def unavailable() -> str | None:
    """None when DBOS can be measured, else why not (and how to install it)."""
    if _IMPORT_ERROR is None:
        return None
    return (f"DBOS is not installed ({_IMPORT_ERROR}); install the benchmark extra: "
            f".venv/bin/pip install -e '.[bench]'")


if DBOS is not None:
    @DBOS.step()
    def trivial_step(i: int) -> int:
        """The step body: as trivial as the spine side's."""
        return i + 1

    @DBOS.workflow()
    def steps_workflow(n: int) -> int:
        """``n`` durable steps, one after the other."""
        total = 0
        for i in range(n):
            total += trivial_step(i)
        return total


class DbosSide:
    """DBOS launched on a database of the backend's kind (see the module docs)."""

    def __init__(self, name: str, url: str) -> None:
        self.name = name
        self.url = url

    @classmethod
    @contextlib.contextmanager
    def open(cls, backend: Any) -> Iterator[DbosSide]:
        """Launch DBOS next to ``backend`` (a :class:`~benchmarks.harness.Backend`)."""
        if DBOS is None:
            raise RuntimeError(unavailable())
        if backend.name == "sqlite":
            path = os.path.join(backend.home, "dbos.sqlite")
            url = f"sqlite:///{path}"
        else:
            database = f"spine_bench_dbos_{uuid.uuid4().hex[:8]}"
            url = (sa.make_url(backend.database_url).set(drivername="postgresql", database=database)
                   .render_as_string(hide_password=False))
        DBOS.destroy()
        DBOS(config={"name": "spine_bench", "system_database_url": url, "log_level": "WARNING"})
        DBOS.reset_system_database()
        DBOS.launch()
        side = cls(backend.name, url)
        try:
            steps_workflow(2)  # warm: the first workflow creates DBOS's prepared state
            yield side
        finally:
            DBOS.destroy()
            # drops the PostgreSQL database, deletes the SQLite file
            DBOS.reset_system_database(system_database_url=url)

    def run(self, n: int) -> float:
        """Wall time of one workflow of ``n`` trivial steps."""
        start = time.perf_counter()
        result = steps_workflow(n)
        elapsed = time.perf_counter() - start
        if result != n * (n + 1) // 2:
            raise RuntimeError(f"DBOS workflow of {n} steps returned {result}")
        return elapsed

    def durability(self) -> dict[str, Any]:
        """What a DBOS commit waits for on this database (DBOS sets no durability setting of its
        own: on SQLite only ``busy_timeout`` and ``foreign_keys``, see dbos/_sys_db_sqlite.py)."""
        if self.name == "sqlite":
            path = sa.make_url(self.url).database
            conn = sqlite3.connect(path)
            try:
                journal = conn.execute("PRAGMA journal_mode").fetchone()[0]
                synchronous = conn.execute("PRAGMA synchronous").fetchone()[0]
            finally:
                conn.close()
            names = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}
            return {"journal_mode": journal, "synchronous": names.get(synchronous, synchronous),
                    "meaning": "every commit is synced to disk (rollback journal + FULL)"}
        return pg_settings(self.url)


def pg_settings(url: str) -> dict[str, Any]:
    """The PostgreSQL server's commit durability settings."""
    engine = sa.create_engine(sa.make_url(url).set(drivername="postgresql+psycopg2"),
                              poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            values = {name: conn.exec_driver_sql(f"SHOW {name}").scalar()
                      for name in ("synchronous_commit", "fsync", "wal_sync_method")}
    finally:
        engine.dispose()
    values["meaning"] = ("every commit waits for its WAL flush" if values["synchronous_commit"] == "on"
                         and values["fsync"] == "on" else "commits may be lost in a crash")
    return values
