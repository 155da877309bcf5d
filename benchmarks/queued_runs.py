"""Runs per minute through a run queue: spine runs against plain Dagster runs, in one set-up.

Usage::

    python benchmarks/queued_runs.py [--runs 32] [--rounds 2] [--max-concurrent-runs 2]
                                     [--json PATH]

One deployment for both sides, the one tests/test_queued_runs.py uses (tests/queued_support.py):
``dagster-webserver`` and ``dagster-daemon run`` on a PostgreSQL instance whose
``QueuedRunCoordinator`` starts at most ``--max-concurrent-runs`` runs at a time, each in its own
run worker process; checkpoints in a second PostgreSQL database. A batch launches ``--runs`` runs
through the webserver and waits until all have ended; runs per minute = runs / (first launch to
last end). The spine batch runs ``queue__spine`` (three steps, each checkpointed); the plain batch
runs ``queue_plain``, the same three op bodies as a plain Dagster job (default IO manager). Each
round runs both batches, alternating which goes first; the figures are medians over the rounds.
Also reported per side: the median run time inside its run worker (RUN_START to RUN_SUCCESS, from
the event log) and the peak of PostgreSQL connections to the two databases.

Needs the local PostgreSQL (``$SPINE_TEST_PG_URL``, default postgres@127.0.0.1:5432/test); it
creates two databases and drops them at the end. A round of 2 x 32 runs takes several minutes on
a 2-core machine, most of it spent starting run worker processes.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TESTS = Path(__file__).resolve().parent.parent / "tests"
sys.path.insert(0, str(TESTS))  # the deployment harness is the test's own

from dagster import DagsterEventType, DagsterRunStatus  # noqa: E402
from queued_support import ConnectionMonitor, QueuedDeployment, queued_deployment  # noqa: E402


def batch(dep: QueuedDeployment, side: str, runs: int, trace: Path) -> dict[str, Any]:
    """Launch ``runs`` runs of one side, wait for all; its throughput and costs."""
    trace.mkdir(parents=True, exist_ok=True)
    with ConnectionMonitor([dep.dagster_db, dep.checkpoint_db]) as connections:
        started = time.monotonic()
        if side == "spine":
            ids = [dep.launch_spine(trace, n=n) for n in range(runs)]
        else:
            ids = [dep.launch_plain(trace, n=n) for n in range(runs)]
        done = dep.wait_all(ids, timeout=3600)
        elapsed = time.monotonic() - started
    failed = [run_id for run_id, run in done.items() if run.status != DagsterRunStatus.SUCCESS]
    if failed:
        raise SystemExit(f"{len(failed)} {side} run(s) did not succeed, e.g. {failed[0]}")
    return {"runs_per_minute": round(runs / elapsed * 60, 2), "seconds": round(elapsed, 1),
            "run_seconds_median": round(statistics.median(_run_seconds(dep, ids)), 3),
            "peak_connections": connections.peak, "most_in_flight": dep.max_overlap(ids),
            "load_average": round(os.getloadavg()[0], 1)}  # a shared machine's other work


def _run_seconds(dep: QueuedDeployment, run_ids: list[str]) -> list[float]:
    """RUN_START to RUN_SUCCESS of each run: its time inside the run worker."""
    seconds = []
    for run_id in run_ids:
        records = dep.instance.get_records_for_run(
            run_id, of_type={DagsterEventType.RUN_START, DagsterEventType.RUN_SUCCESS}).records
        stamps = {r.event_log_entry.dagster_event_type: r.event_log_entry.timestamp
                  for r in records}
        seconds.append(stamps[DagsterEventType.RUN_SUCCESS] - stamps[DagsterEventType.RUN_START])
    return seconds


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=32, help="runs per batch (default 32)")
    parser.add_argument("--rounds", type=int, default=2, help="spine+plain rounds (default 2)")
    parser.add_argument("--max-concurrent-runs", type=int, default=2)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    # SIGTERM too stops the deployment's processes and drops its databases (finally blocks)
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    rounds: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="spine_queued_bench_") as tmp, \
            queued_deployment(Path(tmp) / "deployment",
                              max_concurrent_runs=args.max_concurrent_runs) as dep:
        for number in range(args.rounds):
            sides = ("spine", "plain") if number % 2 == 0 else ("plain", "spine")
            result: dict[str, Any] = {}
            for side in sides:
                result[side] = batch(dep, side, args.runs, Path(tmp) / f"trace{number}{side}")
                print(f"round {number + 1} {side:<5} {result[side]}", flush=True)
            rounds.append(result)
    summary = {
        side: {key: statistics.median(r[side][key] for r in rounds)
               for key in ("runs_per_minute", "run_seconds_median", "peak_connections")}
        for side in ("spine", "plain")}
    out = {
        "runs": args.runs, "rounds": args.rounds, "max_concurrent_runs": args.max_concurrent_runs,
        "spine": summary["spine"], "plain": summary["plain"],
        "runs_per_minute_ratio": round(summary["spine"]["runs_per_minute"]
                                       / summary["plain"]["runs_per_minute"], 3),
        "per_round": rounds,
    }
    print(json.dumps({k: v for k, v in out.items() if k != "per_round"}, indent=1))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
