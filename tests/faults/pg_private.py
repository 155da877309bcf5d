"""A private PostgreSQL server for the fault tests: ``initdb`` + ``pg_ctl`` on a free port, run as
the ``postgres`` OS user, that a test may stop (``immediate``: a crash; ``fast``: a clean
shutdown) and start again. The shared server on 5432 is never touched.

Used as a module-scoped fixture (see ``test_pg_outage.py``); :meth:`PrivateServer.destroy` always
stops it and removes its data directory.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid

import pytest
import sqlalchemy as sa


def _bin(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name)


def _unavailable(reason: str) -> None:
    """Skip (fail under ``CI=true``, where the PostgreSQL tests are required)."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (required under CI=true)")
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PrivateServer:
    """One private PostgreSQL server (see the module docs)."""

    def __init__(self) -> None:
        initdb, self.pg_ctl = _bin("initdb"), _bin("pg_ctl")
        if not initdb or not self.pg_ctl:
            _unavailable("initdb / pg_ctl not found (install PostgreSQL's server binaries)")
        try:
            postgres = pwd.getpwnam("postgres")
        except KeyError:
            _unavailable("no 'postgres' OS user to run a private PostgreSQL server as")
        if os.geteuid() != 0:
            _unavailable("a private PostgreSQL server needs root (to run it as 'postgres')")
        self.root = tempfile.mkdtemp(prefix="spine_pg_")
        os.chown(self.root, postgres.pw_uid, postgres.pw_gid)
        os.chmod(self.root, 0o700)
        self.data = os.path.join(self.root, "data")
        self.log = os.path.join(self.root, "server.log")
        self.port = _free_port()
        self.url = f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/postgres"
        self._as_postgres(initdb, "-D", self.data, "-A", "trust", "-U", "postgres",
                          "--no-sync", "-E", "UTF8")
        self.running = False

    def _as_postgres(self, *argv: str) -> float:
        started = time.monotonic()
        proc = subprocess.run(["runuser", "-u", "postgres", "--", *argv], capture_output=True,
                              text=True, timeout=120, cwd=self.root)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(argv[:2])} failed: {proc.stderr[-2000:]}"
                               f"{self.tail_log()}")
        return time.monotonic() - started

    def tail_log(self) -> str:
        try:
            with open(self.log) as fh:
                return "\nserver log:\n" + "".join(fh.readlines()[-20:])
        except OSError:
            return ""

    def start(self) -> float:
        """Start the server; returns the seconds ``pg_ctl start -w`` took."""
        options = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
                   f"-c max_connections=60 -c shared_buffers=16MB")
        took = self._as_postgres(self.pg_ctl, "-D", self.data, "-l", self.log, "-o", options,
                                 "-w", "-t", "60", "start")
        self.running = True
        return took

    def stop(self, mode: str = "immediate") -> float:
        """Stop the server (``immediate``: like a crash; ``fast``: clean); the seconds it took."""
        took = self._as_postgres(self.pg_ctl, "-D", self.data, "-m", mode, "-w", "-t", "60",
                                 "stop")
        self.running = False
        return took

    def destroy(self) -> None:
        try:
            if self.running or os.path.exists(os.path.join(self.data, "postmaster.pid")):
                self.stop("immediate")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def admin(self) -> sa.Engine:
        return sa.create_engine(self.url, isolation_level="AUTOCOMMIT",
                                poolclass=sa.pool.NullPool, connect_args={"connect_timeout": 5})

    def new_database(self) -> str:
        """A fresh database on this server: its URL."""
        name = f"spine_{uuid.uuid4().hex[:10]}"
        with self.admin().connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        return self.url.rsplit("/", 1)[0] + f"/{name}"

    def backends(self, database: str) -> list[tuple[int, int | None, str | None, str]]:
        """(backend pid, client port, state, query) of the client connections to ``database``,
        this query's own connection excluded."""
        with self.admin().connect() as conn:
            return [tuple(row) for row in conn.execute(sa.text(
                "SELECT pid, client_port, state, query FROM pg_stat_activity "
                "WHERE datname = :d AND backend_type = 'client backend' "
                "AND pid <> pg_backend_pid()"), {"d": database})]

    def wait_for_write(self, database: str, table: str, timeout: float = 30.0) -> str:
        """Wait until a client of ``database`` is running a statement on ``table``; its text."""
        import psycopg2  # noqa: PLC0415 - the driver itself: one connection, polled tightly

        conn = psycopg2.connect(host="127.0.0.1", port=self.port, user="postgres",
                                dbname="postgres")
        conn.autocommit = True
        deadline = time.monotonic() + timeout
        try:
            with conn.cursor() as cur:
                while time.monotonic() < deadline:
                    cur.execute("SELECT query FROM pg_stat_activity WHERE datname = %s "
                                "AND state = 'active' AND query LIKE %s AND pid <> "
                                "pg_backend_pid()", (database, f"%{table}%"))
                    row = cur.fetchone()
                    if row:
                        return row[0]
        finally:
            conn.close()
        raise AssertionError(f"no statement on {table} seen in {timeout}s")
