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
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import sqlalchemy as sa

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


def test_an_uninterrupted_run_is_the_reference(runner, flow):
    result = runner.execute(OUTAGE, params=params(flow, "ref", rows=3))
    assert result.status == "completed", result.error
    assert dict(result.context.outputs) == expected_outputs("ref", rows=3)


def test_an_outage_mid_step_fails_the_run_and_the_resume_completes(runner, flow, server, retries):
    release = hold(flow, "enrich")
    seen: dict[str, Any] = {}

    def chaos() -> None:
        wait_entered(flow, "enrich")
        seen["before"] = checkpointed(runner, seen_run_id(runner))
        seen["stop"] = server.stop("immediate")
        seen["down_at"] = time.monotonic()
        release()

    background = Background(chaos)
    result = runner.execute(OUTAGE, params=params(flow, "mid-step"))
    detected = time.monotonic() - seen.get("down_at", time.monotonic())
    background.join()
    print(f"\nmid-step: stop took {seen['stop']:.2f}s; the run ended {detected:.2f}s after the "
          f"outage began; retries seen: {len(retries.messages)}; failed at "
          f"{result.error_step} ({result.error_category}): {result.error}")

    assert result.status == "failed"
    assert result.run_id
    assert result.error_step == "enrich"
    assert result.error_category in UNREACHABLE
    assert "unreachable" in result.error or "cannot reach" in result.error
    assert retries.messages, "a lost connection is retried before the run gives up"

    started = time.monotonic()
    server.start()
    print(f"restarted in {time.monotonic() - started:.2f}s")
    after = checkpointed(runner, result.run_id)
    assert seen["before"] == {"load": after["load"]}
    record = runner.get_run(result.run_id)
    assert (record.status.value, record.error_step) == ("failed", "enrich")
    assert "unreachable" in record.error or "cannot reach" in record.error, record.error

    resumed = runner.resume(result.run_id)
    assert resumed.status == "completed", resumed.error
    assert resumed.completed_steps == ["enrich", "publish", "report"]
    assert comparable(resumed.context) == comparable(
        runner.execute(OUTAGE, params=params(flow, "mid-step")).context) | {}
    assert dict(resumed.context.outputs) == expected_outputs("mid-step")


def seen_run_id(runner: WorkflowRunner) -> str:
    """The id of the one run in the store (the test's own database)."""
    with runner.store.engine.connect() as conn:
        return conn.execute(sa.text("SELECT run_id FROM core_workflow_runs")).scalar_one()
