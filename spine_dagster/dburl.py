"""Checkpoint database URLs: defaults, validation, and no password at rest.

Dagster stores what a job is built with: the reconstructable arguments of a run
(``job_code_origin``), and every config default in the job snapshot, which the Launchpad shows. A
database password must reach neither. So wherever spine_dagster hands a database URL to Dagster,
it hands over its **reference** (:func:`reference`): the URL itself when it has no password, else
the URL with the password masked (``postgresql+psycopg2://user:***@host/db``). The full URL stays
in the memory of the process that was given it (the runner, or the code location that called
``build_definitions``), and :func:`from_reference` finds it there. Another process (a run worker,
a step process, a resume from a new shell) finds it in, in order:

1. its own registrations (its code passed the same URL to ``WorkflowRunner``,
   ``build_definitions`` or ``CheckpointStore``);
2. ``$SPINE_DAGSTER_DATABASE_URL``, when it is the same database;
3. the environment a runner exported for its own child processes (multiprocess executor);
4. the URL without a password: libpq then reads ``$PGPASSWORD`` or ``~/.pgpass``.

Pure Python and SQLAlchemy's URL parser; no Dagster.

Example:
    >>> ref = reference("postgresql+psycopg2://app:s3cret@db.example.com:5432/spine")
    >>> ref
    'postgresql+psycopg2://app:***@db.example.com:5432/spine'
    >>> from_reference(ref)
    'postgresql+psycopg2://app:s3cret@db.example.com:5432/spine'
    >>> resolve_url("mysql://db/x")
    Traceback (most recent call last):
    ...
    spine_dagster.errors.InvalidDatabaseUrlError: mysql://db/x: unsupported database ...
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

import sqlalchemy as sa

from .errors import InvalidDatabaseUrlError

ENV_DATABASE_URL = "SPINE_DAGSTER_DATABASE_URL"
ENV_HOME = "SPINE_DAGSTER_HOME"
SUPPORTED = ("sqlite", "postgresql")
_MASK = "***"
_ENV_PREFIX = "SPINE_DAGSTER_DB_"

_known: dict[str, str] = {}  # reference -> full URL; one entry per database, not per run
_lock = threading.Lock()


def spine_home() -> Path:
    """Where spine_dagster keeps its embedded state: ``$SPINE_DAGSTER_HOME`` or ``~/.spine_dagster``."""
    return Path(os.environ.get(ENV_HOME) or Path.home() / ".spine_dagster").expanduser()


def default_database_url() -> str:
    """``$SPINE_DAGSTER_DATABASE_URL``, else SQLite at ``<spine home>/checkpoints.db``."""
    return os.environ.get(ENV_DATABASE_URL) or f"sqlite:///{spine_home() / 'checkpoints.db'}"


def mask_url(url: str) -> str:
    """``url`` with its password replaced by ``***`` (safe to print and to store)."""
    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - a malformed URL still must not leak a password
        return "<unparseable database URL>"


def resolve_url(url: str | None) -> str:
    """The full URL to connect to: the default, a reference resolved, the scheme checked.

    Plain ``postgresql://`` becomes ``postgresql+psycopg2://`` (SQLAlchemy 2.1 maps the plain
    scheme to psycopg 3, which is not a dependency). Raises ``InvalidDatabaseUrlError`` for a
    malformed URL or a database other than SQLite and PostgreSQL.
    """
    if url is not None and not isinstance(url, str):
        raise InvalidDatabaseUrlError(
            f"database_url must be text, got {type(url).__name__}; use sqlite:///path.db or "
            f"postgresql+psycopg2://user@host:5432/db.")
    url = (url or "").strip() or default_database_url()
    if url.startswith(("postgresql://", "postgres://")):
        url = "postgresql+psycopg2://" + url.split("://", 1)[1]
    try:
        parsed = sa.make_url(url)
    except Exception as exc:  # noqa: BLE001
        raise InvalidDatabaseUrlError(
            f"{mask_url(url)} is not a valid database URL ({type(exc).__name__}). Use "
            f"sqlite:///path/to/checkpoints.db or postgresql+psycopg2://user@host:5432/db."
        ) from None
    if parsed.get_backend_name() not in SUPPORTED:
        raise InvalidDatabaseUrlError(
            f"{mask_url(url)}: unsupported database {parsed.get_backend_name()!r}. Use "
            f"sqlite:///path/to/checkpoints.db or postgresql+psycopg2://user@host:5432/db.")
    if parsed.password == _MASK:
        return from_reference(url)
    return url


def _env_key(ref: str) -> str:
    return _ENV_PREFIX + hashlib.sha256(ref.encode()).hexdigest()[:16].upper()


def reference(url: str | None, *, export: bool = False) -> str | None:
    """What may be stored in Dagster for ``url``: itself, or its masked form (see above).

    ``None`` stays ``None`` (each process then uses its own default). ``export=True`` also puts
    the full URL in this process's environment, for the child processes it starts.
    """
    if url is None:
        return None
    full = resolve_url(url)
    parsed = sa.make_url(full)
    if not parsed.password:
        return full
    ref = mask_url(full)
    with _lock:
        _known[ref] = full
    if export:
        os.environ[_env_key(ref)] = full
    return ref


def from_reference(ref: str) -> str:
    """The full URL behind a reference made by :func:`reference` (see the module docs)."""
    parsed = sa.make_url(ref)
    if parsed.password != _MASK:
        return ref
    with _lock:
        known = _known.get(ref)
    if known:
        return known
    configured = os.environ.get(ENV_DATABASE_URL)
    if configured:
        try:
            candidate = resolve_url(configured)
        except InvalidDatabaseUrlError:
            candidate = None
        if candidate and mask_url(candidate) == ref:
            return candidate
    exported = os.environ.get(_env_key(ref))
    if exported:
        return exported
    return parsed.set(password=None).render_as_string(hide_password=False)


def hide_password(text: str, url: str | None) -> str:
    """``text`` with the password of ``url`` (if any) replaced by ``***``."""
    if not url:
        return text
    try:
        password = sa.make_url(url).password
    except Exception:  # noqa: BLE001
        return text
    return text.replace(str(password), _MASK) if password and password != _MASK else text
