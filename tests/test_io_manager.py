"""The IO manager's checkpoint writes: durable before the next step starts, and a write that
fails stops the run at the step whose checkpoint was lost, so a resume re-runs that step."""

from __future__ import annotations

import threading
import time

import pytest
import sqlalchemy as sa

from spine_dagster import Step, StepResult, Workflow, WorkflowStatus

HOLD_SECONDS = 4.0  # how long a slow database keeps the first step's checkpoint write waiting


def plain(url: str) -> sa.Engine:
    return sa.create_engine(url, poolclass=sa.pool.NullPool)


class SlowCheckpointWrites:
    """Another connection holds a lock that makes checkpoint writes wait (readers do not).

    PostgreSQL: ``LOCK TABLE core_workflow_checkpoints IN SHARE MODE`` (conflicts with INSERT and
    UPDATE on that table only). SQLite: ``BEGIN IMMEDIATE`` (the database's write lock; WAL
    readers go on). ``hold()`` returns once the lock is held; it is released by ``release()`` or
    after ``seconds``, whichever comes first, and ``released_at`` says when (monotonic clock).
    """

    def __init__(self, url: str, seconds: float) -> None:
        self.engine, self.seconds = plain(url), seconds
        self.released_at: float | None = None
        self.writer_waited = False  # PostgreSQL: a session was seen waiting for the lock
        self._held, self._release = threading.Event(), threading.Event()
        self._errors: list[BaseException] = []
        self._thread = threading.Thread(target=self._hold, daemon=True)

    def _hold(self) -> None:
        try:
            with self.engine.connect() as conn:
                if conn.dialect.name == "sqlite":
                    conn.exec_driver_sql("BEGIN IMMEDIATE")
                else:
                    conn.execute(sa.text("LOCK TABLE core_workflow_checkpoints IN SHARE MODE"))
                self._held.set()
                deadline = time.monotonic() + self.seconds
                while not self._release.wait(0.05) and time.monotonic() < deadline:
                    if conn.dialect.name != "sqlite" and not self.writer_waited:
                        self.writer_waited = bool(conn.execute(sa.text(
                            "SELECT count(*) FROM pg_locks WHERE NOT granted AND "
                            "relation = 'core_workflow_checkpoints'::regclass")).scalar_one())
                self.released_at = time.monotonic()
                conn.rollback()
        except BaseException as exc:  # noqa: BLE001 - reported by join()
            self._errors.append(exc)
            self._held.set()

    def hold(self) -> None:
        self._thread.start()
        assert self._held.wait(30), "the lock was not taken within 30 s"
        assert not self._errors, self._errors

    def release(self) -> None:
        self._release.set()

    def join(self) -> None:
        self.release()
        self._thread.join(30)
        self.engine.dispose()
        assert not self._errors, self._errors


def test_a_steps_checkpoint_is_durable_before_the_next_step_starts(runner, database_url):
    """The first step's checkpoint write is held up by a lock; the second step must not start
    before that write has committed (on PostgreSQL it runs on a background thread, so the
    barrier is what waits; on SQLite the write itself does)."""
    slow = SlowCheckpointWrites(database_url, HOLD_SECONDS)
    seen = {}

    def first(ctx, config):
        slow.hold()  # from here on, checkpoint writes wait for the lock
        return {"n": 1}

    def second(ctx, config):
        seen["started"] = time.monotonic()
        with plain(database_url).connect() as conn:  # another connection, as another process
            seen["first"] = conn.execute(sa.text(
                "SELECT count(*) FROM core_workflow_checkpoints WHERE run_id = :r AND "
                "step_name = 'first'"), {"r": ctx.run_id}).scalar_one()
        slow.release()  # checked: the database may go on
        return {"ok": True}

    wf = Workflow("io.durable", [Step.lambda_("first", first), Step.lambda_("second", second)])
    try:
        result = runner.execute(wf)
    finally:
        slow.join()
    assert result.status == "completed", result.error
    assert seen["first"] == 1, "the second step started before the first one's checkpoint was in"
    assert seen["started"] >= slow.released_at, "the second step ran while the write was held"
    if runner.store.is_server:  # the held write really waited for the lock (not just the thread)
        assert slow.writer_waited


def refuse_checkpoints_of(database_url: str, step: str) -> None:
    """A database-side failure: inserting that step's checkpoint raises in the database."""
    with plain(database_url).begin() as conn:
        if conn.dialect.name == "sqlite":
            conn.execute(sa.text(
                f"CREATE TRIGGER refuse BEFORE INSERT ON core_workflow_checkpoints "
                f"WHEN NEW.step_name = '{step}' BEGIN SELECT RAISE(ABORT, 'disk full'); END"))
        else:
            conn.execute(sa.text(
                f"CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN IF NEW.step_name = '{step}' "
                f"THEN RAISE EXCEPTION 'disk full'; END IF; RETURN NEW; END $$ LANGUAGE plpgsql"))
            conn.execute(sa.text("CREATE TRIGGER refuse BEFORE INSERT ON "
                                 "core_workflow_checkpoints FOR EACH ROW EXECUTE FUNCTION refuse()"))


def accept_checkpoints(database_url: str) -> None:
    with plain(database_url).begin() as conn:
        if conn.dialect.name == "sqlite":
            conn.execute(sa.text("DROP TRIGGER refuse"))
        else:
            conn.execute(sa.text("DROP TRIGGER refuse ON core_workflow_checkpoints"))


def test_a_checkpoint_that_cannot_be_written_stops_the_run_at_its_step(runner, database_url):
    calls = []
    outage = {"on": True}

    def second(ctx, config):
        calls.append("second")
        if outage["on"]:  # the database starts refusing this step's checkpoint while it runs
            refuse_checkpoints_of(database_url, "second")
        return {"n": 2}

    wf = Workflow("io.outage", [Step.lambda_("first", lambda c, k: calls.append("first") or {}),
                                Step.lambda_("second", second),
                                Step.lambda_("third", lambda c, k: calls.append("third") or {})])
    result = runner.execute(wf)
    accept_checkpoints(database_url)

    assert result.status == WorkflowStatus.FAILED
    assert result.error_step == "second"
    assert "disk full" in result.error
    assert calls == ["first", "second"], "third must not start without second's checkpoint"
    assert [c.step_name for c in runner.list_checkpoints(result.run_id)] == ["first"]

    outage["on"] = False
    calls.clear()
    resumed = runner.resume(result.run_id)
    assert resumed.status == WorkflowStatus.COMPLETED
    assert calls == ["second", "third"]


def _count(ctx, config):
    return StepResult.ok(output={"n": 1})


@pytest.mark.parametrize("executor", ["in_process", "multiprocess"])
def test_execute_in_process_keeps_the_process_pool(pg_schema_url, executor):
    """``job.execute_in_process()`` runs every step in this process, whatever the job's executor:
    this process is no step worker, and keeps its pooled PostgreSQL connection (no NullPool)."""
    from spine_dagster import build_job
    from spine_dagster import db as spine_db

    job = build_job(Workflow("io.pool", [Step.lambda_("a", _count), Step.lambda_("b", _count)]),
                    database_url=pg_schema_url, executor=executor)
    assert job.execute_in_process().success
    assert spine_db.pool_class(pg_schema_url) == "QueuePool"
