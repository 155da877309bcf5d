"""Soak: SIGKILL trials at soak size, and the run-state soak (many runs in one process).

```bash
.venv/bin/python benchmarks/soak.py --trials 200              # SIGKILL trials, each backend
.venv/bin/python benchmarks/soak.py --runs 1000               # run-state soak, each backend
.venv/bin/python benchmarks/soak.py --runs 300 --backend sqlite --json soak.json
```

``--trials N``: the trials of ``tests/faults/test_sigkill.py`` (see ``tests/faults/
sigkill_harness.py``), N per backend, with their figures: re-runs of checkpointed steps (must be
0), final contexts identical to an uninterrupted run's, the time until a killed run is seen dead.

``--runs N``: N runs in this process (a third of them workflows built inside a function, with
closures; failed runs resumed), and every ``--every`` runs: RSS, the size of every module-level
container of spine_dagster, threads, the checkpoint engines' pools and, on PostgreSQL, the
server's connections of this process. Goal: RSS grows at most 5 MB from run 100 to run N,
everything else stays flat. Exits 1 when a goal is missed.

With neither option, both run at their defaults (200 trials, 1,000 runs). The Dagster instance
lives on tmpfs (``/dev/shm``) when there is one; PostgreSQL gets a schema of its own, dropped at
the end (``--pg-url``, default ``$SPINE_TEST_PG_URL`` or the local test server).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator


ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "faults"))

DEFAULT_PG_URL = os.environ.get("SPINE_TEST_PG_URL",
                                "postgresql+psycopg2://postgres@127.0.0.1:5432/test")
RSS_GOAL_MB = 5.0


@contextlib.contextmanager
def workspace() -> Iterator[Path]:
    shm = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
    path = Path(tempfile.mkdtemp(prefix="spine_soak_", dir=shm))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def database(backend: str, pg_url: str):
    """The checkpoint database of one soak: SQLite in a temporary directory, or a new schema in
    ``pg_url``, dropped at the end (:func:`spine_dagster.testing.temporary_store`)."""
    from spine_dagster.testing import temporary_store

    return temporary_store(None if backend == "sqlite" else pg_url)


def kill_soak(backend: str, trials: int, seed: int, pg_url: str, verbose: bool) -> dict[str, Any]:
    from sigkill_harness import child_env, format_summary, run_trials, summary, trial_line
    from zygote import Zygote

    with workspace() as workdir, database(backend, pg_url) as url:
        with Zygote(workdir / "zygote", child_env(workdir), warm_url=url) as zygote:
            started = time.monotonic()
            results, _ = run_trials(zygote, url, workdir, trials, seed,
                                    progress=(lambda t: print(trial_line(t), flush=True))
                                    if verbose else None)
            figures = summary(results, backend, time.monotonic() - started)
    print(format_summary(figures) + f"\n  seed {seed}", flush=True)
    figures["ok"] = (not figures["problems"] and figures["checkpointed_steps_rerun"] == 0
                     and figures["context_identical"] == trials)
    return figures


def runs_soak(backend: str, runs: int, every: int, pg_url: str,
              dagster_events: str = "consolidated") -> dict[str, Any]:
    from dagster import DagsterInstance

    import run_soak
    from sigkill_harness import child_env
    from spine_dagster import WorkflowRunner

    with workspace() as workdir, database(backend, pg_url) as url:
        env = child_env(workdir)
        os.environ.update({k: env[k] for k in ("SPINE_DAGSTER_HOME", "SPINE_DAGSTER_WORKSPACE")})
        if dagster_events == "consolidated":
            # Dagster's default SQLite event log keeps one database per run, and initializing
            # each one (alembic loading its migration scripts) keeps ~7 KB per run in this
            # process: Dagster's growth, not spine_dagster's (traced with tracemalloc). A
            # deployment uses PostgreSQL storage, which has no per-run databases; this soak
            # measures spine_dagster on Dagster's one-database SQLite event log instead.
            home = Path(env["DAGSTER_HOME"])
            with open(home / "dagster.yaml", "a") as fh:
                fh.write("event_log_storage:\n  module: dagster._core.storage.event_log\n"
                         "  class: ConsolidatedSqliteEventLogStorage\n"
                         f"  config:\n    base_dir: {home / 'events'}\n")
        pg_count = None
        if backend == "postgres":
            name = f"spine_soak_{os.getpid()}"
            url = run_soak.with_application_name(url, name)
            pg_count = run_soak.pg_counter(pg_url, name)
        instance = DagsterInstance.from_config(env["DAGSTER_HOME"])
        try:
            runner = WorkflowRunner(database_url=url, instance=instance, progress=False)
            started = time.monotonic()
            points = run_soak.soak(runner, runs, every,
                                   report=lambda i, p: print(f"[{backend}] " + run_soak.line(i, p),
                                                             flush=True),
                                   pg_count=pg_count)
            seconds = time.monotonic() - started
        finally:
            instance.dispose()
    first, last = points[min(points)], points[max(points)]
    growth = last["rss_mb"] - first["rss_mb"]
    changes = run_soak.grown(first, last)
    print(f"[{backend}] {runs} runs in {seconds:.0f} s: RSS {first['rss_mb']:.1f} MB at run "
          f"{min(points)} -> {last['rss_mb']:.1f} MB at run {max(points)} ({growth:+.1f} MB; goal "
          f"<= {RSS_GOAL_MB} MB); grew: {changes or 'nothing'}", flush=True)
    return {"backend": backend, "runs": runs, "seconds": round(seconds, 1),
            "rss_growth_mb": round(growth, 2), "grew": {k: list(v) for k, v in changes.items()},
            "points": points, "ok": growth <= RSS_GOAL_MB and not changes}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, help="SIGKILL trials per backend (default 200)")
    parser.add_argument("--runs", type=int, help="runs of the run-state soak (default 1000)")
    parser.add_argument("--every", type=int, default=100, help="report every N runs")
    parser.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--pg-url", default=DEFAULT_PG_URL)
    parser.add_argument("--seed", type=int, help="the trials' random seed (default: random)")
    parser.add_argument("--verbose", action="store_true", help="one line per trial")
    parser.add_argument("--json", help="write the figures to this file")
    parser.add_argument("--dagster-events", choices=("consolidated", "per-run"),
                        default="consolidated",
                        help="the runs soak's Dagster event log: one SQLite database "
                             "(default), or Dagster's default of one per run, which itself "
                             "grows ~7 KB per run in the process")
    args = parser.parse_args(argv)
    if args.trials is None and args.runs is None:
        args.trials, args.runs = 200, 1000
    backends = ("sqlite", "postgres") if args.backend == "both" else (args.backend,)
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    results: dict[str, Any] = {}
    for backend in backends:
        if args.trials:
            results[f"trials_{backend}"] = kill_soak(backend, args.trials, seed, args.pg_url,
                                                     args.verbose)
        if args.runs:
            results[f"runs_{backend}"] = runs_soak(backend, args.runs, args.every, args.pg_url,
                                                   args.dagster_events)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str))
    failed = [name for name, figures in results.items() if not figures["ok"]]
    print("soak: " + (f"goals missed: {failed}" if failed else "all goals met"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
