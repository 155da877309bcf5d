"""What a database error means: a lost connection (worth a retry), a read-only database, a full
disk, or an unreachable server, and the ``DatabaseUnavailableError`` that says so and names the
fix. :mod:`spine_dagster.db` uses it for every transaction and write. The password is masked.

Example:

>>> import sqlalchemy as sa
>>> refused = sa.exc.OperationalError("SELECT 1", {}, Exception("Connection refused"))
>>> print(unavailable("postgresql+psycopg2://app:s3cret@db.example/prod", refused))
cannot reach the checkpoint database at postgresql+psycopg2://app:***@db.example/prod
(unreachable: Connection refused). Check that the database server is running ...
>>> _transient(refused)  # worth a retry
True
"""

from __future__ import annotations

import os
from pathlib import Path

import sqlalchemy as sa

from .dburl import ENV_DATABASE_URL, hide_password, mask_url
from .errors import DatabaseUnavailableError


def _reason(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", exc) or "").strip()
    return text.splitlines()[0] if text else type(exc).__name__


def is_outage(exc: BaseException | None) -> bool:
    """True when ``exc`` (or an exception it was raised from) is a lost or refused connection."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, DatabaseUnavailableError) and _transient(exc.__cause__):
            return True
        exc, seen = exc.__cause__, seen + 1
    return False


FULL_BELOW_BYTES = 1024 * 1024
"""A SQLite write that failed with an I/O error on a file system with less free space than
this is reported as a full disk (SQLite in WAL mode says ``disk I/O error``, not ``disk full``)."""


def _sqlite_file_condition(url: str) -> str | None:
    """``read-only`` or ``full`` when the file system of a SQLite database is, else None.

    SQLite reports both vaguely (``unable to open database file``, ``disk I/O error``: its WAL
    index cannot be created or mapped), so the file system itself is asked.
    """
    try:
        parsed = sa.make_url(url)
    except Exception:  # noqa: BLE001 - nothing more to say about a URL that does not parse
        return None
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    path = Path(parsed.database).expanduser()
    folder = path.parent if path.parent.exists() else None
    if folder is None:
        return None
    try:
        stat = os.statvfs(folder)
    except OSError:
        return None
    if stat.f_flag & os.ST_RDONLY or (path.exists() and not os.access(path, os.W_OK)) \
            or not os.access(folder, os.W_OK):
        return "read-only"
    if stat.f_bavail * stat.f_frsize < FULL_BELOW_BYTES:
        return "full"
    return None


def unavailable(url: str, exc: BaseException, *, doing: str = "") -> DatabaseUnavailableError:
    """The ``DatabaseUnavailableError`` for a failed connection or statement, password masked."""
    reason = hide_password(_reason(exc), url)
    where = mask_url(url)
    lowered = reason.lower()
    condition = None
    if "unable to open" in lowered or "disk i/o error" in lowered:
        condition = _sqlite_file_condition(url)
        lowered += f" {condition}" if condition else ""
    if "readonly" in lowered or "read-only" in lowered or "read only" in lowered:
        fix = ("give this process write access to the database file and its directory (SQLite "
               "writes a -wal file next to it)" if where.startswith("sqlite") else
               "connect as a user that may write, to the primary server (not a standby), "
               "without default_transaction_read_only")
        return DatabaseUnavailableError(
            f"the checkpoint database at {where} is read-only ({reason}). To fix it, {fix}; or "
            f"point database_url at a writable database.")
    if "disk is full" in lowered or "no space left" in lowered or "disk full" in lowered:
        return DatabaseUnavailableError(
            f"the disk of the checkpoint database at {where} is full ({reason}). Free space "
            f"there (or run spine-dagster cleanup), then resume the run.")
    doing = f" while {doing}" if doing else ""
    if where.startswith("sqlite"):
        return DatabaseUnavailableError(
            f"cannot use the checkpoint database file at {where}{doing}: {reason}. Check that "
            f"the path is right and that this process can read and write the file and its "
            f"directory (pass database_url= or set {ENV_DATABASE_URL}).")
    return DatabaseUnavailableError(
        f"cannot reach the checkpoint database at {where}{doing} (unreachable: {reason}). "
        f"Check that the database server is running and the URL is right (pass database_url= "
        f"or set {ENV_DATABASE_URL}).")


def _transient(exc: BaseException, url: str = "") -> bool:
    """A lost or refused connection (worth a retry), not a full disk or a read-only file."""
    if not isinstance(exc, (sa.exc.OperationalError, sa.exc.InterfaceError,
                            sa.exc.DisconnectionError)):
        return False
    if getattr(exc, "connection_invalidated", False):
        return True
    lowered = _reason(exc).lower()
    if any(word in lowered for word in ("readonly", "read-only", "disk", "locked", "no space")):
        return False
    if "unable to open" in lowered and _sqlite_file_condition(url) is not None:
        return False
    return any(word in lowered for word in (
        "connection", "connect", "server closed", "terminating", "shutting down",
        "starting up", "could not", "timeout", "timed out", "broken pipe", "reset by peer",
        "unable to open"))


READ_ONLY_SQLSTATE = "25006"
"""PostgreSQL's read_only_sql_transaction (a hot standby, ``default_transaction_read_only``)."""


def _cannot_write(exc: BaseException) -> bool:
    """A statement the database refused because it is read-only (psycopg2 calls it internal)."""
    return isinstance(exc, sa.exc.InternalError) and \
        getattr(getattr(exc, "orig", None), "pgcode", None) == READ_ONLY_SQLSTATE
