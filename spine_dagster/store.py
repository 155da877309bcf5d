"""The checkpoint store: every query, written once, for SQLite and PostgreSQL.

``CheckpointStore(url)`` is a plain class, usable without Dagster. The backends differ only in the
engine set-up (:mod:`spine_dagster.db`) and in the dialect's upsert.

Example:
    >>> import tempfile, os
    >>> from spine_dagster import CheckpointStore
    >>> store = CheckpointStore(f"sqlite:///{tempfile.mkdtemp()}/docs.db")
    >>> store.list_checkpoints("no-such-run")
    []
"""

from __future__ import annotations

import platform
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Sequence

import sqlalchemy as sa

from . import db
from .context import WorkflowContext
from .results import WorkflowStatus
from .schema import checkpoints, dagster_runs, runs, steps, transit
from .serialization import RawJSON, dumps
from .version import __version__


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value


@dataclass
class Checkpoint:
    """One checkpoint: the context of a spine run after ``step_name`` succeeded."""

    run_id: str
    workflow_name: str
    step_name: str
    context_snapshot: dict[str, Any]
    step_outputs: dict[str, Any]
    created_at: datetime
    step_index: int = 0
    dagster_run_id: str | None = None
    size_bytes: int = 0

    @property
    def context(self) -> WorkflowContext:
        """The checkpointed ``WorkflowContext``, ready to pass to ``execute(context=...)``."""
        data = context_of(self.context_snapshot)
        data["run_id"] = data.get("run_id") or self.run_id
        data["workflow_name"] = data.get("workflow_name") or self.workflow_name
        return WorkflowContext.from_dict(data)

    @property
    def metadata(self) -> dict[str, Any]:
        return dict(self.context_snapshot.get("metadata", {}))


@dataclass
class StepRow:
    """The latest attempt of one step of a run."""

    step_name: str
    attempts: int
    status: str
    dagster_run_id: str | None
    error: str | None
    error_category: str | None
    started_at: datetime | None
    updated_at: datetime | None


@dataclass
class RunRecord:
    """A spine run as ``core_workflow_runs`` records it, with its lineage of Dagster runs."""

    run_id: str
    workflow_name: str
    status: WorkflowStatus
    params: dict[str, Any]
    partition: Any
    error_step: str | None
    error: str | None
    error_category: str | None
    workflow_ref: str | None
    job_name: str | None
    attempts: int
    created_at: datetime
    updated_at: datetime
    dagster_run_ids: list[str] = field(default_factory=list)
    final_context: dict[str, Any] | None = None
    workflow_signature: list[Any] | None = None
    latest_checkpoint: Checkpoint | None = None

    @property
    def context(self) -> WorkflowContext:
        """The run's newest context: final when it ended, else the newest checkpoint's."""
        if self.final_context is not None:
            return WorkflowContext.from_dict(self.final_context)
        if self.latest_checkpoint is not None:
            return self.latest_checkpoint.context
        return WorkflowContext(run_id=self.run_id, workflow_name=self.workflow_name,
                               params=dict(self.params or {}), partition=self.partition)

    @property
    def last_dagster_run_id(self) -> str | None:
        return self.dagster_run_ids[-1] if self.dagster_run_ids else None


CHECKPOINT_METADATA = ("created_at", "python_version", "spine_dagster_version", "dagster_version",
                       "dagster_run_id")
CONTEXT_KEYS = ("params", "outputs", "quality_metrics", "partition", "started_at")


def build_snapshot(run_id: str, workflow_name: str, step_name: str, context: dict[str, Any],
                   *, dagster_run_id: str | None, dagster_version: str) -> dict[str, Any]:
    """A checkpoint's ``context_snapshot``: the serialized context plus checkpoint metadata.

    Top level: ``run_id``, ``workflow_name``, ``step_name``, ``params``, ``outputs``,
    ``quality_metrics``, ``partition``, ``started_at`` and ``metadata``. ``metadata`` holds the
    context's own metadata plus ``created_at``, ``python_version``, ``spine_dagster_version``,
    ``dagster_version`` and ``dagster_run_id``.
    """
    snapshot: dict[str, Any] = {"run_id": run_id, "workflow_name": workflow_name,
                                "step_name": step_name}
    for key in CONTEXT_KEYS:
        snapshot[key] = context.get(key)
    snapshot["metadata"] = {
        **(context.get("metadata") or {}),
        "created_at": utcnow().isoformat(),
        "python_version": platform.python_version(),
        "spine_dagster_version": __version__,
        "dagster_version": dagster_version,
        "dagster_run_id": dagster_run_id,
    }
    return snapshot


def context_of(snapshot: dict[str, Any]) -> dict[str, Any]:
    """The ``WorkflowContext.to_dict()`` form inside a checkpoint snapshot."""
    context = {key: snapshot.get(key) for key in CONTEXT_KEYS}
    context["run_id"] = snapshot.get("run_id")
    context["workflow_name"] = snapshot.get("workflow_name")
    context["metadata"] = {k: v for k, v in (snapshot.get("metadata") or {}).items()
                           if k not in CHECKPOINT_METADATA}
    return context


class CheckpointStore:
    """Reads and writes checkpoints and run records in one SQL database.

    Args:
        url: a SQLAlchemy URL: ``sqlite:///path.db`` or ``postgresql+psycopg2://user@host/db``.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self._ready = False

    # -- plumbing --------------------------------------------------------------------------------
    @property
    def engine(self) -> sa.Engine:
        return db.get_engine(self.url)

    @property
    def is_server(self) -> bool:
        """True for a database server (PostgreSQL), False for embedded SQLite."""
        return self.engine.dialect.name != "sqlite"

    @property
    def display_url(self) -> str:
        return db.mask_url(self.url)

    def _begin(self):
        if not self._ready:
            db.ensure_schema(self.url)
            self._ready = True
        return db.begin(self.url)

    def check(self) -> None:
        """Connect, and create or check the schema: fails fast with a clear error."""
        with self._begin():
            pass

    def _upsert(self, table: sa.Table, values: dict[str, Any], keys: Sequence[str],
                update: dict[str, Any]):
        return db.upsert(self.engine.dialect.name, table, values, keys, update)

    # -- checkpoints ----------------------------------------------------------------------------
    def save_checkpoint(self, *, run_id: str, workflow_name: str, step_name: str, step_index: int,
                        dagster_run_id: str | None, snapshot: dict[str, Any] | RawJSON,
                        final_status: WorkflowStatus | None = None,
                        final_context: dict[str, Any] | None = None,
                        step_status: str = "completed",
                        step_error: tuple[str, str | None] | None = None) -> int:
        """Upsert one checkpoint atomically, mark the step completed, and maybe finish the run.

        Returns the size of the stored snapshot in bytes.
        """
        text = snapshot if isinstance(snapshot, RawJSON) else RawJSON(dumps(snapshot))
        size = len(text.encode("utf-8"))
        now = utcnow()
        values = dict(run_id=run_id, workflow_name=workflow_name, step_name=step_name,
                      step_index=step_index, dagster_run_id=dagster_run_id,
                      context_snapshot=text, size_bytes=size, created_at=now)
        with self._begin() as conn:
            conn.execute(self._upsert(
                checkpoints, values, ["run_id", "step_name"],
                {k: values[k] for k in ("context_snapshot", "created_at", "step_index",
                                        "dagster_run_id", "size_bytes", "workflow_name")}))
            self._set_step(conn, run_id, step_name, step_status, dagster_run_id,
                           *(step_error or (None, None)), now)
            if final_status is not None:
                self._finish_run(conn, run_id, final_status, final_context, now)
        return size

    def get_checkpoint(self, run_id: str, step_name: str) -> Checkpoint | None:
        with self._begin() as conn:
            row = conn.execute(sa.select(checkpoints).where(
                checkpoints.c.run_id == run_id, checkpoints.c.step_name == step_name)).first()
        return self._checkpoint(row) if row else None

    def list_checkpoints(self, run_id: str) -> list[Checkpoint]:
        """The checkpoints of a run, in workflow order."""
        with self._begin() as conn:
            rows = conn.execute(sa.select(checkpoints).where(checkpoints.c.run_id == run_id)
                                .order_by(checkpoints.c.step_index, checkpoints.c.id)).all()
        return [self._checkpoint(r) for r in rows]

    def list_checkpoint_steps(self, run_id: str) -> list[tuple[str, int, datetime]]:
        """(step_name, step_index, created_at) of each checkpoint, without the snapshots."""
        cols = (checkpoints.c.step_name, checkpoints.c.step_index, checkpoints.c.created_at)
        with self._begin() as conn:
            rows = conn.execute(sa.select(*cols).where(checkpoints.c.run_id == run_id)
                                .order_by(checkpoints.c.step_index)).all()
        return [(r[0], r[1], _aware(r[2])) for r in rows]

    def latest_checkpoint(self, run_id: str) -> Checkpoint | None:
        """The checkpoint written last: the state a resume continues from."""
        with self._begin() as conn:
            row = conn.execute(sa.select(checkpoints).where(checkpoints.c.run_id == run_id)
                               .order_by(checkpoints.c.created_at.desc(),
                                         checkpoints.c.step_index.desc()).limit(1)).first()
        return self._checkpoint(row) if row else None

    def delete_checkpoints(self, run_id: str) -> int:
        with self._begin() as conn:
            return conn.execute(sa.delete(checkpoints).where(checkpoints.c.run_id == run_id)).rowcount

    def cleanup(self, older_than: datetime, *, batch_size: int = 1000,
                dry_run: bool = False) -> int:
        """Delete the checkpoints written before ``older_than``; returns how many (would) go.

        Kept: every checkpoint of a run that is ``running`` or being resumed (its lease is held),
        and those of runs that failed at or after ``older_than`` (they may still be resumed).
        Rows go in batches of ``batch_size``, each in its own short transaction (select a batch of
        ids, delete them, commit), so concurrent checkpoint writes wait at most one batch.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        cutoff = (_aware(older_than) or utcnow()).astimezone(timezone.utc)
        if dry_run:
            with self._begin() as conn:
                return conn.execute(sa.select(sa.func.count()).select_from(checkpoints)
                                    .where(self._due(cutoff))).scalar_one()
        deleted, last_id = 0, 0
        while True:
            with self._begin() as conn:
                due = self._due(cutoff)
                ids = conn.execute(sa.select(checkpoints.c.id)
                                   .where(due, checkpoints.c.id > last_id)
                                   .order_by(checkpoints.c.id).limit(batch_size)).scalars().all()
                if not ids:
                    return deleted
                # ``due`` again: a run that started (or took a lease) since the select is spared.
                deleted += conn.execute(sa.delete(checkpoints)
                                        .where(checkpoints.c.id.in_(ids), due)).rowcount
            if len(ids) < batch_size:
                return deleted
            last_id = ids[-1]

    @staticmethod
    def _due(cutoff: datetime) -> sa.ColumnElement[bool]:
        """The retention policy: written before ``cutoff``, and of no run that must keep them."""
        now = utcnow()
        protected = sa.select(runs.c.run_id).where(sa.or_(
            runs.c.status == WorkflowStatus.RUNNING.value,
            sa.and_(runs.c.status == WorkflowStatus.FAILED.value, runs.c.updated_at >= cutoff),
            sa.and_(runs.c.lease_owner.is_not(None), runs.c.lease_expires_at > now)))
        return sa.and_(checkpoints.c.created_at < cutoff, checkpoints.c.run_id.not_in(protected))

    @staticmethod
    def _checkpoint(row: Any) -> Checkpoint:
        snapshot = dict(row.context_snapshot or {})
        # the seed's nested view ("What Gets Saved"): snapshot["context"]["params"], ...
        snapshot.setdefault("context", {k: snapshot.get(k) for k in CONTEXT_KEYS})
        return Checkpoint(
            run_id=row.run_id, workflow_name=row.workflow_name, step_name=row.step_name,
            context_snapshot=snapshot, step_outputs=dict(snapshot.get("outputs") or {}),
            created_at=_aware(row.created_at), step_index=row.step_index,
            dagster_run_id=row.dagster_run_id, size_bytes=row.size_bytes)

    # -- transit (outputs that are not checkpoints) --------------------------------------------
    def put_transit(self, dagster_run_id: str, step_name: str, snapshot: RawJSON) -> None:
        values = dict(dagster_run_id=dagster_run_id, step_name=step_name,
                      context_snapshot=snapshot, created_at=utcnow())
        with self._begin() as conn:
            conn.execute(self._upsert(transit, values, ["dagster_run_id", "step_name"],
                                      {"context_snapshot": snapshot,
                                       "created_at": values["created_at"]}))

    def get_transit(self, dagster_run_id: str, step_name: str) -> dict[str, Any] | None:
        with self._begin() as conn:
            row = conn.execute(sa.select(transit.c.context_snapshot).where(
                transit.c.dagster_run_id == dagster_run_id,
                transit.c.step_name == step_name)).first()
        return row[0] if row else None

    def delete_transit(self, dagster_run_id: str) -> None:
        with self._begin() as conn:
            conn.execute(sa.delete(transit).where(transit.c.dagster_run_id == dagster_run_id))

    # -- runs -----------------------------------------------------------------------------------
    def register_dagster_run(self, *, run_id: str, workflow_name: str, dagster_run_id: str,
                             params: dict[str, Any] | None = None, partition: Any = None,
                             workflow_ref: str | None = None, job_name: str | None = None,
                             signature: list[Any] | None = None) -> int:
        """Record that ``dagster_run_id`` is (a re-execution of) spine run ``run_id``.

        The run becomes ``running``. Idempotent per Dagster run. Returns the run's attempt count.
        """
        now = utcnow()
        with self._begin() as conn:
            seq = conn.execute(sa.select(sa.func.count()).select_from(dagster_runs)
                               .where(dagster_runs.c.run_id == run_id)).scalar_one()
            known = conn.execute(sa.select(dagster_runs.c.seq).where(
                dagster_runs.c.dagster_run_id == dagster_run_id)).first()
            if known is None:
                conn.execute(self._upsert(
                    dagster_runs, dict(dagster_run_id=dagster_run_id, run_id=run_id, seq=seq + 1,
                                       created_at=now), ["dagster_run_id"], {}))
                seq += 1
            values = dict(run_id=run_id, workflow_name=workflow_name, status="running",
                          params=RawJSON(dumps(params or {}, what="params")),
                          partition=RawJSON(dumps(partition, what="partition")),
                          workflow_ref=workflow_ref, job_name=job_name, attempts=seq,
                          workflow_signature=signature, created_at=now, updated_at=now)
            update: dict[str, Any] = dict(status="running", attempts=seq, updated_at=now,
                                          error_step=None, error=None, error_category=None,
                                          context=None)
            if workflow_ref:
                update["workflow_ref"] = workflow_ref
            if job_name:
                update["job_name"] = job_name
            if signature is not None:
                update["workflow_signature"] = signature
            conn.execute(self._upsert(runs, values, ["run_id"], update))
        return seq

    def set_workflow_ref(self, run_id: str, workflow_ref: str) -> None:
        with self._begin() as conn:
            conn.execute(sa.update(runs).where(runs.c.run_id == run_id)
                         .values(workflow_ref=workflow_ref))

    def start_step(self, run_id: str, step_name: str, dagster_run_id: str) -> int:
        """Count one more attempt of a step; returns the attempt number (1 on the first try)."""
        now = utcnow()
        values = dict(run_id=run_id, step_name=step_name, attempts=1, status="running",
                      dagster_run_id=dagster_run_id, started_at=now, updated_at=now)
        stmt = self._upsert(steps, values, ["run_id", "step_name"],
                            dict(attempts=steps.c.attempts + 1, status="running",
                                 dagster_run_id=dagster_run_id, error=None,
                                 error_category=None, started_at=now, updated_at=now))
        with self._begin() as conn:
            return conn.execute(stmt.returning(steps.c.attempts)).scalar_one()

    def complete_step(self, run_id: str, step_name: str, dagster_run_id: str | None, *,
                      final_status: WorkflowStatus | None = None,
                      final_context: dict[str, Any] | None = None,
                      step_status: str = "completed",
                      step_error: tuple[str, str | None] | None = None) -> None:
        """Mark a step completed without a checkpoint (and maybe finish the run)."""
        now = utcnow()
        with self._begin() as conn:
            self._set_step(conn, run_id, step_name, step_status, dagster_run_id,
                           *(step_error or (None, None)), now)
            if final_status is not None:
                self._finish_run(conn, run_id, final_status, final_context, now)

    def fail_step(self, *, run_id: str, step_name: str, dagster_run_id: str | None, error: str,
                  error_category: str | None, fail_run: bool = True) -> None:
        """Record a step failure; with ``fail_run`` the run becomes ``failed`` at that step."""
        now = utcnow()
        with self._begin() as conn:
            self._set_step(conn, run_id, step_name, "failed", dagster_run_id, error,
                           error_category, now)
            if fail_run:
                conn.execute(sa.update(runs).where(runs.c.run_id == run_id).values(
                    status="failed", error_step=step_name, error=error,
                    error_category=error_category, updated_at=now))

    def mark_run(self, run_id: str, status: WorkflowStatus, *, error: str | None = None,
                 error_step: str | None = None, error_category: str | None = None) -> None:
        values: dict[str, Any] = dict(status=status.value, updated_at=utcnow())
        if error is not None:
            values.update(error=error, error_step=error_step, error_category=error_category)
        with self._begin() as conn:
            conn.execute(sa.update(runs).where(runs.c.run_id == run_id).values(**values))

    def _set_step(self, conn, run_id, step_name, status, dagster_run_id, error, category, now):
        values = dict(run_id=run_id, step_name=step_name, attempts=1, status=status,
                      dagster_run_id=dagster_run_id, error=error, error_category=category,
                      updated_at=now)
        conn.execute(self._upsert(steps, values, ["run_id", "step_name"],
                                  dict(status=status, dagster_run_id=dagster_run_id, error=error,
                                       error_category=category, updated_at=now)))

    def _finish_run(self, conn, run_id, status: WorkflowStatus, context, now) -> None:
        values: dict[str, Any] = dict(status=status.value, updated_at=now)
        if status is WorkflowStatus.COMPLETED:
            values.update(error_step=None, error=None, error_category=None)
        if context is not None:
            values["context"] = context if isinstance(context, RawJSON) else RawJSON(dumps(context))
        conn.execute(sa.update(runs).where(runs.c.run_id == run_id).values(**values))

    def get_run(self, run_id: str) -> RunRecord | None:
        """The run with this spine run id, or that has this Dagster run in its lineage."""
        with self._begin() as conn:
            row = conn.execute(sa.select(runs).where(runs.c.run_id == run_id)).first()
            if row is None:
                owner = conn.execute(sa.select(dagster_runs.c.run_id).where(
                    dagster_runs.c.dagster_run_id == run_id)).first()
                if owner is None:
                    return None
                row = conn.execute(sa.select(runs).where(runs.c.run_id == owner[0])).first()
                if row is None:
                    return None
            lineage = conn.execute(sa.select(dagster_runs.c.dagster_run_id)
                                   .where(dagster_runs.c.run_id == row.run_id)
                                   .order_by(dagster_runs.c.seq)).scalars().all()
        record = self._run(row, list(lineage))
        if record.final_context is None:
            record.latest_checkpoint = self.latest_checkpoint(record.run_id)
        return record

    def list_runs(self, *, status: str | None = None, workflow_name: str | None = None,
                  limit: int = 100) -> list[RunRecord]:
        query = sa.select(runs).order_by(runs.c.created_at.desc()).limit(limit)
        if status:
            query = query.where(runs.c.status == status)
        if workflow_name:
            query = query.where(runs.c.workflow_name == workflow_name)
        with self._begin() as conn:
            rows = conn.execute(query).all()
        return [self._run(r, []) for r in rows]

    def step_rows(self, run_id: str) -> dict[str, StepRow]:
        """The latest attempt of each step of a run, by step name."""
        with self._begin() as conn:
            rows = conn.execute(sa.select(steps).where(steps.c.run_id == run_id)).all()
        return {r.step_name: StepRow(r.step_name, r.attempts, r.status, r.dagster_run_id, r.error,
                                     r.error_category, _aware(r.started_at), _aware(r.updated_at))
                for r in rows}

    # -- leases: one resume of a run at a time ------------------------------------------------
    def acquire_lease(self, run_id: str, owner: str, seconds: float,
                      statuses: Sequence[str]) -> bool:
        """Take the run's lease if it is free (or expired) and its status is one of ``statuses``."""
        now = utcnow()
        free = sa.or_(runs.c.lease_owner.is_(None), runs.c.lease_expires_at < now)
        with self._begin() as conn:
            taken = conn.execute(sa.update(runs).where(
                runs.c.run_id == run_id, runs.c.status.in_(list(statuses)), free).values(
                lease_owner=owner, lease_expires_at=now + timedelta(seconds=seconds))).rowcount
        return taken == 1

    def renew_lease(self, run_id: str, owner: str, seconds: float) -> None:
        with self._begin() as conn:
            conn.execute(sa.update(runs).where(runs.c.run_id == run_id,
                                               runs.c.lease_owner == owner).values(
                lease_expires_at=utcnow() + timedelta(seconds=seconds)))

    def release_lease(self, run_id: str, owner: str) -> None:
        with self._begin() as conn:
            conn.execute(sa.update(runs).where(runs.c.run_id == run_id,
                                               runs.c.lease_owner == owner).values(
                lease_owner=None, lease_expires_at=None))

    def lease_of(self, run_id: str) -> tuple[str | None, datetime | None]:
        with self._begin() as conn:
            row = conn.execute(sa.select(runs.c.lease_owner, runs.c.lease_expires_at)
                               .where(runs.c.run_id == run_id)).first()
        return (row[0], _aware(row[1])) if row else (None, None)

    @staticmethod
    def _run(row: Any, lineage: list[str]) -> RunRecord:
        return RunRecord(
            run_id=row.run_id, workflow_name=row.workflow_name,
            status=WorkflowStatus(row.status), params=row.params or {}, partition=row.partition,
            error_step=row.error_step, error=row.error, error_category=row.error_category,
            workflow_ref=row.workflow_ref, job_name=row.job_name, attempts=row.attempts,
            created_at=_aware(row.created_at), updated_at=_aware(row.updated_at),
            dagster_run_ids=lineage, final_context=row.context,
            workflow_signature=row.workflow_signature)

    def delete_run(self, run_id: str) -> None:
        """Forget a run entirely (its checkpoints, steps, lineage and record)."""
        with self._begin() as conn:
            for table in (checkpoints, steps, dagster_runs, runs):
                conn.execute(sa.delete(table).where(table.c.run_id == run_id))
