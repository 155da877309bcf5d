"""The checkpoint database's password is nowhere in Dagster's storage.

A workflow runs through ``WorkflowRunner`` with a checkpoint URL that carries a password, fails,
is resumed (a Dagster re-execution) and re-executed from a step, on a Dagster instance with SQLite
storage and with PostgreSQL storage (``DAGSTER_HOME`` in a temporary directory). Then every file
under ``DAGSTER_HOME`` (the SQLite run, event and schedule storage, compute logs, anything else),
every row of every table of the PostgreSQL instance database, and explicitly each Dagster run's
config, tags, code origin, job snapshot, execution plan snapshot and event log are searched for
the password, plain and URL-encoded. None may hold it. (``tests/test_dask.py`` checks the runs and
event tables of the Dask runs the same way.)
"""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from dagster import DagsterInstance

import seed_workflows as seed
from fault_support import ENCODED_PASSWORD, PASSWORD
from seed_workflows import SEED
from spine_dagster import WorkflowRunner

pytestmark = [pytest.mark.timeout(120), pytest.mark.postgres]
NEEDLES = (PASSWORD.encode(), ENCODED_PASSWORD.encode())


def files_holding_the_password(home: Path) -> list[str]:
    hits, searched = [], 0
    for path in sorted(home.rglob("*")):
        if path.is_file():
            searched += 1
            data = path.read_bytes()
            hits += [f"{path.relative_to(home)}: {n.decode()}" for n in NEEDLES if n in data]
    assert searched >= 3, f"only {searched} files under {home}: nothing was stored there?"
    return hits


def rows_holding_the_password(pg_url: str) -> list[str]:
    engine = sa.create_engine(pg_url, poolclass=sa.pool.NullPool)
    hits, rows = [], 0
    try:
        with engine.connect() as conn:
            tables = sa.inspect(conn).get_table_names()
            assert "runs" in tables and "event_logs" in tables
            for table in tables:
                quoted = conn.dialect.identifier_preparer.quote(table)
                for (text,) in conn.execute(sa.text(f"SELECT CAST(t AS TEXT) FROM {quoted} t")):
                    rows += 1
                    hits += [f"{table}: {n.decode()}" for n in NEEDLES if n.decode() in text]
    finally:
        engine.dispose()
    assert rows > 10
    return hits


def test_no_password_anywhere_in_dagster_storage(dagster_home, pg_schema_url, monkeypatch,
                                                 request):
    seed.reset()
    monkeypatch.setenv("DAGSTER_HOME", dagster_home)
    url = sa.make_url(pg_schema_url).set(password=PASSWORD).render_as_string(hide_password=False)
    assert ENCODED_PASSWORD in url  # "!" is %21 in a URL
    instance = DagsterInstance.from_config(dagster_home)
    try:
        runner = WorkflowRunner(database_url=url, instance=instance, log_level="DEBUG")
        failed = runner.execute(SEED, params={"timeout": 30})
        assert failed.status.value == "failed"
        seed.STATE["api_down"] = False
        assert runner.resume(failed.run_id, params_override={"timeout": 60}).status.value == \
            "completed"
        again = runner.execute(SEED, run_id=failed.run_id, start_from="step2")
        assert again.status.value == "completed"
        dagster_runs = runner.get_run(failed.run_id).dagster_run_ids
        assert len(dagster_runs) == 3

        for run_id in dagster_runs:
            run = instance.get_run_by_id(run_id)
            views = {
                "run config": repr(run.run_config), "tags": repr(run.tags),
                "job code origin": repr(run.job_code_origin),
                "job snapshot": repr(instance.get_job_snapshot(run.job_snapshot_id)),
                "execution plan": repr(instance.get_execution_plan_snapshot(
                    run.execution_plan_snapshot_id)),
                "event log": repr(instance.all_logs(run_id)),
            }
            assert "***" in views["job code origin"]  # the URL is there, masked
            for what, text in views.items():
                for needle in NEEDLES:
                    assert needle.decode() not in text, f"{what} of Dagster run {run_id}"

        assert files_holding_the_password(Path(dagster_home)) == []
        if "postgres-instance" in request.node.callspec.id:
            assert rows_holding_the_password(request.getfixturevalue("pg_dagster_url")) == []
    finally:
        instance.dispose()
        seed.reset()
