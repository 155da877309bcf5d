"""``SpineCheckpointIOManager``: hands each op's context to the next, and loads it on re-execution.

Every spine op returns a :class:`SpineState`: the context after its last step. The op itself has
already written the checkpoints of its steps (see :mod:`spine_dagster.engine`); the IO manager
hands the context to the next op of the run in this process, or, under the multiprocess
executor when the step wrote no checkpoint, through the ``core_workflow_transit`` table. On a
re-execution, it loads the upstream context from the spine run's *usable* checkpoint (never a
superseded or rejected one), and tags the loaded input with ``spine/restored_from``.

It also owns the run's :class:`~spine_dagster.run_state.RunState`, created in
``setup_for_execution`` and released in ``teardown_after_execution``.

A database URL with a password is kept as a masked reference (see :mod:`spine_dagster.dburl`):
the password never reaches Dagster's run storage, job snapshots or the Launchpad.

Example:
    >>> from dagster import Definitions
    >>> from spine_dagster import SpineCheckpointIOManager
    >>> io = SpineCheckpointIOManager(database_url="postgresql+psycopg2://app:s3cret@db/spine")
    >>> io.database_url
    'postgresql+psycopg2://app:***@db/spine'
    >>> defs = Definitions(resources={"spine_io": io})  # build_definitions() does this for you
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Optional, get_args

from dagster import ConfigurableIOManager, EnvVar, InitResourceContext, InputContext, OutputContext
from pydantic import Field, PrivateAttr

from . import db
from .dburl import reference
from .errors import (
    CheckpointCorruptError,
    CheckpointNotFoundError,
    InvalidRunIdError,
    InvalidSettingError,
    InvalidWorkflowError,
    SpineDagsterError,
)
from .records import REJECTED
from .resources import run_config_of
from .run_state import RunState, record_failure
from .serialization import RawJSON, decode, dumps
from .snapshot import context_of
from .store import CheckpointStore
from .store_runs import check_run_id

Strategy = Literal["every_step", "key_steps"]
STRATEGIES: tuple[str, ...] = get_args(Strategy)
DEFAULT_MAX_CHECKPOINT_BYTES = 16 * 1024 * 1024
RUN_ID_TAG = "spine/run_id"
RESTORED_FROM = "spine/restored_from"


def spine_run_id_of(dagster_run: Any) -> str:
    """The spine run id of a Dagster run: stable across the original run and every re-execution."""
    return dagster_run.tags.get(RUN_ID_TAG) or dagster_run.root_run_id or dagster_run.run_id


def checked_spine_run_id(store: CheckpointStore, dagster_run: Any) -> str:
    """:func:`spine_run_id_of`, refusing a ``spine/run_id`` tag that was edited.

    Run tags can be edited (in the UI, through the API). A re-execution whose tag names another
    spine run than the one its parent Dagster run belongs to would restore, and overwrite, that
    other run's checkpoints, so it is refused before it reads or writes anything.
    """
    spine_id = spine_run_id_of(dagster_run)
    fix = ("Set the tag back, or resume the spine run with: spine-dagster resume RUN_ID "
           "(which sets the tags itself).")
    try:
        check_run_id(spine_id)
    except InvalidRunIdError as exc:
        raise CheckpointCorruptError(
            f"Dagster run {dagster_run.run_id}: its {RUN_ID_TAG} tag {spine_id[:80]!r} is not a run "
            f"id (text of 1 to 64 characters, no control characters): the tag was edited. Nothing "
            f"was run. {fix}") from exc
    parent = getattr(dagster_run, "parent_run_id", None)
    if parent and RUN_ID_TAG in dagster_run.tags:
        owner = store.owner_of(parent)
        if owner is not None and owner != spine_id:
            raise CheckpointCorruptError(
                f"Dagster run {dagster_run.run_id} re-executes Dagster run {parent}, which belongs "
                f"to spine run {owner!r}, but its {RUN_ID_TAG} tag says {spine_id!r}: the tag was "
                f"edited, and this run would read and overwrite the checkpoints of another run. "
                f"Nothing was run. {fix.replace('RUN_ID', owner)}")
    return spine_id


@dataclass
class SpineState:
    """What a spine op returns: the context after its last step, and how it was recorded."""

    workflow_name: str
    step_name: str
    step_index: int
    context: dict[str, Any]
    checkpointed: bool
    final: bool = False
    checkpoint_bytes: int | None = None
    checkpoints_deleted: int | None = None  # delete_checkpoints_on_success, at the run's end


def check_settings(*, checkpoint_strategy: str | None = None,
                   max_checkpoint_bytes: Any = None) -> None:
    """Refuse an unknown strategy or a size limit that is not a positive number of bytes."""
    if checkpoint_strategy not in (None, *STRATEGIES):
        raise InvalidWorkflowError(
            f"unknown checkpoint_strategy {checkpoint_strategy!r}; use one of {STRATEGIES}")
    if max_checkpoint_bytes is not None and (
            isinstance(max_checkpoint_bytes, bool) or not isinstance(max_checkpoint_bytes, int)
            or max_checkpoint_bytes <= 0):
        raise InvalidSettingError(
            f"max_checkpoint_bytes must be a positive number of bytes, got "
            f"{max_checkpoint_bytes!r}; the default is {DEFAULT_MAX_CHECKPOINT_BYTES} (16 MiB).")


class SpineCheckpointIOManager(ConfigurableIOManager):
    """Hands spine contexts between ops and restores them from checkpoints on re-execution.

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
        "postgresql+psycopg2://user@host/db (a password here is shown and stored masked; the "
        "processes that run steps find it in their code or $SPINE_DAGSTER_DATABASE_URL). "
        "Default: $SPINE_DAGSTER_DATABASE_URL, else SQLite at $SPINE_DAGSTER_HOME/checkpoints.db "
        "(~/.spine_dagster/checkpoints.db).")
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

    _state: Optional[RunState] = PrivateAttr(default=None)

    def __init__(self, **data: Any) -> None:
        url = data.get("database_url")
        if isinstance(url, str) and not isinstance(url, EnvVar):
            data["database_url"] = reference(url)  # the password stays in this process
        check_settings(checkpoint_strategy=data.get("checkpoint_strategy"),
                       max_checkpoint_bytes=data.get("max_checkpoint_bytes"))
        super().__init__(**data)

    @classmethod
    def from_settings(cls, *, database_url: str | None = None,
                      checkpoint_strategy: str | None = None,
                      max_checkpoint_bytes: int | None = None,
                      delete_checkpoints_on_success: bool = False) -> SpineCheckpointIOManager:
        """The IO manager for these settings; ``None`` keeps a field's default."""
        settings: dict[str, Any] = {"database_url": database_url,
                                    "checkpoint_strategy": checkpoint_strategy,
                                    "max_checkpoint_bytes": max_checkpoint_bytes,
                                    "delete_checkpoints_on_success": delete_checkpoints_on_success}
        return cls(**{k: v for k, v in settings.items() if v is not None})

    def get_store(self) -> CheckpointStore:
        return CheckpointStore.for_url(self.database_url)

    # -- run state ------------------------------------------------------------------------------
    def setup_for_execution(self, context: InitResourceContext) -> None:
        run = context.run
        if run is not None:
            store = self.get_store()
            self._state = RunState(store, dagster_run_id=run.run_id,
                                   spine_run_id=checked_spine_run_id(store, run),
                                   write_behind=False)

    def teardown_after_execution(self, context: InitResourceContext) -> None:
        state, self._state = self._state, None
        if state is not None:
            state.release()

    def run_state(self, dagster_run: Any) -> RunState:
        """This run's state (created in ``setup_for_execution``)."""
        state = self._state
        if state is None or state.dagster_run_id != dagster_run.run_id:
            # Used outside Dagster's resource lifecycle (e.g. built by hand in a test).
            store = self.get_store()
            state = self._state = RunState(store, dagster_run_id=dagster_run.run_id,
                                           spine_run_id=checked_spine_run_id(store, dagster_run),
                                           write_behind=False)
        return state

    # -- handing over ---------------------------------------------------------------------------
    def handle_output(self, context: OutputContext, obj: SpineState) -> None:
        if not isinstance(obj, SpineState):
            raise SpineDagsterError(
                f"SpineCheckpointIOManager only stores spine step results, got "
                f"{type(obj).__name__}; use it for ops built by spine_dagster.build_job only.")
        run = context.step_context.dagster_run
        state = self.run_state(run)
        if obj.checkpoint_bytes is not None:
            context.add_output_metadata({"spine/checkpoint": obj.step_name,
                                         "spine/checkpoint_bytes": obj.checkpoint_bytes})
        if obj.checkpoints_deleted is not None:
            context.add_output_metadata({"spine/checkpoints_deleted": obj.checkpoints_deleted})
        if obj.final:
            return
        state.hand_over(obj.step_name, obj.context)
        if not obj.checkpointed and not in_process(context):
            try:
                state.store.put_transit(run.run_id, obj.step_name,
                                        RawJSON(dumps(obj.context, what="context")))
            except Exception as exc:
                record_failure(state.store, state.spine_run_id, run.run_id, obj.step_name, exc,
                               log=context.log.warning)
                raise

    # -- loading --------------------------------------------------------------------------------
    def load_input(self, context: InputContext) -> dict[str, Any]:
        if not in_process(context):
            db.use_step_worker_pools()  # before this step process's first connection
        run = context.step_context.dagster_run
        state = self.run_state(run)
        steps = list(context.definition_metadata.get("spine/steps") or
                     [context.definition_metadata.get("spine/step")])
        upstream = context.upstream_output
        upstream_step = (upstream.definition_metadata.get("spine/last_step")
                         or upstream.definition_metadata.get("spine/step")) if upstream else None
        config = run_config_of(run)
        if config.get("start_from") not in steps:
            handed = state.handed_over(upstream_step) if upstream_step else None
            if handed is not None:
                return handed  # this run's own context: no read, no need to wait for writes
        state.flush()  # records its own failure, at its own step
        try:
            return self._load(context, state, config, steps, upstream_step,
                              upstream.definition_metadata.get("spine/last_index") if upstream
                              else None)
        except Exception as exc:
            record_failure(state.store, state.spine_run_id, run.run_id, steps[0], exc,
                           log=context.log.warning)
            raise

    def _load(self, context: InputContext, state: RunState, config: dict[str, Any],
              steps: list[str], upstream_step: str | None, upstream_index: Any) -> dict[str, Any]:
        store, run_id = state.store, state.spine_run_id
        if config.get("start_from") in steps:
            start = start_context_for(config, store, run_id)
            if start is not None:
                source = config.get("start_checkpoint")
                if source:
                    self._restored(context, store.get_checkpoint(run_id, source))
                return start
        if upstream_step is None:
            raise CheckpointNotFoundError(
                f"step {steps[0]!r} has no upstream step and no start context in run {run_id!r}")
        if not in_process(context):
            moved = store.get_transit(state.dagster_run_id, upstream_step)
            if moved is not None:
                return moved
        checkpoint = store.get_checkpoint(run_id, upstream_step)
        if checkpoint is None or not checkpoint.usable:
            raise CheckpointNotFoundError(no_upstream_checkpoint(
                store, run_id, steps[0], upstream_step, upstream_index, checkpoint))
        self._restored(context, checkpoint)
        return context_of(checkpoint.context_snapshot)

    @staticmethod
    def _restored(context: InputContext, checkpoint: Any) -> None:
        """``spine/restored_from`` on the loaded input: which checkpoint, written when, by whom."""
        if checkpoint is not None:
            context.add_input_metadata({RESTORED_FROM: {
                "step": checkpoint.step_name,
                "checkpoint_created_at": checkpoint.created_at.isoformat(),
                "dagster_run_id": checkpoint.dagster_run_id}})


def start_context_for(config: dict[str, Any], store: CheckpointStore,
                      run_id: str) -> dict[str, Any] | None:
    """The start context of a run that ``execute(start_from=...)`` or a resume began: the
    explicit ``start_context``, or the usable checkpoint of ``start_checkpoint``; else None."""
    if config.get("start_context") is not None:
        return decode(dict(config["start_context"]), where="the start context in the run config")
    source = config.get("start_checkpoint")
    if not source:
        return None
    checkpoint = store.get_checkpoint(run_id, source)
    if checkpoint is None or not checkpoint.usable:
        state = "has no checkpoint" if checkpoint is None else f"has only a {checkpoint.state} checkpoint"
        raise CheckpointNotFoundError(
            f"run {run_id!r} {state} for step {source!r} to start {config.get('start_from')!r} "
            f"from. List the checkpoints with: spine-dagster checkpoints {run_id}")
    return context_of(checkpoint.context_snapshot)


def no_upstream_checkpoint(store: CheckpointStore, run_id: str, step_name: str,
                           upstream_step: str, upstream_index: int | None,
                           found: Any = None) -> str:
    """Why a re-execution cannot start at ``step_name``, and where it can start instead."""
    if found is not None and not found.usable:
        why = ("it failed its quality gate" if found.state == REJECTED else
               "a step at or before it ran again since, so it no longer matches the run's state")
        return (f"step {step_name!r} needs the context after step {upstream_step!r}, but the "
                f"checkpoint of {upstream_step!r} in spine run {run_id!r} is {found.state}: {why}. "
                f"Resume the spine run instead (spine-dagster resume {run_id}, or "
                f"WorkflowRunner().resume): it starts where the run's usable checkpoints end.")
    earlier = [(index, name) for name, index, _ in store.list_checkpoint_steps(run_id)
               if upstream_index is None or index < upstream_index]
    where = (f"re-execute from the step after {max(earlier)[1]!r}, its newest checkpoint before "
             f"{step_name!r}," if earlier else "re-execute all steps")
    return (f"step {step_name!r} needs the context after step {upstream_step!r}, but spine run "
            f"{run_id!r} has no checkpoint for it (under checkpoint_strategy='key_steps' only key "
            f"steps are checkpointed), so a re-execution cannot start at {step_name!r}. Resume the "
            f"run instead: spine-dagster resume {run_id} (or WorkflowRunner().resume), or in the "
            f"Dagster UI {where} selecting everything downstream.")


def in_process(context: Any) -> bool:
    """True when the run's steps all run in this process (the in-process executor)."""
    step_context = getattr(context, "step_context", None)
    job_def = step_context.job_def if step_context is not None else context.job_def
    name = job_def.executor_def.name
    if name in IN_PROCESS_EXECUTORS:
        return True
    if name == "multi_or_in_process_executor":  # the default executor: its config says which
        run = step_context.dagster_run if step_context is not None else context.run
        execution = ((run.run_config or {}).get("execution") or {}).get("config") or {}
        return "in_process" in execution
    return False


IN_PROCESS_EXECUTORS = frozenset({"in_process", "execute_in_process_executor"})
"""Executors whose steps all run in the run's own process (``execute_in_process`` uses the
second one, whatever executor the job has)."""
