"""Database outages on a PRIVATE PostgreSQL server (``pg_private.py``), stopped and started for
real while spine runs use it as their checkpoint database.

The contract (README, "When a checkpoint is durable"): an outage during a run ends the run, not
the caller: ``execute`` and ``resume`` return a failed ``WorkflowResult`` with the run id, the step
and the category ``CheckpointWriteError`` or ``DatabaseUnavailableError``, and the recorded error
says that the database was unreachable. A lost connection is first retried with a short backoff
(``db.RETRY_DELAYS``), so an outage shorter than that is invisible. After the server is back,
every checkpoint that was reported (``list_checkpoints`` before the outage, the step lines) is
there, and a resume completes with the context of an uninterrupted run.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import psutil
import pytest

from outage_flows import OUTAGE, STEPS, calls, expected_outputs
from pg_private import PrivateServer
from spine_dagster import (
    DatabaseUnavailableError,
    SpineDagsterError,
    WorkflowRunner,
)
from spine_dagster import db as spine_db
from step_fixtures import module_instance  # noqa: F401 - fixture

pytestmark = pytest.mark.postgres
UNREACHABLE = ("CheckpointWriteError", "DatabaseUnavailableError")


@pytest.fixture(scope="module")
def server() -> Iterator[PrivateServer]:
    pg = PrivateServer()
    try:
        took = pg.start()
        print(f"\nprivate PostgreSQL on port {pg.port}: started in {took:.2f}s")
        yield pg
    finally:
        pg.destroy()


@pytest.fixture
def pg_url(server) -> Iterator[str]:
    if not server.running:
        server.start()
    yield server.new_database()
    spine_db.dispose_all()


class Retries(logging.Handler):
    """Collects the retry warnings of ``spine_dagster.db`` (from any thread)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())

    @property
    def writes(self) -> int:
        """Retries of checkpoint writes (the hot path), not of other transactions."""
        return sum("a checkpoint write" in m for m in self.messages)

    def __str__(self) -> str:
        return f"{len(self.messages)} ({self.writes} of checkpoint writes)"


@pytest.fixture
def retries() -> Iterator[Retries]:
    handler = Retries()
    logger = logging.getLogger("spine_dagster.db")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


@pytest.fixture
def flow(tmp_path) -> dict[str, Any]:
    gates = tmp_path / "gates"
    gates.mkdir()
    return {"calls_file": str(tmp_path / "calls.txt"), "gate_dir": str(gates), "dir": gates}


def params(flow: dict[str, Any], tag: str, **extra: Any) -> dict[str, Any]:
    return {"tag": tag, "calls_file": flow["calls_file"], "gate_dir": flow["gate_dir"], **extra}


def hold(flow: dict[str, Any], step: str) -> Callable[[], None]:
    """Make ``step`` wait at its gate; returns the function that lets it go."""
    path = Path(flow["dir"], f"{step}.hold")
    path.touch()
    return lambda: path.unlink(missing_ok=True)


def wait_entered(flow: dict[str, Any], step: str, timeout: float = 120.0) -> int:
    path = Path(flow["dir"], f"{step}.entered")
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"step {step!r} never reached its gate"
        time.sleep(0.01)
    return int(path.read_text() or 0)


class Background:
    """Runs ``fn`` on a thread (the test's chaos), re-raising its error in :meth:`join`."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.result: Any = None
        self.error: BaseException | None = None

        def target() -> None:
            try:
                self.result = fn()
            except BaseException as exc:  # noqa: BLE001 - re-raised in join
                self.error = exc

        self.thread = threading.Thread(target=target, daemon=True)
        self.thread.start()

    def join(self, timeout: float = 180.0) -> Any:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the chaos thread did not finish"
        if self.error is not None:
            raise self.error
        return self.result


def checkpointed(runner: WorkflowRunner, run_id: str) -> dict[str, dict]:
    """step -> its context's outputs, for every usable checkpoint of the run."""
    return {c.step_name: dict(c.context.outputs) for c in runner.list_checkpoints(run_id)
            if c.state == "valid"}


def comparable(context) -> dict[str, Any]:
    return {"outputs": dict(context.outputs),
            "params": {k: v for k, v in context.params.items() if k != "__resumed__"}}


@pytest.fixture
def runner(pg_url, module_instance) -> WorkflowRunner:
    return WorkflowRunner(database_url=pg_url, instance=module_instance)


def reported(runner: WorkflowRunner, run_id: str | None = None) -> dict[str, dict]:
    """What the store reported as checkpointed: step -> outputs of each usable checkpoint."""
    run_id = run_id or only_run(runner)
    return {c.step_name: dict(c.context.outputs) for c in runner.list_checkpoints(run_id)
            if c.state == "valid"}


def only_run(runner: WorkflowRunner) -> str:
    """The id of the one run in the test's own database."""
    [record] = runner.store.list_runs()
    return record.run_id


def assert_unreachable(result, step: str) -> None:
    """The contract: a failed result with the run id, the step, the category and the reason."""
    assert result.status == "failed", result.status
    assert result.run_id
    assert result.error_step == step, (result.error_step, result.error)
    assert result.error_category in UNREACHABLE, result.error_category
    assert "unreachable" in result.error, result.error


def assert_kept(before: dict[str, dict], after: dict[str, dict]) -> None:
    """Every checkpoint reported before the outage is there after it, unchanged."""
    missing = sorted(set(before) - set(after))
    assert not missing, f"checkpoints lost in the outage: {missing}"
    assert {step: after[step] for step in before} == before


def test_an_outage_that_a_step_spans_is_retried_and_invisible(runner, flow, server, retries):
    """Down and up again while a step runs: the pooled connection is dead, the retry replaces it."""
    release = hold(flow, "enrich")
    seen: dict[str, float] = {}

    def chaos() -> None:
        wait_entered(flow, "enrich")
        began = time.monotonic()
        server.stop("immediate")
        server.start()
        seen["down"] = time.monotonic() - began
        release()

    runner.progress = False  # no step-line poller: the write is the first to meet the dead pool
    background = Background(chaos)
    result = runner.execute(OUTAGE, params=params(flow, "spanned"))
    background.join()
    print(f"\nspanned: the server was down {seen['down']:.2f}s during step 'enrich'; "
          f"retries seen: {retries}")
    assert result.status == "completed", result.error
    assert dict(result.context.outputs) == expected_outputs("spanned")
    assert set(reported(runner, result.run_id)) == set(STEPS)
    assert retries.writes >= 1, "the dead pooled connection was retried, not reported"


def test_a_brief_outage_during_a_write_is_retried(runner, flow, server, retries):
    """The server goes down just before a checkpoint write and is back within the backoff."""
    release = hold(flow, "enrich")
    seen: dict[str, float] = {}

    def chaos() -> None:
        wait_entered(flow, "enrich")
        began = time.monotonic()
        server.stop("fast")
        release()  # enrich returns now: its write finds the server down
        time.sleep(0.3)
        server.start()
        seen["down"] = time.monotonic() - began

    background = Background(chaos)
    result = runner.execute(OUTAGE, params=params(flow, "brief"))
    background.join()
    window = sum(spine_db.RETRY_DELAYS)
    print(f"\nbrief: down {seen['down']:.2f}s (retry window {window:.1f}s); retries seen: "
          f"{retries}; outcome {result.status.value}")
    assert retries.writes >= 1, "the write found the server down and was retried"
    if seen["down"] < window - 0.2:
        assert result.status == "completed", result.error
        assert dict(result.context.outputs) == expected_outputs("brief")
        assert set(reported(runner, result.run_id)) == set(STEPS)
    else:  # a loaded machine took too long to restart: then the contract is the clean failure
        assert_unreachable(result, "enrich")


@pytest.mark.parametrize("mode", ["ops", "fused", pytest.param(
    "multiprocess", marks=pytest.mark.slow)])  # a step process per step
def test_an_outage_mid_step_fails_the_run_and_the_resume_completes(runner, flow, server, retries,
                                                                   mode):
    """One op per step (the failed write is the background one), a fused op (the write is
    synchronous, in the middle of the op), and steps in step processes (NullPool)."""
    runner.fuse = mode == "fused"
    runner.executor = "multiprocess" if mode == "multiprocess" else "in_process"
    release = hold(flow, "enrich")
    seen: dict[str, Any] = {}

    def chaos() -> None:
        wait_entered(flow, "enrich")
        seen["before"] = reported(runner)
        seen["stop"] = server.stop("immediate")
        seen["down_at"] = time.monotonic()
        release()

    background = Background(chaos)
    lines: list[str] = []
    runner.emit = lines.append
    result = runner.execute(OUTAGE, params=params(flow, "mid-step"))
    detected = time.monotonic() - seen["down_at"]
    background.join()
    print(f"\nmid-step ({mode}): the run ended {detected:.2f}s after the outage began; retries "
          f"seen here: {retries}; failed at {result.error_step} ({result.error_category})")
    assert_unreachable(result, "enrich")
    if mode != "multiprocess":  # (a step process logs its retries in its own process)
        assert retries.writes == len(spine_db.RETRY_DELAYS), "every retry before giving up"
    assert calls(flow["calls_file"]) == [("load", 0), ("enrich", 0)]

    print(f"restarted in {server.start():.2f}s")
    after = reported(runner, result.run_id)
    assert_kept(seen["before"], after)
    assert_kept({line.split()[0]: after.get(line.split()[0]) for line in lines
                 if line.startswith("  ") and "completed" in line}, after)
    record = runner.get_run(result.run_id)
    assert (record.status.value, record.error_step) == ("failed", "enrich")
    assert "unreachable during step 'enrich'" in record.error, record.error

    resumed = runner.resume(result.run_id)
    assert resumed.status == "completed", resumed.error
    assert resumed.completed_steps == ["enrich", "publish", "report"]
    assert calls(flow["calls_file"])[2:] == [("enrich", 1), ("publish", 1), ("report", 1)]
    assert dict(resumed.context.outputs) == expected_outputs("mid-step")
    if mode == "ops":
        assert comparable(resumed.context) == comparable(
            runner.execute(OUTAGE, params=params(flow, "mid-step")).context)


def test_an_outage_mid_write_fails_the_run_and_the_resume_completes(runner, flow, server, retries):
    """The server crashes while PostgreSQL is storing a large checkpoint (an active INSERT)."""
    rows = 60_000
    release = hold(flow, "publish")
    database = runner.database_url.rsplit("/", 1)[1]
    seen: dict[str, Any] = {}

    def chaos() -> None:
        wait_entered(flow, "publish")
        seen["before"] = reported(runner)
        released = time.monotonic()
        release()
        seen["write"] = server.wait_for_write(database, "core_workflow_checkpoints")
        seen["stop"] = server.stop("immediate")
        seen["down_at"] = time.monotonic()
        seen["to_write"] = seen["down_at"] - released

    background = Background(chaos)
    result = runner.execute(OUTAGE, params=params(flow, "mid-write", rows=rows))
    detected = time.monotonic() - seen["down_at"]
    background.join()
    print(f"\nmid-write: crashed {seen['to_write']:.2f}s after the step returned, during "
          f"{seen['write'][:60]!r}; the run ended {detected:.2f}s after the crash; retries seen: "
          f"{retries}; failed at {result.error_step} ({result.error_category})")
    assert_unreachable(result, "publish")

    print(f"restarted (crash recovery) in {server.start():.2f}s")
    after = reported(runner, result.run_id)
    assert_kept(seen["before"], after)
    assert set(seen["before"]) == {"load", "enrich"}
    record = runner.get_run(result.run_id)
    assert (record.status.value, record.error_step) == ("failed", "publish")
    assert "unreachable during step 'publish'" in record.error, record.error
    resumed = runner.resume(result.run_id)
    assert resumed.status == "completed", resumed.error
    assert resumed.completed_steps == ["publish", "report"]
    assert dict(resumed.context.outputs) == expected_outputs("mid-write", rows=rows)
    assert set(reported(runner, result.run_id)) == set(STEPS)


def test_an_outage_at_resume(runner, flow, server, retries, tmp_path):
    """Down when resume is called: a clear error, nothing changed. Down for a moment: retried.
    Down in the middle of the resumed run: a failed result, and the next resume completes."""
    broken = tmp_path / "warehouse_down"
    broken.touch()
    failed = runner.execute(OUTAGE, params=params(flow, "at-resume", fail_file=str(broken)))
    assert (failed.status, failed.error_step) == ("failed", "publish")
    broken.unlink()
    before = reported(runner, failed.run_id)

    server.stop("fast")
    began = time.monotonic()
    with pytest.raises(DatabaseUnavailableError) as info:
        runner.resume(failed.run_id)
    took = time.monotonic() - began
    print(f"\nat resume, server down: {type(info.value).__name__} after {took:.2f}s: "
          f"{str(info.value)[:120]}")
    assert isinstance(info.value, SpineDagsterError)
    assert "cannot reach the checkpoint database" in str(info.value)
    assert "Check that the database server is running" in str(info.value)
    with pytest.raises(DatabaseUnavailableError):  # no run can start either: none is created
        runner.execute(OUTAGE, params=params(flow, "never"))

    def brief() -> float:
        time.sleep(0.3)
        server.start()
        return time.monotonic() - stopped

    stopped = time.monotonic()
    down = Background(brief)
    retries.messages.clear()
    began = time.monotonic()
    release = hold(flow, "report")  # the last step: its write is synchronous, with the run's end
    seen: dict[str, Any] = {}

    def chaos() -> None:
        wait_entered(flow, "report")
        seen["retried"] = len(retries.messages)  # the resume's reads during the brief outage
        seen["before"] = reported(runner, failed.run_id)
        server.stop("immediate")
        release()

    background = Background(chaos)
    try:
        mid = runner.resume(failed.run_id)
    except DatabaseUnavailableError:
        if down.join() < sum(spine_db.RETRY_DELAYS) - 0.2:
            raise  # back within the retries: the resume should have gone ahead
        mid = runner.resume(failed.run_id)  # a loaded machine restarted it too slowly
    down_for = down.join()
    background.join()
    print(f"at resume, server back after {down_for:.2f}s: the resume went ahead after "
          f"{seen['retried']} retries of its reads; then down mid-resume: {mid.status.value} at "
          f"{mid.error_step} ({mid.error_category}) after {time.monotonic() - began:.2f}s; "
          f"retries in all: {retries}")
    assert seen["retried"] >= 1, "the resume's first reads met the outage and were retried"
    assert_unreachable(mid, "report")

    server.start()
    after = reported(runner, failed.run_id)
    assert_kept(before, after)
    assert_kept(seen["before"], after)
    assert set(seen["before"]) == {"load", "enrich", "publish"}
    record = runner.get_run(failed.run_id)
    assert (record.status.value, record.error_step) == ("failed", "report")
    assert "unreachable" in record.error, record.error
    last = runner.resume(failed.run_id)
    assert last.status == "completed", last.error
    assert last.completed_steps == ["report"]
    assert dict(last.context.outputs) == expected_outputs("at-resume")
    assert [step for step, _ in calls(flow["calls_file"])] == [
        "load", "enrich", "publish", "publish", "report", "report"]


def connections_by_pid(server: PrivateServer, database: str) -> dict[int, int]:
    """Client process id -> its connections to ``database`` (client ports matched to processes)."""
    ports = {port for _, port, _, _ in server.backends(database) if port}
    counts: dict[int, int] = {}
    for conn in psutil.net_connections(kind="tcp"):
        if conn.pid and conn.laddr and conn.laddr.port in ports and conn.raddr \
                and conn.raddr.port == server.port:
            counts[conn.pid] = counts.get(conn.pid, 0) + 1
    return counts


@pytest.mark.slow  # a step process per step
def test_step_workers_keep_no_connection_open(pg_url, module_instance, flow, server):
    """Under the multiprocess executor each step runs in a process of its own: such a process
    uses NullPool, holds no connection while its step's code runs, and at most one at a time."""
    runner = WorkflowRunner(database_url=pg_url, instance=module_instance,
                            executor="multiprocess", progress=False)
    database = pg_url.rsplit("/", 1)[1]
    peaks: dict[int, int] = {}
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            for pid, count in connections_by_pid(server, database).items():
                peaks[pid] = max(peaks.get(pid, 0), count)
            time.sleep(0.02)

    release = hold(flow, "enrich")
    during: list[int] = []

    def chaos() -> int:
        worker = wait_entered(flow, "enrich")
        for _ in range(10):
            during.append(connections_by_pid(server, database).get(worker, 0))
            time.sleep(0.02)
        release()
        return worker

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    background = Background(chaos)
    try:
        result = runner.execute(OUTAGE, params=params(flow, "workers", pool_probe=pg_url))
    finally:
        stop.set()
        sampler.join(10)
    worker = background.join()
    pool = Path(flow["dir"], "enrich.pool").read_text()
    workers = {pid: n for pid, n in peaks.items() if pid != os.getpid()}
    print(f"\nstep workers: pool {pool}; connections held by the worker while its step ran: "
          f"{max(during)}; peak per step process: {workers}; this process: "
          f"{peaks.get(os.getpid(), 0)}")
    assert result.status == "completed", result.error
    assert dict(result.context.outputs) == expected_outputs("workers")
    assert worker != os.getpid()
    assert pool == "NullPool"
    assert max(during) == 0, "a step process holds no connection while its step runs"
    # sampled every 20 ms: a NullPool connection lives for one transaction, so often unseen
    assert max(workers.values(), default=0) <= 1, workers
