"""Engines, transactions and schema management: the only place where SQLite and PostgreSQL differ.

* One pooled engine per database per process. SQLite runs in WAL mode with a busy timeout.
  PostgreSQL keeps a small pool (one connection, four more under load) and checks a pooled
  connection before reuse only when it sat idle long enough to have gone stale, so a busy process
  pays no ping round trip per write.
* :func:`transaction` retries a transaction that failed because the connection dropped or the
  server could not be reached, with a short backoff, then reports the outage as
  ``DatabaseUnavailableError``. A read-only database and a full disk are reported as such.
* The schema is created on first use of an empty database. A database whose schema is older than
  this code raises ``SchemaOutOfDateError`` naming ``spine-dagster db upgrade``.

URLs (defaults, validation, no password at rest) are :mod:`spine_dagster.dburl`'s.
"""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator, NamedTuple, Sequence, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from . import migrations
from .dburl import (  # noqa: F401 - re-exported: the URL helpers used to live here
    ENV_DATABASE_URL,
    ENV_HOME,
    default_database_url,
    hide_password,
    mask_url,
    resolve_url,
    spine_home,
)
from .errors import DatabaseUnavailableError, SchemaOutOfDateError
from .schema import SCHEMA_VERSION, schema_version
from .serialization import RawJSON, dumps, loads

T = TypeVar("T")
RETRY_DELAYS = (0.2, 0.5, 1.0)
"""Seconds to wait before each retry of a transaction that lost its connection."""
STALE_AFTER_SECONDS = 30.0
"""A pooled PostgreSQL connection idle longer than this is pinged before reuse."""

_engines: dict[str, sa.Engine] = {}  # one per database
_schema_checked: set[str] = set()
_lock = threading.Lock()


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
    url = resolve_url(url)
    parsed = sa.make_url(url)
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
    kwargs.update(pool_size=1, max_overflow=4, pool_recycle=3600,
                  connect_args={"connect_timeout": 10})
    engine = sa.create_engine(url, **kwargs)
    _ping_when_stale(engine)
    return engine


def _ping_when_stale(engine: sa.Engine) -> None:
    """Pessimistic disconnect handling, but only for connections idle for a while."""

    @sa.event.listens_for(engine, "checkin")
    def _checked_in(dbapi_conn, record):  # pragma: no cover - exercised by every postgres test
        record.info["idle_since"] = time.monotonic()

    @sa.event.listens_for(engine, "checkout")
    def _checked_out(dbapi_conn, record, proxy):  # pragma: no cover
        since = record.info.get("idle_since")
        if since is None or time.monotonic() - since < STALE_AFTER_SECONDS:
            return
        try:
            cursor = dbapi_conn.cursor()
            cursor.execute("SELECT 1")
            cursor.close()
        except Exception as exc:  # noqa: BLE001 - the pool replaces the connection and retries
            raise sa.exc.DisconnectionError(str(exc)) from exc


def _reason(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", exc) or "").strip()
    return text.splitlines()[0] if text else type(exc).__name__


def unavailable(url: str, exc: BaseException, *, doing: str = "") -> DatabaseUnavailableError:
    """The ``DatabaseUnavailableError`` for a failed connection or statement, password masked."""
    reason = hide_password(_reason(exc), url)
    where = mask_url(url)
    lowered = reason.lower()
    if "readonly" in lowered or "read-only" in lowered or "read only" in lowered:
        return DatabaseUnavailableError(
            f"the checkpoint database at {where} is read-only ({reason}). Give this process "
            f"write access to the database file and its directory (SQLite writes a -wal file "
            f"next to it), or point database_url at a writable database.")
    if "disk is full" in lowered or "no space left" in lowered or "disk full" in lowered:
        return DatabaseUnavailableError(
            f"the disk of the checkpoint database at {where} is full ({reason}). Free space "
            f"there (or run spine-dagster cleanup), then resume the run.")
    doing = f" while {doing}" if doing else ""
    return DatabaseUnavailableError(
        f"cannot reach the checkpoint database at {where}{doing}: {reason}. Check that the "
        f"database server is running and the URL is right (pass database_url= or set "
        f"{ENV_DATABASE_URL}).")


def _transient(exc: BaseException) -> bool:
    """A lost or refused connection (worth a retry), not a full disk or a read-only file."""
    if not isinstance(exc, (sa.exc.OperationalError, sa.exc.InterfaceError,
                            sa.exc.DisconnectionError)):
        return False
    if getattr(exc, "connection_invalidated", False):
        return True
    lowered = _reason(exc).lower()
    if any(word in lowered for word in ("readonly", "read-only", "disk", "locked", "no space")):
        return False
    return any(word in lowered for word in (
        "connection", "connect", "server closed", "terminating", "shutting down",
        "starting up", "could not", "timeout", "timed out", "broken pipe", "reset by peer",
        "unable to open"))


@contextlib.contextmanager
def begin(url: str) -> Iterator[sa.Connection]:
    """One transaction on ``url``; database failures become ``DatabaseUnavailableError``."""
    engine = get_engine(url)
    try:
        conn = engine.connect()
    except (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.DisconnectionError) as exc:
        raise unavailable(url, exc) from exc
    try:
        with conn, conn.begin():
            yield conn
    except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
        raise unavailable(url, exc) from exc


def transaction(url: str, work: Callable[[sa.Connection], T], *,
                delays: Sequence[float] = RETRY_DELAYS) -> T:
    """Run ``work(conn)`` in one transaction; retry it after a lost connection (``delays``).

    ``work`` must be safe to run again (our writes are upserts or idempotent updates).
    """
    for attempt in range(len(delays) + 1):
        try:
            with begin(url) as conn:
                return work(conn)
        except DatabaseUnavailableError as exc:
            if attempt == len(delays) or not _transient(exc.__cause__):
                raise
            time.sleep(delays[attempt])
    raise AssertionError("unreachable")  # pragma: no cover


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
