"""Fused mode against DBOS and against one op per step: 100 trivial steps, side by side.

One function, :func:`fused`, measures in interleaved repetitions (the order alternates, so that a
busy moment of the shared machine hits every side alike):

* spine_dagster, fused (``Workflow(fuse=True)``: one op runs the 100 steps, each with its own
  checkpoint and step row, durable before the next step starts), through ``WorkflowRunner`` on
  the backend's Dagster instance, with the same workflow of 1 step;
* the same workflow unfused (one op per step), 100 steps and 1 step;
* DBOS (:mod:`benchmarks.dbos_side`): a workflow of 100 ``@DBOS.step`` calls, and of 1.

The per-step cost of a side is ``(run of 100 steps - run of 1 step) / 99``: what one more step
costs, without the run's fixed cost. ``fused_run_vs_dbos`` compares whole 100-step runs, fixed
cost included (Dagster's own per-run cost is most of it). Each ratio is the median of the
per-repetition ratios; the ratio of the medians is reported next to it.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

from spine_dagster import Step, StepResult, Workflow, WorkflowRunner

from .dbos_side import DbosSide, unavailable
from .harness import Backend, durability_of, median

STEPS = 100


def trivial(ctx: Any, config: Any) -> StepResult:
    """As trivial as DBOS's step: return a number."""
    return StepResult.ok(output={"i": config["i"] + 1})


def workflow(name: str, n: int, fuse: bool) -> Workflow:
    return Workflow(name, [Step.lambda_(f"s{i:03d}", trivial, {"i": i}) for i in range(n)],
                    fuse=fuse)


def _per_step(many: float, one: float, n: int) -> float:
    return (many - one) / (n - 1)


def fused(backend: Backend, reps: int, warmup: int = 1, steps: int = STEPS,
          unfused_steps: int | None = None) -> dict[str, dict[str, Any]]:
    """``fused_step_vs_dbos``, ``fused_run_vs_dbos`` and ``fused_vs_unfused`` on one backend.

    ``unfused_steps`` (default ``steps``) sizes the unfused workflow whose per-step cost the fused
    one is compared with. Without DBOS installed, the two DBOS figures say why they are skipped.
    """
    runner = WorkflowRunner(database_url=backend.database_url, instance=backend.instance,
                            progress=False)
    n_unfused = unfused_steps or steps
    flows = {"fused_1": workflow("bench.fused_1", 1, True),
             "fused_n": workflow("bench.fused_n", steps, True),
             "unfused_1": workflow("bench.unfused_1", 1, False),
             "unfused_n": workflow("bench.unfused_n", n_unfused, False)}

    phases: list[dict[str, float]] = []

    def spine(key: str) -> float:
        wall = time.time()
        start = time.perf_counter()
        result = runner.execute(flows[key])
        elapsed = time.perf_counter() - start
        if result.status != "completed":
            raise RuntimeError(f"spine run {result.run_id} of {key} failed: {result.error}")
        if key == "fused_1":
            phases.append(fixed_cost(backend, result.dagster_run_id, wall, wall + elapsed))
        return elapsed

    missing = unavailable()
    timings: dict[str, list[float]] = {k: [] for k in (*flows, "dbos_1", "dbos_n")}
    durability: dict[str, Any] = {}
    with (contextlib.nullcontext() if missing else DbosSide.open(backend)) as dbos:
        sides = [(k, lambda k=k: spine(k)) for k in flows]
        if dbos is not None:
            sides += [("dbos_1", lambda: dbos.run(1)), ("dbos_n", lambda: dbos.run(steps))]
            durability = dbos.durability()
        for rep in range(warmup + reps):
            order = sides if rep % 2 == 0 else sides[::-1]
            measured = {key: fn() for key, fn in order}
            if rep >= warmup:
                for key, value in measured.items():
                    timings[key].append(value)

    fused_step = [_per_step(n, one, steps) for n, one in zip(timings["fused_n"], timings["fused_1"])]
    unfused_step = [_per_step(n, one, n_unfused)
                    for n, one in zip(timings["unfused_n"], timings["unfused_1"])]
    medians = {f"{k}_median_s": median(v) for k, v in timings.items() if v}
    common = {"steps": steps, "reps": reps, "spine_durability": durability_of(backend),
              **medians}
    fixed = {k: round(median([p[k] for p in phases[-len(timings["fused_1"]):]]), 4)
             for k in phases[0]} if phases else {}
    out: dict[str, dict[str, Any]] = {
        "fused_vs_unfused": {
            "ratio": median([f / u for f, u in zip(fused_step, unfused_step)]),
            "ratio_of_medians": median(fused_step) / median(unfused_step),
            "fused_per_step_ms": median(fused_step) * 1000,
            "unfused_per_step_ms": median(unfused_step) * 1000,
            "unfused_steps": n_unfused, **common},
    }
    if missing:
        skipped = {"ratio": None, "skipped": missing}
        out["fused_step_vs_dbos"] = dict(skipped)
        out["fused_run_vs_dbos"] = dict(skipped)
        return out
    dbos_step = [_per_step(n, one, steps) for n, one in zip(timings["dbos_n"], timings["dbos_1"])]
    out["fused_step_vs_dbos"] = {
        "ratio": median([f / d for f, d in zip(fused_step, dbos_step)]),
        "ratio_of_medians": median(fused_step) / median(dbos_step),
        "fused_per_step_ms": median(fused_step) * 1000,
        "dbos_per_step_ms": median(dbos_step) * 1000,
        "dbos_durability": durability, **common}
    out["fused_run_vs_dbos"] = {
        "ratio": median([f / d for f, d in zip(timings["fused_n"], timings["dbos_n"])]),
        "ratio_of_medians": median(timings["fused_n"]) / median(timings["dbos_n"]),
        "fused_run_s": median(timings["fused_n"]), "dbos_run_s": median(timings["dbos_n"]),
        "fused_1_step_run_s": median(timings["fused_1"]),
        "dagster_fixed_cost_s": fixed,
        "dbos_durability": durability, **common}
    return out


def fixed_cost(backend: Backend, dagster_run_id: str, began: float, ended: float
               ) -> dict[str, float]:
    """Where the time of a 1-step run goes, from the timestamps of its Dagster events (seconds).

    ``launch``: ``execute_job`` until the run's first event (creating the run, its job and plan
    snapshots, loading the job); ``run_storage_setup``: from that event to the executor's first
    one (on SQLite, creating the run's own event-log database); ``resources``; ``log_capture``:
    starting and stopping the processes that capture the run's stdout and stderr (Dagster's
    compute logs); ``op``: the op itself (spine's bookkeeping and the step); ``finish``: the
    run's last events and spine reading the outcome; ``events``: how many events the run stored.
    """
    from dagster import DagsterEventType as T

    logs = backend.instance.all_logs(dagster_run_id)
    first: dict[Any, float] = {}
    last: dict[Any, float] = {}
    for entry in logs:
        first.setdefault(entry.dagster_event_type, entry.timestamp)
        last[entry.dagster_event_type] = entry.timestamp
    start = logs[0].timestamp
    executing = first.get(T.ENGINE_EVENT, start)
    return {
        "total": ended - began,
        "launch": start - began,
        "run_storage_setup": executing - start,
        "resources": first.get(T.RESOURCE_INIT_SUCCESS, executing) - executing,
        "log_capture": (first.get(T.STEP_START, start) - first.get(T.LOGS_CAPTURED, start))
        + (last.get(T.ENGINE_EVENT, start) - last.get(T.STEP_SUCCESS, start)),
        "op": last.get(T.STEP_SUCCESS, start) - first.get(T.STEP_START, start),
        "finish": ended - last.get(T.ENGINE_EVENT, start),
        "events": float(len(logs)),
    }
