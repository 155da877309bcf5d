"""The run side of the checkpoint store: runs, steps, the lineage of Dagster runs, resume leases.

:class:`RunStore` holds the plumbing every query shares (one engine per database, transactions
retried after a lost connection, JSON columns read as text and checked) and the queries on
``core_workflow_runs``, ``core_workflow_steps`` and ``core_workflow_dagster_runs``.
:class:`~spine_dagster.store.CheckpointStore` extends it with the checkpoints; use that.

Example:
    >>> check_run_id("abc-123")
    'abc-123'
    >>> check_run_id("abc\\x00")
    Traceback (most recent call last):
    ...
    spine_dagster.errors.InvalidRunIdError: run id 'abc\\x00' contains a NUL character; ...
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Sequence, TypeVar

import sqlalchemy as sa

from . import db
from .errors import CheckpointCorruptError, InvalidRunIdError
from .records import DamagedRow, Listing, RunRecord, StepRow, stored_column
from .results import WorkflowStatus
from .schema import RUN_ID_LENGTH, dagster_runs, runs, steps
from .serialization import RawJSON, dumps
from .snapshot import utcnow

T = TypeVar("T")
LINEAGE_RETRIES = 5


def aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value


def stored_time(value: Any, where: str, column: str, fix: str) -> datetime | None:
    """A timestamp column as stored; on SQLite an edited one can be any text (read with
    :func:`raw_time`, SQLAlchemy's own parser would raise a bare ``ValueError``)."""
    if value is None or isinstance(value, datetime):
        return aware(value)
    if isinstance(value, str):
        try:
            return aware(datetime.fromisoformat(value))
        except ValueError:
            pass
    raise CheckpointCorruptError(
        f"{where}: {column} is {value!r}, not a timestamp; spine_dagster did not write this, "
        f"the row was edited. {fix}")


def raw_time(column: Any) -> Any:
    """``column`` without SQLAlchemy's datetime parsing, for :func:`stored_time`."""
    return sa.type_coerce(column, sa.String).label(column.name)


def check_run_id(run_id: Any) -> str:
    """``run_id`` if it can name a run: text, 1 to 64 characters, no NUL and no control chars."""
    if not isinstance(run_id, str):
        raise InvalidRunIdError(
            f"run id {run_id!r} is a {type(run_id).__name__}; run ids are text, such as the "
            f"run_id of a WorkflowResult or the id shown by: spine-dagster runs")
    problem = None
    if not run_id:
        problem = "is empty"
    elif len(run_id) > RUN_ID_LENGTH:
        problem = f"is {len(run_id)} characters long; run ids have at most {RUN_ID_LENGTH}"
    elif "\x00" in run_id:
        problem = "contains a NUL character"
    elif any(ord(ch) < 32 for ch in run_id):
        problem = "contains a control character"
    if problem:
        raise InvalidRunIdError(
            f"run id {run_id!r} {problem}; use the run_id of a WorkflowResult, or an id shown "
            f"by: spine-dagster runs")
    return run_id


class RunStore:
    """Runs, steps and lineage in one database; the base of ``CheckpointStore``."""

    url: str
    _ready: bool

    def _tx(self, work: Callable[[sa.Connection], T]) -> T:  # pragma: no cover - overridden
        raise NotImplementedError

    def _begin(self):  # pragma: no cover - overridden
        raise NotImplementedError

    def _read(self, work: Callable[[sa.Connection], T]) -> T:  # pragma: no cover - overridden
        raise NotImplementedError

    def _upsert(self, table, values, keys, update):  # pragma: no cover - overridden
        raise NotImplementedError

    def _json_text(self, column):  # pragma: no cover - overridden
        raise NotImplementedError

    def _prepared(self, key: Any, build: Callable[[str], Any]) -> db.Prepared:  # pragma: no cover
        raise NotImplementedError

    def _write(self, batch: list[tuple[db.Prepared, dict[str, Any]]]) -> Any:  # pragma: no cover
        raise NotImplementedError

    # -- runs -----------------------------------------------------------------------------------
    def register_dagster_run(self, *, run_id: str, workflow_name: str, dagster_run_id: str,
                             params: dict[str, Any] | None = None, partition: Any = None,
                             workflow_ref: str | None = None, job_name: str | None = None,
                             signature: list[Any] | None = None,
                             params_override: dict[str, Any] | None = None) -> int:
        """Record that ``dagster_run_id`` is (a re-execution of) spine run ``run_id``.

        The run becomes ``running``. Idempotent per Dagster run. A new Dagster run takes the next
        position in the lineage (a unique index keeps concurrent re-executions apart).
        ``params_override`` is merged into the run's effective params. Returns the position.
        """
        check_run_id(run_id)
        for attempt in range(LINEAGE_RETRIES):
            try:
                return self._tx(lambda conn: self._register(
                    conn, run_id, workflow_name, dagster_run_id, params, partition, workflow_ref,
                    job_name, signature, params_override))
            except sa.exc.IntegrityError:
                if attempt == LINEAGE_RETRIES - 1:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _register(self, conn, run_id, workflow_name, dagster_run_id, params, partition,
                  workflow_ref, job_name, signature, params_override) -> int:
        now = utcnow()
        known = conn.execute(sa.select(dagster_runs.c.seq).where(
            dagster_runs.c.dagster_run_id == dagster_run_id)).first()
        if known is None:
            seq = conn.execute(sa.select(sa.func.coalesce(sa.func.max(dagster_runs.c.seq), 0))
                               .where(dagster_runs.c.run_id == run_id)).scalar_one() + 1
            conn.execute(sa.insert(dagster_runs).values(
                dagster_run_id=dagster_run_id, run_id=run_id, seq=seq, created_at=now,
                params_override=RawJSON(dumps(params_override, what="params_override"))
                if params_override else None))
        else:
            seq = known[0]
        existing = conn.execute(sa.select(self._json_text(runs.c.params))
                                .where(runs.c.run_id == run_id)).first()
        values = dict(run_id=run_id, workflow_name=workflow_name, status="running",
                      params=RawJSON(dumps(params or {}, what="params")),
                      original_params=RawJSON(dumps(params or {}, what="params")),
                      partition=RawJSON(dumps(partition, what="partition")),
                      workflow_ref=workflow_ref, job_name=job_name, attempts=seq,
                      workflow_signature=signature, created_at=now, updated_at=now)
        update: dict[str, Any] = dict(status="running", attempts=seq, updated_at=now,
                                      error_step=None, error=None, error_category=None,
                                      context=sa.null())  # SQL NULL; None would be JSON null
        if existing is not None and params_override:
            current = stored_column(existing[0], f"the record of run {run_id!r} in "
                                                 f"core_workflow_runs", "params", dict) or {}
            merged = {**current, **params_override}
            update["params"] = RawJSON(dumps(merged, what="params"))
        if workflow_ref:
            update["workflow_ref"] = workflow_ref
        if job_name:
            update["job_name"] = job_name
        if signature is not None:
            update["workflow_signature"] = signature
        conn.execute(self._upsert(runs, values, ["run_id"], update))
        return seq

    def lineage(self, run_id: str) -> list[tuple[str, int, dict[str, Any]]]:
        """(Dagster run id, position, params override) of each Dagster run of a run, in order."""
        check_run_id(run_id)
        c = dagster_runs.c
        query = (sa.select(c.dagster_run_id, c.seq,
                           self._json_text(c.params_override).label("override"))
                 .where(c.run_id == run_id).order_by(c.seq))
        rows = self._read(lambda conn: conn.execute(query).all())
        result = []
        for row in rows:
            override = stored_column(row.override, f"the lineage of run {run_id!r} in "
                                                   f"core_workflow_dagster_runs",
                                     "params_override", dict) or {}
            result.append((row.dagster_run_id, row.seq, override))
        return result

    def set_workflow_ref(self, run_id: str, workflow_ref: str) -> None:
        self._tx(lambda conn: conn.execute(sa.update(runs).where(runs.c.run_id == run_id)
                                           .values(workflow_ref=workflow_ref)))

    def start_step(self, run_id: str, step_name: str, dagster_run_id: str, *,
                   supersede_from: int | None = None, keep_items: bool = False) -> int:
        """Count one more attempt of a step; returns the attempt number (1 on the first try).

        ``supersede_from``: the step runs again at that position, so the checkpoints from there
        on are superseded in the same transaction (see ``CheckpointStore.supersede``).
        """
        check_run_id(run_id)
        if supersede_from is None:
            return self._write([self._step_started(run_id, step_name, dagster_run_id,
                                                   utcnow())])[0][0]

        def work(conn: sa.Connection) -> int:
            self.supersede(conn, run_id, supersede_from, keep_items=keep_items)
            return self._execute(conn, self._step_started(run_id, step_name, dagster_run_id,
                                                      utcnow())).scalar_one()

        return self._tx(work)

    def supersede(self, conn: sa.Connection, run_id: str, from_index: int, *,
                  keep_items: bool = False) -> int:  # pragma: no cover - overridden
        raise NotImplementedError

    def complete_step(self, run_id: str, step_name: str, dagster_run_id: str | None, *,
                      final_status: WorkflowStatus | None = None,
                      final_context: dict[str, Any] | None = None,
                      step_status: str = "completed",
                      step_error: tuple[str, str | None] | None = None,
                      next_step: str | None = None) -> int | None:
        """Mark a step completed without a checkpoint (and maybe start the next, or end the run).

        Returns the next step's attempt number with ``next_step``."""
        check_run_id(run_id)
        now = utcnow()
        batch = [self._step_done(run_id, step_name, step_status, dagster_run_id,
                                 *(step_error or (None, None)), now)]
        return self._finish_batch(batch, run_id, dagster_run_id, now, final_status,
                                  final_context, next_step)

    def _finish_batch(self, batch: list[tuple[db.Prepared, dict[str, Any]]], run_id: str,
                      dagster_run_id: str | None, now: datetime,
                      final_status: WorkflowStatus | None, final_context: Any,
                      next_step: str | None) -> int | None:
        """Add the run's end and the next step's start to ``batch``, write it in one
        transaction; returns the next step's attempt number (None without ``next_step``)."""
        if final_status is not None:
            final = (final_context if final_context is None or isinstance(final_context, RawJSON)
                     else RawJSON(dumps(final_context)))
            batch.append(self._run_finished(run_id, final_status, final, now))
        if next_step is not None:  # last: its RETURNING is the batch's result
            batch.append(self._step_started(run_id, next_step, dagster_run_id, now))
        rows = self._write(batch)
        return rows[0][0] if next_step is not None else None

    def fail_step(self, *, run_id: str, step_name: str, dagster_run_id: str | None, error: str,
                  error_category: str | None, fail_run: bool = True) -> None:
        """Record a step failure; with ``fail_run`` the run becomes ``failed`` at that step."""
        def work(conn: sa.Connection) -> None:
            now = utcnow()
            self._execute(conn, self._step_done(run_id, step_name, "failed", dagster_run_id,
                                                error, error_category, now))
            if fail_run:
                conn.execute(sa.update(runs).where(runs.c.run_id == run_id).values(
                    status="failed", error_step=step_name, error=error,
                    error_category=error_category, updated_at=now))

        self._tx(work)

    def mark_run(self, run_id: str, status: WorkflowStatus, *, error: str | None = None,
                 error_step: str | None = None, error_category: str | None = None) -> None:
        values: dict[str, Any] = dict(status=status.value, updated_at=utcnow())
        if error is not None:
            values.update(error=error, error_step=error_step, error_category=error_category)
        self._tx(lambda conn: conn.execute(
            sa.update(runs).where(runs.c.run_id == run_id).values(**values)))

    # -- the per-step statements: compiled once per dialect (see db.Prepared) ------------------------
    def _step_started(self, run_id: str, step_name: str, dagster_run_id: str | None,
                      now: datetime) -> tuple[db.Prepared, dict[str, Any]]:
        """Count one more attempt of a step (``RETURNING attempts``)."""
        return self._prepared("step_started", _step_started_statement), dict(
            s_run_id=run_id, s_step_name=step_name, s_dagster_run_id=dagster_run_id, s_now=now)

    def _step_done(self, run_id: str, step_name: str, status: str, dagster_run_id: str | None,
                   error: str | None, category: str | None,
                   now: datetime) -> tuple[db.Prepared, dict[str, Any]]:
        """A step's outcome on its row (created if the step never started)."""
        return self._prepared("step_done", _step_done_statement), dict(
            d_run_id=run_id, d_step_name=step_name, d_status=status,
            d_dagster_run_id=dagster_run_id, d_error=error, d_error_category=category, d_now=now)

    def _run_finished(self, run_id: str, status: WorkflowStatus, context: RawJSON | None,
                      now: datetime) -> tuple[db.Prepared, dict[str, Any]]:
        """The run's final status (and final context)."""
        completed = status is WorkflowStatus.COMPLETED
        key = ("run_finished", completed, context is not None)
        return (self._prepared(key, lambda dialect: _run_finished_statement(
                    completed, context is not None)),
                dict(f_run_id=run_id, f_status=status.value, f_context=context, f_now=now))

    def _execute(self, conn: sa.Connection, statement: tuple[db.Prepared, dict[str, Any]]):
        """Execute a prepared statement in an SQLAlchemy transaction."""
        prepared, values = statement
        return conn.exec_driver_sql(prepared.sql, prepared.params(values))

    def _run_query(self) -> sa.Select:
        c = runs.c
        return sa.select(c.run_id, c.workflow_name, c.status, c.error_step, c.error,
                         c.error_category, c.workflow_ref, c.job_name, c.attempts,
                         raw_time(c.created_at), raw_time(c.updated_at),
                         self._json_text(c.params).label("params"),
                         self._json_text(c.original_params).label("original_params"),
                         self._json_text(c.partition).label("partition"),
                         self._json_text(c.context).label("context"),
                         self._json_text(c.workflow_signature).label("signature"))

    def find_run_id(self, conn: sa.Connection, run_id: str) -> str | None:
        """The spine run id of ``run_id``: itself, or the spine run of that Dagster run."""
        if conn.execute(sa.select(runs.c.run_id).where(runs.c.run_id == run_id)).first():
            return run_id
        owner = conn.execute(sa.select(dagster_runs.c.run_id).where(
            dagster_runs.c.dagster_run_id == run_id)).first()
        return owner[0] if owner else None

    def resolve_run_id(self, run_id: str) -> str | None:
        """The spine run id that ``run_id`` (a spine or Dagster run id) names, reading nothing
        else of the run (so it works when the run's rows are damaged)."""
        check_run_id(run_id)
        with self._begin() as conn:
            return self.find_run_id(conn, run_id)

    def owner_of(self, dagster_run_id: str) -> str | None:
        """The spine run whose lineage holds this Dagster run, if any."""
        with self._begin() as conn:
            owner = conn.execute(sa.select(dagster_runs.c.run_id).where(
                dagster_runs.c.dagster_run_id == dagster_run_id)).first()
        return owner[0] if owner else None

    def list_runs(self, *, status: str | None = None, workflow_name: str | None = None,
                  limit: int = 100, skip_damaged: bool = False) -> Listing[RunRecord]:
        """The newest ``limit`` runs, newest first.

        A run record that was edited into something spine_dagster never writes (an unknown
        status, a column that is not a timestamp) raises ``CheckpointCorruptError`` naming
        every such run; with ``skip_damaged=True`` the readable runs are returned, and the
        damaged ones are in ``.damaged`` (what ``spine-dagster runs`` shows).
        """
        query = self._run_query().order_by(runs.c.created_at.desc()).limit(limit)
        if status:
            query = query.where(runs.c.status == status)
        if workflow_name:
            query = query.where(runs.c.workflow_name == workflow_name)
        rows = self._read(lambda conn: conn.execute(query).all())
        listing: Listing[RunRecord] = Listing()
        for row in rows:
            try:
                listing.append(run_record(RunRecord, row, []))
            except CheckpointCorruptError as exc:
                listing.damaged.append(DamagedRow(row.run_id, None, exc))
        return listing if skip_damaged else listing.strict("core_workflow_runs")

    def step_rows(self, run_id: str) -> dict[str, StepRow]:
        """The latest attempt of each step of a run, by step name."""
        check_run_id(run_id)
        query = sa.select(steps).where(steps.c.run_id == run_id)
        rows = self._read(lambda conn: conn.execute(query).all())
        return {r.step_name: StepRow(r.step_name, r.attempts, r.status, r.dagster_run_id, r.error,
                                     r.error_category, aware(r.started_at), aware(r.updated_at))
                for r in rows}

    # -- leases: one resume of a run at a time ------------------------------------------------
    def acquire_lease(self, run_id: str, owner: str, seconds: float,
                      statuses: Sequence[str]) -> bool:
        """Take the run's lease if it is free (or expired) and its status is one of ``statuses``."""
        def work(conn: sa.Connection) -> bool:
            now = utcnow()
            free = sa.or_(runs.c.lease_owner.is_(None), runs.c.lease_expires_at < now)
            return conn.execute(sa.update(runs).where(
                runs.c.run_id == run_id, runs.c.status.in_(list(statuses)), free).values(
                lease_owner=owner, lease_expires_at=now + timedelta(seconds=seconds))).rowcount == 1

        return self._tx(work)

    def renew_lease(self, run_id: str, owner: str, seconds: float) -> None:
        self._tx(lambda conn: conn.execute(sa.update(runs).where(
            runs.c.run_id == run_id, runs.c.lease_owner == owner).values(
            lease_expires_at=utcnow() + timedelta(seconds=seconds))))

    def release_lease(self, run_id: str, owner: str) -> None:
        self._tx(lambda conn: conn.execute(sa.update(runs).where(
            runs.c.run_id == run_id, runs.c.lease_owner == owner).values(
            lease_owner=None, lease_expires_at=None)))

    def lease_of(self, run_id: str) -> tuple[str | None, datetime | None]:
        query = sa.select(runs.c.lease_owner, runs.c.lease_expires_at).where(
            runs.c.run_id == run_id)
        row = self._read(lambda conn: conn.execute(query).first())
        return (row[0], aware(row[1])) if row else (None, None)

    def delete_run(self, run_id: str) -> None:
        """Forget a run entirely (its checkpoints, steps, lineage and record)."""
        from .schema import checkpoints  # noqa: PLC0415

        def work(conn: sa.Connection) -> None:
            for table in (checkpoints, steps, dagster_runs, runs):
                conn.execute(sa.delete(table).where(table.c.run_id == run_id))

        self._tx(work)


def run_record(cls: type, row: Any, lineage: list[str]) -> Any:
    """A ``RunRecord`` from a row of :meth:`RunStore._run_query` (JSON decoded on use)."""
    try:
        status = WorkflowStatus(row.status)
    except ValueError:
        raise CheckpointCorruptError(
            f"the record of run {row.run_id!r} in core_workflow_runs: status {row.status!r} is "
            f"not one of {[s.value for s in WorkflowStatus]}; spine_dagster did not write this, "
            f"the row was edited. Set the status back (failed, to resume the run).") from None
    where = f"the record of run {row.run_id!r} in core_workflow_runs"
    fix = "Set it back to a time (e.g. the run's first checkpoint's created_at)."
    created_at = stored_time(row.created_at, where, "created_at", fix)
    updated_at = stored_time(row.updated_at, where, "updated_at", fix)
    return cls(
        run_id=row.run_id, workflow_name=row.workflow_name, status=status,
        error_step=row.error_step, error=row.error, error_category=row.error_category,
        workflow_ref=row.workflow_ref, job_name=row.job_name, attempts=row.attempts,
        created_at=created_at, updated_at=updated_at, dagster_run_ids=lineage,
        raw_params=row.params, raw_original_params=row.original_params,
        raw_partition=row.partition, raw_context=row.context, raw_signature=row.signature)


def _step_started_statement(dialect: str) -> Any:
    now = sa.bindparam("s_now", type_=steps.c.started_at.type)
    values = dict(run_id=sa.bindparam("s_run_id"), step_name=sa.bindparam("s_step_name"),
                  attempts=1, status="running", dagster_run_id=sa.bindparam("s_dagster_run_id"),
                  started_at=now, updated_at=now)
    return db.upsert(dialect, steps, values, ["run_id", "step_name"], dict(
        attempts=steps.c.attempts + 1, status=values["status"],
        dagster_run_id=values["dagster_run_id"], error=None, error_category=None, started_at=now,
        updated_at=now)).returning(steps.c.attempts)


def _step_done_statement(dialect: str) -> Any:
    now = sa.bindparam("d_now", type_=steps.c.updated_at.type)
    values = dict(run_id=sa.bindparam("d_run_id"), step_name=sa.bindparam("d_step_name"),
                  attempts=1, status=sa.bindparam("d_status"),
                  dagster_run_id=sa.bindparam("d_dagster_run_id"), error=sa.bindparam("d_error"),
                  error_category=sa.bindparam("d_error_category"), started_at=now,
                  updated_at=now)
    return db.upsert(dialect, steps, values, ["run_id", "step_name"], {
        k: values[k] for k in ("status", "dagster_run_id", "error", "error_category",
                               "updated_at")})


def _run_finished_statement(completed: bool, with_context: bool) -> Any:
    values: dict[str, Any] = dict(status=sa.bindparam("f_status"),
                                  updated_at=sa.bindparam("f_now", type_=runs.c.updated_at.type))
    if completed:
        values.update(error_step=None, error=None, error_category=None)
    if with_context:
        values["context"] = sa.bindparam("f_context", type_=runs.c.context.type)
    return sa.update(runs).where(runs.c.run_id == sa.bindparam("f_run_id")).values(**values)
