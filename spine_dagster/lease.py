"""One resume of a spine run at a time: the run's lease in the checkpoint store.

Every resume path (:mod:`spine_dagster.resume` plans it) takes :class:`ResumeLease` around its
launch, after :func:`guard_not_running` checked that the run's last Dagster run has ended. The
lease is a row in ``core_workflow_runs`` (owner and expiry), renewed by a thread while held, so a
second resume of the same run, from any process, gets ``RunInProgressError``; a process that dies
holding it loses it after ``LEASE_SECONDS``.

Example:
    >>> from spine_dagster import CheckpointStore, RunInProgressError, WorkflowStatus
    >>> from spine_dagster.testing import temporary_store
    >>> with temporary_store() as url:
    ...     store = CheckpointStore.for_url(url)
    ...     _ = store.register_dagster_run(run_id="r1", workflow_name="wf", dagster_run_id="d1")
    ...     store.mark_run("r1", WorkflowStatus.FAILED)
    ...     with ResumeLease(store, "r1", ("failed",)):
    ...         try:
    ...             ResumeLease(store, "r1", ("failed",)).__enter__()
    ...         except RunInProgressError as exc:
    ...             print(str(exc).split(" (")[0])
    another resume of run 'r1' is in progress
"""

from __future__ import annotations

import logging
import threading
import uuid
from typing import Any, Callable, Sequence

from .errors import RunInProgressError
from .records import RunRecord
from .store import CheckpointStore

LEASE_SECONDS = 60.0
_log = logging.getLogger("spine_dagster")
_unreleased: dict[tuple[str, str], str] = {}  # (database, run id) -> owner: a lease left behind


class ResumeLease:
    """One resume of a run at a time: the run's lease in the store, renewed while held."""

    def __init__(self, store: CheckpointStore, run_id: str, statuses: Sequence[str], *,
                 planned_from: str | None = None) -> None:
        self.store, self.run_id, self.statuses = store, run_id, tuple(statuses)
        self.planned_from = planned_from  # the run's last Dagster run when the plan was made
        self.owner = uuid.uuid4().hex
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> ResumeLease:
        # A lease this process could not release (the database was down when its resume ended)
        # is no one's now: release it first, rather than wait LEASE_SECONDS for it to expire.
        stale = _unreleased.pop((self.store.url, self.run_id), None)
        if stale is not None:
            self._release(stale)
        if not self.store.acquire_lease(self.run_id, self.owner, LEASE_SECONDS, self.statuses):
            owner, until = self.store.lease_of(self.run_id)
            record = self.store.get_run(self.run_id)
            if record is not None and record.status.value not in self.statuses:
                raise RunInProgressError(
                    f"run {self.run_id!r} is {record.status.value} now; it changed while the "
                    f"resume was being planned. Check it with get_run({self.run_id!r}).")
            raise RunInProgressError(
                f"another resume of run {self.run_id!r} is in progress (lease held until "
                f"{until.isoformat() if until else '?'}); wait for it to finish and check "
                f"get_run({self.run_id!r}).status.")
        if self.planned_from is not None:
            try:
                record = self.store.get_run(self.run_id)
            except BaseException:
                self._release(self.owner)
                raise
            last = record.last_dagster_run_id if record is not None else None
            if last != self.planned_from:  # another resume ran in between: the plan is stale
                self._release(self.owner)
                raise RunInProgressError(
                    f"run {self.run_id!r} was resumed by another process (Dagster run {last}) "
                    f"while this resume was being planned; check get_run({self.run_id!r}) and "
                    f"plan again if it still needs a resume.")
        self._thread = threading.Thread(target=self._renew, daemon=True,
                                        name=f"spine-lease-{self.run_id[:8]}")
        self._thread.start()
        return self

    def _renew(self) -> None:
        while not self._stop.wait(LEASE_SECONDS / 3):
            try:
                self.store.renew_lease(self.run_id, self.owner, LEASE_SECONDS)
            except Exception as exc:  # noqa: BLE001 - logged; the run itself reports an outage
                _log.warning("spine_dagster: could not renew the resume lease of run %s: %s",
                             self.run_id, exc)

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._release(self.owner)

    def _release(self, owner: str) -> None:
        try:
            self.store.release_lease(self.run_id, owner)
        except Exception as error:  # noqa: BLE001 - it expires by itself
            _unreleased[(self.store.url, self.run_id)] = owner
            _log.warning("spine_dagster: could not release the resume lease of run %s (it "
                         "expires in %ss, or at this process's next resume of it): %s",
                         self.run_id, int(LEASE_SECONDS), error)


def guard_not_running(record: RunRecord, busy: Callable[[], str | None]) -> None:
    """Refuse to resume a run whose last Dagster run is still in progress (``busy`` says so)."""
    reason = busy()
    if reason:
        raise RunInProgressError(
            f"run {record.run_id!r} is still running ({reason}); wait for it to finish, or "
            f"terminate it first. If the process running it died on another machine, mark it "
            f"failed first: Terminate (force) in the Dagster UI.")
