"""SIGKILL trials of the fault workflow: kill a run at a random moment, resume it from a new
process, and check what the resume did. Used by ``test_sigkill.py`` and ``benchmarks/soak.py``.

One trial:

1. a child of the zygote executes ``fault_workflow.FAULTS``; it is killed with ``SIGKILL`` by the
   parent after a random delay (``random``), or kills itself at a chosen point of a chosen step
   (``in_step``, ``after_body``, ``write_stmt``, ``write_timer``; see ``fault_workflow``);
2. a new child polls ``get_run`` until the run is no longer ``running`` (the detection time is
   from the kill to that answer), notes the valid checkpoints, and resumes the run;
3. the parent checks: the resume completed; the final context equals the uninterrupted run's; no
   step that had a valid checkpoint before the kill ran again; the resume ran exactly the steps
   after the last checkpoint, each once.
"""

from __future__ import annotations

import json
import os
import random
import signal
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from fault_workflow import STEPS, expected_outputs
from zygote import Zygote

MODES = ("random", "in_step", "write_stmt", "write_timer", "after_body")
STEP_NAMES = [f"s{i:02d}" for i in range(1, STEPS + 1)]


@dataclass
class Trial:
    index: int
    mode: str
    plan: dict[str, Any] | None
    run_id: str = ""
    how: str = ""
    killed: bool = False
    valid_before: list[str] = field(default_factory=list)
    first_run_steps: list[str] = field(default_factory=list)
    resumed_steps: list[str] = field(default_factory=list)
    executed_in_resume: list[str] = field(default_factory=list)
    reruns: list[str] = field(default_factory=list)  # checkpointed steps that ran again
    detect_s: float | None = None
    get_run_s: float | None = None
    polls: int = 0
    resume_s: float | None = None
    status: str = ""
    context_ok: bool = False
    problems: list[str] = field(default_factory=list)


def child_env(workdir: Path) -> dict[str, str]:
    """The environment of the zygote and its children: a Dagster home of their own."""
    home = workdir / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    return {**os.environ, "DAGSTER_HOME": str(home), "SPINE_DAGSTER_HOME": str(workdir / "spine"),
            "SPINE_DAGSTER_WORKSPACE": ""}


def _lines(path: Path) -> list[list[str]]:
    return [line.split() for line in path.read_text().splitlines()] if path.exists() else []


def reference(zygote: Zygote, database_url: str, workdir: Path) -> dict[str, Any]:
    """An uninterrupted run: its final context and the time from its first step to its end."""
    log = workdir / "reference.log"
    answer = zygote.run({"op": "execute", "database_url": database_url, "fault_log": str(log)})
    first = float(_lines(log)[0][4])
    outputs = answer["context"]["outputs"]
    assert answer["status"] == "completed" and outputs == expected_outputs(), answer["status"]
    return {"context": answer["context"], "window_s": answer["t_end"] - first}


def make_plan(rng: random.Random, mode: str, backend: str) -> dict[str, Any] | None:
    step = rng.choice(STEP_NAMES)
    if mode == "random":
        return None
    if mode == "in_step":
        return {"mode": mode, "step": step}
    if mode == "after_body":
        return {"mode": mode, "step": step, "delay": rng.uniform(0, 0.02)}
    if mode == "write_stmt" and backend == "sqlite":  # before the n-th statement of the write
        return {"mode": mode, "step": step, "nth": rng.randrange(4)}
    # PostgreSQL's write is one message: kill at sub-millisecond offsets from its start
    big = int(step[1:]) >= 10
    return {"mode": "write_timer", "step": step,
            "delay": rng.uniform(0, 0.006 if big else 0.0015)}


def _wait_for_first_step(log: Path, zygote: Zygote, pid: int) -> None:
    deadline = time.monotonic() + 60
    while not (log.exists() and log.stat().st_size):
        if time.monotonic() > deadline:
            raise RuntimeError(f"child {pid} ran no step within 60 s")
        time.sleep(0.0005)


def run_trial(zygote: Zygote, rng: random.Random, index: int, mode: str, database_url: str,
              workdir: Path, ref: dict[str, Any]) -> Trial:
    backend = "sqlite" if database_url.startswith("sqlite") else "postgres"
    plan = make_plan(rng, mode, backend)
    trial = Trial(index=index, mode=mode, plan=plan)
    log = workdir / f"trial{index:04d}.log"
    job = {"op": "execute", "database_url": database_url, "fault_log": str(log), "plan": plan}
    pid, result = zygote.spawn(job)
    t_kill = None
    if plan is None:
        _wait_for_first_step(log, zygote, pid)
        delay = rng.uniform(0, 0.9 * ref["window_s"])  # runs vary: the end may come sooner
        trial.how = f"random +{delay * 1e3:.0f}ms"
        time.sleep(delay)
        t_kill = time.time()
        os.kill(pid, signal.SIGKILL)
    status = zygote.wait(pid)
    lines = _lines(log)
    kills = [line for line in lines if line[0] == "KILL"]
    if kills:
        t_kill, trial.how = float(kills[0][1]), " ".join(kills[0][2:])
    trial.killed = status["signal"] == signal.SIGKILL
    runs = {line[1] for line in lines if line[0] != "KILL"}
    if len(runs) != 1:
        trial.problems.append(f"expected one run id in the execution log, got {runs}")
        return trial
    trial.run_id = runs.pop()
    trial.first_run_steps = [line[2] for line in lines if line[0] == str(pid)]
    if not trial.killed:
        answer = json.loads(result.read_text()) if result.exists() else {}
        trial.how += f" (ended with {status['code']} before the kill: {answer.get('status')})"
    if t_kill is None:
        t_kill = status["t"]
    resume_pid, resume_result = zygote.spawn({"op": "resume", "database_url": database_url,
                                              "fault_log": str(log), "run_id": trial.run_id})
    zygote.wait(resume_pid)
    answer = json.loads(resume_result.read_text()) if resume_result.exists() else {
        "error": "the resume child wrote no answer"}
    if "error" in answer and "status" not in answer:
        trial.problems.append(f"resume child: {answer['error']}")
        return trial
    trial.detect_s = answer["t_detected"] - t_kill
    trial.get_run_s, trial.polls = answer["get_run_s"], answer["polls"]
    trial.resume_s = answer.get("resume_s")
    trial.valid_before = answer["valid_before"]
    trial.status, trial.resumed_steps = answer["status"], answer["resumed_steps"]
    trial.executed_in_resume = [line[2] for line in _lines(log) if line[0] == str(resume_pid)]
    trial.reruns = [s for s in trial.executed_in_resume if s in trial.valid_before]
    trial.context_ok = answer["context"] == ref["context"]
    _check(trial, answer)
    return trial


def _check(trial: Trial, answer: dict[str, Any]) -> None:
    problems = trial.problems
    if trial.status != "completed":
        problems.append(f"the resume ended {trial.status}: {answer.get('error')}")
    if not trial.context_ok:
        problems.append("the final context differs from the uninterrupted run's")
    if trial.reruns:
        problems.append(f"steps with a valid checkpoint before the kill ran again: {trial.reruns}")
    valid = trial.valid_before
    if valid != STEP_NAMES[:len(valid)]:
        problems.append(f"the valid checkpoints are not a prefix of the steps: {valid}")
    missing = [s for s in valid if s not in trial.first_run_steps]
    if missing:
        problems.append(f"checkpoints of steps the killed run never ran: {missing}")
    suffix = STEP_NAMES[len(valid):]
    if trial.executed_in_resume != suffix or trial.resumed_steps != suffix:
        problems.append(f"the resume should run {suffix}, it executed {trial.executed_in_resume} "
                        f"and reported {trial.resumed_steps}")
    if trial.killed and answer["status_before"] == "completed" and len(valid) < STEPS:
        problems.append("get_run said completed after a kill before the last checkpoint")


def run_trials(zygote: Zygote, database_url: str, workdir: Path, trials: int, seed: int,
               progress=None) -> tuple[list[Trial], dict[str, Any]]:
    """``trials`` trials, the modes in turn, other choices from ``seed``."""
    rng = random.Random(seed)
    ref = reference(zygote, database_url, workdir)
    results = []
    for index in range(trials):
        trial = run_trial(zygote, rng, index, MODES[index % len(MODES)], database_url, workdir,
                          ref)
        results.append(trial)
        if progress is not None:
            progress(trial)
    return results, ref


def _ms(values: list[float]) -> str:
    if not values:
        return "n/a"
    values = sorted(values)
    p95 = values[min(len(values) - 1, int(round(0.95 * (len(values) - 1))))]
    return (f"median {statistics.median(values) * 1e3:.0f} ms, p95 {p95 * 1e3:.0f} ms, "
            f"max {values[-1] * 1e3:.0f} ms")


def summary(trials: list[Trial], backend: str, seconds: float) -> dict[str, Any]:
    """The figures of a set of trials."""
    killed = [t for t in trials if t.killed]
    by_mode = {m: sum(1 for t in trials if t.mode == m) for m in MODES}
    return {
        "backend": backend, "trials": len(trials), "killed": len(killed),
        "completed_after_resume": sum(1 for t in trials if t.status == "completed"),
        "context_identical": sum(1 for t in trials if t.context_ok),
        "checkpointed_steps_rerun": sum(len(t.reruns) for t in trials),
        "uncheckpointed_steps_rerun": sum(
            len(set(t.first_run_steps) & set(t.executed_in_resume)) - len(t.reruns)
            for t in trials),
        "checkpoints_before_kill": sorted(len(t.valid_before) for t in trials),
        "by_mode": by_mode,
        # PostgreSQL: killed while the checkpoint write was on its way, and whether it committed
        "killed_in_write": sum(1 for t in trials if t.how.endswith("in-write")),
        "in_write_committed": sum(1 for t in trials if t.how.endswith("in-write")
                                  and t.plan and t.plan["step"] in t.valid_before),
        "detect": _ms([t.detect_s for t in trials if t.detect_s is not None]),
        "detect_polls_max": max((t.polls for t in trials), default=0),
        "get_run_call": _ms([t.get_run_s for t in trials if t.get_run_s is not None]),
        "resume": _ms([t.resume_s for t in trials if t.resume_s is not None]),
        "seconds": round(seconds, 1),
        "problems": [f"trial {t.index} ({t.mode}, {t.how}, run {t.run_id}): {p}"
                     for t in trials for p in t.problems],
    }


def format_summary(figures: dict[str, Any]) -> str:
    counts = figures["checkpoints_before_kill"]
    return "\n".join(line for line in [
        f"[{figures['backend']}] {figures['trials']} SIGKILL trials in {figures['seconds']} s: "
        f"{figures['killed']} killed mid-run, {figures['completed_after_resume']} completed after "
        f"resume, {figures['context_identical']} final contexts identical to an uninterrupted run",
        f"  checkpointed steps re-run: {figures['checkpointed_steps_rerun']}; un-checkpointed "
        f"steps re-run (work lost by the kill): {figures['uncheckpointed_steps_rerun']}",
        f"  kills by mode: {figures['by_mode']}; checkpoints before the kill: min {min(counts)}, "
        f"median {statistics.median(counts):.0f}, max {max(counts)}" if counts else "",
        f"  killed while a checkpoint write was on its way to PostgreSQL: "
        f"{figures['killed_in_write']} (its checkpoint committed anyway: "
        f"{figures['in_write_committed']})" if figures["killed_in_write"] else "",
        f"  dead run detected (kill -> get_run says failed): {figures['detect']}; polls needed: "
        f"at most {figures['detect_polls_max']}; the detecting get_run call: "
        f"{figures['get_run_call']}",
        f"  resume (after detection): {figures['resume']}",
        *(f"  PROBLEM {p}" for p in figures["problems"]),
    ] if line)


def trial_line(trial: Trial) -> str:
    detect = f"{trial.detect_s * 1e3:.0f}ms" if trial.detect_s is not None else "-"
    return (f"  trial {trial.index:3d} {trial.mode:11s} {trial.how[:44]:44s} ckpts "
            f"{len(trial.valid_before):2d} resumed {len(trial.resumed_steps):2d} detect {detect:>6s}"
            f" {'ok' if not trial.problems else 'PROBLEM'}")


def as_json(trials: list[Trial]) -> list[dict[str, Any]]:
    return [asdict(t) for t in trials]
