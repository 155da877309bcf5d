"""Schema migrations of the checkpoint database: one history for SQLite and PostgreSQL.

``spine-dagster db upgrade`` (:func:`spine_dagster.db.upgrade`) brings a database to
``schema.SCHEMA_VERSION`` in one transaction (on PostgreSQL under an advisory lock, so that two
upgrades never interleave):

1. it creates the tables and indexes that :mod:`spine_dagster.schema` declares and the database
   lacks;
2. it adds the columns that ``schema.py`` declares and the database lacks. Additive changes need
   no hand-written step: declare the column in ``schema.py`` and bump ``SCHEMA_VERSION``. A new
   ``NOT NULL`` column without a server default gets its type's zero value (``0``, ``''``) in the
   rows that already exist;
3. it runs the hand-written steps in :data:`STEPS` for each version after the database's (for
   renames, backfills, anything that is not purely additive);
4. it records the version.

:func:`missing` is the check behind ``SchemaOutOfDateError``: a database that lacks a table or a
column of this code is behind, whatever version it records.

History (``SCHEMA_VERSION``):
    0. a ``core_workflow_checkpoints`` table without a version, e.g. Spine's own (the seed's
       ``id, run_id, step_name, context_snapshot, created_at``).
    1. the spine_dagster tables.
    2. ``core_workflow_runs.workflow_signature`` (the steps a run was started with); checkpoint
       snapshots hold the context at top level (``params``, ``outputs``, ...) instead of under
       ``context``: step 2 rewrites the checkpoints written in the nested form.
    3. ``core_workflow_checkpoints.state``, ``superseded_at`` and ``item_index`` (superseded
       checkpoints, map items); a unique index on the lineage ``(run_id, seq)``: step 3
       renumbers the lineage of runs that two concurrent re-executions gave the same position.
    4. ``core_workflow_dagster_runs.params_override`` (what each re-execution changed, so that a
       resume carries the overrides of re-executions that wrote no usable checkpoint).

Example:
    >>> import sqlalchemy as sa, tempfile
    >>> engine = sa.create_engine(f"sqlite:///{tempfile.mkdtemp()}/m.db")
    >>> with engine.begin() as conn:
    ...     before = missing(conn)
    ...     changes = migrate(conn, None)
    ...     (len(before) > 0, missing(conn))
    (True, [])
"""

from __future__ import annotations

from typing import Callable

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.schema import ExecutableDDLElement

from .errors import SchemaOutOfDateError
from .schema import metadata

BATCH_ROWS = 500


def _flatten_nested_snapshots(conn: sa.Connection) -> None:
    """Version 2: ``{"context": {...}, "metadata": {...}}`` becomes the top-level form."""
    from .schema import checkpoints
    from .snapshot import CONTEXT_KEYS

    last = 0
    while True:
        rows = conn.execute(sa.select(checkpoints.c.id, checkpoints.c.context_snapshot)
                            .where(checkpoints.c.id > last).order_by(checkpoints.c.id)
                            .limit(BATCH_ROWS)).all()
        if not rows:
            return
        for row_id, snapshot in rows:
            nested = snapshot.get("context") if isinstance(snapshot, dict) else None
            if not isinstance(nested, dict) or "params" in snapshot:
                continue
            flat = {k: v for k, v in snapshot.items() if k not in ("context", "metadata")}
            flat.update({key: nested.get(key) for key in CONTEXT_KEYS})
            flat["metadata"] = {**(nested.get("metadata") or {}),
                                **(snapshot.get("metadata") or {})}
            conn.execute(sa.update(checkpoints).where(checkpoints.c.id == row_id)
                         .values(context_snapshot=flat))
        last = rows[-1][0]


def _renumber_lineage(conn: sa.Connection) -> None:
    """Version 3: give each Dagster run of a spine run its own position, oldest first."""
    from .schema import dagster_runs

    duplicated = conn.execute(
        sa.select(dagster_runs.c.run_id).group_by(dagster_runs.c.run_id, dagster_runs.c.seq)
        .having(sa.func.count() > 1)).scalars().all()
    for run_id in sorted(set(duplicated)):
        rows = conn.execute(sa.select(dagster_runs.c.dagster_run_id)
                            .where(dagster_runs.c.run_id == run_id)
                            .order_by(dagster_runs.c.seq, dagster_runs.c.created_at,
                                      dagster_runs.c.dagster_run_id)).scalars().all()
        for position, dagster_run_id in enumerate(rows, 1):
            conn.execute(sa.update(dagster_runs)
                         .where(dagster_runs.c.dagster_run_id == dagster_run_id)
                         .values(seq=-position))  # negative first: no clash with the old values
        conn.execute(sa.update(dagster_runs).where(dagster_runs.c.run_id == run_id)
                     .values(seq=-dagster_runs.c.seq))


# version -> work beyond the additive diff, run after the new columns and before the new
# indexes (on the same connection).
STEPS: dict[int, Callable[[sa.Connection], None]] = {2: _flatten_nested_snapshots,
                                                     3: _renumber_lineage}


def missing(conn: sa.Connection) -> list[str]:
    """What this code needs and the database lacks: ``table`` or ``table.column`` names."""
    inspector = sa.inspect(conn)
    tables = set(inspector.get_table_names())
    found: list[str] = []
    for table in metadata.sorted_tables:
        if table.name not in tables:
            found.append(table.name)
            continue
        have = {c["name"] for c in inspector.get_columns(table.name)}
        found.extend(f"{table.name}.{c.name}" for c in table.columns if c.name not in have)
    return found


def migrate(conn: sa.Connection, before: int | None, target: int | None = None) -> list[str]:
    """Bring the schema from version ``before`` to ``target``; returns what changed (readable)."""
    from .schema import SCHEMA_VERSION

    target = SCHEMA_VERSION if target is None else target
    inspector = sa.inspect(conn)
    tables = set(inspector.get_table_names())
    changes: list[str] = []
    existing = []
    for table in metadata.sorted_tables:
        if table.name not in tables:
            table.create(conn)
            changes.append(f"created table {table.name}")
            continue
        existing.append(table)
        have = {c["name"] for c in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name not in have:
                _add_column(conn, table, column)
                changes.append(f"added column {table.name}.{column.name}")
    for version in sorted(v for v in STEPS if (before or 0) < v <= target):
        STEPS[version](conn)
        changes.append(f"ran migration step {version}")
    for table in existing:
        indexes = {i["name"] for i in sa.inspect(conn).get_indexes(table.name)}
        for index in table.indexes:
            if index.name not in indexes:
                index.create(conn)
                changes.append(f"created index {index.name}")
    return changes


class AddColumn(ExecutableDDLElement):
    """``ALTER TABLE t ADD COLUMN c ...``: SQLAlchemy Core has no such construct (Alembic has),
    so it is compiled here, with the table and column quoted by the dialect's own preparer."""

    def __init__(self, column: sa.Column, default: str | None = None) -> None:
        self.column, self.default = column, default


class DropDefault(ExecutableDDLElement):
    """``ALTER TABLE t ALTER COLUMN c DROP DEFAULT`` (PostgreSQL)."""

    def __init__(self, column: sa.Column) -> None:
        self.column = column


@compiles(AddColumn)
def _compile_add_column(element: AddColumn, compiler, **kw) -> str:
    ddl = compiler.process(sa.schema.CreateColumn(element.column), **kw)
    default = f" DEFAULT {element.default}" if element.default is not None else ""
    return (f"ALTER TABLE {compiler.preparer.format_table(element.column.table)} "
            f"ADD COLUMN {ddl}{default}")


@compiles(DropDefault)
def _compile_drop_default(element: DropDefault, compiler, **kw) -> str:
    return (f"ALTER TABLE {compiler.preparer.format_table(element.column.table)} ALTER COLUMN "
            f"{compiler.preparer.format_column(element.column)} DROP DEFAULT")


def _add_column(conn: sa.Connection, table: sa.Table, column: sa.Column) -> None:
    zero = None
    if not column.nullable and column.server_default is None:
        zero = _zero_value(column)  # a literal of our own: 0, '' or false
    conn.execute(AddColumn(column, zero))
    if zero is not None and conn.dialect.name == "postgresql":
        # The default only fills the rows that exist; the code always writes the column itself.
        conn.execute(DropDefault(column))


def _zero_value(column: sa.Column) -> str:
    python_type = None
    try:
        python_type = column.type.python_type
    except NotImplementedError:
        pass
    if python_type in (int, float):
        return "0"
    if python_type is str:
        return "''"
    if python_type is bool:
        return "false"
    raise SchemaOutOfDateError(
        f"cannot add NOT NULL column {column.table.name}.{column.name} without a default to "
        f"existing rows; give it a server_default in schema.py or a step in migrations.STEPS")
