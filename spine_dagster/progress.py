"""One line per step while a run goes: what a script and ``spine-dagster resume`` print.

:class:`StepProgress` polls the run's step rows in the store (``core_workflow_steps``) and prints
each step as it completes, fails or is skipped, with its real duration. Polling the store works the
same for both executors, and for runs that another process (a Dagster run worker) executes.
:func:`outcome_line` is the run's closing line.

Example:
    >>> from datetime import datetime, timedelta, timezone
    >>> from spine_dagster.records import StepRow
    >>> start = datetime(2026, 1, 10, 12, tzinfo=timezone.utc)
    >>> step_line(StepRow("fetch", 1, "completed", "d1", None, None, start,
    ...                   start + timedelta(seconds=1.25)))
    '  fetch                    completed   1.2s'
"""

from __future__ import annotations

import threading
from typing import Any, Callable

from . import db
from .records import StepRow
from .store import CheckpointStore

POLL_SECONDS = 0.2
_SHOWN = ("completed", "failed", "skipped")


def _one_line(text: Any, limit: int) -> str:
    flat = " ".join(str(text if text is not None else "").split())
    return flat if len(flat) <= limit else flat[: max(0, limit - 3)] + "..."


def step_line(row: StepRow) -> str:
    """``  <step>  <status>  <duration or error>``."""
    detail = ""
    if row.status == "running" and row.attempts > 1:
        detail = f"attempt {row.attempts}"
    elif row.status in ("completed", "skipped") and row.duration_seconds is not None:
        detail = f"{row.duration_seconds:5.1f}s"
    elif row.status == "failed":
        seconds = f"{row.duration_seconds:.1f}s: " if row.duration_seconds is not None else ""
        detail = seconds + _one_line(row.error, 200)
    return f"  {row.step_name:<24} {row.status:<10} {detail}".rstrip()


def outcome_line(result: Any) -> str:
    """The closing line of a run: its status, the steps it ran and the time it took."""
    seconds = result.duration_seconds
    took = f" in {seconds:.1f}s" if seconds is not None else ""
    if result.status.value == "failed":
        return (f"run {result.run_id} failed at step {result.error_step}{took}"
                f" ({result.error_category}): {_one_line(result.error, 300)}")
    steps = ", ".join(result.completed_steps) or "none"
    return f"run {result.run_id} {result.status.value}{took}; steps run: {steps}"


class StepProgress:
    """Prints each step of a run as its row changes (see the module docs).

    Only steps whose row changed after ``start()`` are printed: a resume does not repeat the
    steps of earlier Dagster runs.
    """

    def __init__(self, store: CheckpointStore, run_id: str | None, emit: Callable[[str], Any],
                 *, statuses: tuple[str, ...] = _SHOWN, interval: float = POLL_SECONDS) -> None:
        self.store, self.run_id, self.emit, self.interval = store, run_id, emit, interval
        self.statuses = statuses
        self._seen: dict[str, tuple[Any, ...]] = {}
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="spine-progress", daemon=True)

    @staticmethod
    def _key(row: StepRow) -> tuple[Any, ...]:
        return row.status, row.attempts, row.updated_at

    def start(self) -> StepProgress:
        if self.run_id is not None:
            try:
                self._seen = {n: self._key(r) for n, r in self.store.step_rows(self.run_id).items()}
            except Exception:  # noqa: BLE001 - a new run has no rows yet; the run reports errors
                self._seen = {}
        self._thread.start()
        return self

    def follow(self, run_id: str) -> None:
        """Follow ``run_id`` (a new run whose id is known only once it started)."""
        self.run_id = run_id

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.poll()
            except Exception:  # noqa: BLE001 - progress is cosmetic; the run reports errors
                pass

    def poll(self) -> None:
        if self.run_id is None:
            return
        with self._lock:
            with db.single_attempt():  # cosmetic: never wait out an outage's retries
                rows = self.store.step_rows(self.run_id).values()
            changed = [r for r in rows if self._key(r) != self._seen.get(r.step_name)]
            for row in sorted(changed, key=lambda r: (r.updated_at is None, r.updated_at)):
                self._seen[row.step_name] = self._key(row)
                if row.status in self.statuses:
                    self.emit(step_line(row))

    def finish(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        try:
            self.poll()
        except Exception:  # noqa: BLE001
            pass
