"""The benchmarks that run Dagster jobs: overhead, resume, checkpoint cost, many steps.

Every function takes a :class:`~benchmarks.harness.Backend` and a :class:`Sizes` and returns
``{"ratio": float, ...raw medians...}``. Spine runs go through ``WorkflowRunner`` (or, where the
checkpoint write is timed, through the same compiled job with an instrumented IO manager); plain
runs go through ``execute_job`` with a reconstructable job. All of them share the backend's one
Dagster instance and the in-process executor.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from dagster import DagsterEventType, build_reconstructable_job, execute_job

from spine_dagster import WorkflowRunner
from spine_dagster.serialization import dumps

from . import workloads
from .harness import Backend, median

MODULE = "benchmarks.workloads"


@dataclass
class Sizes:
    """How big and how often: ``quick``, ``full`` and the hidden ``tiny`` (smoke test) presets."""

    reps: int = 5
    warmup: int = 1
    overhead_steps: int = 20
    overhead_reps: int = 7
    resume_steps: int = 10
    resume_sleep: float = 0.3
    resume_fast_setup: bool = False
    context_bytes: int = 100 * 1024
    cost_steps: int = 6
    many_steps: int = 200
    many_reps: int = 5
    many_warmup: int = 1
    many_window: int = 10
    step_payload: int = 1024
    store_small: int = 1_000
    store_large: int = 1_000_000
    store_calls: int = 200
    retention_rows: int = 500_000
    writers: int = 8
    writer_seconds: float = 5.0
    sqlite_store_extras: bool = True  # retention and writer throughput on SQLite as well
    fused_reps: int = 7
    fused_steps: int = 100
    unfused_steps: int | None = None  # default: fused_steps
    write_samples: int = 600


def _spine_runner(backend: Backend) -> WorkflowRunner:
    runner = WorkflowRunner(database_url=backend.database_url, instance=backend.instance)
    runner.emit = lambda line: None  # a script's step lines: still followed, not printed here
    return runner


class Clock:
    """Wall time and this process's CPU time of a block."""

    def __enter__(self) -> Clock:
        self._wall, self._cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.wall = time.perf_counter() - self._wall
        self.cpu = time.process_time() - self._cpu


def _plain(backend: Backend, name: str, n_steps: int, **sizes: Any) -> Clock:
    job = build_reconstructable_job(MODULE, "plain_job",
                                    reconstructable_args=(name, n_steps, f"{backend.home}/fs"),
                                    reconstructable_kwargs=sizes)
    with Clock() as clock:
        result = execute_job(job, instance=backend.instance)
    if not result.success:
        raise RuntimeError(f"plain Dagster run {result.run_id} of {name} failed")
    return clock


def _spine(runner: WorkflowRunner, workflow, **kwargs: Any) -> tuple[float, Any]:
    with Clock() as clock:
        result = runner.execute(workflow, **kwargs)
    return clock.wall, result


def overhead(backend: Backend, sizes: Sizes) -> dict[str, Any]:
    """``overhead_ratio``: the same N-step workflow through spine_dagster and as a plain job.

    Also measures plain 1-op runs, for Dagster's own per-op overhead
    ``(plain N-op - plain 1-op) / (N - 1)`` that ``checkpoint_cost_fraction`` compares against.
    The three kinds of run are interleaved, and spine/plain alternate which goes first.
    ``ratio`` is the median of the per-repetition ratios (each repetition runs spine and plain
    back to back, so a busy moment of the machine hits both alike); ``ratio_of_medians`` is
    reported too. So is the process CPU time of each run (``cpu_ratio``): on a shared machine it
    is far less noisy than wall time, though it leaves out the database server's work.
    """
    n = sizes.overhead_steps
    runner = _spine_runner(backend)
    workflow = workloads.spine_workflow("bench.overhead", n)

    def spine_once() -> Clock:
        with Clock() as clock:
            result = runner.execute(workflow)
        if result.status != "completed":
            raise RuntimeError(f"spine run {result.run_id} failed: {result.error}")
        return clock

    def plain_once() -> Clock:
        return _plain(backend, "bench_plain", n)

    spine: list[Clock] = []
    plain: list[Clock] = []
    plain1: list[Clock] = []
    for i in range(sizes.warmup + sizes.overhead_reps):
        if i % 2 == 0:
            s, p = spine_once(), plain_once()
        else:
            p, s = plain_once(), spine_once()
        one = _plain(backend, "bench_plain_one", 1)
        if i >= sizes.warmup:
            spine.append(s)
            plain.append(p)
            plain1.append(one)
    spine_s, plain_s = [c.wall for c in spine], [c.wall for c in plain]
    per_op = (median(plain_s) - median([c.wall for c in plain1])) / (n - 1)
    return {
        "ratio": median([s / p for s, p in zip(spine_s, plain_s)]),
        "ratio_of_medians": median(spine_s) / median(plain_s),
        "spine_median_s": median(spine_s),
        "plain_median_s": median(plain_s),
        "cpu_ratio": median([c.cpu for c in spine]) / median([c.cpu for c in plain]),
        "spine_cpu_median_s": median([c.cpu for c in spine]),
        "plain_cpu_median_s": median([c.cpu for c in plain]),
        "plain_1op_median_s": median([c.wall for c in plain1]),
        "dagster_per_op_s": per_op,
        "steps": n,
        "reps": len(spine_s),
        "spine_s": spine_s,
        "plain_s": plain_s,
    }


def resume(backend: Backend, sizes: Sizes) -> dict[str, Any]:
    """``resume_ratio``: resume of a run that failed at its last step vs. a full re-run.

    Each repetition resumes a freshly failed run, then runs the whole workflow; ``ratio`` is the
    median of the per-repetition ratios (``ratio_of_medians`` is reported too).
    With ``resume_fast_setup`` (``--quick``), the run that is made to fail does not sleep in the
    steps before the failing one; that run is set-up, not measured, and the resume never runs
    those steps again.
    """
    n = sizes.resume_steps
    runner = _spine_runner(backend)
    workflow = workloads.spine_workflow("bench.resume", n, sleep=sizes.resume_sleep)
    setup = {workloads.FAIL_PARAM: n}
    if sizes.resume_fast_setup:
        setup[workloads.FAST_SETUP_PARAM] = True

    def resume_once() -> float:
        failed = runner.execute(workflow, params=setup)
        if failed.status != "failed" or failed.error_step != f"s{n:03d}":
            raise RuntimeError(f"set-up run {failed.run_id} should fail at step {n}: "
                               f"{failed.status} {failed.error_step}")
        start = time.perf_counter()
        resumed = runner.resume(failed.run_id)
        elapsed = time.perf_counter() - start
        if resumed.status != "completed" or resumed.completed_steps != [f"s{n:03d}"]:
            raise RuntimeError(f"resume of {failed.run_id} ran {resumed.completed_steps} and "
                               f"ended {resumed.status}")
        return elapsed

    def full_once() -> float:
        elapsed, result = _spine(runner, workflow)
        if result.status != "completed":
            raise RuntimeError(f"full run {result.run_id} failed: {result.error}")
        return elapsed

    for _ in range(sizes.warmup):  # a first re-execution; full runs were warmed by `overhead`
        resume_once()
    resume_s: list[float] = []
    full_s: list[float] = []
    for _ in range(sizes.reps):
        resume_s.append(resume_once())
        full_s.append(full_once())
    return {
        "ratio": median([r / f for r, f in zip(resume_s, full_s)]),
        "ratio_of_medians": median(resume_s) / median(full_s),
        "resume_median_s": median(resume_s),
        "full_rerun_median_s": median(full_s),
        "steps": n,
        "step_sleep_s": sizes.resume_sleep,
        "reps": len(resume_s),
        "resume_s": resume_s,
        "full_rerun_s": full_s,
    }


def _records_for(context_bytes: int) -> int:
    """How many :func:`workloads.make_records` make a checkpoint of about ``context_bytes``."""
    per_record = len(dumps(workloads.make_records(1000))) / 1000
    return max(1, round(context_bytes / per_record))


def checkpoint_cost(backend: Backend, sizes: Sizes, per_op_s: float) -> dict[str, Any]:
    """``checkpoint_cost_fraction``: one checkpoint write with a ~100 KB context / Dagster per-op.

    The write is timed inside the IO manager (``TimedCheckpointIOManager.handle_output``: build
    the snapshot, serialize it, check its size, hand it to the writer) plus the time the run then
    waits for it at the next step's barrier (``flush_checkpoints``): ``blocked_per_checkpoint_s``
    is what a checkpoint costs the run. Its database part (``save_checkpoint``, on the writer
    thread) is reported on its own too. The first step creates the records; every step's
    checkpoint then holds the whole ~100 KB context.
    """
    records = _records_for(sizes.context_bytes)
    job = build_reconstructable_job(
        MODULE, "timed_spine_job",
        reconstructable_args=("bench.checkpoint_cost", sizes.cost_steps, backend.database_url),
        reconstructable_kwargs={"first_records": records})
    writes: list[float] = []
    saves: list[float] = []
    blocked: list[float] = []
    mean_cost: list[float] = []
    bytes_seen: list[int] = []
    for i in range(sizes.warmup + sizes.reps):
        workloads.WRITE_SECONDS.clear()
        workloads.SAVE_SECONDS.clear()
        workloads.WAIT_SECONDS.clear()
        run_id = str(uuid.uuid4())
        result = execute_job(job, instance=backend.instance,
                             tags={"spine/run_id": run_id, "spine/workflow": "bench.checkpoint_cost"})
        if not result.success:
            raise RuntimeError(f"checkpoint-cost run {result.run_id} failed")
        if i >= sizes.warmup:
            writes.extend(seconds for _, seconds in workloads.WRITE_SECONDS)
            saves.extend(seconds for _, seconds in workloads.SAVE_SECONDS)
            n = len(workloads.WRITE_SECONDS)
            blocked.append(sum(workloads.WAIT_SECONDS) / n)
            mean_cost.append((sum(s for _, s in workloads.WRITE_SECONDS)
                              + sum(workloads.WAIT_SECONDS)) / n)
            bytes_seen.append(_checkpoint_bytes(backend.database_url, run_id, "s001"))
    write = median(writes)
    run_blocked = write + median(blocked)  # handle_output + the barrier wait per checkpoint
    return {
        "ratio": run_blocked / per_op_s,
        "blocked_per_checkpoint_s": run_blocked,
        # the mean includes each run's last checkpoint, written synchronously with the run's
        # final status, and cold first writes
        "mean_cost_per_checkpoint_s": median(mean_cost),
        "write_median_s": write,
        "database_median_s": median(saves),
        "dagster_per_op_s": per_op_s,
        "checkpoint_bytes": int(median(bytes_seen)),
        "writes": len(writes),
        "reps": sizes.reps,
    }


def _checkpoint_bytes(url: str, run_id: str, step: str | None = None) -> int:
    from spine_dagster.schema import checkpoints

    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    query = sa.select(sa.func.coalesce(sa.func.sum(checkpoints.c.size_bytes), 0)).where(
        checkpoints.c.run_id == run_id)
    if step is not None:
        query = query.where(checkpoints.c.step_name == step)
    with engine.connect() as conn:
        total = conn.execute(query).scalar_one()
    engine.dispose()
    return int(total)


def _step_durations(backend: Backend, dagster_run_id: str) -> dict[str, float]:
    logs = backend.instance.all_logs(
        dagster_run_id, of_type={DagsterEventType.STEP_START, DagsterEventType.STEP_SUCCESS})
    started: dict[str, float] = {}
    durations: dict[str, float] = {}
    for entry in logs:
        if entry.dagster_event_type == DagsterEventType.STEP_START:
            started[entry.step_key] = entry.timestamp
        elif entry.step_key in started:
            durations[entry.step_key] = entry.timestamp - started[entry.step_key]
    return durations


def many_steps(backend: Backend, sizes: Sizes) -> dict[str, Any]:
    """``many_steps_ratio``: per-step time late in a long workflow vs. early, each step adding 1 KB.

    A step's time is STEP_START to STEP_SUCCESS in Dagster's event log (it includes loading the
    input, the spine bookkeeping, and writing the checkpoint). ``early`` pools the first
    ``many_window`` steps of every repetition, ``late`` the last ``many_window``.
    Also reports the total checkpoint bytes of one run.
    """
    n, window = sizes.many_steps, sizes.many_window
    runner = _spine_runner(backend)
    workflow = workloads.spine_workflow("bench.many_steps", n, payload_bytes=sizes.step_payload)
    keys = [s.name for s in workflow.steps]
    early: list[float] = []
    late: list[float] = []
    first: list[float] = []
    last: list[float] = []
    runs: list[float] = []
    total_bytes: list[int] = []
    for i in range(sizes.many_warmup + sizes.many_reps):
        elapsed, result = _spine(runner, workflow)
        if result.status != "completed":
            raise RuntimeError(f"{n}-step run {result.run_id} failed: {result.error}")
        if i < sizes.many_warmup:
            continue
        durations = _step_durations(backend, result.dagster_run_id)
        early.extend(durations[k] for k in keys[:window])
        late.extend(durations[k] for k in keys[-window:])
        first.append(durations[keys[0]])
        last.append(durations[keys[-1]])
        runs.append(elapsed)
        total_bytes.append(_checkpoint_bytes(backend.database_url, result.run_id))
    return {
        "ratio": median(late) / median(early),
        "early_step_median_s": median(early),
        "late_step_median_s": median(late),
        "step_1_median_s": median(first),
        f"step_{n}_median_s": median(last),
        "run_median_s": median(runs),
        "checkpoint_bytes_per_run": int(median(total_bytes)),
        "steps": n,
        "window": window,
        "reps": len(runs),
    }

