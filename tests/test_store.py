"""The checkpoint store on [sqlite] and [postgres]: the spine format as plain SQL sees it."""

from __future__ import annotations

import json
import threading

import pytest
import sqlalchemy as sa

import seed_workflows as seed
from seed_workflows import SEED
from spine_dagster import CheckpointStore, WorkflowStatus
from spine_dagster.store import build_snapshot


@pytest.fixture(autouse=True)
def _reset_seed():
    seed.reset()
    yield
    seed.reset()


def plain_engine(url: str) -> sa.Engine:
    return sa.create_engine(url, poolclass=sa.pool.NullPool)


def test_checkpoints_table_in_spine_format_read_with_plain_sql(runner, database_url):
    result = runner.execute(SEED, params={"key": "value"}, partition={"date": "2026-01-10"})
    assert result.status == "failed"

    engine = plain_engine(database_url)
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT id, run_id, step_name, context_snapshot, created_at "
            "FROM core_workflow_checkpoints WHERE run_id = :r ORDER BY id"),
            {"r": result.run_id}).all()
        columns = {c["name"]: c for c in sa.inspect(conn).get_columns("core_workflow_checkpoints")}
        uniques = sa.inspect(conn).get_unique_constraints("core_workflow_checkpoints")
        run = conn.execute(sa.text(
            "SELECT workflow_name, status, params, partition, error_step, error, created_at, "
            "updated_at FROM core_workflow_runs WHERE run_id = :r"), {"r": result.run_id}).one()
    engine.dispose()

    assert [r.step_name for r in rows] == ["step1", "step2"]
    snapshot = rows[1].context_snapshot
    if isinstance(snapshot, str):  # SQLite hands JSON back as text
        snapshot = json.loads(snapshot)
    assert (snapshot["run_id"], snapshot["workflow_name"], snapshot["step_name"]) == (
        result.run_id, "my.workflow", "step2")
    assert snapshot["params"] == {"key": "value", "derived_key": "computed_value"}
    assert snapshot["outputs"] == {"step1": {"records": 1000}, "step2": {"processed": 950}}
    assert snapshot["partition"] == {"date": "2026-01-10"}
    assert snapshot["quality_metrics"]["step1"]["record_count"] == 1000
    for key in ("created_at", "python_version", "spine_dagster_version", "dagster_version"):
        assert snapshot["metadata"][key], key
    assert rows[1].created_at is not None
    assert any(set(u["column_names"]) == {"run_id", "step_name"} for u in uniques)
    expected_json = "JSONB" if database_url.startswith("postgresql") else "JSON"
    assert type(columns["context_snapshot"]["type"]).__name__ == expected_json
    assert run.workflow_name == "my.workflow" and run.status == "failed"
    assert (run.error_step, run.error) == ("step3", "External API timeout")


def _save(store: CheckpointStore, run_id: str, step: str, value: int) -> None:
    context = {"params": {"v": value}, "outputs": {step: {"v": value}}}
    store.save_checkpoint(run_id=run_id, workflow_name="wf", step_name=step, step_index=0,
                          dagster_run_id="d", snapshot=build_snapshot(
                              run_id, "wf", step, context, dagster_run_id="d",
                              dagster_version="x"))


def test_writing_a_checkpoint_twice_is_an_atomic_upsert(database_url):
    store = CheckpointStore(database_url)
    _save(store, "r1", "step1", 1)
    _save(store, "r1", "step1", 2)

    checkpoints = store.list_checkpoints("r1")
    assert len(checkpoints) == 1
    assert checkpoints[0].context.params == {"v": 2}

    # concurrent retries of one step: one row, holding one complete write
    threads = [threading.Thread(target=_save, args=(CheckpointStore(database_url), "r2", "s", i))
               for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rows = store.list_checkpoints("r2")
    assert len(rows) == 1
    v = rows[0].context.params["v"]
    assert rows[0].context.outputs == {"s": {"v": v}}


def test_latest_checkpoint_is_the_one_written_last(database_url):
    store = CheckpointStore(database_url)
    for step in ("a", "b", "c"):
        _save(store, "r", step, 0)
    _save(store, "r", "a", 5)
    assert store.latest_checkpoint("r").step_name == "a"
    assert [c.step_name for c in store.list_checkpoints("r")] == ["a", "b", "c"]


def test_run_records_and_lineage(database_url):
    store = CheckpointStore(database_url)
    store.register_dagster_run(run_id="r", workflow_name="wf", dagster_run_id="d1",
                               params={"a": 1})
    store.fail_step(run_id="r", step_name="s", dagster_run_id="d1", error="boom",
                    error_category="TRANSIENT")
    assert store.get_run("r").status is WorkflowStatus.FAILED
    store.register_dagster_run(run_id="r", workflow_name="wf", dagster_run_id="d2")
    store.register_dagster_run(run_id="r", workflow_name="wf", dagster_run_id="d2")

    record = store.get_run("d2")
    assert record.run_id == "r"
    assert record.dagster_run_ids == ["d1", "d2"]
    assert record.attempts == 2
    assert record.status is WorkflowStatus.RUNNING and record.error is None
    assert record.params == {"a": 1}
    assert store.start_step("r", "s", "d2") == 2


def test_a_number_too_large_for_a_float_is_never_read_as_infinity(database_url):
    """A row edited to hold ``1e999`` (Python's json reads it as inf; spine never writes it).

    PostgreSQL's JSONB stores it as the exact integer 10**999, which reads back as that integer;
    SQLite keeps the text, which every reader refuses. Neither backend ever yields ``inf``."""
    from spine_dagster.errors import CheckpointCorruptError  # noqa: PLC0415

    store = CheckpointStore(database_url)
    _save(store, "r", "a", 7)
    engine = plain_engine(database_url)
    postgres = engine.dialect.name == "postgresql"
    column = "CAST(context_snapshot AS TEXT)" if postgres else "context_snapshot"
    with engine.begin() as conn:
        text = conn.execute(sa.text(f"SELECT {column} FROM core_workflow_checkpoints WHERE "
                                    "run_id = 'r'")).scalar_one()
        edited = text.replace('"a": {"v": 7}' if postgres else '"a":{"v":7}', '"a":{"v":1e999}')
        assert edited != text
        value = "CAST(:t AS JSONB)" if postgres else ":t"
        conn.execute(sa.text(f"UPDATE core_workflow_checkpoints SET context_snapshot = {value} "
                             "WHERE run_id = 'r'"), {"t": edited})
    engine.dispose()
    if postgres:
        assert store.get_checkpoint("r", "a").step_outputs["a"]["v"] == 10 ** 999
        return
    for read in (lambda: store.get_checkpoint("r", "a"), lambda: store.list_checkpoints("r"),
                 lambda: store.latest_checkpoint("r")):
        with pytest.raises(CheckpointCorruptError, match=r"step 'a' in run 'r', at outputs\.a\.v: "
                                                         r"the stored number 1e999 \(read as inf\)"):
            read()


def test_a_checkpoint_state_that_spine_does_not_write_is_refused(database_url):
    from spine_dagster.errors import CheckpointCorruptError  # noqa: PLC0415

    store = CheckpointStore(database_url)
    store.register_dagster_run(run_id="r", workflow_name="wf", dagster_run_id="d")
    for step in ("a", "b"):
        _save(store, "r", step, 1)
    engine = plain_engine(database_url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE core_workflow_checkpoints SET state = 'bogus' "
                             "WHERE run_id = 'r' AND step_name = 'a'"))
    engine.dispose()
    for read in (lambda: store.get_run("r"), lambda: store.list_checkpoints("r"),
                 lambda: store.get_checkpoint("r", "a"), lambda: store.checkpoint_index("r")):
        with pytest.raises(CheckpointCorruptError, match="step 'a' in run 'r' has state 'bogus', "
                                                         "not one of"):
            read()
    assert store.get_checkpoint("r", "b").state == "valid"
