"""Spine runs on a real Dask cluster: a ``dask scheduler`` and two ``dask worker`` processes.

The cluster runs on 127.0.0.1, each process in its own session (stopped, with everything it
started, at teardown). Checkpoints and the Dagster instance are in PostgreSQL. The workers import
the workflow from ``tests/workflows_dask.py`` (``tests`` on their PYTHONPATH) and find the
checkpoint database in their own ``SPINE_DAGSTER_DATABASE_URL``: the URL has a password, which
Dagster only ever sees masked. (The local server trusts every connection, so the test cannot
prove that the password was sent; it proves that it was never stored in Dagster.)

The scheduler runs with ``distributed.scheduler.allowed-failures=0``: a task whose worker dies is
not run again elsewhere, so the Dagster run fails and ``resume`` continues it from its
checkpoints (see spine_dagster/dask_executor.py for why that is the right behaviour for spine).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Iterator

import pytest
import sqlalchemy as sa
from conftest import pg_schema, write_dagster_home
from dagster import DagsterEventType, DagsterInstance, DagsterRunStatus
from deployment_support import ProcessSession, body_timeout, free_port, stop_all, wait_until
from workflows_dask import CHAIN, records

from spine_dagster import WorkflowRunner

pytestmark = [pytest.mark.slow, pytest.mark.postgres, body_timeout(300)]
TESTS_DIR = Path(__file__).resolve().parent
SECRET = "dask-s3cret"
FAIL_WITHIN_SECONDS = 30.0  # a killed worker fails its run this fast (it is not rescheduled)


def _dask(command: str) -> str:
    path = Path(sys.executable).parent / "dask"
    return str(path) if path.exists() else command


@dataclass
class DaskCluster:
    """A scheduler and its workers, each ``dask worker --no-nanny`` (one process, one thread)."""

    address: str
    root: Path
    env: dict[str, str]
    scheduler: ProcessSession
    workers: list[ProcessSession] = field(default_factory=list)

    def start_worker(self) -> ProcessSession:
        name = f"worker{len(self.workers) + 1}"
        worker = ProcessSession(
            f"dask {name}",
            [_dask("dask"), "worker", self.address, "--name", name, "--no-nanny",
             "--nthreads", "1", "--host", "127.0.0.1", "--no-dashboard"],
            self.env, self.root / f"{name}.log")
        self.workers.append(worker)
        return worker

    def live_workers(self) -> list[ProcessSession]:
        return [w for w in self.workers if w.alive()]

    def worker_pids(self) -> set[int]:
        """The pids of the workers the scheduler knows, asked through Dask itself."""
        import dask.distributed  # noqa: PLC0415

        with dask.distributed.Client(self.address, timeout=30) as client:
            return set(client.run(os.getpid).values())

    def wait_for_workers(self, count: int) -> None:
        import dask.distributed  # noqa: PLC0415

        with dask.distributed.Client(self.address, timeout=60) as client:
            client.wait_for_workers(count, timeout=120)

    def stop(self) -> None:
        stop_all([*self.workers, self.scheduler])


@pytest.fixture(scope="module")
def checkpoint_url() -> Iterator[str]:
    """The PostgreSQL checkpoint database, as a URL with a password."""
    with pg_schema("spine_dask") as url:
        yield sa.make_url(url).set(password=SECRET).render_as_string(hide_password=False)


@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory, checkpoint_url) -> Iterator[DaskCluster]:
    root = tmp_path_factory.mktemp("dask")
    address = f"tcp://127.0.0.1:{free_port()}"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SPINE_DAGSTER_", "DAGSTER_", "DASK_"))}
    env.update(PYTHONPATH=os.pathsep.join([str(TESTS_DIR), env.get("PYTHONPATH", "")]),
               SPINE_DAGSTER_DATABASE_URL=checkpoint_url,
               SPINE_DAGSTER_HOME=str(root / "spine_home"), PYTHONUNBUFFERED="1")
    scheduler = ProcessSession(
        "dask scheduler",
        [_dask("dask"), "scheduler", "--host", "127.0.0.1", "--port", address.rsplit(":", 1)[1],
         "--no-dashboard"],
        {**env, "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "0"}, root / "scheduler.log")
    cluster = DaskCluster(address, root, env, scheduler)
    try:
        for _ in range(2):
            cluster.start_worker()
        cluster.wait_for_workers(2)
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def cluster(dask_cluster, monkeypatch) -> DaskCluster:
    """The module's cluster with two live workers (a test before may have killed one)."""
    for _ in range(4):  # a worker that dies at once is not started again and again
        if len(dask_cluster.live_workers()) >= 2:
            break
        dask_cluster.start_worker()
    assert len(dask_cluster.live_workers()) >= 2, [w.tail() for w in dask_cluster.workers[-2:]]
    dask_cluster.wait_for_workers(2)
    monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", dask_cluster.address)
    return dask_cluster


@pytest.fixture
def dask_runner_home(tmp_path, pg_dagster_url) -> str:
    return write_dagster_home(tmp_path / "dagster_home", "postgres", pg_dagster_url)


@pytest.fixture
def dask_runner(dask_runner_home, checkpoint_url) -> Iterator[WorkflowRunner]:
    home = dask_runner_home
    instance = DagsterInstance.from_config(home)
    try:
        yield WorkflowRunner(database_url=checkpoint_url, instance=instance, executor="dask",
                             progress=False)
    finally:
        instance.dispose()


def _step_start_pids(instance: DagsterInstance, dagster_run_id: str) -> dict[str, int]:
    found = instance.get_records_for_run(dagster_run_id,
                                         of_type=DagsterEventType.STEP_START).records
    return {r.event_log_entry.step_key: r.event_log_entry.dagster_event.pid for r in found}


def _outputs(runner: WorkflowRunner, run_id: str) -> dict[str, dict]:
    context = runner.get_run(run_id).context
    return {step: context.get_output(step) for step in ("prepare", "hold", "finish")}


def _secret_in_dagster(pg_dagster_url: str) -> int:
    engine = sa.create_engine(pg_dagster_url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text(
                "SELECT (SELECT count(*) FROM runs WHERE run_body LIKE :s) + "
                "(SELECT count(*) FROM event_logs WHERE event LIKE :s)"),
                {"s": f"%{SECRET}%"}).scalar()
    finally:
        engine.dispose()


def test_steps_run_in_the_workers_and_concurrent_runs_stay_apart(
        cluster, dask_runner, dask_runner_home, tmp_path, pg_dagster_url, checkpoint_url):
    side = tmp_path / "side.jsonl"
    workers = cluster.worker_pids()
    assert workers == {w.proc.pid for w in cluster.live_workers()}
    # Dagster runs one execute_job per process at a time: the second run is another process.
    other = subprocess.Popen(
        [sys.executable, "-c", "import sys, workflows_dask as w; w.main(sys.argv[1:])",
         checkpoint_url, json.dumps({"side": str(side), "n": 2, "meet": 2})],
        env={**os.environ, "PYTHONPATH": str(TESTS_DIR), "DAGSTER_HOME": dask_runner_home},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:  # "meet": each run's first step waits until both runs have started it
        mine = dask_runner.execute(CHAIN, params={"side": str(side), "n": 1, "meet": 2})
        out, err = other.communicate(timeout=240)
    finally:
        if other.poll() is None:
            os.killpg(other.pid, signal.SIGKILL)
            other.wait()
    assert other.returncode == 0, err[-3000:]
    theirs = json.loads(out.strip().splitlines()[-1])
    results = {1: mine, 2: SimpleNamespace(
        run_id=theirs["run_id"], dagster_run_id=theirs["dagster_run_id"],
        status=theirs["status"], completed_steps=theirs["steps"], error=theirs["error"])}

    lines = records(side)
    for n, result in results.items():
        assert (result.status, result.completed_steps) == ("completed",
                                                           ["prepare", "hold", "finish"]), result
        mine = [line for line in lines if line["run"] == result.run_id]
        assert [line["step"] for line in mine] == ["prepare", "hold", "finish"]  # each once
        assert {line["n"] for line in mine} == {n}
        assert {line["pid"] for line in mine} <= workers  # in the Dask workers...
        assert os.getpid() not in {line["pid"] for line in mine}  # ...not in the test process
        # Dagster saw the same processes start the ops
        starts = _step_start_pids(dask_runner.instance, result.dagster_run_id)
        assert set(starts) == {"prepare", "hold", "finish"}
        assert set(starts.values()) <= workers
        # each run's context is its own, step after step
        outputs = _outputs(dask_runner, result.run_id)
        assert (outputs["prepare"]["run"], outputs["prepare"]["n"]) == (result.run_id, n)
        assert outputs["hold"] == {"run": result.run_id, "n": n, "prepared_by": result.run_id}
        assert outputs["finish"] == {"run": result.run_id, "n": n, "held_by": result.run_id}
    # The two first steps ran at the same time, so on both workers (one thread each).
    assert {line["pid"] for line in lines if line["step"] == "prepare"} == workers
    assert _secret_in_dagster(pg_dagster_url) == 0


def test_a_killed_worker_fails_the_run_and_resume_reruns_only_what_is_left(
        cluster, dask_runner, tmp_path, record_property):
    side, release = tmp_path / "side.jsonl", tmp_path / "release"
    workers = cluster.worker_pids()
    killed: dict[str, float] = {}

    def kill_the_worker_running_hold() -> None:
        held = wait_until("step 'hold' to start", lambda: [
            line for line in records(side) if line["step"] == "hold"], 180)
        killed["pid"], killed["at"] = held[0]["pid"], time.monotonic()
        os.kill(held[0]["pid"], signal.SIGKILL)

    killer = threading.Thread(target=kill_the_worker_running_hold, daemon=True)
    killer.start()
    first = dask_runner.execute(CHAIN, params={"side": str(side), "n": 7, "hold": True,
                                               "release": str(release)})
    ended = time.monotonic()
    killer.join(timeout=5)

    # The run failed, promptly: the task was not run again on the other worker.
    assert killed, "the killer never saw step 'hold' start"
    assert killed["pid"] in workers
    assert ended - killed["at"] < FAIL_WITHIN_SECONDS
    record_property("kill_to_run_end_seconds", round(ended - killed["at"], 2))
    assert first.status == "failed", first
    assert "the Dask worker running it died" in first.error
    assert [(line["step"], line["pid"]) for line in records(side)] == [
        ("prepare", records(side)[0]["pid"]), ("hold", killed["pid"])]
    dagster_run = dask_runner.instance.get_run_by_id(first.dagster_run_id)
    assert dagster_run.status == DagsterRunStatus.FAILURE
    record = dask_runner.get_run(first.run_id)
    assert (record.status.value, record.error_step) == ("failed", "hold")
    assert [c.step_name for c in dask_runner.list_checkpoints(first.run_id)] == ["prepare"]

    resumed = dask_runner.resume(first.run_id, params_override={"hold": False})

    assert (resumed.status, resumed.run_id) == ("completed", first.run_id), resumed
    assert resumed.completed_steps == ["hold", "finish"]
    survivors = workers - {killed["pid"]}
    lines = records(side)
    assert [line["step"] for line in lines] == ["prepare", "hold", "hold", "finish"]
    assert [line["resumed"] for line in lines] == [False, False, True, True]
    assert {line["pid"] for line in lines[2:]} <= survivors  # the killed worker stays dead
    checkpoints = {c.step_name: c.dagster_run_id
                   for c in dask_runner.list_checkpoints(first.run_id)}
    assert checkpoints == {"prepare": first.dagster_run_id, "hold": resumed.dagster_run_id,
                           "finish": resumed.dagster_run_id}
    outputs = _outputs(dask_runner, first.run_id)
    assert outputs["finish"] == {"run": first.run_id, "n": 7, "held_by": first.run_id}
    child = dask_runner.instance.get_run_by_id(resumed.dagster_run_id)
    assert (child.parent_run_id, child.status) == (first.dagster_run_id, DagsterRunStatus.SUCCESS)
    assert set(_step_start_pids(dask_runner.instance, resumed.dagster_run_id)) == {"hold",
                                                                                    "finish"}
