"""``SpineCheckpointIOManager``: each step's context, stored as a spine checkpoint.

Every spine op returns a :class:`SpineState`. The IO manager writes its context as a spine-format
checkpoint (when the checkpoint strategy says so) and hands it to the next op. On a re-execution
it loads the upstream context from the checkpoints of the same spine run, so the steps that
already succeeded do not run again.

Example:
    >>> from dagster import Definitions
    >>> from spine_dagster import SpineCheckpointIOManager
    >>> io = SpineCheckpointIOManager(database_url="sqlite:///checkpoints.db")
    >>> defs = Definitions(resources={"spine_io": io})  # build_definitions() does this for you
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Literal, Optional, get_args

import dagster
from dagster import ConfigurableIOManager, InputContext, OutputContext
from pydantic import Field

from . import db
from .errors import (
    CheckpointNotFoundError,
    CheckpointTooLargeError,
    CheckpointWriteError,
    InvalidWorkflowError,
    SpineDagsterError,
)
from .resources import run_config_of
from .results import WorkflowStatus
from .serialization import EncodedOutputs, RawJSON, decode, dumps, dumps_snapshot
from .store import CheckpointStore, build_snapshot, context_of

Strategy = Literal["every_step", "key_steps"]
STRATEGIES: tuple[str, ...] = get_args(Strategy)
DEFAULT_MAX_CHECKPOINT_BYTES = 16 * 1024 * 1024
RUN_ID_TAG = "spine/run_id"


def spine_run_id_of(dagster_run: Any) -> str:
    """The spine run id of a Dagster run: stable across the original run and every re-execution."""
    return dagster_run.tags.get(RUN_ID_TAG) or dagster_run.root_run_id or dagster_run.run_id


@dataclass
class SpineState:
    """What a spine op returns: the context after its step, and how to persist it."""

    workflow_name: str
    step_name: str
    step_index: int
    context: dict[str, Any]
    checkpoint: bool
    step_status: str = "completed"
    step_error: tuple[str, str | None] | None = None  # (error, category) under CONTINUE
    final_status: WorkflowStatus | None = None


class _Transit:
    """The newest context of each Dagster run in this process, for its next op (not a checkpoint).

    One entry per run: a step's context replaces its upstream's, which no op needs any more. An
    entry is read, not taken, so that a retried step (``ErrorPolicy.RETRY``) finds its input again;
    it goes when the run ends (:func:`release_transit`).
    """

    def __init__(self, limit: int = 64) -> None:
        self._data: OrderedDict[str, tuple[str, dict[str, Any]]] = OrderedDict()
        self._limit = limit
        self._lock = threading.Lock()

    def put(self, dagster_run_id: str, step: str, context: dict[str, Any]) -> None:
        with self._lock:
            self._data.pop(dagster_run_id, None)
            self._data[dagster_run_id] = (step, context)
            while len(self._data) > self._limit:
                self._data.popitem(last=False)

    def get(self, dagster_run_id: str, step: str) -> dict[str, Any] | None:
        with self._lock:
            entry = self._data.get(dagster_run_id)
        return entry[1] if entry is not None and entry[0] == step else None

    def drop(self, dagster_run_id: str) -> None:
        with self._lock:
            self._data.pop(dagster_run_id, None)


TRANSIT = _Transit()


class _Encoded:
    """Per Dagster run in this process: the step outputs already encoded (see EncodedOutputs)."""

    def __init__(self, limit: int = 8) -> None:
        self._runs: OrderedDict[str, EncodedOutputs] = OrderedDict()
        self._limit = limit
        self._lock = threading.Lock()

    def for_run(self, dagster_run_id: str) -> EncodedOutputs:
        with self._lock:
            cache = self._runs.pop(dagster_run_id, None) or EncodedOutputs()
            self._runs[dagster_run_id] = cache
            while len(self._runs) > self._limit:
                self._runs.popitem(last=False)
            return cache

    def drop(self, dagster_run_id: str) -> None:
        with self._lock:
            self._runs.pop(dagster_run_id, None)


ENCODED = _Encoded()


class _WriteBehind:
    """Checkpoint writes of in-process runs on a database server, done on a background thread.

    The database write of step N's checkpoint (on PostgreSQL, mostly the server parsing it into
    JSONB) overlaps the bookkeeping Dagster does between steps (its own events), instead of
    adding to it. SQLite writes stay synchronous: they are work in this process, so there is
    nothing to overlap. The barrier is :func:`flush_checkpoints`:
    the next step of the run, a load from the store, a failure and the run's end all wait for the
    pending writes first, so step N+1 never starts before step N's checkpoint is durable. If the
    process dies in between, the resume simply re-runs step N.
    """

    def __init__(self) -> None:
        self._pool: ThreadPoolExecutor | None = None
        self._pending: dict[str, list[tuple[str, Future]]] = {}
        self._lock = threading.Lock()

    def submit(self, dagster_run_id: str, step_name: str, write: Callable[[], Any]) -> None:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=1,
                                                thread_name_prefix="spine-checkpoint")
            future = self._pool.submit(write)
            self._pending.setdefault(dagster_run_id, []).append((step_name, future))

    def wait(self, dagster_run_id: str) -> tuple[str, BaseException] | None:
        """Wait for the run's pending writes; the first that failed, as (step, error)."""
        with self._lock:
            pending = self._pending.pop(dagster_run_id, [])
        failed = None
        for step_name, future in pending:
            error = future.exception()
            if error is not None and failed is None:
                failed = (step_name, error)
        return failed


WRITE_BEHIND = _WriteBehind()


def flush_checkpoints(store: CheckpointStore, run_id: str, dagster_run_id: str) -> None:
    """The barrier: make the run's pending checkpoint writes durable, or fail at their step."""
    failed = WRITE_BEHIND.wait(dagster_run_id)
    if failed is None:
        return
    step_name, error = failed
    _record_failure(store, run_id, dagster_run_id, step_name, error)
    raise CheckpointWriteError(
        f"the checkpoint of step {step_name!r} could not be written: {error}. The run stops "
        f"here; once the database is back, resume it (spine-dagster resume {run_id}): it "
        f"restarts at {step_name!r}.") from error
_stores: dict[str, CheckpointStore] = {}


def store_for(database_url: str | None) -> CheckpointStore:
    url = db.resolve_url(database_url)
    store = _stores.get(url)
    if store is None:
        store = _stores.setdefault(url, CheckpointStore(url))
    return store


class SpineCheckpointIOManager(ConfigurableIOManager):
    """Persists each spine step's resulting context as a checkpoint in ``core_workflow_checkpoints``.

    Configure it in ``Definitions`` (``build_definitions`` does it for you) so that runs launched
    from the UI, schedules and sensors checkpoint too, with the same ``checkpoint_strategy``.

    The precedence of ``checkpoint_strategy`` is: the workflow's own
    (``Workflow(checkpoint_strategy=...)``), then this config (``WorkflowRunner`` and ``build_job``
    set it from their ``checkpoint_strategy``). A run can also set it in the Launchpad under
    ``resources.spine_io.config``; Dagster then *replaces* the config given in code rather than
    merging into it, so repeat ``database_url`` there (or set ``SPINE_DAGSTER_DATABASE_URL``).
    """

    database_url: Optional[str] = Field(
        default=None, description="Checkpoint database URL: sqlite:///path.db or "
        "postgresql+psycopg2://user@host/db. Default: $SPINE_DAGSTER_DATABASE_URL, else SQLite at "
        "$SPINE_DAGSTER_HOME/checkpoints.db (~/.spine_dagster/checkpoints.db).")
    checkpoint_strategy: Strategy = Field(
        default="every_step", description="every_step: checkpoint after each successful step; "
        "key_steps: only after steps declared checkpoint=True or results with checkpoint=True. A "
        "workflow's own checkpoint_strategy wins over this.")
    max_checkpoint_bytes: int = Field(
        default=DEFAULT_MAX_CHECKPOINT_BYTES, description="Largest checkpoint allowed, in bytes "
        "(default 16 MiB). A bigger one fails its step: store a reference to the data instead.")
    delete_checkpoints_on_success: bool = Field(
        default=False, description="Delete a spine run's checkpoints as soon as it completes "
        "successfully (its final context stays in core_workflow_runs). Failed runs keep theirs, "
        "so that they can be resumed.")

    @classmethod
    def from_settings(cls, *, database_url: str | None = None,
                      checkpoint_strategy: str | None = None,
                      max_checkpoint_bytes: int | None = None,
                      delete_checkpoints_on_success: bool = False) -> SpineCheckpointIOManager:
        """The IO manager for these settings; ``None`` keeps a field's default."""
        if checkpoint_strategy not in (None, *STRATEGIES):
            raise InvalidWorkflowError(
                f"unknown checkpoint_strategy {checkpoint_strategy!r}; use one of {STRATEGIES}")
        settings: dict[str, Any] = {"database_url": database_url,
                                    "checkpoint_strategy": checkpoint_strategy,
                                    "max_checkpoint_bytes": max_checkpoint_bytes,
                                    "delete_checkpoints_on_success": delete_checkpoints_on_success}
        return cls(**{k: v for k, v in settings.items() if v is not None})

    def get_store(self) -> CheckpointStore:
        return store_for(self.database_url)

    # -- writing ----------------------------------------------------------------------------------
    def handle_output(self, context: OutputContext, obj: SpineState) -> None:
        if not isinstance(obj, SpineState):
            raise SpineDagsterError(
                f"SpineCheckpointIOManager only stores spine step results, got "
                f"{type(obj).__name__}; use it for ops built by spine_dagster.build_job only.")
        run = context.step_context.dagster_run
        run_id = spine_run_id_of(run)
        store = self.get_store()
        if obj.final_status is not None:
            flush_checkpoints(store, run_id, run.run_id)  # the run's end comes after its steps
        drop = self.delete_checkpoints_on_success and obj.final_status is WorkflowStatus.COMPLETED
        try:
            if obj.checkpoint and not drop:
                self._write_checkpoint(context, store, run_id, run.run_id, obj)
            else:
                if obj.final_status is None and not _in_process(context):
                    store.put_transit(run.run_id, obj.step_name,
                                      RawJSON(dumps(obj.context, what="context")))
                store.complete_step(run_id, obj.step_name, run.run_id,
                                    final_status=obj.final_status,
                                    final_context=obj.context if obj.final_status else None,
                                    step_status=obj.step_status, step_error=obj.step_error)
        except Exception as exc:
            _record_failure(store, run_id, run.run_id, obj.step_name, exc)
            raise
        if drop:
            _delete_on_success(context, store, run_id)
        if obj.final_status is None:
            TRANSIT.put(run.run_id, obj.step_name, obj.context)
        else:
            ENCODED.drop(run.run_id)
            release_transit(store, run.run_id, in_process=_in_process(context))

    def _write_checkpoint(self, context: OutputContext, store: CheckpointStore, run_id: str,
                          dagster_run_id: str, obj: SpineState) -> None:
        snapshot = build_snapshot(run_id, obj.workflow_name, obj.step_name, obj.context,
                                  dagster_run_id=dagster_run_id,
                                  dagster_version=dagster.__version__)
        text = RawJSON(dumps_snapshot(snapshot, ENCODED.for_run(dagster_run_id),
                                      what=f"the checkpoint of step {obj.step_name!r}"))
        size = len(text.encode("utf-8"))
        if size > self.max_checkpoint_bytes:
            raise CheckpointTooLargeError(
                f"the checkpoint of step {obj.step_name!r} is {size:,} bytes, over the limit of "
                f"{self.max_checkpoint_bytes:,} bytes (max_checkpoint_bytes). Store the data "
                f"elsewhere (a table, a file, object storage) and return a reference to it, "
                f"e.g. {{'record_count': n, 'table': 'staging_records'}}.")
        def write() -> None:
            store.save_checkpoint(run_id=run_id, workflow_name=obj.workflow_name,
                                  step_name=obj.step_name, step_index=obj.step_index,
                                  dagster_run_id=dagster_run_id, snapshot=text,
                                  final_status=obj.final_status,
                                  final_context=obj.context if obj.final_status else None,
                                  step_status=obj.step_status, step_error=obj.step_error)

        if obj.final_status is None and _in_process(context) and store.is_server:
            WRITE_BEHIND.submit(dagster_run_id, obj.step_name, write)
        else:
            write()
        context.add_output_metadata({"spine/checkpoint": obj.step_name,
                                     "spine/checkpoint_bytes": size})

    # -- reading ----------------------------------------------------------------------------------
    def load_input(self, context: InputContext) -> dict[str, Any]:
        run = context.step_context.dagster_run
        run_id = spine_run_id_of(run)
        step_name = context.definition_metadata.get("spine/step")
        store = self.get_store()
        cached = _cached_upstream(context, run, step_name)
        if cached is not None:
            return cached  # the run's own context: no read, so no need to wait for writes here
        flush_checkpoints(store, run_id, run.run_id)  # records its own failure, at its own step
        try:
            return self._load(context, store, run, run_id, step_name)
        except Exception as exc:
            _record_failure(store, run_id, run.run_id, step_name, exc)
            raise

    def _load(self, context: InputContext, store: CheckpointStore, run: Any, run_id: str,
              step_name: str) -> dict[str, Any]:
        start = start_context_for(run_config_of(run), store, run_id, step_name)
        if start is not None:
            return start
        upstream = context.upstream_output
        upstream_step = upstream.definition_metadata.get("spine/step") if upstream else None
        if upstream_step is None:
            raise CheckpointNotFoundError(
                f"step {step_name!r} has no upstream step and no start context in run {run_id!r}")
        cached = TRANSIT.get(run.run_id, upstream_step)
        if cached is not None:
            return cached
        if not _in_process(context):
            moved = store.get_transit(run.run_id, upstream_step)
            if moved is not None:
                return moved
        checkpoint = store.get_checkpoint(run_id, upstream_step)
        if checkpoint is None:
            raise CheckpointNotFoundError(_no_upstream_checkpoint(
                store, run_id, step_name, upstream_step,
                upstream.definition_metadata.get("spine/index")))
        return context_of(checkpoint.context_snapshot)


def start_context_for(config: dict[str, Any], store: CheckpointStore, run_id: str,
                      step_name: str) -> dict[str, Any] | None:
    """The start context of a run that ``execute(start_from=step_name)`` began, else None."""
    if config.get("start_from") != step_name:
        return None
    if config.get("start_context") is not None:
        return decode(dict(config["start_context"]))
    source = config.get("start_checkpoint")
    if not source:
        return None
    checkpoint = store.get_checkpoint(run_id, source)
    if checkpoint is None:
        raise CheckpointNotFoundError(
            f"run {run_id!r} has no checkpoint for step {source!r} to start {step_name!r} from. "
            f"List the checkpoints with: spine-dagster checkpoints {run_id}")
    return context_of(checkpoint.context_snapshot)


def _delete_on_success(context: OutputContext, store: CheckpointStore, run_id: str) -> None:
    """``delete_checkpoints_on_success``: best effort, the run has completed either way."""
    try:
        deleted = store.delete_checkpoints(run_id)
    except Exception as exc:  # noqa: BLE001
        context.log.warning(f"spine run {run_id} completed, but deleting its checkpoints failed "
                            f"({exc}); delete them with: spine-dagster delete {run_id}")
        return
    context.add_output_metadata({"spine/checkpoints_deleted": deleted})


def _no_upstream_checkpoint(store: CheckpointStore, run_id: str, step_name: str,
                            upstream_step: str, upstream_index: int | None) -> str:
    """Why a re-execution cannot start at ``step_name``, and where it can start instead."""
    earlier = [(index, name) for name, index, _ in store.list_checkpoint_steps(run_id)
               if upstream_index is None or index < upstream_index]
    where = (f"re-execute from the step after {max(earlier)[1]!r}, its newest checkpoint before "
             f"{step_name!r}," if earlier else "re-execute all steps")
    return (f"step {step_name!r} needs the context after step {upstream_step!r}, but spine run "
            f"{run_id!r} has no checkpoint for it (under checkpoint_strategy='key_steps' only key "
            f"steps are checkpointed), so a re-execution cannot start at {step_name!r}. Resume the "
            f"run instead: spine-dagster resume {run_id} (or WorkflowRunner().resume), or in the "
            f"Dagster UI {where} selecting everything downstream.")


def release_transit(store: CheckpointStore, dagster_run_id: str, *,
                    in_process: bool = False) -> None:
    """Forget the non-checkpoint contexts of a Dagster run that has ended (memory and table)."""
    TRANSIT.drop(dagster_run_id)
    if not in_process:
        store.delete_transit(dagster_run_id)


def _cached_upstream(context: InputContext, run: Any, step_name: str) -> dict[str, Any] | None:
    """The upstream step's context, handed over in this process by this Dagster run."""
    if run_config_of(run).get("start_from") == step_name:
        return None
    upstream = context.upstream_output
    upstream_step = upstream.definition_metadata.get("spine/step") if upstream else None
    return TRANSIT.get(run.run_id, upstream_step) if upstream_step else None


def _in_process(context: Any) -> bool:
    return context.step_context.job_def.executor_def.name == "in_process"


def _record_failure(store: CheckpointStore, run_id: str, dagster_run_id: str,
                    step_name: str | None, exc: BaseException) -> None:
    """Best effort: a database that is down must not hide the original error."""
    if not step_name:
        return
    try:
        store.fail_step(run_id=run_id, step_name=step_name, dagster_run_id=dagster_run_id,
                        error=str(exc) or type(exc).__name__, error_category="INTERNAL")
        release_transit(store, dagster_run_id)  # the Dagster run fails here
    except Exception:  # noqa: BLE001
        pass
