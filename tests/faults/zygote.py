"""A zygote: one long-lived interpreter that imports Dagster and spine_dagster once, then forks a
fresh child process for every run and every resume of the fault suite.

Starting a Python process that imports Dagster takes 2 to 3 s; a fork of this one takes a few
milliseconds, and each child is still a new process with its own pid (what the liveness check of
``spine_dagster.liveness`` looks at), its own Dagster instance, engines and connections. The zygote
itself never opens a database or creates a Dagster instance, so nothing is shared across ``fork``
(SQLAlchemy engines and connections must not be).

Protocol: one JSON object per line on stdin, one answer per line on stdout.

* ``{"cmd": "spawn", "job": {...}}`` forks a child that runs ``job`` (see :func:`run_job`) and
  answers ``{"pid": ...}`` at once; the child writes its answer to ``job["result"]``;
* ``{"cmd": "wait", "pid": ...}`` reaps that child: ``{"code": ..., "signal": ..., "t": ...}``;
* ``{"cmd": "exit"}``.

:class:`Zygote` is the parent's side.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


# -- the child's side -------------------------------------------------------------------------------
def instrument(database_url: str) -> None:
    """Let ``fault_workflow.statement_started`` see every statement of the store's connections:
    SQLite's statement trace, or a psycopg2 cursor class that reports before it executes."""
    import sqlalchemy as sa

    import fault_workflow
    from spine_dagster.store import CheckpointStore

    engine = CheckpointStore.for_url(database_url).engine
    if engine.dialect.name == "sqlite":
        def on_connect(dbapi_conn, _record):
            dbapi_conn.set_trace_callback(fault_workflow.statement_started)
    else:
        import psycopg2.extensions

        class TracingCursor(psycopg2.extensions.cursor):
            def execute(self, query, vars=None):  # noqa: A002 - psycopg2's own name
                fault_workflow.statement_started(query)
                writing = fault_workflow.is_checkpoint_write(query)
                fault_workflow.WRITING[0] = writing
                try:
                    return super().execute(query, vars)
                finally:
                    fault_workflow.WRITING[0] = False

        def on_connect(dbapi_conn, _record):
            dbapi_conn.cursor_factory = TracingCursor
    sa.event.listen(engine, "connect", on_connect)


def _plain(context: Any) -> dict[str, Any]:
    """The parts of a final context that must not depend on kills: no run id, no start time, no
    ``__resumed__`` flag."""
    data = context.to_dict()
    data.pop("run_id", None)
    data.pop("started_at", None)
    data["params"] = {k: v for k, v in data["params"].items() if k != "__resumed__"}
    return data


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """Run one job in this (child) process: ``execute`` the fault workflow, or ``resume`` a run."""
    import fault_workflow
    from spine_dagster import WorkflowRunner

    os.environ["FAULT_LOG"] = job["fault_log"]
    plan = job.get("plan")
    fault_workflow.PLAN = plan
    if plan and plan["mode"] in ("write_stmt", "write_timer"):
        sys.setswitchinterval(0.0002)  # a timer thread fires close to its time
        instrument(job["database_url"])
    runner = WorkflowRunner(database_url=job["database_url"], progress=False)
    if job["op"] == "execute":
        started = time.time()
        result = runner.execute(fault_workflow.FAULTS)
        return {"run_id": result.run_id, "status": result.status.value, "t_end": time.time(),
                "t_start": started, "context": _plain(result.context)}
    run_id, polls, started = job["run_id"], 0, time.time()
    while True:  # until get_run sees that the killed run's process is gone
        call = time.time()
        record = runner.get_run(run_id)
        polls += 1
        if record.status.value != "running":
            break
        if time.time() - started > 30:
            return {"error": f"get_run still says running 30 s after the kill ({polls} polls)"}
        time.sleep(0.005)
    detected = time.time()
    answer: dict[str, Any] = {
        "t_detected": detected, "get_run_s": detected - call, "polls": polls,
        "status_before": record.status.value, "error_before": record.error,
        "valid_before": [c.step_name for c in runner.list_checkpoints(run_id)
                         if c.state == "valid"]}
    if record.status.value == "completed":
        answer.update(status="completed", resumed_steps=[], context=_plain(record.context))
        return answer
    result = runner.resume(run_id)
    answer.update(status=result.status.value, error=result.error,
                  resumed_steps=result.completed_steps, resume_s=time.time() - detected,
                  context=_plain(result.context))
    return answer


def _child(job: dict[str, Any]) -> None:
    code = 1
    try:
        fd = os.open(job["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        try:
            answer = run_job(job)
            code = 0
        except BaseException:  # noqa: BLE001 - reported to the parent through the result file
            answer = {"error": traceback.format_exc()}
        with open(job["result"] + ".tmp", "w") as fh:
            json.dump(answer, fh)
        os.replace(job["result"] + ".tmp", job["result"])
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _warm(database_url: str) -> None:
    """Import here what a run and a resume import lazily (Dagster's storage, the database driver,
    SQLAlchemy's dialect...): a warm-up child runs the workflow and lists the modules it loaded.
    Only modules are imported: no engine, instance or thread is created in the zygote."""
    before = set(sys.modules)
    listing = Path(os.environ["FAULT_WARM_DIR"]) / "warm_modules.json"
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            job = {"op": "execute", "database_url": database_url,
                   "fault_log": str(listing.with_suffix(".log"))}
            run_id = run_job(job)["run_id"]
            run_job({**job, "op": "resume", "run_id": run_id})  # a completed run: get_run only
            listing.write_text(json.dumps(sorted(set(sys.modules) - before)))
            code = 0
        finally:
            os._exit(code)
    os.waitpid(pid, 0)
    import importlib

    for name in json.loads(listing.read_text()) if listing.exists() else []:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001, S112 - a module that cannot be imported twice is skipped
            continue


def serve() -> None:
    """The zygote's loop (``python zygote.py``)."""
    sys.path.insert(0, str(HERE))
    import dagster  # noqa: F401 - imported once here, inherited by every child
    import sqlalchemy  # noqa: F401

    import fault_workflow  # noqa: F401
    import spine_dagster.compiler  # noqa: F401
    import spine_dagster.engine  # noqa: F401
    import spine_dagster.io_manager  # noqa: F401
    import spine_dagster.runner  # noqa: F401

    warm_url = os.environ.get("FAULT_WARM_URL")
    if warm_url:
        _warm(warm_url)
    out = sys.stdout
    out.write(json.dumps({"ready": os.getpid()}) + "\n")
    out.flush()
    for line in sys.stdin:
        command = json.loads(line)
        if command["cmd"] == "spawn":
            out.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                _child(command["job"])
            answer: dict[str, Any] = {"pid": pid}
        elif command["cmd"] == "wait":
            _, status = os.waitpid(command["pid"], 0)
            answer = {"t": time.time(), "code": os.waitstatus_to_exitcode(status)}
            answer["signal"] = -answer["code"] if answer["code"] < 0 else None
        else:
            break
        out.write(json.dumps(answer) + "\n")
        out.flush()


# -- the parent's side ------------------------------------------------------------------------------
class Zygote:
    """A running zygote (see the module docs). ``env`` is the environment of every child."""

    def __init__(self, workdir: Path, env: dict[str, str], warm_url: str | None = None) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._stderr = open(self.workdir / "zygote.stderr", "w")  # noqa: SIM115 - closed in close()
        started = time.monotonic()
        self.proc = subprocess.Popen([sys.executable, str(Path(__file__))], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self._stderr, text=True,
                                     env={**env, "PYTHONPATH": str(HERE),
                                          "FAULT_WARM_URL": warm_url or "",
                                          "FAULT_WARM_DIR": str(self.workdir)},
                                     cwd=self.workdir)
        self.pid = self._read()["ready"]
        self.startup_s = time.monotonic() - started
        self._jobs = 0

    def _read(self) -> dict[str, Any]:
        line = self.proc.stdout.readline()
        if not line:
            self._stderr.flush()
            raise RuntimeError("the zygote died:\n"
                               + (self.workdir / "zygote.stderr").read_text()[-3000:])
        return json.loads(line)

    def _call(self, command: dict[str, Any]) -> dict[str, Any]:
        self.proc.stdin.write(json.dumps(command) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def spawn(self, job: dict[str, Any]) -> tuple[int, Path]:
        """Fork a child running ``job``; returns its pid and the path of its result file."""
        self._jobs += 1
        name = f"job{self._jobs:04d}"
        job = {**job, "result": str(self.workdir / f"{name}.json"),
               "log": str(self.workdir / f"{name}.log")}
        return self._call({"cmd": "spawn", "job": job})["pid"], Path(job["result"])

    def wait(self, pid: int) -> dict[str, Any]:
        """Reap the child ``pid``: its exit ``code`` (``-9`` when SIGKILLed) and the time."""
        return self._call({"cmd": "wait", "pid": pid})

    def run(self, job: dict[str, Any]) -> dict[str, Any]:
        """Spawn ``job``, wait for it, return its answer (raising if it failed)."""
        pid, result = self.spawn(job)
        status = self.wait(pid)
        answer = json.loads(result.read_text()) if result.exists() else {}
        if status["code"] != 0 or "error" in answer:
            log = Path(str(result)[:-5] + ".log")
            raise RuntimeError(f"job {job['op']} (pid {pid}) ended with {status['code']}: "
                               f"{answer.get('error')}\n{log.read_text()[-2000:]}")
        return answer

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write(json.dumps({"cmd": "exit"}) + "\n")
                self.proc.stdin.close()
                self.proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()
        self._stderr.close()

    def __enter__(self) -> Zygote:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


if __name__ == "__main__":
    serve()
