"""A Dagster deployment with a run queue (tests/test_queued_runs.py, benchmarks/queued_runs.py).

``queued_deployment(root)`` starts ``dagster-webserver`` and ``dagster-daemon run`` on one
workspace (``tests/locations/spine_queue_location.py``) and one PostgreSQL-backed instance whose
``QueuedRunCoordinator`` runs at most ``max_concurrent_runs`` runs at a time; runs are launched
through the webserver (GraphQL, as the Launchpad does), queued, and started by the daemon with
the default run launcher (a run worker process per run). The Dagster storage and the checkpoints
each get a fresh PostgreSQL database, so ``ConnectionMonitor`` can count exactly the connections
the deployment opens. Every process runs in its own session and is stopped, with everything it
started, on exit.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import sqlalchemy as sa
from conftest import PG_URL, require_postgres
from dagster import DagsterEventType, DagsterInstance, DagsterRunStatus, RunsFilter
from deployment_support import (
    STARTUP_SECONDS,
    ProcessSession,
    _binary,
    free_port,
    stop_all,
    wait_until,
)

from spine_dagster import SpineDagsterClient
from spine_dagster import db as spine_db
from spine_dagster.errors import SpineDagsterError

LOCATION_DIR = Path(__file__).resolve().parent / "locations"
LOCATION = "spine_queue_location"
SPINE_JOB, PLAIN_JOB = "queue__spine", "queue_plain"
QUEUE_DAEMON = "QUEUED_RUN_COORDINATOR"  # the daemon that starts queued runs
FINISHED = {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}


@contextlib.contextmanager
def pg_database(prefix: str) -> Iterator[tuple[str, str]]:
    """A fresh PostgreSQL database: (its name, its URL); dropped on exit."""
    admin = require_postgres()
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield name, sa.make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        spine_db.dispose_all()
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


class ConnectionMonitor:
    """Samples ``pg_stat_activity`` every ``interval`` seconds: client connections per database."""

    def __init__(self, databases: Iterable[str], interval: float = 0.1) -> None:
        self.databases = list(databases)
        self.interval = interval
        self.peak = 0
        self.peak_by_db = {name: 0 for name in self.databases}
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        # autocommit: in a transaction, PostgreSQL answers every read of pg_stat_activity from
        # the snapshot it took at the first one
        engine = sa.create_engine(PG_URL, poolclass=sa.pool.NullPool, isolation_level="AUTOCOMMIT")
        query = sa.text("SELECT datname, count(*) FROM pg_stat_activity "
                        "WHERE datname = ANY(:names) AND pid <> pg_backend_pid() GROUP BY datname")
        try:
            with engine.connect() as conn:
                while not self._stop.is_set():
                    counts = dict(conn.execute(query, {"names": self.databases}).all())
                    self.samples += 1
                    self.peak = max(self.peak, sum(counts.values()))
                    for name, count in counts.items():
                        self.peak_by_db[name] = max(self.peak_by_db[name], count)
                    self._stop.wait(self.interval)
        finally:
            engine.dispose()

    def __enter__(self) -> ConnectionMonitor:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


@dataclass
class QueuedDeployment:
    """What the test and the benchmark drive: launch, wait, inspect."""

    url: str
    root: Path
    dagster_db: str
    checkpoint_db: str
    checkpoint_url: str
    max_concurrent_runs: int
    instance: DagsterInstance
    client: SpineDagsterClient
    processes: list[ProcessSession] = field(default_factory=list)

    def launch_spine(self, trace: Path, **params: Any) -> str:
        """A run of the spine job; returns its Dagster run id (also its spine run id)."""
        config = {"resources": {"spine": {"config": {"params": {"trace": str(trace), **params}}}}}
        return self.client.launch_run(SPINE_JOB, run_config=config, location_name=LOCATION,
                                      repository_name="__repository__")

    def launch_plain(self, trace: Path, n: int) -> str:
        """A run of the plain job with the same op bodies; returns its run id."""
        op_config = {"config": {"trace": str(trace), "n": n}}
        config = {"ops": {name: op_config for name in ("begin", "middle", "end")}}
        return self.client.launch_run(PLAIN_JOB, run_config=config, location_name=LOCATION,
                                      repository_name="__repository__")

    def runs(self, run_ids: Iterable[str]) -> dict[str, Any]:
        """Run id -> DagsterRun, from the run storage; checks that the processes are alive."""
        for process in self.processes:
            assert process.alive(), f"{process.name} died:\n{process.tail()}"
        ids = list(run_ids)
        return {run.run_id: run for run in self.instance.get_runs(RunsFilter(run_ids=ids))}

    def wait_all(self, run_ids: Iterable[str], timeout: float,
                 on_poll: Callable[[dict[str, Any]], Iterable[str]] | None = None
                 ) -> dict[str, Any]:
        """Poll until every run has ended; returns run id -> DagsterRun. ``on_poll(runs)`` may
        launch more runs to wait for (it returns their ids)."""
        ids = list(run_ids)
        deadline = time.monotonic() + timeout
        while True:
            runs = self.runs(ids)
            more = list(on_poll(runs)) if on_poll else []
            ids.extend(more)
            if not more and len(runs) == len(ids) and all(
                    run.status in FINISHED for run in runs.values()):
                return runs
            if time.monotonic() > deadline:
                states = sorted(run.status.value for run in runs.values())
                raise AssertionError(f"runs still not finished after {timeout:g}s: {states}")
            time.sleep(0.5)

    def max_overlap(self, run_ids: Iterable[str]) -> int:
        """The most runs that were launched and not yet finished at one moment (event log)."""
        marks: list[tuple[float, int]] = []
        ends = {DagsterEventType.RUN_SUCCESS, DagsterEventType.RUN_FAILURE,
                DagsterEventType.RUN_CANCELED}
        for run_id in run_ids:
            found = self.instance.get_records_for_run(
                run_id, of_type={DagsterEventType.RUN_STARTING, *ends}).records
            for record in found:
                starting = record.event_log_entry.dagster_event_type is \
                    DagsterEventType.RUN_STARTING
                marks.append((record.event_log_entry.timestamp, 1 if starting else -1))
        level = peak = 0
        for _, step in sorted(marks):  # at the same instant, an end (-1) sorts first
            level += step
            peak = max(peak, level)
        return peak


def _instance_yaml(dagster_url: str, max_concurrent_runs: int, dequeue_interval: float,
                   dequeue_workers: int) -> str:
    threads = (f"    dequeue_use_threads: true\n    dequeue_num_workers: {dequeue_workers}\n"
               if dequeue_workers > 1 else "")
    return (f'storage:\n  postgres:\n    postgres_url: "{dagster_url}"\n'
            f"run_coordinator:\n  module: dagster._core.run_coordinator\n"
            f"  class: QueuedRunCoordinator\n  config:\n"
            f"    max_concurrent_runs: {max_concurrent_runs}\n"
            f"    dequeue_interval_seconds: {dequeue_interval:g}\n{threads}"
            f"telemetry:\n  enabled: false\n")


def _loaded(client: SpineDagsterClient) -> bool:
    try:
        return bool(client.find_job(SPINE_JOB))
    except SpineDagsterError as exc:
        if "failed to load" in str(exc):
            raise AssertionError(f"the code location does not load: {exc}") from None
        raise


@contextlib.contextmanager
def queued_deployment(root: Path, *, max_concurrent_runs: int = 2, dequeue_interval: float = 1.0,
                      dequeue_workers: int = 2) -> Iterator[QueuedDeployment]:
    """A webserver and a daemon with a run queue, on fresh PostgreSQL databases (see above);
    entered once both serve (each within ``STARTUP_SECONDS``).

    The daemon checks the queue every ``dequeue_interval`` seconds and launches runs from
    ``dequeue_workers`` threads: launching a run waits until its run worker has loaded the code
    location (seconds), so one thread alone keeps fewer than ``max_concurrent_runs`` runs going.
    """
    root.mkdir(parents=True, exist_ok=True)
    with pg_database("dagster_q") as (dagster_db, dagster_url), \
            pg_database("spine_q") as (checkpoint_db, checkpoint_url):
        home = root / "dagster_home"
        home.mkdir(exist_ok=True)
        (home / "dagster.yaml").write_text(
            _instance_yaml(dagster_url, max_concurrent_runs, dequeue_interval, dequeue_workers))
        workspace = root / "workspace.yaml"
        workspace.write_text(f"load_from:\n  - python_module:\n      module_name: {LOCATION}\n"
                             f"      working_directory: {LOCATION_DIR}\n")
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        env = {**os.environ, "DAGSTER_HOME": str(home), "SPINE_DAGSTER_DATABASE_URL":
               checkpoint_url, "SPINE_DAGSTER_HOME": str(root / "spine_home"),
               "SPINE_DAGSTER_WEBSERVER_URL": url, "PYTHONUNBUFFERED": "1"}
        instance = DagsterInstance.from_config(str(home))
        dep = QueuedDeployment(url, root, dagster_db, checkpoint_db, checkpoint_url,
                               max_concurrent_runs, instance,
                               SpineDagsterClient(url, database_url=checkpoint_url))
        try:
            dep.processes.append(ProcessSession(
                "dagster-webserver", [_binary("dagster-webserver"), "-w", str(workspace),
                                      "-h", "127.0.0.1", "-p", str(port)],
                env, root / "webserver.log"))
            dep.processes.append(ProcessSession(
                "dagster-daemon", [_binary("dagster-daemon"), "run", "-w", str(workspace)],
                env, root / "daemon.log"))
            wait_until("the webserver to serve the code location", lambda: _loaded(dep.client),
                       STARTUP_SECONDS, dep.processes)
            # Test-only peek at the daemon's heartbeats: the queue is served from here on.
            wait_until("the daemon's run queue", lambda: QUEUE_DAEMON in
                       instance.get_daemon_heartbeats(), STARTUP_SECONDS, dep.processes)
            yield dep
        finally:
            try:
                stop_all(reversed(dep.processes))
            finally:
                instance.dispose()
