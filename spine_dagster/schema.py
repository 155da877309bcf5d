"""The checkpoint database schema, declared once for SQLite and PostgreSQL.

Dialect differences live only in column types: ``JSON`` on SQLite, ``JSONB`` on PostgreSQL, and an
``INTEGER`` autoincrement key on SQLite where PostgreSQL has ``BIGINT``.

Tables:
    ``core_workflow_checkpoints``  one row per (spine run, step): the context after that step;
                                   its ``state`` is ``valid``, ``superseded`` (a step before it
                                   ran again) or ``rejected`` (it failed its quality gate). A map
                                   step's items have rows of their own (``item_index``).
    ``core_workflow_runs``         one row per spine run: status, params, failure, where the
                                   workflow is defined.
    ``core_workflow_steps``        one row per (spine run, step): attempts and last outcome.
    ``core_workflow_dagster_runs`` the Dagster runs of each spine run, in order, with the params
                                   each re-execution overrode.
    ``core_workflow_transit``      contexts of steps that are *not* checkpointed (``key_steps``),
                                   kept only while their Dagster run needs them. Never a checkpoint.
    ``spine_dagster_schema``       the schema version, for ``spine-dagster db upgrade``.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

# Bump it with every change below, and describe the change in migrations.py's history.
SCHEMA_VERSION = 4

metadata = sa.MetaData()

JSONType = sa.JSON().with_variant(JSONB(), "postgresql")
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Timestamp = sa.DateTime(timezone=True)
RUN_ID_LENGTH = 64
RunId = sa.String(RUN_ID_LENGTH)

checkpoints = sa.Table(
    "core_workflow_checkpoints",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("run_id", RunId, nullable=False),
    sa.Column("step_name", sa.String(255), nullable=False),
    sa.Column("context_snapshot", JSONType, nullable=False),
    sa.Column("created_at", Timestamp, nullable=False, server_default=sa.func.now()),
    sa.Column("workflow_name", sa.String(255), nullable=False),
    sa.Column("step_index", sa.Integer, nullable=False),
    sa.Column("dagster_run_id", RunId),
    sa.Column("size_bytes", sa.Integer, nullable=False, server_default="0"),
    sa.Column("state", sa.String(16), nullable=False, server_default="valid"),
    sa.Column("superseded_at", Timestamp),
    sa.Column("item_index", sa.Integer),
    sa.UniqueConstraint("run_id", "step_name", name="unique_run_step"),
)
sa.Index("ix_core_workflow_checkpoints_created_at", checkpoints.c.created_at)

runs = sa.Table(
    "core_workflow_runs",
    metadata,
    sa.Column("run_id", RunId, primary_key=True),
    sa.Column("workflow_name", sa.String(255), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("params", JSONType),  # effective: the original params with resume overrides
    sa.Column("original_params", JSONType),
    sa.Column("partition", JSONType),
    sa.Column("error_step", sa.String(255)),
    sa.Column("error", sa.Text),
    sa.Column("error_category", sa.String(32)),
    sa.Column("context", JSONType),
    sa.Column("workflow_ref", sa.Text),
    sa.Column("workflow_signature", JSONType),
    sa.Column("job_name", sa.String(255)),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("lease_owner", sa.String(64)),
    sa.Column("lease_expires_at", Timestamp),
    sa.Column("created_at", Timestamp, nullable=False, server_default=sa.func.now()),
    sa.Column("updated_at", Timestamp, nullable=False, server_default=sa.func.now()),
)
sa.Index("ix_core_workflow_runs_status_created", runs.c.status, runs.c.created_at)
sa.Index("ix_core_workflow_runs_workflow", runs.c.workflow_name)

steps = sa.Table(
    "core_workflow_steps",
    metadata,
    sa.Column("run_id", RunId, primary_key=True),
    sa.Column("step_name", sa.String(255), primary_key=True),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("dagster_run_id", RunId),
    sa.Column("error", sa.Text),
    sa.Column("error_category", sa.String(32)),
    sa.Column("started_at", Timestamp),
    sa.Column("updated_at", Timestamp, nullable=False, server_default=sa.func.now()),
)

dagster_runs = sa.Table(
    "core_workflow_dagster_runs",
    metadata,
    sa.Column("dagster_run_id", RunId, primary_key=True),
    sa.Column("run_id", RunId, nullable=False, index=True),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("created_at", Timestamp, nullable=False, server_default=sa.func.now()),
    sa.Column("params_override", JSONType),  # what this re-execution changed in the params
)
# Lineage positions are unique, so that concurrent re-executions can never share one.
sa.Index("ux_core_workflow_dagster_runs_run_seq", dagster_runs.c.run_id, dagster_runs.c.seq,
         unique=True)

transit = sa.Table(
    "core_workflow_transit",
    metadata,
    sa.Column("dagster_run_id", RunId, primary_key=True),
    sa.Column("step_name", sa.String(255), primary_key=True),
    sa.Column("context_snapshot", JSONType, nullable=False),
    sa.Column("created_at", Timestamp, nullable=False, server_default=sa.func.now()),
)

schema_version = sa.Table(
    "spine_dagster_schema",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("version", sa.Integer, nullable=False),
)
