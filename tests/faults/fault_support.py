"""Helpers of the bad-input tests: the store's rows as plain SQL sees them, and row tampering.

Nothing here goes through spine_dagster's own reading code, so a snapshot of the tables cannot be
fooled by it, and a tampered row is exactly what an operator (or an attacker) would write.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import sqlalchemy as sa

from spine_dagster import WorkflowRunner
from spine_dagster.schema import metadata

TABLES = sorted(metadata.tables)
"""Every spine_dagster table: core_workflow_runs, core_workflow_checkpoints and the others."""
PASSWORD = "S3cretPW!x"
ENCODED_PASSWORD = "S3cretPW%21x"


def plain_engine(url: str) -> sa.Engine:
    return sa.create_engine(url, poolclass=sa.pool.NullPool)


def dump_tables(url: str) -> dict[str, list[str]]:
    """Every row of every spine_dagster table, each as the repr of its columns, sorted."""
    engine = plain_engine(url)
    found: dict[str, list[str]] = {}
    try:
        with engine.connect() as conn:
            present = set(sa.inspect(conn).get_table_names())
            for name in TABLES:
                if name not in present:
                    found[name] = ["<no table>"]
                    continue
                quoted = conn.dialect.identifier_preparer.quote(name)
                rows = conn.execute(sa.text(f"SELECT * FROM {quoted}")).all()
                found[name] = sorted(repr(tuple(row)) for row in rows)
    finally:
        engine.dispose()
    return found


def set_column(url: str, table: str, column: str, value: str | None, **where: Any) -> None:
    """``UPDATE table SET column = value WHERE ...``; ``value`` is JSON text for JSON columns."""
    engine = plain_engine(url)
    is_json = isinstance(metadata.tables[table].c[column].type, sa.JSON)
    # The text as it is: through a JSON column's own type it would be encoded once more.
    target = (sa.text("CAST(:value AS JSONB)") if is_json and engine.dialect.name == "postgresql"
              else sa.bindparam("value", type_=sa.Text()))
    table_ = metadata.tables[table]
    statement = (sa.update(table_).values({column: target})
                 .where(*[table_.c[k] == v for k, v in where.items()]))
    try:
        with engine.begin() as conn:
            assert conn.execute(statement, {"value": value}).rowcount == 1, (table, where)
    finally:
        engine.dispose()


def set_snapshot(url: str, run_id: str, step: str, text: str) -> None:
    set_column(url, "core_workflow_checkpoints", "context_snapshot", text, run_id=run_id,
               step_name=step)


def get_snapshot(url: str, run_id: str, step: str) -> str:
    """The stored text of a checkpoint's snapshot, as plain SQL reads it."""
    engine = plain_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text(
                "SELECT CAST(context_snapshot AS TEXT) FROM core_workflow_checkpoints "
                "WHERE run_id = :r AND step_name = :s"), {"r": run_id, "s": step}).scalar_one()
    finally:
        engine.dispose()


def edit_snapshot(url: str, run_id: str, step: str, edit: Callable[[dict], Any]) -> None:
    """Read the stored snapshot as plain JSON, let ``edit`` change it in place, write it back."""
    snapshot = json.loads(get_snapshot(url, run_id, step))
    edit(snapshot)  # what it returns (say, what dict.pop removed) is not the new row
    set_snapshot(url, run_id, step, json.dumps(snapshot))


def deep(levels: int) -> dict:
    value: dict = {}
    for _ in range(levels):
        value = {"d": value}
    return value


@dataclass
class Env:
    """What a catalogue case acts on."""

    url: str
    runner: WorkflowRunner
    tmp: Path
    run_id: str = ""  # the prepared run (failed at step3, or completed)
    notes: dict[str, Any] = field(default_factory=dict)
