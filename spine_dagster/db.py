"""Engines and schema management: the only place where SQLite and PostgreSQL differ in set-up.

* One engine per URL per process. SQLite runs in WAL mode with a busy timeout; PostgreSQL uses
  ``pool_pre_ping`` so that long-lived processes (the webserver, the daemon) survive restarts.
* JSON is written with :func:`spine_dagster.serialization.dumps` and read back with ``loads``.
* The schema is created on first use of an empty database. A database whose schema is older than
  this code raises ``SchemaOutOfDateError`` naming ``spine-dagster db upgrade``.
"""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path
from typing import Any, Iterator, NamedTuple, Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from . import migrations
from .errors import DatabaseUnavailableError, SchemaOutOfDateError
from .schema import SCHEMA_VERSION, schema_version
from .serialization import RawJSON, dumps, loads

ENV_DATABASE_URL = "SPINE_DAGSTER_DATABASE_URL"
ENV_HOME = "SPINE_DAGSTER_HOME"

_engines: dict[str, sa.Engine] = {}
_schema_checked: set[str] = set()
_lock = threading.Lock()


def spine_home() -> Path:
    """Where spine_dagster keeps its embedded state: ``$SPINE_DAGSTER_HOME`` or ``~/.spine_dagster``."""
    return Path(os.environ.get(ENV_HOME) or Path.home() / ".spine_dagster").expanduser()


def default_database_url() -> str:
    """``$SPINE_DAGSTER_DATABASE_URL``, else SQLite at ``<spine home>/checkpoints.db``."""
    url = os.environ.get(ENV_DATABASE_URL)
    if url:
        return url
    return f"sqlite:///{spine_home() / 'checkpoints.db'}"


def resolve_url(url: str | None) -> str:
    url = url or default_database_url()
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        # SQLAlchemy 2.1 maps plain postgresql:// to psycopg 3; we ship psycopg2.
        url = "postgresql+psycopg2://" + url.split("://", 1)[1]
    return url


def mask_url(url: str) -> str:
    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - a malformed URL still must not leak a password
        return "<unparseable database URL>"


def _json_serializer(value: Any) -> str:
    return value if isinstance(value, RawJSON) else dumps(value)


def get_engine(url: str) -> sa.Engine:
    engine = _engines.get(url)
    if engine is not None:
        return engine
    with _lock:
        engine = _engines.get(url)
        if engine is None:
            engine = _create_engine(url)
            _engines[url] = engine
    return engine


def _create_engine(url: str) -> sa.Engine:
    try:
        parsed = sa.make_url(url)
    except Exception as exc:  # noqa: BLE001
        raise DatabaseUnavailableError(
            f"{mask_url(url)} is not a valid database URL ({type(exc).__name__}). Use "
            f"sqlite:///path/to/checkpoints.db or postgresql+psycopg2://user@host:5432/db."
        ) from None
    kwargs: dict[str, Any] = dict(json_serializer=_json_serializer, json_deserializer=loads)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        kwargs["connect_args"] = {"timeout": 30}
        engine = sa.create_engine(url, **kwargs)

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record):  # pragma: no cover - exercised by every sqlite test
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    if parsed.get_backend_name() == "postgresql":
        kwargs.update(pool_pre_ping=True, pool_size=2, max_overflow=8,
                      connect_args={"connect_timeout": 10})
        return sa.create_engine(url, **kwargs)
    raise DatabaseUnavailableError(
        f"{mask_url(url)}: unsupported database. Use sqlite:///... or postgresql+psycopg2://..."
    )


def _unavailable(url: str, exc: BaseException) -> DatabaseUnavailableError:
    reason = str(getattr(exc, "orig", exc)).strip().splitlines()[0] if str(exc) else type(exc).__name__
    password = sa.make_url(url).password
    if password:
        reason = reason.replace(str(password), "***")
    return DatabaseUnavailableError(
        f"cannot reach the checkpoint database at {mask_url(url)}: {reason}. Check that the "
        f"database server is running and the URL is right (pass database_url= or set "
        f"{ENV_DATABASE_URL})."
    )


@contextlib.contextmanager
def begin(url: str) -> Iterator[sa.Connection]:
    """A transaction on ``url``; a failure to connect becomes ``DatabaseUnavailableError``."""
    engine = get_engine(url)
    try:
        conn = engine.connect()
    except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
        raise _unavailable(url, exc) from None
    with conn, conn.begin():
        yield conn


def upsert(dialect: str, table: sa.Table, values: dict[str, Any], keys: Sequence[str],
           update: dict[str, Any]):
    """``INSERT ... ON CONFLICT (keys) DO UPDATE SET update`` (``DO NOTHING`` when empty).

    On PostgreSQL, an ``update`` value that is the very object inserted into that column becomes
    ``EXCLUDED.<column>``: a big value (a checkpoint's snapshot) is then sent and parsed into
    JSONB once, not twice (a 100 KB checkpoint upsert took 12 ms instead of 20). SQLite binds
    text cheaply, and building ``EXCLUDED`` costs more there than it saves.
    """
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(table).values(**values)
    if not update:
        return stmt.on_conflict_do_nothing(index_elements=list(keys))
    if dialect == "postgresql":
        excluded = stmt.excluded
        update = {column: excluded[column] if column in values and value is values[column]
                  else value for column, value in update.items()}
    return stmt.on_conflict_do_update(index_elements=list(keys), set_=update)


def current_version(conn: sa.Connection) -> int | None:
    """The schema version recorded in the database; None when it has no spine tables."""
    inspector = sa.inspect(conn)
    if not inspector.has_table(schema_version.name):
        return 0 if inspector.has_table("core_workflow_checkpoints") else None
    row = conn.execute(sa.select(schema_version.c.version)).first()
    return row[0] if row else 0


@contextlib.contextmanager
def _migration_lock(conn: sa.Connection) -> Iterator[None]:
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(7351001)"))
    yield


class Upgrade(NamedTuple):
    """What ``upgrade`` did: the version before (None: no tables), after, and the changes."""

    before: int | None
    after: int
    changes: list[str]


def upgrade(url: str | None = None) -> Upgrade:
    """Create or migrate the tables (see :mod:`spine_dagster.migrations`), in one transaction."""
    url = resolve_url(url)
    with begin(url) as conn, _migration_lock(conn):
        before = current_version(conn)
        changes = migrations.migrate(conn, before)
        conn.execute(sa.delete(schema_version))
        conn.execute(sa.insert(schema_version).values(id=1, version=SCHEMA_VERSION))
    _schema_checked.add(url)
    return Upgrade(before, SCHEMA_VERSION, changes)


def ensure_schema(url: str) -> None:
    """Create the schema in an empty database; refuse one that is behind this code."""
    if url in _schema_checked:
        return
    with begin(url) as conn:
        version = current_version(conn)
        lacking = migrations.missing(conn) if version is not None else []
    if version is None:
        upgrade(url)
        return
    if version < SCHEMA_VERSION or lacking:
        behind = (f"has schema version {version}" if version < SCHEMA_VERSION
                  else f"lacks {', '.join(lacking[:5])}")
        raise SchemaOutOfDateError(
            f"the checkpoint database at {mask_url(url)} {behind}; this spine_dagster needs "
            f"schema version {SCHEMA_VERSION}. Run: spine-dagster db upgrade "
            f"--database-url '{mask_url(url)}'"
        )
    _schema_checked.add(url)


def dispose_all() -> None:
    """Close every pooled connection (tests, and after fork)."""
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()
        _schema_checked.clear()
