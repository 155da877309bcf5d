"""The workloads: step bodies shared by the spine workflows and the plain Dagster jobs.

Both sides run the *same* step bodies (``handler(ctx, config) -> StepResult``). The plain side is a
Dagster job built by :func:`plain_job`, a module-level factory, so that it can be wrapped with
``dagster.build_reconstructable_job`` and launched with ``execute_job`` exactly like the spine side
(same instance, same in-process executor, same launch path). The plain job passes a plain dict
from op to op and stores every output with Dagster's ``FilesystemIOManager``.

Example:
    >>> wf = spine_workflow("bench.doc", 3)
    >>> [s.name for s in wf.steps]
    ['s001', 's002', 's003']
    >>> plain_job("bench_doc", 3, base_dir="/tmp/x").name
    'bench_doc'
"""

from __future__ import annotations

import functools
import time
from typing import Any, Mapping

import dagster
from dagster import (
    DependencyDefinition,
    FilesystemIOManager,
    GraphDefinition,
    In,
    NodeInvocation,
    Out,
    in_process_executor,
)

from spine_dagster import Step, StepResult, Workflow
from spine_dagster import ErrorCategory
from spine_dagster.io_manager import SpineCheckpointIOManager

FAIL_PARAM = "bench_fail_at"
FAST_SETUP_PARAM = "bench_fast_setup"


def step_body(ctx: Any, config: Mapping[str, Any]) -> StepResult:
    """One step: optionally sleep, fail, or add a payload of ``payload_bytes`` to its output.

    ``ctx`` is a ``WorkflowContext`` on the spine side and a dict on the plain side; the body
    only reads ``params`` from it. ``params[FAIL_PARAM] == index`` makes step ``index`` fail
    unless it runs in a resume; ``params[FAST_SETUP_PARAM]`` skips the sleep of every other step
    (for set-up runs that only need to fail).
    """
    params = ctx.params if hasattr(ctx, "params") else ctx.get("params", {})
    failing = params.get(FAIL_PARAM) == config["index"]
    if config.get("sleep") and (failing or not params.get(FAST_SETUP_PARAM)):
        time.sleep(config["sleep"])
    if failing and not params.get("__resumed__"):
        return StepResult.fail(f"step {config['index']} fails on purpose", ErrorCategory.TRANSIENT)
    output: dict[str, Any] = {"index": config["index"]}
    if config.get("payload_bytes"):
        output["payload"] = "x" * config["payload_bytes"]
    if config.get("records"):
        output["records"] = make_records(config["records"])
    return StepResult.ok(output=output)


def make_records(count: int) -> list[dict[str, Any]]:
    """``count`` table-like records of about 100 bytes of JSON each."""
    return [{"id": i, "name": f"customer-{i:06d}", "amount": round(i * 1.37, 2),
             "active": i % 3 != 0, "tags": ["a", "b"]} for i in range(count)]


def step_configs(n_steps: int, sleep: float = 0.0, payload_bytes: int = 0,
                 first_records: int = 0) -> list[dict[str, Any]]:
    configs = []
    for i in range(1, n_steps + 1):
        config: dict[str, Any] = {"index": i}
        if sleep:
            config["sleep"] = sleep
        if payload_bytes:
            config["payload_bytes"] = payload_bytes
        if first_records and i == 1:
            config["records"] = first_records
        configs.append(config)
    return configs


def spine_workflow(name: str, n_steps: int, **sizes: Any) -> Workflow:
    """A linear spine workflow of ``n_steps`` steps running :func:`step_body`."""
    return Workflow(name, [Step.lambda_(f"s{c['index']:03d}", step_body, c)
                           for c in step_configs(n_steps, **sizes)])


@functools.lru_cache(maxsize=None)
def plain_job(name: str, n_steps: int, base_dir: str, sleep: float = 0.0,
              payload_bytes: int = 0, first_records: int = 0) -> dagster.JobDefinition:
    """The plain Dagster equivalent of :func:`spine_workflow`: same bodies, FilesystemIOManager.

    Built once per process and argument set, like a module-level ``@job`` (and like
    spine_dagster, which keeps each compiled workflow), so neither side pays for building the
    job on every launch.
    """
    configs = step_configs(n_steps, sleep=sleep, payload_bytes=payload_bytes,
                           first_records=first_records)
    ops = [_plain_op(name, c) for c in configs]
    deps = {NodeInvocation(op_def.name, alias=f"s{c['index']:03d}"):
            ({"prev": DependencyDefinition(f"s{c['index'] - 1:03d}")} if c["index"] > 1 else {})
            for op_def, c in zip(ops, configs)}
    graph = GraphDefinition(name=name, node_defs=ops, dependencies=deps)
    return graph.to_job(name=name, executor_def=in_process_executor,
                        resource_defs={"io_manager": FilesystemIOManager(base_dir=base_dir)})


def _plain_op(job_name: str, config: dict[str, Any]):
    step = f"s{config['index']:03d}"
    common = dict(name=f"{job_name}__{step}", out=Out(dict))

    def body(prev: dict[str, Any] | None) -> dict[str, Any]:
        state = prev or {"params": {}, "outputs": {}}
        result = step_body(state, config)
        if not result.success:
            raise dagster.Failure(description=result.error)
        return {**state, "outputs": {**state["outputs"], step: result.output}}

    if config["index"] == 1:
        @dagster.op(**common)
        def first(context):
            return body(None)

        return first

    @dagster.op(ins={"prev": In(dict)}, **common)
    def nxt(context, prev):
        return body(prev)

    return nxt


# -- the spine side, instrumented -----------------------------------------------------------------
WRITE_SECONDS: list[tuple[str, float]] = []
SAVE_SECONDS: list[tuple[str, float]] = []
WAIT_SECONDS: list[float] = []


def _time_checkpoint_barrier() -> None:
    """Time each step's checkpoint recording, and the barrier where a run waits for writes.

    In-process runs on PostgreSQL write a step's checkpoint on a background thread while Dagster
    records the step; the next step waits for it (``RunState.flush``). What checkpointing costs a
    run is the recording in the op (``engine._record``) plus those waits.
    """
    from spine_dagster import engine, run_state

    flush = run_state.RunState.flush
    record = engine._record

    def timed_flush(self):
        start = time.perf_counter()
        try:
            return flush(self)
        finally:
            WAIT_SECONDS.append(time.perf_counter() - start)

    def timed_record(context, io, state, workflow, step, *args, **kwargs):
        start = time.perf_counter()
        try:
            return record(context, io, state, workflow, step, *args, **kwargs)
        finally:
            WRITE_SECONDS.append((step.name, time.perf_counter() - start))

    run_state.RunState.flush = timed_flush
    engine._record = timed_record


_time_checkpoint_barrier()


class _TimedStore:
    """A ``CheckpointStore`` whose ``save_checkpoint`` (the database part of a write) is timed."""

    def __init__(self, store: Any) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def record_checkpoint(self, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return self._store.record_checkpoint(**kwargs)
        finally:
            SAVE_SECONDS.append((kwargs["step_name"], time.perf_counter() - start))


class TimedCheckpointIOManager(SpineCheckpointIOManager):
    """``SpineCheckpointIOManager`` whose store times the database part of each checkpoint write
    (``CheckpointStore.record_checkpoint``); the whole recording is timed in ``engine._record``."""

    def get_store(self) -> Any:
        return _TimedStore(super().get_store())


def timed_spine_job(name: str, n_steps: int, database_url: str, **sizes: Any):
    """A spine job (``build_job``) whose IO manager times each checkpoint write."""
    from spine_dagster import build_job

    return build_job(spine_workflow(name, n_steps, **sizes),
                     io_manager=TimedCheckpointIOManager(database_url=database_url))
