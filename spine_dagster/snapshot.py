"""The spine checkpoint format: what a ``context_snapshot`` holds, and how a stored one is checked.

Pure Python, no Dagster and no database. A snapshot is the serialized ``WorkflowContext`` after a
step, at top level, plus the checkpoint's own metadata::

    {"run_id": "...", "workflow_name": "my.workflow", "step_name": "step2",
     "params": {...}, "outputs": {"step1": {...}, "step2": {...}}, "quality_metrics": {...},
     "partition": {...}, "started_at": "2026-01-10T12:00:00+00:00",
     "metadata": {"created_at": "...", "python_version": "3.11.7", "spine_dagster_version": "...",
                  "dagster_version": "...", "dagster_run_id": "...", "params_read": {...}}}

A snapshot read back from the database is untrusted: :func:`check_snapshot` refuses one that
``spine_dagster`` cannot have written (missing keys, wrong types, another run's or step's row, a
step without its own output), and :func:`check_outputs_kept` one that lacks the output of a step
that completed before it, so that a resume never continues from an empty or partial context.

Example:
    >>> snapshot = build_snapshot("r1", "wf", "a", {"params": {"k": 1}, "outputs": {"a": {}},
    ...                                              "started_at": "2026-01-10T12:00:00+00:00"},
    ...                           dagster_run_id="d1", dagster_version="1.13")
    >>> check_snapshot(snapshot, run_id="r1", step_name="a")["params"]
    {'k': 1}
    >>> check_snapshot({}, run_id="r1", step_name="a")
    Traceback (most recent call last):
    ...
    spine_dagster.errors.CheckpointCorruptError: the checkpoint of step 'a' in run 'r1' lacks ...
"""

from __future__ import annotations

import platform
from datetime import datetime, timezone
from typing import Any, Mapping, Sequence

from .errors import CheckpointCorruptError
from .version import __version__

CONTEXT_KEYS = ("params", "outputs", "quality_metrics", "partition", "started_at")
CHECKPOINT_METADATA = ("created_at", "python_version", "spine_version", "spine_dagster_version",
                       "dagster_version", "dagster_run_id")
SKIPPED = "skipped"
"""The status of a step that a choice jumped over (it has no output)."""
PARAMS_READ = "params_read"
"""Context metadata: for each step so far, the param keys it read (``["*"]``: all of them)."""
_REQUIRED: dict[str, tuple[type, ...]] = {"params": (dict,), "outputs": (dict,)}
_OPTIONAL: dict[str, tuple[type, ...]] = {
    "run_id": (str,), "workflow_name": (str,), "step_name": (str,), "metadata": (dict,),
    "quality_metrics": (dict, type(None)), "started_at": (str, type(None)),
}


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def build_snapshot(run_id: str, workflow_name: str, step_name: str, context: Mapping[str, Any],
                   *, dagster_run_id: str | None, dagster_version: str) -> dict[str, Any]:
    """A checkpoint's ``context_snapshot``: the serialized context plus checkpoint metadata.

    ``context`` is ``WorkflowContext.to_dict()``. ``metadata`` holds the context's own metadata
    plus ``created_at``, ``python_version``, ``spine_version`` (the seed's key) and
    ``spine_dagster_version``, ``dagster_version`` and ``dagster_run_id``.
    """
    snapshot: dict[str, Any] = {"run_id": run_id, "workflow_name": workflow_name,
                                "step_name": step_name}
    for key in CONTEXT_KEYS:
        snapshot[key] = context.get(key)
    snapshot["metadata"] = {
        **(context.get("metadata") or {}),
        "created_at": utcnow().isoformat(),
        "python_version": platform.python_version(),
        "spine_version": __version__,  # the seed's name for it
        "spine_dagster_version": __version__,
        "dagster_version": dagster_version,
        "dagster_run_id": dagster_run_id,
    }
    return snapshot


def context_of(snapshot: Mapping[str, Any]) -> dict[str, Any]:
    """The ``WorkflowContext.to_dict()`` form inside a checkpoint snapshot."""
    context = {key: snapshot.get(key) for key in CONTEXT_KEYS}
    context["run_id"] = snapshot.get("run_id")
    context["workflow_name"] = snapshot.get("workflow_name")
    context["metadata"] = {k: v for k, v in (snapshot.get("metadata") or {}).items()
                           if k not in CHECKPOINT_METADATA}
    return context


def checkpoint_where(run_id: str, step_name: str) -> str:
    """How every error about a checkpoint row names it."""
    return f"the checkpoint of step {step_name!r} in run {run_id!r}"


def repair_hint(run_id: str, step_name: str) -> str:
    """What every ``CheckpointCorruptError`` about a checkpoint row tells the operator to do."""
    return (f"Inspect the stored row with: spine-dagster checkpoint {run_id} {step_name} --json; "
            f"repair it, or delete the run's checkpoints to start over.")


def check_snapshot(snapshot: Any, *, run_id: str, step_name: str,
                   own_output: bool = True) -> dict[str, Any]:
    """``snapshot`` if it has the shape spine_dagster writes, else ``CheckpointCorruptError``.

    ``own_output``: the step's own output must be among the outputs (true of every step
    checkpoint; a map item's row holds the item's own outputs instead).
    """
    where, fix = checkpoint_where(run_id, step_name), " " + repair_hint(run_id, step_name)
    if not isinstance(snapshot, dict):
        raise CheckpointCorruptError(
            f"{where} is {type(snapshot).__name__}, not a JSON object.{fix}")
    missing = [key for key in _REQUIRED if key not in snapshot]
    if missing:
        raise CheckpointCorruptError(
            f"{where} lacks {', '.join(repr(k) for k in missing)}; a resume from it would lose "
            f"data.{fix}")
    for key, types in {**_REQUIRED, **_OPTIONAL}.items():
        if key in snapshot and not isinstance(snapshot[key], types):
            expected = " or ".join("null" if t is type(None) else
                                   {"dict": "an object", "str": "text"}.get(t.__name__, t.__name__)
                                   for t in types)
            raise CheckpointCorruptError(
                f"{where}: {key!r} is {type(snapshot[key]).__name__}, expected {expected}.{fix}")
    if snapshot.get("run_id", run_id) != run_id or snapshot.get("step_name", step_name) != step_name:
        raise CheckpointCorruptError(
            f"{where} holds the context of step {snapshot.get('step_name')!r} of run "
            f"{snapshot.get('run_id')!r}: the row was copied or edited.{fix}")
    metadata = snapshot.get("metadata") or {}
    skipped = bool(metadata.get("skip_to"))  # a step a choice jumped over has no output
    if own_output and not skipped and step_name not in snapshot["outputs"]:
        raise CheckpointCorruptError(
            f"{where} has no output of step {step_name!r} itself; the outputs were truncated.{fix}")
    started = snapshot.get("started_at")
    if started is not None:
        try:
            datetime.fromisoformat(started)
        except ValueError:
            raise CheckpointCorruptError(
                f"{where}: started_at {started!r} is not an ISO date and time.{fix}") from None
    reads = metadata.get(PARAMS_READ)
    if reads is not None and not (isinstance(reads, dict) and all(
            isinstance(v, list) and all(isinstance(k, str) for k in v) for v in reads.values())):
        raise CheckpointCorruptError(
            f"{where}: metadata.{PARAMS_READ} is not a map of step names to lists of keys.{fix}")
    return snapshot


def check_outputs_kept(snapshot: Mapping[str, Any], *, run_id: str, step_name: str,
                       step_index: int, earlier: Sequence[tuple[str, int, str | None]]) -> None:
    """``CheckpointCorruptError`` when a valid step checkpoint lost an earlier step's output.

    ``earlier``: (step name, step index, step status) of the run's *valid* step checkpoints
    (``core_workflow_checkpoints`` joined with ``core_workflow_steps``). Contexts only grow: a
    valid checkpoint was computed from the context of the newest valid checkpoint before it (a
    step that runs again supersedes its own and every later checkpoint), so it holds the output
    of every step before it that has a valid checkpoint, unless a choice skipped that step
    (status ``skipped``: it has no output). A step without a step row (older databases) is not
    required.

    Example:
        >>> snap = {"outputs": {"b": {}}}
        >>> check_outputs_kept(snap, run_id="r1", step_name="b", step_index=1,
        ...                    earlier=[("a", 0, "skipped"), ("b", 1, "completed")])
        >>> check_outputs_kept(snap, run_id="r1", step_name="b", step_index=1,
        ...                    earlier=[("a", 0, "completed")])
        Traceback (most recent call last):
        ...
        spine_dagster.errors.CheckpointCorruptError: the checkpoint of step 'b' in run 'r1' lacks the output of step 'a', ...
    """
    outputs = snapshot.get("outputs")
    if not isinstance(outputs, Mapping):
        return  # check_snapshot refuses it
    missing = [name for name, index, status in sorted(earlier, key=lambda e: e[1])
               if index < step_index and status not in (None, SKIPPED) and name not in outputs]
    if missing:
        steps = ", ".join(repr(name) for name in missing)
        raise CheckpointCorruptError(
            f"{checkpoint_where(run_id, step_name)} lacks the output of step"
            f"{'s' * (len(missing) > 1)} "
            f"{steps}, which completed before it (the run's valid checkpoint of "
            f"{missing[0]!r} holds it); the outputs were truncated, and a resume from it would "
            f"lose them. {repair_hint(run_id, step_name)}")
