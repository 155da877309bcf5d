"""Engines, transactions and schema management: the only place where SQLite and PostgreSQL differ.

* One pooled engine per database per process. SQLite runs in WAL mode with a busy timeout.
  PostgreSQL keeps a small pool (one connection, four more under load) and checks a pooled
  connection before reuse only when it sat idle long enough to have gone stale, so a busy process
  pays no ping round trip per write. Step worker processes (:func:`use_step_worker_pools`) keep
  no connection at all between transactions (``NullPool``).
* :func:`transaction` retries a transaction (a write, or a read) that failed because the
  connection dropped or the server could not be reached, with a short backoff (each retry logged
  on ``spine_dagster.db``), then reports the outage as ``DatabaseUnavailableError``. A
  read-only database and a full disk are reported as such.
* The schema is created on first use of an empty database. A database whose schema is older than
  this code raises ``SchemaOutOfDateError`` naming ``spine-dagster db upgrade``.

URLs (defaults, validation, no password at rest) are :mod:`spine_dagster.dburl`'s.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
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
from .db_errors import (  # noqa: F401 - is_outage and unavailable are used by other modules
    READ_ONLY_SQLSTATE,
    _cannot_write,
    _reason,
    _transient,
    is_outage,
    unavailable,
)
from .errors import DatabaseUnavailableError, SchemaOutOfDateError
from .schema import SCHEMA_VERSION, schema_version
from .serialization import RawJSON, dumps, loads

T = TypeVar("T")
RETRY_DELAYS = (0.2, 0.5, 1.0)
"""Seconds to wait before each retry of a transaction that lost its connection."""
STALE_AFTER_SECONDS = 30.0
"""A pooled PostgreSQL connection idle longer than this is pinged before reuse."""

_log = logging.getLogger("spine_dagster.db")
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
            _wal(cur)
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    kwargs["connect_args"] = {"connect_timeout": 10}
    if _step_worker:  # a connection per statement batch, none kept between them
        return sa.create_engine(url, poolclass=sa.pool.NullPool, **kwargs)
    kwargs.update(pool_size=1, max_overflow=4, pool_recycle=3600)
    engine = sa.create_engine(url, **kwargs)
    _ping_when_stale(engine)
    return engine


SQLITE_LOCK_SECONDS = 30.0  # as long as the connections' busy timeout


def _wal(cur: Any) -> None:
    """Put the SQLite file in WAL mode. Switching needs an exclusive lock, and while another
    connection holds a write lock (another process creating the schema of a new database, say)
    SQLite answers "database is locked" at once instead of waiting on its busy timeout; so wait
    here, as the busy timeout would. A file already in WAL mode needs no switch."""
    deadline = time.monotonic() + SQLITE_LOCK_SECONDS
    while True:
        try:
            if str(cur.execute("PRAGMA journal_mode").fetchone()[0]).lower() != "wal":
                cur.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


_step_worker = False


def use_step_worker_pools() -> None:
    """This process runs steps of a run that another process orchestrates (a multiprocess
    executor's step process, a Dask worker, a Kubernetes step pod). Many such processes may be
    alive at once, and a step's own code may run for hours, so from now on none of their
    PostgreSQL engines keeps a connection between transactions (``NullPool``): a step process
    holds no connection while its step runs, and one per transaction in progress. SQLite
    engines are not affected (no server connections to pile up)."""
    global _step_worker
    if _step_worker:
        return
    with _lock:
        _step_worker = True
        for url, engine in list(_engines.items()):
            if engine.dialect.name != "sqlite" and not isinstance(engine.pool, sa.pool.NullPool):
                del _engines[url]
                engine.dispose()


def pool_class(url: str) -> str:
    """The class name of the connection pool this process uses for ``url`` (for tests)."""
    return type(get_engine(url).pool).__name__


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
            dbapi_conn.rollback()  # leave no transaction open: the write path may use autocommit
        except Exception as exc:  # noqa: BLE001 - the pool replaces the connection and retries
            raise sa.exc.DisconnectionError(str(exc)) from exc



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
    except sa.exc.InternalError as exc:
        if _cannot_write(exc):
            raise unavailable(url, exc) from exc
        raise


_local = threading.local()


@contextlib.contextmanager
def single_attempt() -> Iterator[None]:
    """In this block (this thread), transactions and writes are tried once, not retried: for
    best-effort bookkeeping after the database was found unreachable (recording the failure it
    caused, the step lines), which would otherwise add a retry window each to the time a run
    takes to report the outage."""
    before = getattr(_local, "once", False)
    _local.once = True
    try:
        yield
    finally:
        _local.once = before


def _retry_delays(delays: Sequence[float]) -> Sequence[float]:
    return () if getattr(_local, "once", False) else delays


def transaction(url: str, work: Callable[[sa.Connection], T], *,
                delays: Sequence[float] = RETRY_DELAYS) -> T:
    """Run ``work(conn)`` in one transaction; retry it after a lost connection (``delays``).

    ``work`` must be safe to run again (our writes are upserts or idempotent updates).
    """
    delays = _retry_delays(delays)
    for attempt in range(len(delays) + 1):
        try:
            with begin(url) as conn:
                return work(conn)
        except DatabaseUnavailableError as exc:
            if attempt == len(delays) or not _transient(exc.__cause__, url):
                raise
            _retrying(url, exc, attempt, delays, "a transaction")
    raise AssertionError("unreachable")  # pragma: no cover


def _retrying(url: str, exc: BaseException, attempt: int, delays: Sequence[float],
              what: str) -> None:
    """Log the retry of ``what`` (it lost its connection), then wait before it."""
    _log.warning("spine_dagster: %s on the checkpoint database at %s failed, the database is "
                 "unreachable (%s); retry %d of %d in %.1fs", what, mask_url(url),
                 hide_password(_reason(exc.__cause__ or exc), url), attempt + 1, len(delays),
                 delays[attempt])
    time.sleep(delays[attempt])


# -- the hot write path: statements compiled once, run on a DBAPI cursor --------------------------
class Prepared:
    """One statement, compiled once per dialect, for the per-step write path.

    Building and compiling a SQLAlchemy statement costs far more than a small write itself (an
    upsert of a 5.7 KB checkpoint took 1.3 ms through SQLAlchemy Core on SQLite, 0.04 ms through
    the driver). The statement is still declared with SQLAlchemy (the same tables and dialect
    upserts as everywhere else) and compiled once; each write only binds values, converted by
    the columns' own type processors (SQLite's stored datetime format, JSON text), and runs on
    the pooled DBAPI connection (see :func:`write`). SQLite's driver keeps the prepared statement
    in its per-connection cache, keyed by this text.

    Args:
        statement: the statement; its values are ``sa.bindparam`` objects (or literals).
        dialect: the engine's dialect (its type processors, e.g. the JSON serializer).
    """

    __slots__ = ("sql", "returns", "_names", "_literals", "_processed")

    def __init__(self, statement: Any, dialect: sa.Dialect) -> None:
        compiled = statement.compile(dialect=dialect)
        self.sql: str = compiled.string
        self.returns = bool(getattr(compiled, "returning", None))
        binds = compiled.binds
        # bound parameters by name, in the order the driver takes them (None: by name)
        self._names = tuple(compiled.positiontup) if compiled.positional else None
        self._literals = {name: bind.effective_value for name, bind in binds.items()
                          if not bind.required}
        self._processed = [(name, process) for name, process in (
            (name, bind.type.dialect_impl(dialect).bind_processor(dialect))
            for name, bind in binds.items()) if process is not None]

    def params(self, values: dict[str, Any]) -> tuple[Any, ...] | dict[str, Any]:
        """The driver's parameters for ``values`` (by bind name; literals keep their own value)."""
        bound = {**self._literals, **values}
        for name, process in self._processed:
            value = bound.get(name)
            if value is not None:
                bound[name] = process(value)
        return bound if self._names is None else tuple([bound[name] for name in self._names])


_prepared: dict[tuple[str, str, Any], Prepared] = {}


def prepared(dialect: sa.Dialect, key: Any, build: Callable[[str], Any]) -> Prepared:
    """The statement ``build(dialect name)`` compiled for ``dialect``, once per process."""
    cache_key = (dialect.name, dialect.driver, key)
    statement = _prepared.get(cache_key)
    if statement is None:
        statement = _prepared[cache_key] = Prepared(build(dialect.name), dialect)
    return statement


def write(url: str, batch: Sequence[tuple[Prepared, dict[str, Any]]], *,
          delays: Sequence[float] = RETRY_DELAYS) -> list[Any] | None:
    """Run ``batch`` (statements and their values) in one transaction; the last one's rows.

    The hot path of a step's recording (its checkpoint, its step row, the next step's start):
    one pooled DBAPI connection, no SQLAlchemy statement building. On PostgreSQL the statements
    travel in one message, run in autocommit mode: the server runs the statements of one query
    message as a single transaction, so the whole write is one round trip (the driver's own
    ``BEGIN`` and ``COMMIT`` would be two more). On SQLite (in process) they run one after the
    other in the driver's transaction, then commit. Only the last statement may return rows.

    Like :func:`transaction`, a write that failed because the connection was lost or the server
    could not be reached is retried after ``delays``; failures become
    ``DatabaseUnavailableError`` (a lost connection is dropped from the pool).
    """
    delays = _retry_delays(delays)
    for attempt in range(len(delays) + 1):
        try:
            return _write_once(url, batch)
        except DatabaseUnavailableError as exc:
            if attempt == len(delays) or not _transient(exc.__cause__, url):
                raise
            _retrying(url, exc, attempt, delays, "a checkpoint write")
    raise AssertionError("unreachable")  # pragma: no cover


class _Pinned:
    """SQLite's write connection: kept checked out, so that a write pays no pool checkout (about
    a third of a small write's time). One per database and process; a thread that finds it in
    use takes a pooled connection instead. No staleness to check: there is no server."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.fairy: Any = None
        self.pid = 0


_pinned: dict[str, _Pinned] = {}


def _write_once(url: str, batch: Sequence[tuple[Prepared, dict[str, Any]]]) -> list[Any] | None:
    engine = get_engine(url)
    if engine.dialect.name == "sqlite":
        pin = _pinned.get(url) or _pinned.setdefault(url, _Pinned())
        if pin.lock.acquire(blocking=False):
            try:
                if pin.fairy is None or pin.pid != os.getpid():  # first use, or a forked child
                    pin.fairy, pin.pid = _checkout(url, engine), os.getpid()
                try:
                    return _run_batch(url, engine.dialect, pin.fairy, batch)
                finally:
                    if not pin.fairy.is_valid:  # lost: back to the pool, to be replaced
                        pin.fairy.close()
                        pin.fairy = None
            finally:
                pin.lock.release()
    fairy = _checkout(url, engine)
    try:
        return _run_batch(url, engine.dialect, fairy, batch)
    finally:
        fairy.close()


def _checkout(url: str, engine: sa.Engine) -> Any:
    try:
        return engine.raw_connection()
    except (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.DisconnectionError) as exc:
        raise unavailable(url, exc) from exc
    except engine.dialect.loaded_dbapi.Error as exc:  # the pool raises the driver's own errors
        wrapped = _wrapped(engine.dialect, exc, None, False)
        raise unavailable(url, wrapped) from wrapped  # the cause says whether to retry


def _run_batch(url: str, dialect: sa.Dialect, fairy: Any,
               batch: Sequence[tuple[Prepared, dict[str, Any]]]) -> list[Any] | None:
    dbapi_error = dialect.loaded_dbapi.Error
    server = dialect.name == "postgresql"
    dbapi_conn = fairy.dbapi_connection
    cursor = None
    statement: Any = batch[-1][0].sql if batch else ""
    try:
        cursor = fairy.cursor()
        if server:
            statement = b";".join(cursor.mogrify(p.sql, p.params(v)) for p, v in batch)
            if dbapi_conn.get_transaction_status():  # not idle: end what a listener began
                dbapi_conn.rollback()
            dbapi_conn.autocommit = True
            try:
                cursor.execute(statement)
            finally:
                dbapi_conn.autocommit = False
            return cursor.fetchall() if batch[-1][0].returns else None
        rows = None
        for p, values in batch:
            cursor.execute(p.sql, p.params(values))
            if p.returns:
                rows = cursor.fetchall()
        dbapi_conn.commit()
        return rows
    except dbapi_error as exc:
        disconnect = dialect.is_disconnect(exc, dbapi_conn, cursor)
        wrapped = _wrapped(dialect, exc, statement, disconnect)
        if disconnect:
            fairy.invalidate(exc)
        else:
            with contextlib.suppress(dbapi_error):
                dbapi_conn.rollback()
        if isinstance(wrapped, (sa.exc.OperationalError, sa.exc.InterfaceError)) \
                or _cannot_write(wrapped):
            raise unavailable(url, wrapped) from wrapped
        raise wrapped from exc
    finally:
        if cursor is not None:
            with contextlib.suppress(dbapi_error):
                cursor.close()


def _wrapped(dialect: sa.Dialect, exc: Exception, statement: Any,
             invalidated: bool) -> BaseException:
    """A DBAPI error as the SQLAlchemy exception the rest of the code expects (no parameters:
    they hold whole checkpoints)."""
    text = statement.decode("utf-8", "replace") if isinstance(statement, bytes) else statement
    if text and len(text) > 500:
        text = text[:500] + "..."
    return sa.exc.DBAPIError.instance(text, None, exc, dialect.loaded_dbapi.Error,
                                      hide_parameters=True, connection_invalidated=invalidated,
                                      dialect=dialect)


def upsert(dialect: str, table: sa.Table, values: dict[str, Any], keys: Sequence[str],
           update: dict[str, Any]):
    """``INSERT ... ON CONFLICT (keys) DO UPDATE SET update`` (``DO NOTHING`` when empty).

    An ``update`` value that is the very object inserted into that column becomes
    ``EXCLUDED.<column>``: a big value (a checkpoint's snapshot) is then sent, and on PostgreSQL
    parsed into JSONB, once, not twice (a 100 KB checkpoint upsert took 12 ms instead of 20).
    """
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(table).values(**values)
    if not update:
        return stmt.on_conflict_do_nothing(index_elements=list(keys))
    excluded = stmt.excluded
    update = {column: excluded[column] if column in values and value is values[column]
              else value for column, value in update.items()}
    return stmt.on_conflict_do_update(index_elements=list(keys), set_=update)


def current_version(conn: sa.Connection) -> int | None:
    """The schema version recorded in the database; None when it has no spine tables.

    Each of these reads can see a different moment (SQLite's driver runs each in a transaction
    of its own; PostgreSQL reads committed data per statement), and another process may commit
    a new schema in between: its tables and its version row come in one transaction. So the
    checkpoint table is read first: seen absent, the database is treated as
    empty (``upgrade`` then looks again under its lock); seen present, the version row is
    committed too. Read the other way round, a schema committed between the two reads looked
    like "schema version 0" (seen in CI, four processes opening a new database at once)."""
    inspector = sa.inspect(conn)
    if not inspector.has_table("core_workflow_checkpoints"):
        return None
    if not inspector.has_table(schema_version.name):
        return 0  # spine tables from before schema versions were recorded
    row = conn.execute(sa.select(schema_version.c.version)).first()
    return row[0] if row else 0


@contextlib.contextmanager
def _migration_lock(conn: sa.Connection) -> Iterator[None]:
    """Hold the database's write lock for the whole upgrade, so that two processes that open a
    new database at once never see each other's half-made schema. SQLite's driver would run each
    CREATE TABLE in a transaction of its own: ``BEGIN IMMEDIATE`` makes them one."""
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(7351001)"))
    elif conn.dialect.name == "sqlite":
        conn.exec_driver_sql("BEGIN IMMEDIATE")
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

    def inspect(conn: sa.Connection) -> tuple[int | None, list[str]]:
        version = current_version(conn)
        return version, (migrations.missing(conn) if version is not None else [])

    version, lacking = transaction(url, inspect)  # retried: a first read after a restart
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
    for pin in list(_pinned.values()):
        with pin.lock:
            fairy, pin.fairy = pin.fairy, None
            if fairy is not None and pin.pid == os.getpid():
                with contextlib.suppress(Exception):
                    fairy.close()
    _pinned.clear()
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()
        _schema_checked.clear()
