"""Checkpoint rows made and aged directly in the database, for the retention and CLI tests."""

from __future__ import annotations

import sqlalchemy as sa

from spine_dagster.snapshot import build_snapshot
from spine_dagster import CheckpointStore, WorkflowStatus

WF = "tests.retention"


def age(store: CheckpointStore, table: str, column: str, run_id: str, days: float,
        step: str | None = None) -> None:
    """``UPDATE table SET column = <now - days>`` in the database's own SQL."""
    if store.engine.dialect.name == "sqlite":
        # SQLAlchemy stores DateTime on SQLite as 'YYYY-MM-DD HH:MM:SS[.ffffff]' text in UTC,
        # which sorts like the time it names; datetime() writes the same format.
        value, params = "datetime('now', :offset)", {"offset": f"-{days} days"}
    else:
        value, params = "now() - make_interval(secs => :secs)", {"secs": days * 86400}
    where = "run_id = :run_id" + (" AND step_name = :step" if step else "")
    with store.engine.begin() as conn:
        conn.execute(sa.text(f"UPDATE {table} SET {column} = {value} WHERE {where}"),
                     {**params, "run_id": run_id, "step": step})


def make_run(store: CheckpointStore, run_id: str, status: str | None, *, checkpoint_days: float,
             run_days: float | None = None, steps: int = 2) -> None:
    """A run with ``steps`` checkpoints written ``checkpoint_days`` ago (no run row if status
    is None), that was created, and last updated, ``run_days`` ago."""
    if status is not None:
        store.register_dagster_run(run_id=run_id, workflow_name=WF, dagster_run_id=f"d-{run_id}")
    for i in range(steps):
        store.save_checkpoint(run_id=run_id, workflow_name=WF, step_name=f"s{i}", step_index=i,
                              dagster_run_id=f"d-{run_id}",
                              snapshot=build_snapshot(
                                  run_id, WF, f"s{i}",
                                  {"params": {}, "outputs": {f"s{j}": {"i": j} for j in range(i + 1)}},
                                  dagster_run_id=f"d-{run_id}", dagster_version="test"))
    if status == "completed":
        store.mark_run(run_id, WorkflowStatus.COMPLETED)
    elif status == "failed":
        store.fail_step(run_id=run_id, step_name=f"s{steps}", dagster_run_id=f"d-{run_id}",
                        error="External API timeout", error_category="TRANSIENT")
    age(store, "core_workflow_checkpoints", "created_at", run_id, checkpoint_days)
    if status is not None and run_days is not None:
        age(store, "core_workflow_runs", "created_at", run_id, run_days)
        age(store, "core_workflow_runs", "updated_at", run_id, run_days)


def remaining(store: CheckpointStore) -> dict[str, int]:
    with store.engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT run_id, count(*) FROM core_workflow_checkpoints "
                                    "GROUP BY run_id")).all()
    return {run_id: count for run_id, count in rows}


def seed_policy_cases(store: CheckpointStore) -> None:
    """Seven days of retention; 6 checkpoints are due."""
    make_run(store, "done-old", "completed", checkpoint_days=10, run_days=10)       # 2 due
    make_run(store, "failed-old", "failed", checkpoint_days=10, run_days=10)        # 2 due
    make_run(store, "failed-recently", "failed", checkpoint_days=10, run_days=10)
    age(store, "core_workflow_runs", "updated_at", "failed-recently", 2)            # failed 2d ago
    make_run(store, "running-old", "running", checkpoint_days=30, run_days=30)
    make_run(store, "done-new", "completed", checkpoint_days=1, run_days=1)
    make_run(store, "mixed", "completed", checkpoint_days=1, run_days=10)
    age(store, "core_workflow_checkpoints", "created_at", "mixed", 9, step="s0")    # 1 due
    make_run(store, "resuming", "failed", checkpoint_days=20, run_days=20)
    assert store.acquire_lease("resuming", "another-process", 60, ("failed",))       # a resume
    make_run(store, "orphan", None, checkpoint_days=10, steps=1)                    # 1 due


KEPT_AFTER_POLICY = {"failed-recently": 2, "running-old": 2, "done-new": 2, "mixed": 1,
                     "resuming": 2}
