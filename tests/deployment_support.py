"""A real Dagster deployment for tests/test_deployment.py (import its fixtures from here).

``deployment`` (one per test module): ``dagster-webserver`` on 127.0.0.1 serving
``tests/locations/spine_test_location.py`` from a workspace file, on a PostgreSQL-backed Dagster
instance (DefaultRunCoordinator, run retries enabled) with the checkpoints in PostgreSQL too.
``daemon`` adds ``dagster-daemon run`` on the same workspace and instance, for the tests that need
it. Each process is started in a new session; teardown stops the whole session (the webserver, its
gRPC code server, run workers...) by id, kills what is left, and checks that nothing survived,
even when tests failed.

Start-up has its own deadline, ``STARTUP_SECONDS``, in the fixtures that start processes; a test
module marks its tests with ``body_timeout(seconds)``, pytest-timeout's ``func_only`` timeout,
which counts the test body only, so a webserver that starts slowly on a loaded machine does not
eat into it. (Without ``func_only``, pytest-timeout's timer covers fixture setup and teardown
too: the first test of a module would pay for the webserver's start-up.)
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import pytest
from conftest import pg_schema, write_dagster_home
from dagster import DagsterEventType, DagsterInstance

from spine_dagster import SpineDagsterClient, WorkflowRunner
from spine_dagster.errors import SpineDagsterError

LOCATION_DIR = Path(__file__).resolve().parent / "locations"
LOCATION = "spine_test_location"
STARTUP_SECONDS = 240.0  # a webserver/daemon/`dagster dev` must serve within this, else the
# fixture fails with the process's log


def body_timeout(seconds: float) -> pytest.MarkDecorator:
    """The test body's timeout (pytest-timeout ``func_only``): fixture set-up, where the
    processes start (each with its own ``STARTUP_SECONDS`` deadline), and teardown (bounded by
    ``ProcessSession.stop``) do not count."""
    return pytest.mark.timeout(seconds, func_only=True)


def _sessions() -> dict[int, int]:
    """pid -> session id of every process we can see."""
    result = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                stat = fh.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if fields[0] != "Z":  # zombies are gone already; their parent reaps them
            result[int(entry)] = int(fields[3])
    return result


class ProcessSession:
    """A command started in its own session, stopped with everything it started."""

    def __init__(self, name: str, cmd: list[str], env: dict[str, str], log: Path,
                 cwd: Path | None = None, default_sigint: bool = False) -> None:
        self.name, self.log = name, log
        self._log = open(log, "wb")
        # default_sigint: a shell's background job starts with SIGINT ignored, and `dagster dev`
        # (so `dg dev`) copies that onto SIGTERM; give SIGINT its default back so SIGTERM works.
        self.proc = subprocess.Popen(
            cmd, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
            cwd=str(cwd or log.parent),
            preexec_fn=(lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)) if default_sigint
            else None)
        self.sid = self.proc.pid

    def members(self) -> list[int]:
        return [pid for pid, sid in _sessions().items() if sid == self.sid]

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        """SIGTERM the session's processes, SIGKILL the rest; fail if any survives."""
        for sig, grace in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 10.0)):
            for pid in self.members():
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline:
                self.proc.poll()  # reap the leader
                if not self.members():
                    break
                time.sleep(0.2)
            if not self.members():
                break
        self.proc.poll()
        self._log.close()
        left = self.members()
        assert not left, f"{self.name}: processes {left} of session {self.sid} survived SIGKILL"


def stop_all(processes: Iterable[ProcessSession]) -> None:
    """Stop every process in turn, even when one of them fails to stop; then fail with every
    error at once."""
    errors = []
    for process in processes:
        try:
            process.stop()
        except AssertionError as exc:
            errors.append(str(exc))
    assert not errors, errors


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _binary(name: str) -> str:
    path = Path(sys.executable).parent / name
    return str(path) if path.exists() else name


@dataclass
class Deployment:
    """What the tests need to drive and inspect the deployment."""

    url: str
    home: str
    database_url: str
    workspace: Path
    env: dict[str, str]
    root: Path
    instance: DagsterInstance
    client: SpineDagsterClient
    processes: list[ProcessSession] = field(default_factory=list)
    location: str = LOCATION

    @property
    def store(self):
        return self.client.store

    def runner(self) -> WorkflowRunner:
        return WorkflowRunner(database_url=self.database_url, instance=self.instance)

    def trace_dir(self) -> Path:
        path = self.root / "traces" / uuid.uuid4().hex[:8]
        path.mkdir(parents=True)
        return path

    def launch(self, job: str, trace: Path, **params: Any) -> str:
        """Launch ``job`` through GraphQL (as the Launchpad does); returns the Dagster run id."""
        config = {"resources": {"spine": {"config": {"params": {"trace": str(trace), **params}}}}}
        return self.client.launch_run(job, run_config=config, location_name=self.location,
                                      repository_name="__repository__")

    def wait(self, run_id: str, timeout: float = 120.0):
        return self.client.wait_for_run(run_id, timeout=timeout, poll_interval=0.25)

    def check_alive(self) -> None:
        for process in self.processes:
            assert process.alive(), f"{process.name} died:\n{process.tail()}"


def wait_until(what: str, probe: Callable[[], Any], timeout: float,
               processes: list[ProcessSession] = ()) -> Any:
    """Poll ``probe`` until it returns something truthy (SpineDagsterError counts as not yet)."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        for process in processes:
            assert process.alive(), f"{process.name} died waiting for {what}:\n{process.tail()}"
        try:
            value = probe()
            if value:
                return value
        except SpineDagsterError as exc:
            last = exc
        time.sleep(0.25)
    logs = "".join(f"\n--- {process.name} (last lines of {process.log}):\n{process.tail()}"
                   for process in processes)
    raise AssertionError(
        f"timed out after {timeout:g}s waiting for {what} (last error: {last}){logs}")


def _loaded(client: SpineDagsterClient, job: str = "deploy__flaky") -> bool:
    try:
        return bool(client.find_job(job))
    except SpineDagsterError as exc:
        if "failed to load" in str(exc):
            raise AssertionError(f"the test code location does not load: {exc}") from None
        raise


@pytest.fixture(scope="module")
def pg_checkpoint_url() -> Iterator[str]:
    """A PostgreSQL checkpoint database (a fresh schema) shared by the deployment's processes."""
    with pg_schema("spine_dep") as url:
        yield url


@pytest.fixture(scope="module", params=["postgres", "sqlite"],
                ids=["postgres-deployment", "sqlite-deployment"])
def deployment(request, tmp_path_factory) -> Iterator[Deployment]:
    """A webserver on a PostgreSQL deployment (instance and checkpoints in PostgreSQL), then on an
    all-SQLite one (the embedded default)."""
    yield from serve_location(request, tmp_path_factory, LOCATION, "deploy__flaky")


def serve_location(request, tmp_path_factory, location: str, probe_job: str,
                   env: dict[str, str] | None = None) -> Iterator[Deployment]:
    """``deployment``'s body for any module of tests/locations (``probe_job``: a job it serves,
    to know it loaded; ``env``: more environment for the webserver and the daemon)."""
    root = tmp_path_factory.mktemp("deployment")
    retries = "run_retries:\n  enabled: true\n"
    if request.param == "postgres":
        checkpoint_url = request.getfixturevalue("pg_checkpoint_url")
        home = write_dagster_home(root / "dagster_home", "postgres",
                                  request.getfixturevalue("pg_dagster_url"), extra=retries)
    else:
        checkpoint_url = f"sqlite:///{root / 'checkpoints.db'}"
        home = write_dagster_home(root / "dagster_home", "sqlite", extra=retries)
    workspace = root / "workspace.yaml"
    workspace.write_text(
        f"load_from:\n  - python_module:\n      module_name: {location}\n"
        f"      working_directory: {LOCATION_DIR}\n")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "DAGSTER_HOME": home, "SPINE_DAGSTER_DATABASE_URL": checkpoint_url,
           "SPINE_DAGSTER_WEBSERVER_URL": url, "SPINE_DAGSTER_HOME": str(root / "spine_home"),
           "DAGSTER_EVENT_LOG_CONSUMER_DAEMON_INTERVAL_SECONDS": "1", "PYTHONUNBUFFERED": "1",
           **(env or {})}
    instance = DagsterInstance.from_config(home)
    client = SpineDagsterClient(url, database_url=checkpoint_url)
    dep = Deployment(url, home, checkpoint_url, workspace, env, root, instance, client,
                     location=location)
    try:
        webserver = ProcessSession(
            "dagster-webserver",
            [_binary("dagster-webserver"), "-w", str(workspace), "-h", "127.0.0.1",
             "-p", str(port)],
            env, root / "webserver.log")
        dep.processes.append(webserver)
        wait_until("the webserver to serve the code location",
                   lambda: _loaded(client, probe_job), STARTUP_SECONDS, [webserver])
        yield dep
    finally:
        try:
            stop_all(reversed(dep.processes))
        finally:
            instance.dispose()


@pytest.fixture(scope="module")
def daemon(deployment: Deployment) -> Iterator[ProcessSession]:
    """``dagster-daemon run`` on the deployment, once its run-failure cursor exists.

    The daemon ignores run failures from before its first iteration ("No cursor for event type
    RUN_FAILURE, ignoring older events"), so tests start failing runs only after it.
    """
    process = ProcessSession("dagster-daemon",
                             [_binary("dagster-daemon"), "run", "-w", str(deployment.workspace)],
                             deployment.env, deployment.root / "daemon.log")
    deployment.processes.append(process)
    # Test-only peek at the daemon's cursor storage: there is no public "daemon is ready" signal.
    key = f"EVENT_LOG_CONSUMER_CURSOR-{DagsterEventType.RUN_FAILURE.value}"
    wait_until("the daemon's first event-log iteration",
               lambda: deployment.instance.daemon_cursor_storage.get_cursor_values({key}).get(key),
               STARTUP_SECONDS, [process])
    yield process
