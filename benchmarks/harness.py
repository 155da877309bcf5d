"""Benchmark plumbing: one Dagster instance and one checkpoint database per backend, timing helpers.

A :class:`Backend` owns everything a benchmark needs on one backend and removes it afterwards:

* ``sqlite``: a temporary ``DAGSTER_HOME`` with SQLite run/event storage, and the checkpoint
  store in a SQLite file next to it.
* ``postgres``: a temporary PostgreSQL database that holds both the Dagster instance storage and
  the checkpoint store (``--pg-url`` names the server; default: the local test server).

Both sides of a comparison (spine_dagster and plain Dagster) always use the backend's one instance.

Example:
    >>> with Backend.open("sqlite") as backend:
    ...     backend.name, backend.database_url.startswith("sqlite:///")
    ('sqlite', True)
"""

from __future__ import annotations

import contextlib
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import sqlalchemy as sa
from dagster import DagsterInstance

from spine_dagster import db as spine_db

DEFAULT_PG_URL = os.environ.get("SPINE_TEST_PG_URL",
                                "postgresql+psycopg2://postgres@127.0.0.1:5432/test")


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def measure(fn: Callable[[], float | None], reps: int, warmup: int = 1) -> list[float]:
    """Call ``fn`` ``warmup + reps`` times; return the ``reps`` timings after the warm-up.

    ``fn`` may return its own timing (seconds); otherwise its wall time is used.
    """
    out: list[float] = []
    for i in range(warmup + reps):
        start = time.perf_counter()
        value = fn()
        elapsed = time.perf_counter() - start if value is None else value
        if i >= warmup:
            out.append(elapsed)
    return out


@contextlib.contextmanager
def quiet_stderr(log_path: str) -> Iterator[None]:
    """Send fd 2 (Dagster's DEBUG console log) to ``log_path`` while the block runs.

    Both sides of every comparison still write their console logs; they just do not flood the
    terminal.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    with open(log_path, "ab") as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


def _with_search_path(url: str, schema: str) -> str:
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}options=-csearch_path%3D{schema}"


@dataclass
class Backend:
    """The Dagster instance and checkpoint database of one backend, for one benchmark session."""

    name: str
    home: str
    database_url: str
    instance: DagsterInstance
    pg_admin_url: str | None = None
    pg_database: str | None = None
    _extra: list[str] = field(default_factory=list)

    @classmethod
    @contextlib.contextmanager
    def open(cls, name: str, pg_url: str = DEFAULT_PG_URL) -> Iterator[Backend]:
        home = tempfile.mkdtemp(prefix=f"spine_bench_{name}_")
        backend: Backend | None = None
        try:
            if name == "sqlite":
                _write_yaml(home, "")
                backend = cls(name, home, f"sqlite:///{home}/checkpoints.db",
                              DagsterInstance.from_config(home))
            elif name == "postgres":
                database = f"spine_bench_{uuid.uuid4().hex[:10]}"
                _pg_admin(pg_url, f'CREATE DATABASE "{database}"')
                url = sa.make_url(pg_url).set(database=database)
                if url.drivername == "postgresql":
                    url = url.set(drivername="postgresql+psycopg2")
                url_text = url.render_as_string(hide_password=False)
                _write_yaml(home, f"storage:\n  postgres:\n    postgres_url: \"{url_text}\"\n")
                backend = cls(name, home, url_text, DagsterInstance.from_config(home),
                              pg_admin_url=pg_url, pg_database=database)
            else:
                raise ValueError(f"unknown backend {name!r}; use sqlite or postgres")
            yield backend
        finally:
            if backend is not None:
                backend.instance.dispose()
            spine_db.dispose_all()
            if backend is not None and backend.pg_database:
                _pg_admin(pg_url, f'DROP DATABASE IF EXISTS "{backend.pg_database}" WITH (FORCE)')
            shutil.rmtree(home, ignore_errors=True)

    def scratch_url(self, label: str) -> str:
        """A second, empty checkpoint database for store-level benchmarks (not the runs' one)."""
        if self.name == "sqlite":
            return f"sqlite:///{self.home}/{label}.db"
        engine = sa.create_engine(self.database_url, poolclass=sa.pool.NullPool)
        with engine.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA IF NOT EXISTS "{label}"'))
        engine.dispose()
        return _with_search_path(self.database_url, label)

    def drop_scratch(self, label: str, url: str) -> None:
        spine_db.dispose_all()
        if self.name == "sqlite":
            path = sa.make_url(url).database
            for suffix in ("", "-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    os.remove(f"{path}{suffix}")
            return
        engine = sa.create_engine(self.database_url, poolclass=sa.pool.NullPool)
        with engine.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{label}" CASCADE'))
        engine.dispose()

    @property
    def log_path(self) -> str:
        return os.path.join(self.home, "dagster-console.log")


def _write_yaml(home: str, storage: str) -> None:
    with open(os.path.join(home, "dagster.yaml"), "w") as fh:
        fh.write("telemetry:\n  enabled: false\n" + storage)


def _pg_admin(pg_url: str, statement: str) -> None:
    url = sa.make_url(pg_url)
    if url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg2")
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool,
                              connect_args={"connect_timeout": 5})
    try:
        with engine.connect() as conn:
            conn.execute(sa.text(statement))
    finally:
        engine.dispose()


def pg_available(pg_url: str = DEFAULT_PG_URL) -> str | None:
    """None when PostgreSQL answers at ``pg_url``, else the reason it does not."""
    try:
        _pg_admin(pg_url, "SELECT 1")
    except Exception as exc:  # noqa: BLE001
        return str(exc).strip().splitlines()[0]
    return None


def durability_of(backend: Backend) -> dict[str, Any]:
    """What a checkpoint commit of spine_dagster waits for on this backend."""
    if backend.name == "sqlite":
        engine = spine_db.get_engine(backend.database_url)
        with engine.connect() as conn:
            journal = conn.exec_driver_sql("PRAGMA journal_mode").scalar()
            synchronous = conn.exec_driver_sql("PRAGMA synchronous").scalar()
        return {"journal_mode": journal,
                "synchronous": {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}.get(synchronous),
                "meaning": "a commit survives a crash of the process; the last commits before "
                           "an OS crash or power loss can be lost (the database stays intact)"}
    from .dbos_side import pg_settings

    return pg_settings(backend.database_url)


def machine() -> dict[str, Any]:
    """nproc, CPU model, Python and library versions: where the figures came from."""
    import platform

    import dagster

    model = "?"
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    return {"nproc": os.cpu_count(), "cpu": model, "python": platform.python_version(),
            "dagster": dagster.__version__, "sqlalchemy": sa.__version__,
            "dbos": _version("dbos"), "load_average_start": list(os.getloadavg())}


def _version(package: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None
