"""Shared fixtures. Every checkpoint-store test runs on both backends: ``[sqlite]`` and ``[postgres]``.

Dagster instance tests use ``dagster_instance``, parametrized ``[sqlite-instance]`` /
``[postgres-instance]`` (instance storage in a fresh PostgreSQL database per session).

PostgreSQL is the local server (``SPINE_TEST_PG_URL``, default
``postgresql+psycopg2://postgres@127.0.0.1:5432/test``). Each test gets its own schema, so tests
never see each other's rows. Under ``CI=true`` a missing server fails the run instead of skipping.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from typing import Iterator

import pytest
import sqlalchemy as sa
from dagster import DagsterInstance, instance_for_test

from spine_dagster import WorkflowRunner
from spine_dagster import db as spine_db

PG_URL = os.environ.get("SPINE_TEST_PG_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/test")
_pg_error: list[str] = []


def _pg_admin() -> sa.Engine | None:
    if _pg_error:
        return None
    engine = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool,
                              connect_args={"connect_timeout": 5})
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001
        _pg_error.append(str(exc).splitlines()[0])
        return None
    return engine


def require_postgres() -> sa.Engine:
    engine = _pg_admin()
    if engine is None:
        message = f"PostgreSQL at {PG_URL} is not reachable: {_pg_error[0]}"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message} (required under CI=true)")
        pytest.skip(message)
    return engine


@contextlib.contextmanager
def pg_schema(prefix: str) -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a fresh schema, dropped on exit."""
    admin = require_postgres()
    schema = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{PG_URL}?options=-csearch_path%3D{schema}"
    finally:
        spine_db.dispose_all()
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))


@pytest.fixture
def pg_schema_url() -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a fresh schema, dropped after the test."""
    with pg_schema("spine_t") as url:
        yield url


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request, tmp_path) -> Iterator[str]:
    """The checkpoint database, on each backend in turn."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/checkpoints.db"
        spine_db.dispose_all()
    else:
        yield request.getfixturevalue("pg_schema_url")


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path, monkeypatch):
    """Never touch ~/.spine_dagster or the user's DAGSTER_HOME."""
    monkeypatch.setenv("SPINE_DAGSTER_HOME", str(tmp_path / "spine_home"))
    monkeypatch.delenv("SPINE_DAGSTER_DATABASE_URL", raising=False)
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    # The repository's own workspace.yaml would make every runner look for a code location
    # serving its workflow; the tests of that feature set a workspace explicitly.
    monkeypatch.setenv("SPINE_DAGSTER_WORKSPACE", "")


@pytest.fixture
def instance():
    """A real, temporary, persistent Dagster instance."""
    with instance_for_test() as inst:
        yield inst


@pytest.fixture
def runner(database_url, instance) -> WorkflowRunner:
    return WorkflowRunner(database_url=database_url, instance=instance)


# -- Dagster instances: [sqlite-instance] and [postgres-instance] -----------------------------------
_TELEMETRY = "telemetry:\n  enabled: false\n"
# Launches from the CLI/webserver start at once (the default QueuedRunCoordinator needs a daemon).
_COORDINATOR = ("run_coordinator:\n  module: dagster._core.run_coordinator\n"
                "  class: DefaultRunCoordinator\n")


@pytest.fixture(scope="session")
def pg_dagster_url() -> Iterator[str]:
    """A fresh PostgreSQL database for Dagster's instance storage, dropped after the session."""
    admin = require_postgres()
    name = f"dagster_t_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    yield str(sa.make_url(PG_URL).set(database=name).render_as_string(hide_password=False))
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def write_dagster_home(home, storage: str, pg_url: str | None = None, extra: str = "") -> str:
    """Write ``home/dagster.yaml`` for a SQLite- or PostgreSQL-backed instance; returns ``home``."""
    os.makedirs(home, exist_ok=True)
    if storage == "postgres":
        body = f'storage:\n  postgres:\n    postgres_url: "{pg_url}"\n'
    else:
        body = f"storage:\n  sqlite:\n    base_dir: {home}/storage\n"
    with open(os.path.join(home, "dagster.yaml"), "w") as fh:
        fh.write(body + _TELEMETRY + _COORDINATOR + extra)
    return str(home)


@pytest.fixture(params=["sqlite-instance", "postgres-instance"])
def dagster_home(request, tmp_path) -> str:
    """A DAGSTER_HOME directory whose dagster.yaml uses SQLite or PostgreSQL storage."""
    if request.param == "sqlite-instance":
        return write_dagster_home(tmp_path / "dagster_home", "sqlite")
    pg_url = request.getfixturevalue("pg_dagster_url")
    return write_dagster_home(tmp_path / "dagster_home", "postgres", pg_url)


@pytest.fixture
def dagster_instance(dagster_home) -> Iterator[DagsterInstance]:
    """A real persistent Dagster instance on each storage in turn (see ``dagster_home``)."""
    instance = DagsterInstance.from_config(dagster_home)
    try:
        yield instance
    finally:
        instance.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def deployment(request, tmp_path) -> Iterator[tuple[str, str]]:
    """(DAGSTER_HOME, checkpoint database URL) on one backend: all SQLite, or all PostgreSQL."""
    if request.param == "sqlite":
        yield (write_dagster_home(tmp_path / "dagster_home", "sqlite"),
               f"sqlite:///{tmp_path}/checkpoints.db")
        spine_db.dispose_all()
    else:
        home = write_dagster_home(tmp_path / "dagster_home", "postgres",
                                  request.getfixturevalue("pg_dagster_url"))
        yield home, request.getfixturevalue("pg_schema_url")

