"""``RunState``: what one Dagster run of a spine run keeps in one process, and nothing longer.

The checkpoint IO manager creates a ``RunState`` in ``setup_for_execution`` (once per run with the
in-process executor, once per step process with the multiprocess executor) and releases it in
``teardown_after_execution``. It holds:

* the **transit** context: the context the last step handed to the next op, in this process (a
  context that is no checkpoint under ``key_steps`` travels between step processes through the
  ``core_workflow_transit`` table instead);
* the **encoded outputs**: each step's output as JSON text, encoded once per run (see
  :class:`~spine_dagster.serialization.EncodedOutputs`);
* the **pending writes**: on PostgreSQL, an in-process run writes a step's checkpoint on a
  background thread of its own while Dagster records the step; :meth:`RunState.flush` is the
  barrier that the next step, any read and the run's end wait on;
* whether the Dagster run is **registered** in the spine run's lineage.

No module-level registry grows with the number of runs: long-lived processes (code servers, the
daemon, notebooks) stay flat, and no run can evict another's state.

Example:
    >>> import tempfile
    >>> from spine_dagster.store import CheckpointStore
    >>> store = CheckpointStore.for_url(f"sqlite:///{tempfile.mkdtemp()}/docs.db")
    >>> state = RunState(store, dagster_run_id="d1", spine_run_id="r1", write_behind=False)
    >>> state.hand_over("a", {"params": {}})
    >>> state.handed_over("a")
    {'params': {}}
    >>> state.release()
    >>> state.handed_over("a") is None
    True
"""

from __future__ import annotations

import contextlib
import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable

from . import db
from .errors import CheckpointWriteError, SpineDagsterError
from .serialization import EncodedOutputs
from .store import CheckpointStore

_log = logging.getLogger("spine_dagster")


class RunState:
    """The per-run, per-process state of one Dagster run of a spine run (see the module docs).

    Args:
        store: the checkpoint store of the run.
        dagster_run_id: the Dagster run.
        spine_run_id: the spine run it belongs to.
        write_behind: write checkpoints on a background thread (in-process runs on a server).
    """

    def __init__(self, store: CheckpointStore, *, dagster_run_id: str, spine_run_id: str,
                 write_behind: bool) -> None:
        self.store = store
        self.dagster_run_id = dagster_run_id
        self.spine_run_id = spine_run_id
        self.write_behind = write_behind
        self.registered = False
        self.checkpoints_deleted: int | None = None
        self.encoded = EncodedOutputs()
        self._transit: tuple[str, dict[str, Any]] | None = None
        self._pending: list[tuple[str, Future]] = []
        self._writer: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._released = False

    # -- the context handed from one op to the next -----------------------------------------------
    def hand_over(self, step_name: str, context: dict[str, Any]) -> None:
        """Keep the context after ``step_name`` for the next op (only the newest is needed)."""
        self._transit = (step_name, context)

    def handed_over(self, step_name: str) -> dict[str, Any] | None:
        """The context after ``step_name``, if this process handed it over in this run."""
        entry = self._transit
        return entry[1] if entry is not None and entry[0] == step_name else None

    # -- checkpoint writes --------------------------------------------------------------------------
    def write(self, step_name: str, write: Callable[[], Any], *, background: bool) -> None:
        """Run ``write`` now, or (``background`` and write-behind on) on the run's writer thread."""
        if not (background and self.write_behind):
            write()
            return
        with self._lock:
            if self._writer is None:
                self._writer = ThreadPoolExecutor(
                    max_workers=1, thread_name_prefix=f"spine-checkpoint-{self.dagster_run_id[:8]}")
            self._pending.append((step_name, self._writer.submit(write)))

    def flush(self) -> None:
        """The barrier: wait for the pending writes; a failed one raises ``CheckpointWriteError``.

        The failure is recorded at its step (best effort: the database may be down).
        """
        with self._lock:
            pending, self._pending = self._pending, []
        failed: tuple[str, BaseException] | None = None
        for step_name, future in pending:
            error = future.exception()
            if error is not None and failed is None:
                failed = (step_name, error)
        if failed is None:
            return
        step_name, error = failed
        failure = CheckpointWriteError(
            f"the checkpoint of step {step_name!r} could not be written: {error}. The run stops "
            f"here; once the database is back, resume it (spine-dagster resume "
            f"{self.spine_run_id}): it restarts at {step_name!r}.")
        failure.step_name = step_name  # the step that failed: not the op that found out
        failure.__cause__ = error
        record_failure(self.store, self.spine_run_id, self.dagster_run_id, step_name, failure)
        raise failure from error

    def release(self) -> None:
        """Drop everything (``teardown_after_execution``); waits for pending writes first."""
        if self._released:
            return
        self._released = True
        try:
            self.flush()
        except CheckpointWriteError as exc:
            _log.warning("spine_dagster: %s", exc)
        with self._lock:
            writer, self._writer = self._writer, None
        if writer is not None:
            writer.shutdown(wait=True)
        self._transit = None
        self.encoded = EncodedOutputs()

    @property
    def threads(self) -> int:
        """Background threads this state holds (0 or 1): for the soak benchmark."""
        return 0 if self._writer is None else 1


def record_failure(store: CheckpointStore, run_id: str, dagster_run_id: str,
                   step_name: str | None, exc: BaseException, *,
                   log: Callable[[str], Any] | None = None) -> None:
    """Record a step failure on the run, best effort: a database that is down must not hide the
    original error. A failure to record it is logged, never swallowed silently."""
    if not step_name:
        return
    # The database was just found unreachable (after its retries): one more try, no retries;
    # the failure's category says so (CheckpointWriteError, DatabaseUnavailableError).
    outage = db.is_outage(exc)
    category = getattr(exc, "category", None) or (
        type(exc).__name__ if outage and isinstance(exc, SpineDagsterError) else
        "DatabaseUnavailableError" if outage else "INTERNAL")
    try:
        with db.single_attempt() if outage else contextlib.nullcontext():
            store.fail_step(run_id=run_id, step_name=step_name, dagster_run_id=dagster_run_id,
                            error=str(exc) or type(exc).__name__, error_category=category)
    except Exception as side:  # noqa: BLE001 - logged below; the step's own error propagates
        message = (f"spine_dagster: could not record the failure of step {step_name!r} of run "
                   f"{run_id} ({type(exc).__name__}: {exc}): {side}")
        (log or _log.warning)(message)
