"""SIGKILL at random moments, resume from a new process: nothing checkpointed runs twice.

20 trials per backend (``SPINE_FAULT_TRIALS`` changes it; ``SPINE_FAULT_SEED`` replays a seed).
Each trial runs the 20-step ``fault_workflow.FAULTS`` in a child of a zygote (an interpreter that
imported Dagster once, see ``zygote.py``) and kills it with ``SIGKILL``: from the parent after a
random delay, or from inside the child, in the middle of a step body, before a chosen statement
of a checkpoint write, at sub-millisecond offsets into a checkpoint write, or at a random offset
after a step body returned. A new child then resumes the run; the trial checks that it completed,
that the final context equals an uninterrupted run's, that no step with a valid checkpoint before
the kill executed again, and how long ``get_run`` took to see the run as dead.

The Dagster instance of the children lives on tmpfs (``/dev/shm``) when there is one: Dagster's
SQLite event log syncs every event to disk, which would triple the time of a run; the checkpoint
database is the ``database_url`` fixture's. ``pytest -s`` prints the figures.
"""

from __future__ import annotations

import os
import random
import tempfile
import time
from pathlib import Path

import pytest

from sigkill_harness import child_env, format_summary, run_trials, summary, trial_line
from zygote import Zygote

TRIALS = int(os.environ.get("SPINE_FAULT_TRIALS", "20"))


@pytest.fixture
def workdir(tmp_path):
    shm = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    with tempfile.TemporaryDirectory(prefix="spine_faults_", dir=shm or tmp_path) as path:
        yield Path(path)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_sigkill_at_random_moments_then_resume(database_url, workdir):
    backend = "sqlite" if database_url.startswith("sqlite") else "postgres"
    seed = int(os.environ.get("SPINE_FAULT_SEED") or random.randrange(1 << 30))
    with Zygote(workdir / "zygote", child_env(workdir), warm_url=database_url) as zygote:
        started = time.monotonic()
        trials, _ = run_trials(zygote, database_url, workdir, TRIALS, seed,
                               progress=lambda t: print(trial_line(t), flush=True))
        figures = summary(trials, backend, time.monotonic() - started)
    report = (f"{format_summary(figures)}\n  seed {seed} (SPINE_FAULT_SEED={seed} replays it); "
              f"zygote start-up {zygote.startup_s:.1f} s")
    print("\n" + report)

    assert not figures["problems"], report
    # a self-kill always happens; a random kill may come after a fast run ended
    missed = [t for t in trials if not t.killed]
    assert all(t.mode == "random" for t in missed), report
    assert len(missed) <= TRIALS // 10, f"too many kills came after the run ended\n{report}"
    assert figures["checkpointed_steps_rerun"] == 0, report
    assert figures["context_identical"] == TRIALS, report
    # a killed run is seen as dead by the first get_run of a new process
    assert figures["detect_polls_max"] == 1, report
    assert max(t.detect_s for t in trials) < 10, report
    # the kills landed at different points of the run, not all before or after everything
    counts = figures["checkpoints_before_kill"]
    assert len(set(counts)) > 1 and min(counts) < 19, report
