"""What a step gets from the Dagster runtime: durable map items and waits that resume.

(``ctx.log`` is a :class:`~spine_dagster.execution.StepLog` over the op's ``context.log``: a
step's messages go to the Dagster run log of its op, prefixed with the step name.)

**Map steps** (``Step.map``) run their items inside the map step's own op, in threads (at most
``max_concurrency`` at a time), not as Dagster dynamic outputs. That is what keeps resume correct:
Dagster's re-execution of dynamic outputs has known bugs (dagster-io/dagster #20925, #30077,
#30248, #30972: mapped steps lost, re-run or mis-keyed on re-execution), and a dynamic graph's step
keys change with the items. Here the op is one step key whatever the items are, and each item's
completion is a checkpoint row of its own in ``core_workflow_checkpoints``: ``step_name`` is
``<map>[<index>]``, ``item_index`` is the index, and the snapshot is the item's context (its params,
with the item, and the iterator workflow's outputs), in the spine format. When every item has
succeeded, the map step's output is the list of the items' outputs (each the output of the iterator
workflow's last step), in item order, checkpointed like any step's output. Every item is tried;
when all have run, the map fails if any failed, listing each failed item with its index and error,
with the most severe of their categories. A re-run of the map (a resume, the UI's "Re-execute from
failure", an ``ErrorPolicy.RETRY`` retry) reuses each item whose checkpoint is usable, holds the
same item, and read no param that changed since, and runs only the others: the failed items, and
those a killed run never finished (the rule is :mod:`spine_dagster.item_reuse`'s, which the resume
plan applies too). An item checkpoint is superseded when the map runs with a
different item at that index (or fewer items), or when a step before the map runs again. Progress
(done, failed, remaining) goes to the Dagster run log as the items complete, at most one line a
second (the newest counts at most a second late), and the item counts (``spine/map_items``) to the
step's output metadata.

**Wait steps** remember when they started (the step row): a run killed during a wait resumes
with only the remaining time (``slept_seconds`` in the output says how long it slept), and a
resume that starts after a completed wait does not wait: it starts after the wait's checkpoint,
or (a wait without a checkpoint) finds the time already elapsed. A wait restarts in full when a
step before it ran again after it began. A wait that is killed twice counts from its latest start.

Example:
    >>> item_hash({"file": "a.csv"}) == item_hash({"file": "a.csv"}), len(item_hash(3))
    (True, 32)
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

import dagster

from .context import WorkflowContext
from .execution import (
    StepLog,
    StepServices,
    item_context,
    item_output,
    map_failure,
    map_items,
    run_item,
)
from .item_reuse import ITEM_HASH, ITEM_PARAM, item_changes, item_hash
from .model import Step
from .records import Checkpoint, StepRow
from .results import StepResult
from .run_state import RunState
from .serialization import RawJSON, dumps, dumps_snapshot
from .snapshot import build_snapshot, utcnow

PROGRESS_SECONDS = 1.0


class DagsterServices(StepServices):
    """Durable map items and resumable waits, for the step ``step`` at position ``index``."""

    def __init__(self, context: Any, state: RunState, step: Step, index: int, *,
                 prior: StepRow | None = None, upstream_at: datetime | None = None) -> None:
        self.context = context
        self.state = state
        self.step = step
        self.index = index
        self.prior = prior
        self.upstream_at = upstream_at
        self.map_counts: dict[str, int] | None = None

    # -- wait ---------------------------------------------------------------------------------
    def wait(self, step: Step, ctx: WorkflowContext) -> StepResult:
        total = float(step.duration_seconds or 0)
        remaining = total
        prior = self.prior
        # The wait began in an earlier Dagster run (killed during it, or done but without a
        # checkpoint of its own) after the step before it last ran: only the rest is left.
        if (prior is not None and prior.status in ("running", "failed", "completed")
                and prior.started_at
                and (self.upstream_at is None or prior.started_at >= self.upstream_at)):
            elapsed = (utcnow() - prior.started_at).total_seconds()
            remaining = max(0.0, total - elapsed)
            ctx.log.info(f"continuing the wait started at {prior.started_at.isoformat()}: "
                         f"{remaining:.1f}s of {total:g}s left")
        time.sleep(remaining)
        return StepResult.ok(output={"waited_seconds": total,
                                     "slept_seconds": round(remaining, 3)})

    # -- map ------------------------------------------------------------------------------------
    def run_map(self, step: Step, ctx: WorkflowContext) -> StepResult:
        items = map_items(step, ctx)
        if isinstance(items, StepResult):
            return items
        store, run_id = self.state.store, self.state.spine_run_id
        stored = store.item_checkpoints(run_id, step.name, self.index)
        hashes = [item_hash(item) for item in items]
        reused: dict[int, Checkpoint] = {}
        stale: list[int] = [i for i in stored if i >= len(items)]
        for i in range(len(items)):
            checkpoint = stored.get(i)
            if checkpoint is None:
                continue
            # the framework's read of the params: no param is recorded as read
            now = item_context(step, ctx, items[i]).params
            same, changed = item_changes(checkpoint, hashes[i], now, step.item_param)
            if same and not changed:
                reused[i] = checkpoint
            else:
                stale.append(i)
        store.supersede_items(run_id, step.name, self.index, stale)
        to_run = [i for i in range(len(items)) if i not in reused]
        progress = _MapProgress(self.context, step.name, len(items), len(reused))
        if reused:
            ctx.log.info(f"map: reusing the checkpoints of {len(reused)} of {len(items)} items; "
                         f"running {len(to_run)}")
        outputs: dict[int, Any] = {i: item_output(step, cp.context) for i, cp in reused.items()}
        failures: list[tuple[int, str, str]] = []
        lock = threading.Lock()

        def work(i: int) -> None:
            item_ctx, failed = run_item(step, ctx, items[i], StepServices())
            if failed is None:
                self._save_item(step, i, item_ctx, hashes[i])
                with lock:
                    outputs[i] = item_output(step, item_ctx)
            else:
                with lock:
                    failures.append((i, f"{failed.step_name}: {failed.error}",
                                     failed.error_category or "INTERNAL"))
            progress.item_done(failed is not None)

        try:
            with ThreadPoolExecutor(max_workers=max(1, step.max_concurrency),
                                    thread_name_prefix=f"spine-map-{step.name[:20]}") as pool:
                for future in [pool.submit(work, i) for i in to_run]:
                    future.result()
        finally:
            progress.finish()  # also when an item's checkpoint could not be written
        self.map_counts = {"items": len(items), "reused": len(reused),
                           "ran": len(to_run), "failed": len(failures)}
        if failures:
            return map_failure(step, len(items), sorted(failures))
        return StepResult(True, [outputs[i] for i in range(len(items))])  # type: ignore[arg-type]

    def _save_item(self, step: Step, i: int, item_ctx: WorkflowContext, digest: str) -> None:
        name = f"{step.name}[{i}]"
        data = item_ctx.to_dict()
        snapshot = build_snapshot(self.state.spine_run_id, item_ctx.workflow_name, name, data,
                                  dagster_run_id=self.state.dagster_run_id,
                                  dagster_version=dagster.__version__)
        snapshot["metadata"][ITEM_HASH] = digest
        snapshot["metadata"][ITEM_PARAM] = step.item_param
        self.state.store.save_checkpoint(
            run_id=self.state.spine_run_id, workflow_name=item_ctx.workflow_name, step_name=name,
            step_index=self.index, dagster_run_id=self.state.dagster_run_id,
            snapshot=RawJSON(dumps_snapshot(snapshot, None, what=f"the checkpoint of {name}")),
            step_status=None, item_index=i)


class _MapProgress:
    """Items done, failed and remaining, in the run log: at most one line a second, and the
    newest counts at most a second late (a timer writes what the throttle held back)."""

    def __init__(self, context: Any, step_name: str, total: int, reused: int) -> None:
        self.context, self.step_name, self.total = context, step_name, total
        self.done, self.failed = reused, 0
        self._last = 0.0
        self._timer: threading.Timer | None = None
        self._closed = False
        self._lock = threading.Lock()

    def item_done(self, failed: bool) -> None:
        with self._lock:
            self.done += 1
            self.failed += int(failed)
            wait = PROGRESS_SECONDS - (time.monotonic() - self._last)
            if wait <= 0:
                self._emit()
            elif self._timer is None:
                self._timer = threading.Timer(wait, self._held_back)
                self._timer.daemon = True
                self._timer.start()

    def _held_back(self) -> None:
        with self._lock:
            self._timer = None
            if not self._closed:
                self._emit()

    def _emit(self) -> None:  # under the lock: lines come in order
        self._last = time.monotonic()
        remaining = self.total - self.done
        self.context.log.info(f"map {self.step_name}: {self.done - self.failed} done, "
                              f"{self.failed} failed, {remaining} remaining of {self.total}")

    def finish(self) -> None:
        with self._lock:
            self._closed = True
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._emit()


__all__ = ["DagsterServices", "StepLog", "item_hash", "dumps"]
