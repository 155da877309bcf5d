"""What the checkpoint store returns: ``Checkpoint``, ``RunRecord``, ``StepRow``, ``CheckpointInfo``.

Pure Python, no Dagster and no database. Values that the store reads as JSON are decoded when
they are first used, so that listing runs never fails on one damaged row; reading a damaged value
raises ``CheckpointCorruptError`` naming the run (and step).

Example:
    >>> from datetime import datetime, timezone
    >>> now = datetime(2026, 1, 10, tzinfo=timezone.utc)
    >>> record = RunRecord(run_id="r1", workflow_name="wf", status=WorkflowStatus.FAILED,
    ...                    error_step="step3", error="API down", error_category="TRANSIENT",
    ...                    workflow_ref=None, job_name=None, attempts=1, created_at=now,
    ...                    updated_at=now, raw_params='{"timeout": 30}')
    >>> record, record.params
    (RunRecord(run_id='r1', workflow='wf', status='failed', error_step='step3', dagster_runs=0), {'timeout': 30})
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Iterable, TypeVar

from .context import WorkflowContext
from .errors import CheckpointCorruptError
from .results import WorkflowStatus
from .serialization import loads
from .snapshot import (CONTEXT_KEYS, check_snapshot, checkpoint_where, context_of,
                       repair_hint)

VALID, SUPERSEDED, REJECTED = "valid", "superseded", "rejected"
STATES = (VALID, SUPERSEDED, REJECTED)
RESUMED = "__resumed__"
T = TypeVar("T")


@dataclass(frozen=True)
class DamagedRow:
    """A stored row that a listing could not read: ``error`` names the row, the problem and
    the fix (``error.cli_message``: the command-line fix)."""

    run_id: str
    step_name: str | None
    error: CheckpointCorruptError


class Listing(list[T]):
    """The readable rows of a listing, in order (a list), and ``damaged``: the rows that could
    not be read, each a :class:`DamagedRow`. What ``list_runs(skip_damaged=True)`` and
    ``list_checkpoints(..., skip_damaged=True)`` return."""

    def __init__(self, items: Iterable[T] = (), damaged: Iterable[DamagedRow] = ()) -> None:
        super().__init__(items)
        self.damaged: list[DamagedRow] = list(damaged)

    def strict(self, what: str) -> Listing[T]:
        """Itself when nothing is damaged; else ``CheckpointCorruptError`` naming every damaged
        row (listings refuse to drop rows silently unless asked to)."""
        if not self.damaged:
            return self
        problems = "; ".join(str(d.error).rstrip(".") for d in self.damaged[:5])
        more = f" (and {len(self.damaged) - 5} more)" if len(self.damaged) > 5 else ""
        raise CheckpointCorruptError(
            f"{len(self.damaged)} of the rows of {what} cannot be read: {problems}{more}.",
            hint=f"Repair or delete the row(s) as each problem says. To list the readable rows "
                 f"now, pass skip_damaged=True: the damaged ones are then in .damaged.",
            cli_hint="Repair or delete the row(s) as each problem says.")


def stored_column(raw: Any, where: str, column: str, kind: type | None = None) -> Any:
    """The stored JSON of one column of a run's rows (``where``: the row), decoded; NULL is
    None, and a value that is not of ``kind`` (dict or list) is refused, not dropped."""
    fix = "Repair that column (or set it to NULL), or delete the run."
    value = None if raw is None else loads(raw, where=f"{where} ({column})", fix=fix)
    if kind is not None and value is not None and not isinstance(value, kind):
        expected = "a JSON object" if kind is dict else "a JSON array"
        raise CheckpointCorruptError(
            f"{where}: {column} is {type(value).__name__}, expected {expected}; spine_dagster "
            f"did not write this, the row was edited. {fix}")
    return value


def checked_state(state: str | None, *, run_id: str, step_name: str) -> str:
    """A checkpoint row's ``state`` (NULL: ``valid``), or ``CheckpointCorruptError``."""
    if state is None:
        return VALID
    if state not in STATES:
        raise CheckpointCorruptError(
            f"{checkpoint_where(run_id, step_name)} has state {state!r}, not "
            f"one of {list(STATES)}; spine_dagster did not write this, the row was edited. Set it "
            f"to 'superseded' (the step then runs again on resume) or back to what it was, or "
            f"delete the run's checkpoints to start over.")
    return state


@dataclass
class Checkpoint:
    """One checkpoint: the context of a spine run after ``step_name`` succeeded.

    ``state`` is ``valid``; ``superseded`` when a step at or before it ran again since (it was
    computed from an upstream state that no longer holds, so it is never resumed from or loaded);
    or ``rejected`` when the step's output failed its quality gate (kept so that the metrics can
    be inspected, never reused). ``item_index`` is set on the rows of a map step's items.
    """

    run_id: str
    workflow_name: str
    step_name: str
    context_snapshot: dict[str, Any]
    step_outputs: dict[str, Any]
    created_at: datetime
    step_index: int = 0
    dagster_run_id: str | None = None
    size_bytes: int = 0
    state: str = VALID
    superseded_at: datetime | None = None
    item_index: int | None = None

    @property
    def usable(self) -> bool:
        """True when a resume may start from this checkpoint."""
        return self.state == VALID

    @property
    def superseded(self) -> bool:
        return self.state == SUPERSEDED

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

    @classmethod
    def from_text(cls, text: Any, *, run_id: str, step_name: str, **fields: Any) -> Checkpoint:
        """A checkpoint from its stored JSON text, checked (``CheckpointCorruptError``)."""
        where = checkpoint_where(run_id, step_name)
        fields["state"] = checked_state(fields.get("state"), run_id=run_id, step_name=step_name)
        snapshot = check_snapshot(loads(text, where=where, fix=repair_hint(run_id, step_name)),
                                  run_id=run_id, step_name=step_name,
                                  own_output=fields.get("item_index") is None)
        # the seed's nested view ("What Gets Saved"): snapshot["context"]["params"], ...
        snapshot.setdefault("context", {k: snapshot.get(k) for k in CONTEXT_KEYS})
        return cls(run_id=run_id, step_name=step_name, context_snapshot=snapshot,
                   step_outputs=dict(snapshot.get("outputs") or {}), **fields)


@dataclass(frozen=True)
class CheckpointInfo:
    """A checkpoint row without its snapshot: what the resume planner needs."""

    step_name: str
    step_index: int
    created_at: datetime
    state: str
    item_index: int | None
    dagster_run_id: str | None
    size_bytes: int = 0

    @property
    def usable(self) -> bool:
        return self.state == VALID


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

    @property
    def duration_seconds(self) -> float | None:
        if self.started_at and self.updated_at:
            return max(0.0, (self.updated_at - self.started_at).total_seconds())
        return None


_UNSET = object()


@dataclass(repr=False)
class RunRecord:
    """A spine run as ``core_workflow_runs`` records it, with its lineage of Dagster runs.

    ``params`` are the run's effective params: the params it was started with, with every
    ``params_override`` of its resumes applied (keys that steps derive with ``context_updates``
    are in ``context.params``). ``original_params`` are the params the run was started with.
    """

    run_id: str
    workflow_name: str
    status: WorkflowStatus
    error_step: str | None
    error: str | None
    error_category: str | None
    workflow_ref: str | None
    job_name: str | None
    attempts: int
    created_at: datetime
    updated_at: datetime
    dagster_run_ids: list[str] = field(default_factory=list)
    latest_checkpoint: Checkpoint | None = None
    raw_params: Any = None
    raw_original_params: Any = None
    raw_partition: Any = None
    raw_context: Any = None
    raw_signature: Any = None
    _decoded: dict[str, Any] = field(default_factory=dict)

    def _decode(self, name: str, raw: Any, kind: type | None = None) -> Any:
        """The stored JSON of one column; a value of the wrong type is refused, not dropped."""
        if name not in self._decoded:
            self._decoded[name] = stored_column(
                raw, f"the record of run {self.run_id!r} in core_workflow_runs", name, kind)
        return self._decoded[name]

    def check(self, *, context: bool = True) -> RunRecord:
        """Decode every stored column now: ``CheckpointCorruptError`` for an edited one.

        Resumes call it before they launch anything, so that an edited record stops them
        before they write. The store's ``get_run`` checks every column but the (possibly large)
        final context, which is checked when it is read."""
        for _ in (self.params, self.original_params, self.partition, self.workflow_signature):
            pass
        if context:
            _ = self.final_context
        return self

    @property
    def params(self) -> dict[str, Any]:
        """The effective params: the original ones with every resume's override applied."""
        return dict(self._decode("params", self.raw_params, dict) or {})

    @property
    def original_params(self) -> dict[str, Any]:
        if self.raw_original_params is None:
            return self.params
        return dict(self._decode("original_params", self.raw_original_params, dict) or {})

    @property
    def partition(self) -> Any:
        return self._decode("partition", self.raw_partition)

    @property
    def final_context(self) -> dict[str, Any] | None:
        return self._decode("context", self.raw_context, dict)

    @property
    def workflow_signature(self) -> list[Any] | None:
        return self._decode("workflow_signature", self.raw_signature, list)

    @property
    def context(self) -> WorkflowContext:
        """The run's newest context: final when it ended, else the newest usable checkpoint's."""
        if self.final_context is not None:
            data = dict(self.final_context)
            data.setdefault("run_id", self.run_id)
            return WorkflowContext.from_dict(data)
        if self.latest_checkpoint is not None:
            return self.latest_checkpoint.context
        return WorkflowContext(run_id=self.run_id, workflow_name=self.workflow_name,
                               params=self.params, partition=self.partition)

    @property
    def last_dagster_run_id(self) -> str | None:
        return self.dagster_run_ids[-1] if self.dagster_run_ids else None

    def __repr__(self) -> str:
        return (f"RunRecord(run_id={self.run_id!r}, workflow={self.workflow_name!r}, "
                f"status={self.status.value!r}, error_step={self.error_step!r}, "
                f"dagster_runs={len(self.dagster_run_ids)})")
