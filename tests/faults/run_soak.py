"""The run-state soak: many runs in one process, and what the process holds after them.

Used by ``test_run_state.py`` (a short soak that fails when anything module-level grows with runs)
and ``benchmarks/soak.py --runs`` (1,000 runs, a report every 100).

The runs cycle through three kinds: a workflow built inside a function (with closures; a new one
for every run, half of them failing and then resumed in this process), a module-level workflow
that fails and is then resumed, and a module-level workflow that completes.

:func:`measure` reads what must stay flat: the process's RSS and threads, the size of every
mutable module-level container (dict, set, list, weak dictionary, ``lru_cache``) of every
``spine_dagster`` module (found by walking the modules, so a new registry is watched too), the
SQLAlchemy pools of the checkpoint engines, and, on PostgreSQL, the server's count of this
process's connections (``pg_stat_activity`` by ``application_name``).
"""

from __future__ import annotations

import gc
import sys
import threading
import weakref
from typing import Any, Callable

import sqlalchemy as sa

from spine_dagster import ErrorCategory, Step, StepResult, Workflow, WorkflowRunner

_CONTAINERS = (dict, set, list, weakref.WeakValueDictionary, weakref.WeakKeyDictionary,
               weakref.WeakSet)


def _first(ctx, config):
    return {"n": ctx.params.get("n", 0)}


def _second(ctx, config):
    if ctx.params.get("fail"):
        return StepResult.fail("planned failure", category=ErrorCategory.TRANSIENT)
    return {"double": 2 * ctx.get_output("first", "n")}


MODULE_WORKFLOW = Workflow("soak.module", [Step.lambda_("first", _first),
                                           Step.lambda_("second", _second)])


def build_local(index: int) -> Workflow:
    """A workflow built inside a function; its steps are closures over this call's data."""
    payload = [index] * 1000

    def first(ctx, config):
        return {"n": len(payload) + ctx.params.get("n", 0)}

    def second(ctx, config):
        if ctx.params.get("fail"):
            return StepResult.fail("planned failure", category=ErrorCategory.TRANSIENT)
        return {"double": 2 * ctx.get_output("first", "n") + payload[0] - index}

    return Workflow("soak.local", [Step.lambda_("first", first), Step.lambda_("second", second)])


def one_run(runner: WorkflowRunner, index: int) -> list[str]:
    """Run number ``index`` (its kind is ``index % 3``); returns the statuses of its executions."""
    kind = index % 3
    if kind == 0:
        workflow = build_local(index)
        fail = index % 2 == 0
    else:
        workflow, fail = MODULE_WORKFLOW, kind == 1
    result = runner.execute(workflow, params={"n": index, "fail": fail})
    statuses = [result.status.value]
    if fail:
        result = runner.resume(result.run_id, params_override={"fail": False})
        statuses.append(result.status.value)
    return statuses


def module_containers() -> dict[str, int]:
    """``module.attr -> size`` of every mutable module-level container of spine_dagster."""
    sizes: dict[str, int] = {}
    for name, module in sorted(sys.modules.items()):
        if name != "spine_dagster" and not name.startswith("spine_dagster."):
            continue
        for attr, value in vars(module).items():
            if attr.startswith("__"):
                continue
            key = f"{name.removeprefix('spine_dagster.')}.{attr}"
            if isinstance(value, _CONTAINERS):
                sizes[key] = len(value)
            elif callable(getattr(value, "cache_info", None)) and getattr(
                    value, "__module__", None) == name:
                sizes[key] = value.cache_info().currsize
    return sizes


def _status(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return -1


def pg_counter(admin_url: str, application_name: str) -> Callable[[], int]:
    """Counts the server's connections named ``application_name`` (on a connection of its own)."""
    engine = sa.create_engine(admin_url, poolclass=sa.pool.NullPool)

    def count() -> int:
        with engine.connect() as conn:
            return conn.execute(sa.text("SELECT count(*) FROM pg_stat_activity WHERE "
                                        "application_name = :n"), {"n": application_name}).scalar()

    return count


def with_application_name(url: str, name: str) -> str:
    return sa.make_url(url).update_query_dict({"application_name": name}).render_as_string(
        hide_password=False)


def measure(pg_count: Callable[[], int] | None = None) -> dict[str, Any]:
    """What the process holds now (after a full garbage collection)."""
    from spine_dagster import db as spine_db

    gc.collect()
    pools = {}
    for url, engine in list(spine_db._engines.items()):
        pool = engine.pool
        pools[sa.make_url(url).render_as_string(hide_password=True)] = {
            "checkedout": pool.checkedout() if hasattr(pool, "checkedout") else None,
            "size": pool.size() if hasattr(pool, "size") else None}
    return {"rss_mb": _status("VmRSS") / 1024, "threads": threading.active_count(),
            "os_threads": _status("Threads"), "caches": module_containers(), "pools": pools,
            "pg_connections": pg_count() if pg_count else None}


def soak(runner: WorkflowRunner, runs: int, every: int,
         report: Callable[[int, dict[str, Any]], None] | None = None,
         pg_count: Callable[[], int] | None = None) -> dict[int, dict[str, Any]]:
    """``runs`` runs; :func:`measure` after every ``every`` of them (and ``report`` it)."""
    points: dict[int, dict[str, Any]] = {}
    for index in range(1, runs + 1):
        statuses = one_run(runner, index)
        if statuses[-1] != "completed":
            raise AssertionError(f"run {index} ended {statuses}")
        if index % every == 0:
            points[index] = measure(pg_count)
            if report is not None:
                report(index, points[index])
    return points


def grown(before: dict[str, Any], after: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """What grew between two measures: caches, threads, pools and connections (not RSS)."""
    changes = {key: (before["caches"].get(key), size) for key, size in after["caches"].items()
               if size > (before["caches"].get(key) or 0)}
    for key in ("threads", "os_threads", "pg_connections"):
        if (after[key] or 0) > (before[key] or 0):
            changes[key] = (before[key], after[key])
    for url, pool in after["pools"].items():
        old = before["pools"].get(url, {})
        if (pool["checkedout"] or 0) > (old.get("checkedout") or 0):
            changes[f"pool {url} checkedout"] = (old.get("checkedout"), pool["checkedout"])
    return changes


def line(index: int, point: dict[str, Any]) -> str:
    caches = ", ".join(f"{k}={v}" for k, v in point["caches"].items() if v)
    pools = "; ".join(f"{p['checkedout']} out of {p['size']}" for p in point["pools"].values())
    pg = f", pg connections {point['pg_connections']}" if point["pg_connections"] is not None \
        else ""
    return (f"run {index:5d}: RSS {point['rss_mb']:.1f} MB, threads {point['threads']} (os "
            f"{point['os_threads']}), pool {pools}{pg}\n    caches: {caches}")


__all__ = ["MODULE_WORKFLOW", "build_local", "grown", "line", "measure", "one_run",
           "pg_counter", "soak", "with_application_name"]
