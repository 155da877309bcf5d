"""The resume rules, in one place: every resume path plans with :func:`plan_resume`.

``WorkflowRunner.resume``, ``execute(run_id=..., start_from=...)``, ``SpineDagsterClient.resume``,
the ``spine_resume`` job, ``spine_failure_sensor`` and ``spine-dagster resume`` all compute a
:class:`ResumePlan` here, then carry it out as a Dagster re-execution of the spine run's last
Dagster run (locally, or through the webserver). The rules:

* **Where a resume starts.** After the newest *usable* checkpoint (superseded and rejected ones
  never count), and never after the step the run failed at: if ``get_run`` says ``failed`` at step
  S, the resume runs S and the steps after it (under ``key_steps``, from the step after the
  newest checkpoint before S). A ``completed`` run has nothing to resume. ``start_from=S`` starts
  at S from the newest usable checkpoint before it.
* **The workflow-change rule.** A resume may reuse a checkpoint only if every step up to and
  including the step that wrote it is unchanged since the run (same name, type and target, in the
  same order). Steps after it, the failed step included, may change: that is how a fix is
  deployed. Otherwise ``WorkflowChangedError`` shows the difference, one line per step.
* **Param impact.** Each step records the param keys it read (see
  :mod:`spine_dagster.param_reads`). A ``params_override`` that changes a key a reused step read
  makes that step *stale*: by default the resume still starts after the newest checkpoint and
  warns (``on_stale="warn"``); ``on_stale="rerun"`` starts at the first stale step instead;
  ``on_stale="error"`` refuses with the plan. A change that no reused step read is safe, unless
  completed items of a map step that the resume runs read it: the plan counts those that run again
  (the item rule is :mod:`spine_dagster.item_reuse`'s).

Example:
    >>> plan = ResumePlan(run_id="r1", workflow_name="wf", status="failed", error_step="c",
    ...     steps=[StepPlan("a", 0, "reuse"), StepPlan("b", 1, "reuse", stale=True, changed=["day"]),
    ...            StepPlan("c", 2, "run")], start_step="c", start_reason="the run failed at 'c'",
    ...     param_diff={"day": ("2026-01-09", "2026-01-10")})
    >>> plan.reused_steps, plan.steps_to_run, plan.stale_steps
    (['a', 'b'], ['c'], ['b'])
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Collection, Mapping, Sequence

from .errors import (
    CheckpointNotFoundError,
    InvalidParamsError,
    InvalidSettingError,
    NothingToResumeError,
    StaleStepsError,
    UnknownStepError,
    WorkflowChangedError,
)
from .item_reuse import MapItemsPlan, plan_items, plan_items_again
from .lease import LEASE_SECONDS, ResumeLease, guard_not_running  # noqa: F401 - re-exported
from .param_reads import ALL
from .records import RESUMED, RunRecord
from .names import (
    INTERNAL_KEYS,
    LAUNCHER_TAG,
    RESOURCE_KEY,
    RESUME_RETRY_TAG,
    RUN_ID_TAG,
    WORKFLOW_TAG,
)
from .results import WorkflowStatus
from .serialization import check_json, to_json_value
from .snapshot import PARAMS_READ, SKIPPED
from .store import CheckpointStore

ON_STALE = ("warn", "rerun", "error")
_KEEP_DAGSTER_TAGS = ("dagster/partition",)
_MISSING = "<absent>"


@dataclass(frozen=True)
class StepPlan:
    """One step's fate in a resume: ``reuse`` (restored from checkpoints), ``run``, or ``gap``
    (before the start, but without a checkpoint: its output is not in the restored context)."""

    name: str
    index: int
    fate: str
    stale: bool = False
    changed: list[str] = field(default_factory=list)
    reads: list[str] | None = None
    checkpoint_at: datetime | None = None
    checkpoint_dagster_run: str | None = None
    items: MapItemsPlan | None = None
    """A map step that runs: which of its items the resume reuses and which run again."""


@dataclass
class ResumePlan:
    """What a resume will do, computed before it launches anything (see the module docs)."""

    run_id: str
    workflow_name: str
    status: str
    error_step: str | None
    steps: list[StepPlan]
    start_step: str | None
    start_reason: str
    start_checkpoint: str | None = None
    param_diff: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    safe_keys: list[str] = field(default_factory=list)
    workflow_diff: list[str] = field(default_factory=list)
    parent_dagster_run_id: str | None = None
    on_stale: str = "warn"
    warnings: list[str] = field(default_factory=list)
    params_override: dict[str, Any] = field(default_factory=dict)
    """What the resume applies over the restored params: ``carried_override`` (the overrides of
    earlier re-executions that wrote no usable checkpoint), then the new override."""
    carried_override: dict[str, Any] = field(default_factory=dict)

    @property
    def start_index(self) -> int:
        return next((s.index for s in self.steps if s.name == self.start_step), len(self.steps))

    @property
    def reused_steps(self) -> list[str]:
        return [s.name for s in self.steps if s.fate == "reuse"]

    @property
    def steps_to_run(self) -> list[str]:
        return [s.name for s in self.steps if s.fate == "run"]

    @property
    def stale_steps(self) -> list[str]:
        return [s.name for s in self.steps if s.stale]

    def to_dict(self) -> dict[str, Any]:
        """The plan as plain JSON values (``spine-dagster resume --plan --json``)."""
        data = asdict(self)
        data["steps"] = [{**asdict(s), "checkpoint_at": s.checkpoint_at.isoformat()
                          if s.checkpoint_at else None} for s in self.steps]
        data["param_diff"] = {k: {"old": old, "new": new}
                              for k, (old, new) in self.param_diff.items()}
        data.update(start_index=self.start_index, reused_steps=self.reused_steps,
                    steps_to_run=self.steps_to_run, stale_steps=self.stale_steps)
        return to_json_value(data, what="the resume plan")

    def __str__(self) -> str:
        return format_plan(self)


def format_value(value: Any) -> str:
    """A param value as the CLI's ``--param`` takes it: JSON."""
    if value == _MISSING:
        return "(absent)"
    return json.dumps(value, default=str, ensure_ascii=False)


def param_lines(plan: ResumePlan) -> list[str]:
    """One line per changed param: its old and new value, and whom the change concerns."""
    lines = []
    for key, (old, new) in plan.param_diff.items():
        notes = ["no reused step read it: safe"] if key in plan.safe_keys else []
        notes.extend(note for step in plan.steps if step.items
                     for note in [step.items.param_note(key, step.name)] if note)
        note = f" ({'; '.join(notes)})" if notes else ""
        lines.append(f"param {key}: {format_value(old)} -> {format_value(new)}{note}")
    return lines


def format_plan(plan: ResumePlan) -> str:
    """The plan for people: one line per step, then the params and the workflow changes."""
    lines = [f"resume plan for run {plan.run_id} (workflow {plan.workflow_name}, {plan.status}"
             f"{f' at {plan.error_step}' if plan.error_step else ''})",
             f"start: {plan.start_step or 'nothing to run'} ({plan.start_reason})"]
    if plan.parent_dagster_run_id:
        lines.append(f"re-executes Dagster run {plan.parent_dagster_run_id}")
    for step in plan.steps:
        if step.fate == "reuse":
            when = f"{step.checkpoint_at:%Y-%m-%d %H:%M:%S}" if step.checkpoint_at else "?"
            text = f"reuse  (checkpoint {when})"
        elif step.fate == "gap":
            text = "skip   (no checkpoint; not in the restored context)"
        else:
            text = "run"
        if step.stale:
            text += f"  STALE: read {', '.join(step.changed)}"
        lines.append(f"  {step.index + 1:>3}. {step.name:<24} {text}")
        lines.extend(f"         {line}" for line in (step.items.lines() if step.items else []))
    lines.extend(f"  {line}" for line in param_lines(plan))
    lines.extend(f"  workflow: {line}" for line in plan.workflow_diff)
    lines.extend(f"  warning: {w}" for w in plan.warnings)
    return "\n".join(lines)


# -- the workflow-change rule ------------------------------------------------------------------
def _describe(sig: Sequence[Any]) -> str:
    return f"{sig[1]} {sig[2]}" if len(sig) > 2 and sig[2] else str(sig[1] if len(sig) > 1 else "")


def workflow_diff(recorded: Sequence[Sequence[Any]] | None,
                  current: Sequence[Sequence[Any]]) -> list[str]:
    """One line per changed step between the run's workflow and the current one."""
    if recorded is None:
        return []
    old = {s[0]: (i, list(s)) for i, s in enumerate(recorded)}
    new = {s[0]: (i, list(s)) for i, s in enumerate(current)}
    lines: list[str] = []
    for index, sig in enumerate(current):
        name = sig[0]
        if name not in old:
            same_slot = recorded[index] if index < len(recorded) else None
            if same_slot is not None and same_slot[0] not in new and list(same_slot[1:]) == list(sig[1:]):
                lines.append(f"~ step {index + 1}: renamed {same_slot[0]!r} -> {name!r}")
            else:
                lines.append(f"+ {name}: added at position {index + 1} ({_describe(sig)})")
        elif old[name][1] != list(sig):
            lines.append(f"~ {name}: {_describe(old[name][1])} -> {_describe(sig)}")
        elif old[name][0] != index:
            lines.append(f"~ {name}: moved from position {old[name][0] + 1} to {index + 1}")
    renamed = {line.split("'")[1] for line in lines if "renamed" in line}
    for name, (index, sig) in old.items():
        if name not in new and name not in renamed:
            lines.append(f"- {name}: removed (was position {index + 1}, {_describe(sig)})")
    return lines


def _check_unchanged(record: RunRecord, current: Sequence[Sequence[Any]], reuse_until: int,
                     *, lines: list[str], cli_run: str) -> None:
    recorded = record.workflow_signature
    if recorded is None or reuse_until <= 0:
        return
    if [list(s) for s in recorded[:reuse_until]] == [list(s) for s in current[:reuse_until]]:
        return
    reused = [s[0] for s in recorded[:reuse_until]]
    raise WorkflowChangedError(
        f"workflow {record.workflow_name!r} changed since run {record.run_id!r} wrote its "
        f"checkpoints, in the steps a resume would reuse ({', '.join(reused)}):\n  "
        + "\n  ".join(lines or ["(the steps differ)"])
        + "\nA resume reuses a checkpoint only if every step up to and including the step that "
          "wrote it is unchanged (same name, type and target, in the same order); later steps "
          "may change.",
        hint=f"Restore those steps to resume, or start a new run with execute(workflow, "
             f"params=runner.get_run({record.run_id!r}).params).",
        cli_hint=f"Restore those steps to resume, or start a new run of the workflow with the "
                 f"params shown by: spine-dagster checkpoints {cli_run}")


# -- planning -----------------------------------------------------------------------------------
def check_params_override(params_override: Any, what: str = "params_override") -> dict[str, Any]:
    """``params_override`` as a dict of JSON values, or a clear ``InvalidParamsError``."""
    if params_override is None:
        return {}
    if not isinstance(params_override, Mapping):
        raise InvalidParamsError(
            f"{what} must be a mapping of param names to values, got "
            f"{type(params_override).__name__}; e.g. {what}={{'timeout': 120}}.")
    override = dict(params_override)
    check_json(override, what)
    return {k: v for k, v in override.items() if k != RESUMED}


def refuse_completed(record: RunRecord, start_from: str | None) -> None:
    """A completed run has nothing to resume (re-running part of it needs ``start_from``)."""
    if start_from is None and record.status is WorkflowStatus.COMPLETED:
        raise NothingToResumeError(
            f"run {record.run_id!r} completed; there is nothing to resume.",
            hint=f"To run it again, start a new run with execute(workflow, params=runner.get_run("
                 f"{record.run_id!r}).params), or re-run part of it with execute(workflow, "
                 f"run_id={record.run_id!r}, start_from=STEP).",
            cli_hint=f"To re-run part of it: spine-dagster resume {record.run_id} --start-from "
                     f"STEP.")


def _restored(store: CheckpointStore, record: RunRecord, start_checkpoint: str | None
              ) -> tuple[dict[str, Any], dict[str, list[str]] | None, dict[str, Any]]:
    """(params, params_read, carried overrides) of the context a resume restores.

    The carried overrides are those of the run's re-executions after the one that wrote the
    restored checkpoint: they changed params, but wrote no usable checkpoint after it, so the
    restored context does not hold their values. A resume applies them again.
    """
    if start_checkpoint is None:
        return {k: v for k, v in record.params.items() if k != RESUMED}, {}, {}
    checkpoint = store.get_checkpoint(record.run_id, start_checkpoint, usable_only=True)
    if checkpoint is None:
        return {k: v for k, v in record.params.items() if k != RESUMED}, {}, {}
    params = {k: v for k, v in (checkpoint.context_snapshot.get("params") or {}).items()
              if k != RESUMED}
    recorded = checkpoint.metadata.get(PARAMS_READ)
    # A checkpoint older than param tracking records nothing: then every step may have read
    # anything. Otherwise a step it does not name read nothing (a step a choice skipped).
    reads = dict(recorded) if isinstance(recorded, dict) else None
    lineage = store.lineage(record.run_id)
    written_at = {dagster_run: seq for dagster_run, seq, _ in lineage}.get(
        checkpoint.dagster_run_id)
    carried: dict[str, Any] = {}
    if written_at is not None:
        for _, seq, override in lineage:
            if seq > written_at:
                carried.update(override)
    carried.pop(RESUMED, None)
    return params, reads, carried


def check_start_context(store: CheckpointStore, record: RunRecord, start_from: str, start: int,
                        outputs: Collection[str], index_rows: Sequence[Any]) -> None:
    """A context a caller supplies to continue a run at ``start_from`` must hold the output of
    every step before it that has a valid checkpoint (a choice's skipped steps aside): the
    checkpoints written from it would otherwise lack them, and a resume never starts from a
    partial context (``snapshot.check_outputs_kept`` refuses such a checkpoint)."""
    skipped = {name for name, row in store.step_rows(record.run_id).items()
               if row.status == SKIPPED}
    missing = [i.step_name for i in index_rows  # the run's checkpoint_index
               if i.usable and i.item_index is None and i.step_index < start
               and i.step_name not in skipped and i.step_name not in outputs]
    if missing:
        raise InvalidParamsError(
            f"the context passed to continue run {record.run_id!r} at step {start_from!r} lacks "
            f"the output of {', '.join(repr(m) for m in missing)}, which the run completed "
            f"before it; the run would continue from a partial context and lose them.",
            hint=f"Pass a context that holds them, e.g. runner.get_checkpoint({record.run_id!r}, "
                 f"{missing[-1]!r}).context, or start a new run (context.with_run_id(NEW_ID)).")


def _diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    return {k: (old.get(k, _MISSING), v) for k, v in new.items() if k not in old or old[k] != v}


def plan_resume(store: CheckpointStore, record: RunRecord, signature: Sequence[Sequence[Any]], *,
                params_override: Mapping[str, Any] | None = None, start_from: str | None = None,
                on_stale: str = "warn", start_context: bool = False,
                context_outputs: Collection[str] | None = None) -> ResumePlan:
    """Plan a resume of ``record`` with the workflow whose steps are ``signature``.

    ``start_from`` starts at that step (``execute(run_id=..., start_from=...)``);
    ``start_context=True`` means the caller supplies the start context itself, and
    ``context_outputs`` names the steps whose outputs it holds (checked: see
    :func:`check_start_context`).
    """
    if on_stale not in ON_STALE:
        raise InvalidSettingError(f"on_stale must be one of {ON_STALE}, got {on_stale!r}")
    override = check_params_override(params_override)
    record.check()
    names = [s[0] for s in signature]
    position = {name: i for i, name in enumerate(names)}
    status = record.status.value
    if start_from is not None and start_from not in position:
        raise UnknownStepError(
            f"start_from={start_from!r} names no step of workflow {record.workflow_name!r}; its "
            f"steps are {names}.", hint="Pass one of them as start_from=STEP.",
            cli_hint="Pass one of them as --start-from STEP.")
    refuse_completed(record, start_from)
    index_rows = store.checkpoint_index(record.run_id)
    infos = {i.step_name: i for i in index_rows
             if i.usable and i.item_index is None and i.step_name in position}
    usable = sorted(position[name] for name in infos)
    lines = workflow_diff(record.workflow_signature, signature)

    def newest_before(limit: int) -> int | None:
        earlier = [i for i in usable if i < limit]
        return max(earlier) if earlier else None

    if start_from is not None:
        start = position[start_from]
        checkpoint_index = None if start_context else newest_before(start)
        if start > 0 and checkpoint_index is None and not start_context:
            raise CheckpointNotFoundError(
                f"run {record.run_id!r} has no usable checkpoint before step {start_from!r}, so "
                f"there is no context to start it from.",
                hint="Pass context= (e.g. from get_checkpoint) or start from an earlier step.",
                cli_hint="Start from an earlier step (--start-from STEP).")
        reason = f"start_from={start_from!r}"
        if start_context and context_outputs is not None:
            check_start_context(store, record, start_from, start, context_outputs, index_rows)
    else:
        failed_at = position.get(record.error_step) if status == "failed" else None
        limit = failed_at if failed_at is not None else len(names)
        checkpoint_index = newest_before(limit)
        start = checkpoint_index + 1 if checkpoint_index is not None else 0
        if start >= len(names):
            if status != "failed":
                step = record.error_step if status == "partial" and record.error_step else "STEP"
                failed = (f"; step {step!r} failed and the run continued past it (ErrorPolicy."
                          f"CONTINUE)" if step != "STEP" else "")
                raise NothingToResumeError(
                    f"run {record.run_id!r} ({status}) has a usable checkpoint for every "
                    f"step{failed}; there is nothing to resume.",
                    hint=f"Re-run a step with execute(workflow, run_id={record.run_id!r}, "
                         f"start_from={step if step == 'STEP' else repr(step)}).",
                    cli_hint=f"Re-run a step with: spine-dagster resume {record.run_id} "
                             f"--start-from {step}")
            checkpoint_index = newest_before(len(names) - 1)
            start = len(names) - 1
        if failed_at is not None:
            reason = (f"the run failed at {names[failed_at]!r}" if start == failed_at else
                      f"the run failed at {names[failed_at]!r}; the newest usable checkpoint "
                      f"before it is {names[start - 1]!r}" if start else
                      f"the run failed at {names[failed_at]!r} and has no usable checkpoint "
                      f"before it")
        else:
            reason = (f"the newest usable checkpoint is {names[start - 1]!r}" if start
                      else "the run has no usable checkpoint")
    start_checkpoint = names[checkpoint_index] if checkpoint_index is not None else None
    _check_unchanged(record, signature, (checkpoint_index + 1) if checkpoint_index is not None
                     else 0, lines=lines, cli_run=record.run_id)

    # Param impact: what the reused steps read, from the restored checkpoint.
    old_params, reads, carried = _restored(store, record, start_checkpoint)
    effective = {**carried, **override}
    diff = _diff(old_params, effective)
    reused_upto = checkpoint_index if checkpoint_index is not None else -1
    stale: dict[int, list[str]] = {}
    read_by_reused: set[str] = set()
    for index in range(reused_upto + 1):
        keys = [ALL] if reads is None else reads.get(names[index], [])
        read_by_reused.update(keys)
        changed = sorted(diff) if ALL in keys else sorted(set(keys) & set(diff))
        if changed:
            stale[index] = changed
    warnings: list[str] = []
    if stale:
        stale_names = [names[i] for i in sorted(stale)]
        keys = sorted({k for v in stale.values() for k in v})
        message = (f"steps {stale_names} read {keys}, which this resume changes; their "
                   f"checkpointed results were computed with the old values")
        if on_stale == "rerun":
            first_stale = min(stale)
            checkpoint_index = newest_before(first_stale)
            start = checkpoint_index + 1 if checkpoint_index is not None else 0
            start_checkpoint = names[checkpoint_index] if checkpoint_index is not None else None
            reason = f"on_stale='rerun': the first stale step is {names[first_stale]!r}"
            reused_upto = checkpoint_index if checkpoint_index is not None else -1
            stale = {i: v for i, v in stale.items() if i <= reused_upto}
            old_params, reads, carried = _restored(store, record, start_checkpoint)
            effective = {**carried, **override}
            diff = _diff(old_params, effective)
        else:
            warnings.append(message + (" (on_stale='warn'; pass on_stale='rerun', or "
                                       "--rerun-stale, to run them again)"))
    # The items of the map steps it runs: the start step's unchanged items are reused.
    items: dict[int, MapItemsPlan] = {}
    for index in range(start, len(names)):
        if len(signature[index]) > 2 and signature[index][1] == "map":
            params = {**old_params, **effective}
            if index > start:  # every completed item runs again: its rows are not read
                done = sorted({i.item_index for i in index_rows if i.usable and i.item_index
                               is not None and i.step_index == index})
                items[index] = plan_items_again(done, signature[index][2], params, names[start])
            else:
                items[index] = plan_items(store.item_checkpoints(
                    record.run_id, names[index], index), signature[index][2], params)
    read_by_items = {k for plan_ in items.values() for r in plan_.rerun for k in r.changed}
    safe = sorted(k for k in diff if k not in read_by_reused and ALL not in read_by_reused
                  and k not in read_by_items)
    steps = []
    for index, name in enumerate(names):
        info = infos.get(name)
        fate = ("reuse" if index <= reused_upto else "gap" if index < start else "run")
        steps.append(StepPlan(name, index, fate, stale=index in stale and fate == "reuse",
                              changed=stale.get(index, []),
                              reads=reads.get(name) if reads is not None else None,
                              checkpoint_at=info.created_at if info and fate == "reuse" else None,
                              checkpoint_dagster_run=info.dagster_run_id if info and fate == "reuse"
                              else None, items=items.get(index)))
    plan = ResumePlan(
        run_id=record.run_id, workflow_name=record.workflow_name, status=status,
        error_step=record.error_step, steps=steps, start_step=names[start],
        start_reason=reason, start_checkpoint=start_checkpoint, param_diff=diff, safe_keys=safe,
        workflow_diff=lines, parent_dagster_run_id=record.last_dagster_run_id,
        on_stale=on_stale, warnings=warnings, params_override=effective,
        carried_override=carried)
    if stale and on_stale == "error":
        raise StaleStepsError(
            f"this resume of run {record.run_id!r} would reuse steps that read params it "
            f"changes:\n{format_plan(plan)}",
            hint="Pass on_stale='rerun' to run them again, or on_stale='warn' to reuse them.",
            cli_hint="Pass --rerun-stale to run them again.", plan=plan)
    return plan


# -- carrying it out ----------------------------------------------------------------------------
def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``override`` merged into a copy of ``base``; nested dicts merge, everything else replaces."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def resume_run_config(parent_config: Mapping[str, Any] | None, plan: ResumePlan, *,
                      run_config_override: Mapping[str, Any] | None = None,
                      start_context: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The whole run config of the re-execution (Dagster does not merge): the parent's, without
    its one-shot start settings, with the plan's start, the plan's ``params_override`` and
    ``run_config_override`` deep-merged in."""
    if run_config_override is not None and not isinstance(run_config_override, Mapping):
        raise InvalidParamsError(
            f"run_config_override must be a mapping (run config, as in the Launchpad), got "
            f"{type(run_config_override).__name__}.")
    base = dict(parent_config or {})
    resources = dict(base.get("resources") or {})
    spine = dict((resources.get(RESOURCE_KEY) or {}).get("config") or {})
    for key in INTERNAL_KEYS:
        spine.pop(key, None)
    override = to_json_value(dict(plan.params_override), what="params_override")
    spine["params"] = {**(spine.get("params") or {}), **override}
    spine["params_override"] = override
    spine["start_from"] = plan.start_step
    if start_context is not None:
        spine["start_context"] = to_json_value(dict(start_context), what="context")
    elif plan.start_checkpoint:
        spine["start_checkpoint"] = plan.start_checkpoint
    resources[RESOURCE_KEY] = {**(resources.get(RESOURCE_KEY) or {}), "config": spine}
    base["resources"] = resources
    if run_config_override:
        check_json(dict(run_config_override), "run_config_override")
        base = deep_merge(base, to_json_value(dict(run_config_override),
                                              what="run_config_override"))
    return base


def resume_tags(parent_tags: Mapping[str, str], *, parent_run_id: str, root_run_id: str,
                spine_run_id: str, workflow_name: str, resume_retry: bool) -> dict[str, str]:
    """The parent's own tags (not its launcher), the spine run id, and the run-group tags;
    ``resume_retry`` tags it as Dagster tags its own from-failure re-executions."""
    tags = {k: v for k, v in parent_tags.items() if k != LAUNCHER_TAG
            and (not k.startswith("dagster/") or k.startswith(_KEEP_DAGSTER_TAGS))}
    tags.update({RUN_ID_TAG: spine_run_id, WORKFLOW_TAG: workflow_name,
                 "dagster/parent_run_id": parent_run_id, "dagster/root_run_id": root_run_id})
    if resume_retry:
        tags[RESUME_RETRY_TAG] = "true"
    return tags


def nodes_from(plan: ResumePlan, ops: Mapping[str, Sequence[str]]) -> list[str]:
    """The Dagster step keys a re-execution of ``plan`` runs: the op holding the start step and
    every op after it (``ops``: node -> its steps, in order)."""
    keys = list(ops)
    for position, node in enumerate(keys):
        if plan.start_step in ops[node]:
            return keys[position:]
    raise UnknownStepError(f"no op of the job runs step {plan.start_step!r}; the job does not "
                           f"match the workflow of run {plan.run_id!r}.")
