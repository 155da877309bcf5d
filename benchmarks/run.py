"""Benchmarks: what checkpointing costs next to plain Dagster, and what resume saves.

Usage::

    python benchmarks/run.py [--quick] [--backend sqlite|postgres|both] [--json PATH]

Prints one table; with ``--json`` also writes the results (the shape is in benchmarks/README.md).
``--quick`` takes under 3 minutes on a 2-core machine, the full run under 20. Every timing is a
median of at least 5 repetitions after a warm-up, in this one process, against one Dagster
instance per backend.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import dagster_runs, fused_bench, store_bench, write_floor  # noqa: E402
from benchmarks.dagster_runs import Sizes  # noqa: E402
from benchmarks.harness import Backend, machine, pg_available, quiet_stderr  # noqa: E402

# name -> (goal: an upper bound, or None for a figure without a goal; unit)
GOALS: dict[str, tuple[float | None, str]] = {
    "overhead_ratio": (1.05, "x"),
    "resume_ratio": (0.25, "x"),
    "checkpoint_cost_fraction": (0.05, "x"),
    "many_steps_ratio": (1.5, "x"),
    "store_scale_ratio": (2.0, "x"),
    "retention_block_ms": (1000.0, "ms"),
    "checkpoint_bytes_per_run": (None, "bytes"),
    "write_throughput_8_writers": (None, "ckpt/s"),
    "fused_step_vs_dbos": (1.0, "x"),
    "fused_run_vs_dbos": (1.5, "x"),
    "fused_vs_unfused": (0.1, "x"),
    "checkpoint_write_vs_driver": (3.0, "x"),
}
FUSED = ("fused_step_vs_dbos", "fused_run_vs_dbos", "fused_vs_unfused")

PRESETS = {
    "full": Sizes(reps=7, overhead_reps=15, many_reps=5, many_warmup=1, fused_reps=9),
    # quick: 5 repetitions everywhere except the 200-step workflow, which runs twice (each
    # window's median then pools 20 steps); 200,000 rows for store_scale, 100,000 for
    # retention; retention and writer throughput on PostgreSQL only (where the issue asks).
    "quick": Sizes(reps=5, overhead_reps=5, resume_fast_setup=True, store_large=200_000,
                   store_calls=30, retention_rows=100_000, writer_seconds=3.0, many_reps=2,
                   many_warmup=0, sqlite_store_extras=False, fused_reps=5, unfused_steps=20,
                   write_samples=400),
    "tiny": Sizes(reps=1, warmup=0, overhead_steps=3, overhead_reps=1, resume_steps=2,
                  resume_sleep=0.05, resume_fast_setup=True, context_bytes=10 * 1024,
                  cost_steps=2, many_steps=4, many_reps=1, many_warmup=0, many_window=1,
                  store_small=100, store_large=400, store_calls=5, retention_rows=400,
                  writers=2, writer_seconds=0.5, fused_reps=1, fused_steps=4,
                  unfused_steps=3, write_samples=12),
}


def run_backend(name: str, sizes: Sizes, pg_url: str, only: set[str] | None,
                say: Callable[[str], None]) -> dict[str, dict[str, Any]]:
    """Every benchmark on one backend: {benchmark name: result}."""
    out: dict[str, dict[str, Any]] = {}

    def want(*names: str) -> bool:
        return only is None or any(n in only for n in names)

    with Backend.open(name, pg_url) as backend:
        def show(key: str) -> None:
            result = out[key]
            value = result.get("ratio")
            shown = "skipped: " + result["skipped"] if value is None else f"{value:.4g}"
            took = f"  ({result['seconds']} s)" if "seconds" in result else ""
            say(f"  [{name}] {key:<28} {shown}{took}")

        def step(key: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
            start = time.perf_counter()
            with quiet_stderr(backend.log_path):
                result = fn()
            result["seconds"] = round(time.perf_counter() - start, 1)
            out[key] = result
            show(key)
            return result

        if want("overhead_ratio", "checkpoint_cost_fraction"):
            ov = step("overhead_ratio", lambda: dagster_runs.overhead(backend, sizes))
            if want("checkpoint_cost_fraction"):
                step("checkpoint_cost_fraction", lambda: dagster_runs.checkpoint_cost(
                    backend, sizes, ov["dagster_per_op_s"]))
        if want("resume_ratio"):
            step("resume_ratio", lambda: dagster_runs.resume(backend, sizes))
        if want("many_steps_ratio", "checkpoint_bytes_per_run"):
            many = step("many_steps_ratio", lambda: dagster_runs.many_steps(backend, sizes))
            out["checkpoint_bytes_per_run"] = {
                "ratio": float(many["checkpoint_bytes_per_run"]), "steps": many["steps"],
                "bytes_per_step_output": sizes.step_payload}
        if want("store_scale_ratio"):
            step("store_scale_ratio", lambda: store_bench.store_scale(
                backend, sizes.store_small, sizes.store_large, sizes.store_calls, sizes.reps))
        if want(*FUSED):
            step("fused_vs_unfused", lambda: _fused(backend, sizes, out))
            show("fused_step_vs_dbos")
            show("fused_run_vs_dbos")
        if want("checkpoint_write_vs_driver"):
            step("checkpoint_write_vs_driver", lambda: write_floor.checkpoint_write(
                backend, sizes.write_samples))
        extras = name == "postgres" or sizes.sqlite_store_extras
        if want("retention_block_ms") and extras:
            step("retention_block_ms", lambda: store_bench.retention_block(
                backend, sizes.retention_rows))
        if want("write_throughput_8_writers") and extras:
            step("write_throughput_8_writers", lambda: store_bench.write_throughput(
                backend, sizes.writers, sizes.writer_seconds))
    return out


def _fused(backend: Backend, sizes: Sizes, out: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The three fused-mode figures, measured together; the two DBOS ones go into ``out``."""
    results = fused_bench.fused(backend, sizes.fused_reps, sizes.warmup, sizes.fused_steps,
                                sizes.unfused_steps)
    for name in ("fused_step_vs_dbos", "fused_run_vs_dbos"):
        out[name] = results[name]
    return results["fused_vs_unfused"]


def combine(per_backend: dict[str, dict[str, dict[str, Any]]], mode: str,
            info: dict[str, Any]) -> dict[str, Any]:
    """{name: {"ratio", "goal", "met", "backends": {backend: result}}}.

    The top-level ``ratio`` is the worst over the backends measured (the highest; for the
    writer throughput, which has no goal, the PostgreSQL figure when there is one).
    """
    combined: dict[str, Any] = {}
    for name, (goal, unit) in GOALS.items():
        backends = {b: r[name] for b, r in per_backend.items() if name in r}
        if not backends:
            continue
        values = {b: r.get("ratio") for b, r in backends.items() if r.get("ratio") is not None}
        if name == "write_throughput_8_writers":
            ratio = values.get("postgres", values.get("sqlite"))
        else:
            ratio = max(values.values()) if values else None
        skipped = sorted({r["skipped"] for r in backends.values() if r.get("skipped")})
        combined[name] = {
            "ratio": ratio,
            **({"skipped": "; ".join(skipped)} if skipped else {}),
            "goal": goal,
            "unit": unit,
            "met": None if goal is None or ratio is None else bool(ratio <= goal),
            "backends": backends,
            "mode": mode,
            "machine": info,
        }
    return combined


def table(combined: dict[str, Any], backends: list[str]) -> str:
    def fmt(value: Any, unit: str) -> str:
        if value is None:
            return "skipped"
        if unit == "bytes":
            return f"{value / 1e6:.2f} MB"
        if unit == "ckpt/s":
            return f"{value:,.0f}/s"
        if unit == "ms":
            return f"{value:.0f} ms"
        return f"{value:.3f}"

    head = f"{'benchmark':<28}" + "".join(f"{b:>14}" for b in backends) + f"{'goal':>10}  ok"
    lines = [head, "-" * len(head)]
    for name, entry in combined.items():
        cells = "".join(
            f"{fmt(entry['backends'][b].get('ratio'), entry['unit']) if b in entry['backends'] else '-':>14}"
            for b in backends)
        goal = "" if entry["goal"] is None else f"<= {entry['goal']:g}"
        ok = {True: "yes", False: "NO", None: ""}[entry["met"]]
        lines.append(f"{name:<28}{cells}{goal:>10}  {ok}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="smaller store table (200,000 rows) and fewer repetitions: < 3 min")
    parser.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON here")
    parser.add_argument("--pg-url", default=os.environ.get("SPINE_BENCH_PG_URL",
                                                           "postgresql+psycopg2://postgres@127.0.0.1:5432/test"),
                        help="PostgreSQL server (a temporary database is created on it and "
                             "dropped afterwards); default: $SPINE_BENCH_PG_URL or the local one")
    parser.add_argument("--only", metavar="NAME", action="append",
                        help="run only this benchmark (repeatable); for profiling")
    args = parser.parse_args(argv)

    mode = "tiny" if args.tiny else "quick" if args.quick else "full"
    sizes = replace(PRESETS[mode])
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    if "postgres" in backends:
        reason = pg_available(args.pg_url)
        if reason:
            parser.error(f"PostgreSQL is not reachable at {args.pg_url}: {reason}. Start it, "
                         f"pass --pg-url, or use --backend sqlite.")
    info = machine()
    print(f"spine_dagster benchmarks ({mode}) on {info['nproc']} x {info['cpu']}, "
          f"Python {info['python']}, Dagster {info['dagster']}", flush=True)
    started = time.perf_counter()
    per_backend: dict[str, dict[str, dict[str, Any]]] = {}
    for name in backends:
        per_backend[name] = run_backend(name, sizes, args.pg_url,
                                        set(args.only) if args.only else None,
                                        lambda line: print(line, flush=True))
    info["load_average_end"] = list(os.getloadavg())
    combined = combine(per_backend, mode, info)
    print()
    print(table(combined, backends))
    print(f"\n{mode} run took {time.perf_counter() - started:.0f} s")
    if mode == "tiny":
        print("(tiny: a smoke run of toy sizes; its figures mean nothing)")
    if args.json:
        Path(args.json).write_text(json.dumps(combined, indent=2, default=str) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
