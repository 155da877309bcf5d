"""Concurrency: two resumes of one run at once, a resume racing ``execute(run_id=...,
start_from=...)``, and eight runs at once with failures and resumes.

The racers are separate processes (``race_worker.py``), started once and released together at
a file barrier in each round, so the race is real: both plan the resume from the same failed run
at the same moment. Exactly one proceeds; the other gets a ``SpineDagsterError`` that says why
(``RunInProgressError``: the run's resume lease, see ``spine_dagster/resume.py``). The winner is
held at a gate in its ``publish`` step until the loser has answered, so both overlap for sure.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest
import sqlalchemy as sa
from dagster import DagsterInstance

from outage_flows import OUTAGE, STEPS, calls, expected_outputs
from spine_dagster import RunInProgressError, WorkflowRunner
from spine_dagster.resume import ResumeLease

FAULTS = Path(__file__).resolve().parent
RIVALS = ["resume", "start_from", "resume", "start_from"]  # worker b's action, round by round


def dagster_home(path: Path, pg_url: str | None = None) -> str:
    path.mkdir(parents=True, exist_ok=True)
    storage = (f'storage:\n  postgres:\n    postgres_url: "{pg_url}"\n' if pg_url else
               f"storage:\n  sqlite:\n    base_dir: {path}/storage\n")
    (path / "dagster.yaml").write_text(storage + "telemetry:\n  enabled: false\n")
    return str(path)


class Workers:
    """The worker processes of a test, and the files they talk through."""

    def __init__(self, folder: Path, database_url: str, home: str) -> None:
        self.folder, self.database_url, self.home = folder, database_url, home
        folder.mkdir(parents=True, exist_ok=True)
        self.procs: dict[str, subprocess.Popen] = {}
        self.env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            [str(FAULTS), str(FAULTS.parent), os.environ.get("PYTHONPATH", "")])}

    def start(self, name: str, **spec: Any) -> None:
        path = self.folder / f"spec-{name}.json"
        path.write_text(json.dumps({"name": name, "folder": str(self.folder),
                                    "database_url": self.database_url,
                                    "dagster_home": self.home, **spec}))
        with open(self.folder / f"log-{name}.txt", "w") as log:  # a file: a pipe could fill up
            self.procs[name] = subprocess.Popen(
                [sys.executable, str(FAULTS / "race_worker.py"), str(path)], env=self.env,
                cwd=self.folder, stdout=log, stderr=subprocess.STDOUT)

    def wait(self, predicate, what: str, timeout: float = 240.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            for name, proc in self.procs.items():
                if proc.poll() not in (None, 0):
                    log = (self.folder / f"log-{name}.txt").read_text()
                    raise AssertionError(f"worker {name} died: {log[-3000:]}")
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.01)

    def go(self, round_no: int) -> float:
        """The barrier: once every worker is ready, release them all at once."""
        self.wait(lambda: all((self.folder / f"ready-{round_no}-{n}").exists()
                              for n in self.procs), f"the workers of round {round_no}")
        (self.folder / f"go-{round_no}").touch()
        return time.monotonic()

    def result(self, round_no: int, name: str) -> dict[str, Any] | None:
        path = self.folder / f"result-{round_no}-{name}.json"
        return json.loads(path.read_text()) if path.exists() else None

    def results(self, round_no: int, timeout: float = 240.0) -> dict[str, dict[str, Any]]:
        self.wait(lambda: all(self.result(round_no, n) for n in self.procs),
                  f"the results of round {round_no}", timeout)
        return {n: self.result(round_no, n) for n in self.procs}

    def close(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
            proc.wait(30)


@pytest.fixture
def workers(request, tmp_path) -> Iterator[Workers]:
    made: list[Workers] = []

    def make(database_url: str, home: str) -> Workers:
        made.append(Workers(tmp_path / "race", database_url, home))
        return made[-1]

    yield make
    for each in made:
        each.close()


def failed_run(runner: WorkflowRunner, tmp_path: Path, tag: str) -> tuple[Any, dict[str, Any]]:
    """A run of OUTAGE that failed at ``publish``; the failure's cause is gone afterwards."""
    gates = tmp_path / tag
    gates.mkdir()
    fail = gates / "warehouse_down"
    fail.touch()
    params = {"tag": tag, "calls_file": str(gates / "calls.txt"), "gate_dir": str(gates),
              "fail_file": str(fail)}
    failed = runner.execute(OUTAGE, params=params)
    assert (failed.status, failed.error_step) == ("failed", "publish"), failed.error
    fail.unlink()
    return failed, params


@pytest.mark.slow  # two worker processes, four rounds
def test_two_resumes_at_once_exactly_one_proceeds(database_url, tmp_path, workers):
    home = dagster_home(tmp_path / "dagster_home")
    instance = DagsterInstance.from_config(home)
    runner = WorkflowRunner(database_url=database_url, instance=instance, progress=False)
    race = workers(database_url, home)
    race.start("a", actions=["resume"] * len(RIVALS))
    race.start("b", actions=RIVALS)
    try:
        for round_no, rival in enumerate(RIVALS):
            failed, params = failed_run(runner, tmp_path, f"race{round_no}-{uuid.uuid4().hex[:6]}")
            hold = Path(params["gate_dir"], "publish.hold")
            hold.touch()  # the winner waits in publish until the loser has answered
            (race.folder / f"run-{round_no}").write_text(failed.run_id)
            released = race.go(round_no)

            def publishes() -> list:
                return [c for c in calls(params["calls_file"]) if c[0] == "publish"]

            race.wait(lambda: any(race.result(round_no, n) for n in race.procs)
                      or len(publishes()) > 2, "the loser's answer", 120)
            answered = time.monotonic() - released
            hold.unlink()
            results = race.results(round_no)
            winners = [n for n, r in results.items() if r["outcome"] == "completed"]
            losers = {n: r for n, r in results.items() if r["outcome"] != "completed"}
            said = [(n, r["outcome"], r["error"][:90]) for n, r in losers.items()]
            print(f"\nround {round_no} (resume vs {rival}) on {database_url.split(':')[0]}: "
                  f"{winners} proceeded; the other answered {answered:.2f}s after the barrier: "
                  f"{said}")
            assert len(winners) == 1 and len(losers) == 1, results
            [loser] = losers.values()
            assert loser["outcome"] == "RunInProgressError" and loser["spine_error"], loser
            assert failed.run_id in loser["error"]
            assert "in progress" in loser["error"] or "still running" in loser["error"]
            assert len(publishes()) == 2, "only the winner ran publish again"

            record = runner.get_run(failed.run_id)
            assert record.status.value == "completed"
            assert len(record.dagster_run_ids) == 2, record.dagster_run_ids
            assert dict(record.context.outputs) == expected_outputs(params["tag"])
            assert {c.step_name for c in runner.list_checkpoints(failed.run_id)
                    if c.state == "valid"} == set(STEPS)

        # A rival that planned from the failed run but reached the lease only after the winner
        # finished: its plan is stale, so it is refused rather than re-running the run.
        late = ResumeLease(runner.store, failed.run_id, ("completed", "failed", "partial"),
                           planned_from=failed.dagster_run_id)
        with pytest.raises(RunInProgressError, match="while this resume was being planned"):
            late.__enter__()
        assert runner.store.lease_of(failed.run_id) == (None, None)
    finally:
        race.close()
        instance.dispose()


@pytest.mark.slow  # eight worker processes
@pytest.mark.postgres
def test_eight_concurrent_runs_keep_their_own_context(pg_schema_url, pg_dagster_url, tmp_path,
                                                      workers):
    home = dagster_home(tmp_path / "dagster_home", pg_dagster_url)
    pool = workers(pg_schema_url, home)
    runs: dict[str, dict[str, Any]] = {}
    for i in range(8):
        tag = f"run{i}-{uuid.uuid4().hex[:8]}"
        gates = tmp_path / tag
        gates.mkdir()
        params = {"tag": tag, "base": i, "rows": i * 3, "calls_file": str(gates / "calls.txt"),
                  "gate_dir": str(gates)}
        if i % 2:  # every other run fails at publish, then its worker resumes it
            params["fail_file"] = str(gates / "warehouse_down")
            Path(params["fail_file"]).touch()
        runs[f"w{i}"] = params
        pool.start(f"w{i}", action="run", params=params)
    began = pool.go(0)
    results = pool.results(0)
    took = time.monotonic() - began
    print(f"\neight concurrent runs (4 failed and resumed) in {took:.1f}s after the barrier")

    instance = DagsterInstance.from_config(home)
    runner = WorkflowRunner(database_url=pg_schema_url, instance=instance, progress=False)
    try:
        tags = {name: p["tag"] for name, p in runs.items()}
        for name, params in runs.items():
            i = int(name[1:])
            result = results[name]
            assert result["outcome"] == "completed", result
            if i % 2:
                assert (result["first"], result["first_step"]) == ("failed", "publish")
                assert result["completed_steps"] == ["publish", "report"]
            record = runner.get_run(result["run_id"])
            assert record.status.value == "completed"
            assert len(record.dagster_run_ids) == (2 if i % 2 else 1)
            expected = expected_outputs(params["tag"], base=i, rows=i * 3)
            assert dict(record.context.outputs) == expected
            assert record.params["tag"] == params["tag"]
            checkpoints = [c for c in runner.list_checkpoints(result["run_id"])
                           if c.state == "valid"]
            assert [c.step_name for c in checkpoints] == STEPS, "every step has its checkpoint"
            for checkpoint in checkpoints:
                assert checkpoint.context.run_id == result["run_id"]
                assert checkpoint.context.params["tag"] == params["tag"]
                assert dict(checkpoint.context.outputs) == {
                    step: expected[step] for step in STEPS[:STEPS.index(checkpoint.step_name) + 1]}
            ran = calls(params["calls_file"])
            assert [step for step, _ in ran] == (
                STEPS[:3] + ["publish", "report"] if i % 2 else STEPS), ran

        # no stored row of one run mentions another run's tag
        engine = sa.create_engine(pg_schema_url, poolclass=sa.pool.NullPool)
        with engine.connect() as conn:
            rows = conn.execute(sa.text(
                "SELECT run_id, step_name, CAST(context_snapshot AS TEXT) "
                "FROM core_workflow_checkpoints")).all()
        engine.dispose()
        own = {results[name]["run_id"]: tag for name, tag in tags.items()}
        assert len(rows) == 8 * len(STEPS)
        for run_id, step, text in rows:
            strangers = [t for t in tags.values() if t in text and t != own[run_id]]
            assert own[run_id] in text and not strangers, (run_id, step, strangers)
    finally:
        instance.dispose()
