"""The checkpoint store: every query, written once, for SQLite and PostgreSQL.

``CheckpointStore.for_url(url)`` is the store of a database (one per database per process); it is
a plain class, usable without Dagster. The backends differ only in the engine set-up
(:mod:`spine_dagster.db`) and in the dialect's upsert. Every row read back is checked
(:mod:`spine_dagster.snapshot`): a damaged one raises ``CheckpointCorruptError`` naming the run
and the step, never a raw ``TypeError`` or ``JSONDecodeError``. Run state (runs, steps, lineage,
leases) is :class:`~spine_dagster.store_runs.RunStore`'s, which this class extends.

Example:
    >>> import tempfile, os
    >>> from spine_dagster import CheckpointStore
    >>> store = CheckpointStore.for_url(f"sqlite:///{tempfile.mkdtemp()}/docs.db")
    >>> store.list_checkpoints("no-such-run")
    []
"""

from __future__ import annotations

import threading
from datetime import datetime, timezone
from typing import Any, Callable, Sequence

import sqlalchemy as sa

from . import db
from .dburl import reference, resolve_url
from .errors import CheckpointCorruptError, InvalidSettingError
from .records import (REJECTED, STATES, SUPERSEDED, VALID, Checkpoint, CheckpointInfo,
                      DamagedRow, Listing, RunRecord, checked_state)
from .results import WorkflowStatus
from .schema import checkpoints, dagster_runs, runs, steps, transit
from .serialization import RawJSON, dumps, loads
from .snapshot import build_snapshot, context_of, utcnow  # noqa: F401 - re-exported
from .snapshot import check_outputs_kept, checkpoint_where, repair_hint
from .store_runs import RunStore, aware, check_run_id, raw_time, run_record, stored_time

_stores: dict[str, CheckpointStore] = {}  # one per database, never per run
_stores_lock = threading.Lock()


class CheckpointStore(RunStore):
    """Reads and writes checkpoints and run records in one SQL database.

    Args:
        url: a SQLAlchemy URL: ``sqlite:///path.db`` or ``postgresql+psycopg2://user@host/db``
            (checked now: a malformed URL or another database raises
            ``InvalidDatabaseUrlError``).
    """

    def __init__(self, url: str | None) -> None:
        self.url = resolve_url(url)
        self.reference = reference(self.url)  # registers a password for this process
        self._ready = False
        self._statements: dict[Any, db.Prepared] = {}  # the hot path's, by key

    @classmethod
    def for_url(cls, url: str | None = None) -> CheckpointStore:
        """The store of ``url`` (default: ``$SPINE_DAGSTER_DATABASE_URL``, else embedded SQLite).

        One store per database per process, shared by every run.
        """
        resolved = resolve_url(url)
        store = _stores.get(resolved)
        if store is None:
            with _stores_lock:
                store = _stores.setdefault(resolved, cls(resolved))
        return store

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

    def _tx(self, work):
        """``work(conn)`` in one transaction, retried after a lost connection."""
        if not self._ready:
            db.ensure_schema(self.url)
            self._ready = True
        return db.transaction(self.url, work)

    _read = _tx
    """A read, retried like a write after a lost connection: a server restarted a moment ago
    (its pooled connections dead) or down for less than ``db.RETRY_DELAYS`` is no error."""

    def _prepared(self, key: Any, build: Callable[[str], Any]) -> db.Prepared:
        statement = self._statements.get(key)
        if statement is None:
            statement = self._statements[key] = db.prepared(self.engine.dialect, key, build)
        return statement

    def _write(self, batch: list[tuple[db.Prepared, dict[str, Any]]]) -> Any:
        """``batch`` in one transaction, the hot path (see ``db.write``)."""
        if not self._ready:
            db.ensure_schema(self.url)
            self._ready = True
        return db.write(self.url, batch)

    def check(self) -> None:
        """Connect, and create or check the schema: a clear error when the database is down."""
        self._read(lambda conn: None)

    def _upsert(self, table: sa.Table, values: dict[str, Any], keys: Sequence[str],
                update: dict[str, Any]):
        return db.upsert(self.engine.dialect.name, table, values, keys, update)

    def _json_text(self, column: sa.ColumnElement) -> sa.ColumnElement:
        """A JSON column read as its text, so that *we* parse (and check) it."""
        if self.is_server:
            return sa.cast(column, sa.Text)
        return sa.type_coerce(column, sa.Text)

    # -- checkpoints ----------------------------------------------------------------------------
    def save_checkpoint(self, *, run_id: str, workflow_name: str, step_name: str, step_index: int,
                        dagster_run_id: str | None, snapshot: dict[str, Any] | RawJSON,
                        final_status: WorkflowStatus | None = None,
                        final_context: dict[str, Any] | RawJSON | None = None,
                        step_status: str | None = "completed",
                        step_error: tuple[str, str | None] | None = None,
                        item_index: int | None = None, state: str = VALID) -> int:
        """Upsert one checkpoint and the step's row (and maybe finish the run), in one transaction.

        ``step_status=None`` leaves the step row alone (a map item's checkpoint). Returns the size
        of the stored snapshot in bytes.
        """
        return self.record_checkpoint(
            run_id=run_id, workflow_name=workflow_name, step_name=step_name,
            step_index=step_index, dagster_run_id=dagster_run_id, snapshot=snapshot,
            final_status=final_status, final_context=final_context, step_status=step_status,
            step_error=step_error, item_index=item_index, state=state)[0]

    def record_checkpoint(self, *, run_id: str, workflow_name: str, step_name: str,
                          step_index: int, dagster_run_id: str | None,
                          snapshot: dict[str, Any] | RawJSON,
                          final_status: WorkflowStatus | None = None,
                          final_context: dict[str, Any] | RawJSON | None = None,
                          step_status: str | None = "completed",
                          step_error: tuple[str, str | None] | None = None,
                          item_index: int | None = None, state: str = VALID,
                          next_step: str | None = None) -> tuple[int, int | None]:
        """``save_checkpoint``, and with ``next_step`` also count that step's start in the same
        transaction (a fused op's next step): one transaction per step. Returns the size and the
        next step's attempt number (None without ``next_step``)."""
        check_run_id(run_id)
        text = snapshot if isinstance(snapshot, RawJSON) else RawJSON(dumps(snapshot))
        size = len(text.encode("utf-8"))
        now = utcnow()
        batch = [(self._prepared("checkpoint", _checkpoint_statement), dict(
            c_run_id=run_id, c_step_name=step_name, c_context_snapshot=text, c_created_at=now,
            c_workflow_name=workflow_name, c_step_index=step_index,
            c_dagster_run_id=dagster_run_id, c_size_bytes=size, c_state=state,
            c_superseded_at=None, c_item_index=item_index))]
        if step_status is not None:
            batch.append(self._step_done(run_id, step_name, step_status, dagster_run_id,
                                         *(step_error or (None, None)), now))
        return size, self._finish_batch(batch, run_id, dagster_run_id, now, final_status,
                                        final_context, next_step)

    def _select_checkpoints(self) -> sa.Select:
        c = checkpoints.c
        return sa.select(c.run_id, c.step_name, c.workflow_name, c.step_index, c.dagster_run_id,
                         c.size_bytes, raw_time(c.created_at), c.state,
                         raw_time(c.superseded_at), c.item_index,
                         self._json_text(c.context_snapshot).label("snapshot"))

    @staticmethod
    def _checkpoint(row: Any) -> Checkpoint:
        return Checkpoint.from_text(
            row.snapshot, run_id=row.run_id, step_name=row.step_name,
            workflow_name=row.workflow_name,
            created_at=_checkpoint_time(row.created_at, row.run_id, row.step_name, "created_at"),
            step_index=row.step_index, dagster_run_id=row.dagster_run_id,
            size_bytes=row.size_bytes, state=row.state,
            superseded_at=_checkpoint_time(row.superseded_at, row.run_id, row.step_name,
                                           "superseded_at"),
            item_index=row.item_index)

    def get_checkpoint(self, run_id: str, step_name: str, *,
                       usable_only: bool = False) -> Checkpoint | None:
        """The checkpoint of ``step_name`` (with ``usable_only``, only a valid one)."""
        check_run_id(run_id)
        query = self._select_checkpoints().where(checkpoints.c.run_id == run_id,
                                                 checkpoints.c.step_name == step_name)
        if usable_only:
            query = query.where(checkpoints.c.state == VALID)
        row, lineage = self._read(lambda conn: self._with_lineage(conn, run_id, query, "first"))
        return self._checked(row, lineage) if row else None

    def raw_checkpoint(self, run_id: str, step_name: str) -> str | None:
        """The stored text of a checkpoint, unchecked (for an operator to inspect or repair)."""
        check_run_id(run_id)
        query = sa.select(self._json_text(checkpoints.c.context_snapshot)).where(
            checkpoints.c.run_id == run_id, checkpoints.c.step_name == step_name)
        row = self._read(lambda conn: conn.execute(query).first())
        return row[0] if row else None

    def list_checkpoints(self, run_id: str, *, items: bool = False,
                         skip_damaged: bool = False) -> Listing[Checkpoint]:
        """The checkpoints of a run in workflow order, superseded and rejected ones included
        (see ``Checkpoint.state``); a map's per-item rows only with ``items=True``.

        A damaged row raises ``CheckpointCorruptError`` naming every damaged one; with
        ``skip_damaged=True`` the readable ones are returned, the damaged ones in ``.damaged``.
        """
        check_run_id(run_id)
        query = self._select_checkpoints().where(checkpoints.c.run_id == run_id)
        if not items:
            query = query.where(checkpoints.c.item_index.is_(None))
        query = query.order_by(checkpoints.c.step_index, checkpoints.c.item_index.is_not(None),
                               checkpoints.c.item_index, checkpoints.c.id)
        rows, lineage = self._read(lambda conn: self._with_lineage(conn, run_id, query, "all"))
        listing: Listing[Checkpoint] = Listing()
        for row in rows:
            try:
                listing.append(self._checked(row, lineage))
            except CheckpointCorruptError as exc:
                listing.damaged.append(DamagedRow(row.run_id, row.step_name, exc))
        return listing if skip_damaged else listing.strict(f"the checkpoints of run {run_id!r}")

    def checkpoint_index(self, run_id: str) -> list[CheckpointInfo]:
        """Every checkpoint row of a run (items included), without the snapshots."""
        check_run_id(run_id)
        c = checkpoints.c
        query = (sa.select(c.step_name, c.step_index, raw_time(c.created_at), c.state,
                           c.item_index, c.dagster_run_id, c.size_bytes)
                 .where(c.run_id == run_id).order_by(c.step_index, c.item_index, c.id))
        rows = self._read(lambda conn: conn.execute(query).all())
        return [CheckpointInfo(
            r.step_name, r.step_index,
            _checkpoint_time(r.created_at, run_id, r.step_name, "created_at"),
            checked_state(r.state, run_id=run_id, step_name=r.step_name),
            r.item_index, r.dagster_run_id, r.size_bytes) for r in rows]

    def list_checkpoint_steps(self, run_id: str) -> list[tuple[str, int, datetime]]:
        """(step_name, step_index, created_at) of each usable step checkpoint."""
        return [(i.step_name, i.step_index, i.created_at) for i in self.checkpoint_index(run_id)
                if i.usable and i.item_index is None]

    def item_checkpoints(self, run_id: str, map_step: str, step_index: int) -> dict[int, Checkpoint]:
        """The usable checkpoints of a map step's items, by item index."""
        check_run_id(run_id)
        c = checkpoints.c
        query = self._select_checkpoints().where(
            c.run_id == run_id, c.step_index == step_index, c.item_index.is_not(None),
            c.state == VALID, c.step_name.like(f"{_like_escape(map_step)}[%", escape="\\"))
        rows = self._read(lambda conn: conn.execute(query).all())
        return {r.item_index: self._checkpoint(r) for r in rows}

    def latest_checkpoint(self, run_id: str) -> Checkpoint | None:
        """The newest usable step checkpoint: the state a resume continues from."""
        check_run_id(run_id)
        c = checkpoints.c
        query = (self._select_checkpoints()
                 .where(c.run_id == run_id, c.state == VALID, c.item_index.is_(None))
                 .order_by(c.step_index.desc(), c.created_at.desc()).limit(1))
        row, lineage = self._read(lambda conn: self._with_lineage(conn, run_id, query, "first"))
        return self._checked(row, lineage) if row else None

    def _with_lineage(self, conn: sa.Connection, run_id: str, query: sa.Select,
                      fetch: str) -> tuple[Any, list[tuple[str, int, str | None]]]:
        """The rows of ``query``, and (read first, in the same transaction) the run's valid step
        checkpoints with their steps' status, which :meth:`_checked` checks them against.

        Read in this order, a checkpoint that ``query`` finds valid was valid when the lineage
        was read: a step that ran again since would have superseded it first."""
        c = checkpoints.c
        lineage = conn.execute(
            sa.select(c.step_name, c.step_index, steps.c.status)
            .select_from(checkpoints.outerjoin(steps, sa.and_(steps.c.run_id == c.run_id,
                                                              steps.c.step_name == c.step_name)))
            .where(c.run_id == run_id, c.state == VALID, c.item_index.is_(None))).all()
        result = conn.execute(query)
        return (result.first() if fetch == "first" else result.all()), [tuple(r) for r in lineage]

    def _checked(self, row: Any, lineage: list[tuple[str, int, str | None]]) -> Checkpoint:
        """The checkpoint of ``row``; a valid step checkpoint must hold the output of every step
        before it with a valid checkpoint (``snapshot.check_outputs_kept``)."""
        checkpoint = self._checkpoint(row)
        if checkpoint.usable and checkpoint.item_index is None:
            check_outputs_kept(checkpoint.context_snapshot, run_id=checkpoint.run_id,
                               step_name=checkpoint.step_name, step_index=checkpoint.step_index,
                               earlier=lineage)
        return checkpoint

    def supersede(self, conn: sa.Connection, run_id: str, from_index: int, *,
                  keep_items: bool = False) -> int:
        """Mark the checkpoints at or after ``from_index`` superseded (a step there runs again).

        ``keep_items`` spares the item rows of the step at ``from_index`` (a map that runs again
        reuses the items that did not change; it checks them itself).
        """
        c = checkpoints.c
        later = c.step_index > from_index
        same = c.step_index == from_index
        if keep_items:
            same = sa.and_(same, c.item_index.is_(None))
        return conn.execute(sa.update(checkpoints).where(
            c.run_id == run_id, c.state == VALID, sa.or_(later, same))
            .values(state=SUPERSEDED, superseded_at=utcnow())).rowcount

    def supersede_items(self, run_id: str, map_step: str, step_index: int,
                        item_indexes: Sequence[int]) -> None:
        """Mark some items of a map superseded (they ran with another item, or other params)."""
        if not item_indexes:
            return
        c = checkpoints.c

        def work(conn: sa.Connection) -> None:
            conn.execute(sa.update(checkpoints).where(
                c.run_id == run_id, c.step_index == step_index, c.state == VALID,
                c.item_index.in_(list(item_indexes)),
                c.step_name.like(f"{_like_escape(map_step)}[%", escape="\\"))
                .values(state=SUPERSEDED, superseded_at=utcnow()))

        self._tx(work)

    def count_checkpoints(self, run_id: str) -> int:
        """How many checkpoint rows the run has, in any state (nothing is decoded)."""
        check_run_id(run_id)
        return self._read(lambda conn: conn.execute(
            sa.select(sa.func.count()).select_from(checkpoints)
            .where(checkpoints.c.run_id == run_id)).scalar_one())

    def delete_checkpoints(self, run_id: str) -> int:
        """Delete every checkpoint row of a run (nothing is decoded: damaged rows go too)."""
        check_run_id(run_id)
        return self._tx(lambda conn: conn.execute(
            sa.delete(checkpoints).where(checkpoints.c.run_id == run_id)).rowcount)

    def cleanup(self, older_than: datetime, *, batch_size: int = 1000,
                dry_run: bool = False) -> int:
        """Delete the checkpoints written before ``older_than``; returns how many (would) go.

        Kept: every checkpoint of a run that is ``running`` or being resumed (its lease is held),
        and those of runs that failed at or after ``older_than`` (they may still be resumed).
        Rows go in batches of ``batch_size``, each in its own short transaction (select a batch of
        ids, delete them, commit), so concurrent checkpoint writes wait at most one batch.
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise InvalidSettingError(f"batch_size must be at least 1, got {batch_size!r}")
        cutoff = (aware(older_than) or utcnow()).astimezone(timezone.utc)
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

    # -- runs -----------------------------------------------------------------------------------
    def get_run(self, run_id: str) -> RunRecord | None:
        """The run with this spine run id, or that has this Dagster run in its lineage."""
        check_run_id(run_id)

        def work(conn: sa.Connection) -> tuple[Any, list[str]] | None:
            spine_id = self.find_run_id(conn, run_id)
            if spine_id is None:
                return None
            row = conn.execute(self._run_query().where(runs.c.run_id == spine_id)).first()
            if row is None:
                return None
            c = checkpoints.c
            edited = conn.execute(sa.select(c.step_name, c.state).where(
                c.run_id == spine_id, c.state.not_in(STATES)).limit(1)).first()
            if edited is not None:  # an unknown state would hide the row from the resume rules
                checked_state(edited.state, run_id=spine_id, step_name=edited.step_name)
            return row, list(conn.execute(sa.select(dagster_runs.c.dagster_run_id)
                                          .where(dagster_runs.c.run_id == spine_id)
                                          .order_by(dagster_runs.c.seq)).scalars().all())

        found = self._read(work)
        if found is None:
            return None
        row, lineage = found
        record = run_record(RunRecord, row, lineage).check(context=False)
        if record.raw_context in (None, "null"):  # "null": cleared by an older version
            record.latest_checkpoint = self.latest_checkpoint(record.run_id)
        return record

    def stored_status(self, run_id: str) -> tuple[str, str] | None:
        """(spine run id, the status column as stored) of the run with this id, or that has this
        Dagster run in its lineage; None when there is none. Nothing else of the run is read or
        decoded: the delete commands use it, so that a run whose stored rows are damaged can
        still be deleted, as the corruption errors advise."""
        check_run_id(run_id)

        def work(conn: sa.Connection) -> tuple[str, str] | None:
            spine_id = self.find_run_id(conn, run_id)
            status = None if spine_id is None else conn.execute(
                sa.select(runs.c.status).where(runs.c.run_id == spine_id)).scalar()
            return None if status is None else (spine_id, str(status))

        return self._read(work)

    # -- transit (outputs that are not checkpoints) --------------------------------------------
    def put_transit(self, dagster_run_id: str, step_name: str, snapshot: RawJSON) -> None:
        def work(conn: sa.Connection) -> None:
            now = utcnow()
            values = dict(dagster_run_id=dagster_run_id, step_name=step_name,
                          context_snapshot=snapshot, created_at=now)
            conn.execute(self._upsert(transit, values, ["dagster_run_id", "step_name"],
                                      {"context_snapshot": snapshot, "created_at": now}))

        self._tx(work)

    def get_transit(self, dagster_run_id: str, step_name: str) -> dict[str, Any] | None:
        query = sa.select(self._json_text(transit.c.context_snapshot)).where(
            transit.c.dagster_run_id == dagster_run_id, transit.c.step_name == step_name)
        row = self._read(lambda conn: conn.execute(query).first())
        if row is None:
            return None
        value = loads(row[0], where=f"the context of step {step_name!r} in transit for Dagster "
                                    f"run {dagster_run_id}")
        return value if isinstance(value, dict) else None

    def delete_transit(self, dagster_run_id: str) -> None:
        self._tx(lambda conn: conn.execute(
            sa.delete(transit).where(transit.c.dagster_run_id == dagster_run_id)))


_CHECKPOINT_COLUMNS = ("run_id", "step_name", "context_snapshot", "created_at", "workflow_name",
                       "step_index", "dagster_run_id", "size_bytes", "state", "superseded_at",
                       "item_index")


def _checkpoint_statement(dialect: str) -> Any:
    """The checkpoint upsert (``unique_run_step``), with every column a bound parameter."""
    values = {name: sa.bindparam(f"c_{name}", type_=checkpoints.c[name].type)
              for name in _CHECKPOINT_COLUMNS}
    return db.upsert(dialect, checkpoints, values, ["run_id", "step_name"],
                     {name: values[name] for name in _CHECKPOINT_COLUMNS[2:]}).inline()


def _checkpoint_time(value: Any, run_id: str, step_name: str, column: str) -> Any:
    """A timestamp of a checkpoint row, read with ``raw_time``: an edited one is
    ``CheckpointCorruptError`` (never a bare ``ValueError``), with the same fix in every reader."""
    return stored_time(value, checkpoint_where(run_id, step_name), column,
                       f"Set it back to a time. {repair_hint(run_id, step_name)}")


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


__all__ = ["REJECTED", "SUPERSEDED", "VALID", "Checkpoint", "CheckpointInfo", "CheckpointStore",
           "RunRecord", "build_snapshot", "context_of", "utcnow"]
