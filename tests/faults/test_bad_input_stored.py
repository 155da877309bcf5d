"""Bad input that a run meets on its way, or that is in the environment: a step that raises
``KeyboardInterrupt`` or ``SystemExit``, a step output nested too deep, an edited Dagster run tag,
a read-only database, a full disk. Each must end in a clear error that names the problem (and the
fix), with the failing step recorded, and no other run touched. See ``catalogue.py`` for the
cases that are refused before anything is written, and ``docs/faults.md`` for the table.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
from dagster import (
    DagsterInstance,
    DagsterRunStatus,
    ReexecutionOptions,
    execute_job,
    instance_for_test,
)

import fault_workflows as fw
import seed_workflows as seed
from conftest import require_postgres, write_dagster_home
from fault_support import dump_tables, set_snapshot
from seed_workflows import SEED
from spine_dagster import (
    CheckpointStore,
    DatabaseUnavailableError,
    RunInProgressError,
    WorkflowRunner,
)
from spine_dagster import db as spine_db
from spine_dagster.cli import main
from spine_dagster.compiler import reconstructable_job
from spine_dagster.liveness import LAUNCHER_TAG
from spine_dagster.names import RUN_ID_TAG

pytestmark = pytest.mark.timeout(60)
FAULTS_DIR = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def instance():
    """One Dagster instance for the module (its runs are all distinct)."""
    with instance_for_test() as shared:
        yield shared


@pytest.fixture(autouse=True)
def _reset_seed():
    seed.reset()
    yield
    seed.reset()


@pytest.fixture
def quiet_runner(database_url, instance) -> WorkflowRunner:
    return WorkflowRunner(database_url=database_url, instance=instance, progress=False)


# -- a step that raises what is not an Exception ----------------------------------------------
@pytest.mark.parametrize("workflow,step,raised", [(fw.INTERRUPTED, "boom", "KeyboardInterrupt"),
                                                  (fw.EXITED, "bye", "SystemExit: 3")])
def test_keyboard_interrupt_or_system_exit_in_a_step_fails_it(quiet_runner, workflow, step,
                                                              raised):
    result = quiet_runner.execute(workflow)
    assert result.status.value == "failed"
    record = quiet_runner.get_run(result.run_id)
    assert (record.status.value, record.error_step) == ("failed", step)
    assert "interrupted" in record.error and raised in record.error
    assert [c.step_name for c in quiet_runner.list_checkpoints(result.run_id)] == ["first"]


def test_a_step_output_nested_too_deep_fails_the_step_with_the_path(quiet_runner):
    result = quiet_runner.execute(fw.DEEP)
    record = quiet_runner.get_run(result.run_id)
    assert (record.status.value, record.error_step) == ("failed", "deep")
    assert "outputs.deep.d.d.d" in record.error and "nested more than 100 levels" in record.error
    assert [c.step_name for c in quiet_runner.list_checkpoints(result.run_id)] == ["first"]


# -- the raw row of a damaged checkpoint can still be read, to repair it ------------------------
@pytest.mark.parametrize("raw,database_url", [
    *[(raw, backend) for raw in ("{}", '{"outputs": {"__spine_type__": "pickle"}}')
      for backend in ("sqlite", "postgres")],
    ('{"run_id": ', "sqlite"),  # a JSONB column cannot hold invalid JSON
], indirect=["database_url"])
def test_checkpoint_json_prints_the_raw_row_of_a_damaged_checkpoint(quiet_runner, database_url,
                                                                     raw, capsys):
    run_id = quiet_runner.execute(SEED).run_id
    set_snapshot(database_url, run_id, "step2", raw)
    capsys.readouterr()
    assert main(["checkpoint", run_id, "step2", "--json", "--database-url", database_url]) == 0
    out = capsys.readouterr().out
    assert out.replace(" ", "").replace("\n", "") == raw.replace(" ", "")
    assert main(["checkpoint", run_id, "step2", "--database-url", database_url]) == 1
    assert "error: " in capsys.readouterr().err


# -- Dagster run tags are editable: an edited one must not mix runs up ----------------------------
@pytest.mark.parametrize("tag", ["other-run", "x" * 100])
def test_an_edited_spine_run_id_tag_is_refused_by_a_re_execution(quiet_runner, database_url,
                                                                 instance, tag):
    mine = quiet_runner.execute(SEED, params={"key": "mine"})
    other = quiet_runner.execute(SEED, params={"key": "other"})
    value = other.run_id if tag == "other-run" else tag
    instance.add_run_tags(mine.dagster_run_id, {RUN_ID_TAG: value})
    before = dump_tables(database_url)
    seed.reset()
    seed.STATE["api_down"] = False
    parent = instance.get_run_by_id(mine.dagster_run_id)
    # What the UI's "Re-execute from failure" does: the parent's config and tags, from failure.
    job = reconstructable_job(SEED, database_url=database_url)
    result = execute_job(job, instance=instance, run_config=parent.run_config,
                         tags=dict(parent.tags), raise_on_error=False,
                         reexecution_options=ReexecutionOptions.from_failure(parent.run_id,
                                                                             instance))
    assert not result.success
    assert seed.CALLS == []  # no step ran
    failure = result.get_run_failure_event()
    text = str(failure.job_failure_data.error.to_string())
    assert "CheckpointCorruptError" in text and "the tag was edited" in text, text
    assert "spine-dagster resume" in text
    assert dump_tables(database_url) == before  # neither run was touched
    assert quiet_runner.get_run(other.run_id).status.value == "failed"


def test_an_edited_launcher_tag_does_not_fail_a_live_run(tmp_path):
    """The tag names a dead process, but the run's own process (its RUN_START pid) is alive."""
    home = write_dagster_home(tmp_path / "dagster_home", "sqlite")
    url = f"sqlite:///{tmp_path}/checkpoints.db"
    started, release = tmp_path / "started", tmp_path / "release"
    code = ("import sys, json, fault_workflows as fw\nfrom spine_dagster import WorkflowRunner\n"
            "r = WorkflowRunner(database_url=sys.argv[1], progress=False)\n"
            "print(r.execute(fw.WAITING, params=json.loads(sys.argv[2])).status.value)\n")
    env = {**os.environ, "DAGSTER_HOME": home, "PYTHONPATH": f"{FAULTS_DIR}:{FAULTS_DIR.parent}"}
    params = f'{{"started": "{started}", "release": "{release}"}}'
    proc = subprocess.Popen([sys.executable, "-c", code, url, params], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    instance = DagsterInstance.from_config(home)
    try:
        deadline = time.monotonic() + 45
        while not started.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
        assert started.exists(), proc.stderr.read() if proc.poll() is not None else "timeout"
        runner = WorkflowRunner(database_url=url, instance=instance, progress=False)
        (listed,) = runner.store.list_runs()
        record = runner.get_run(listed.run_id)
        dead = 4_000_000  # above any pid_max: no such process
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()[:8]
        instance.add_run_tags(record.last_dagster_run_id,
                              {LAUNCHER_TAG: f"{dead}@{socket.gethostname()}:1:{boot}"})
        with pytest.raises(RunInProgressError, match="still running"):
            runner.resume(record.run_id, workflow=fw.WAITING)
        assert runner.get_run(record.run_id).status.value == "running"
        assert instance.get_run_by_id(record.last_dagster_run_id).status is \
            DagsterRunStatus.STARTED
        release.write_text("go")
        out, err = proc.communicate(timeout=45)
        assert out.strip().splitlines()[-1] == "completed", err[-2000:]
    finally:
        release.write_text("go")
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        instance.dispose()


# -- the database cannot be written --------------------------------------------------------------
@pytest.fixture
def tmpfs(tmp_path):
    """A mount point for a tiny tmpfs (root only); unmounted afterwards. Not under tmp_path,
    which other users (the PostgreSQL server) may not enter."""
    point = Path(tempfile.mkdtemp(prefix="spine_mnt_"))
    point.chmod(0o755)
    mounted: list[Path] = []

    def mount(size: str, owner: str | None = None) -> Path:
        options = f"size={size}"
        if owner:  # e.g. postgres, for a tablespace
            ids = [subprocess.run(["id", flag, owner], capture_output=True, text=True).stdout
                   for flag in ("-u", "-g")]
            options += f",uid={ids[0].strip()},gid={ids[1].strip()},mode=0700"
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.strip()}")
        mounted.append(point)
        return point

    yield mount
    spine_db.dispose_all()
    for path in mounted:
        subprocess.run(["umount", "-l", str(path)], check=False)
    point.rmdir()


def test_a_read_only_sqlite_file_says_read_only(tmpfs, instance):
    point = tmpfs("4m")
    url = f"sqlite:///{point}/checkpoints.db"
    runner = WorkflowRunner(database_url=url, instance=instance, progress=False)
    failed = runner.execute(SEED)
    spine_db.dispose_all()
    before = dump_tables(url)
    subprocess.run(["mount", "-o", "remount,ro", str(point)], check=True)
    for call in (lambda: runner.get_run(failed.run_id), lambda: runner.execute(SEED),
                 lambda: runner.resume(failed.run_id)):
        with pytest.raises(DatabaseUnavailableError) as info:
            call()
        message = str(info.value)
        assert "is read-only" in message and "write access" in message, message
        assert "server is running" not in message
    spine_db.dispose_all()
    subprocess.run(["mount", "-o", "remount,rw", str(point)], check=True)
    assert dump_tables(url) == before
    assert seed.CALLS == ["step1", "step2", "step3"]  # only the first run's steps ever ran


def test_a_full_disk_says_the_disk_is_full(tmpfs, instance):
    point = tmpfs("2m")
    url = f"sqlite:///{point}/checkpoints.db"
    runner = WorkflowRunner(database_url=url, instance=instance, progress=False)
    failed = runner.execute(SEED)
    _fill(point)
    seed.STATE["api_down"] = False
    result = runner.execute(SEED)  # the run starts: its first write fails its first step
    assert result.status.value == "failed" and "DatabaseUnavailableError" in result.error
    assert "is full" in result.error and "spine-dagster cleanup" in result.error, result.error
    for call in (lambda: runner.resume(failed.run_id),
                 lambda: CheckpointStore.for_url(url).save_checkpoint(
                     run_id=failed.run_id, workflow_name=SEED.name, step_name="step3",
                     step_index=2, dagster_run_id=None, snapshot={"big": "x" * 500_000})):
        with pytest.raises(DatabaseUnavailableError) as info:
            call()
        message = str(info.value)
        assert "is full" in message and "spine-dagster cleanup" in message, message
    (point / "filler").unlink()
    spine_db.dispose_all()
    assert runner.get_run(failed.run_id).status.value == "failed"


@pytest.mark.postgres
def test_a_read_only_postgresql_database_says_read_only(pg_schema_url, instance):
    runner = WorkflowRunner(database_url=pg_schema_url, instance=instance, progress=False)
    runner.store.check()
    before = dump_tables(pg_schema_url)
    read_only = pg_schema_url + "%20-cdefault_transaction_read_only%3Don"
    result = WorkflowRunner(database_url=read_only, instance=instance, progress=False).execute(SEED)
    assert result.status.value == "failed"
    assert "DatabaseUnavailableError" in result.error and "is read-only" in result.error
    assert "without default_transaction_read_only" in result.error
    assert dump_tables(pg_schema_url) == before


def _fill(point: Path) -> None:
    filler = os.open(point / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(filler, b"\0" * 4096)
    except OSError:
        pass
    finally:
        os.close(filler)


@pytest.mark.postgres
def test_a_full_postgresql_tablespace_says_the_disk_is_full(tmpfs, pg_schema_url, instance):
    """The checkpoint tables in a tablespace on a 1 MB tmpfs (the local server's own machine)."""
    point = tmpfs("1m", owner="postgres")
    name = f"spine_full_{uuid.uuid4().hex[:10]}"
    admin = require_postgres()
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE TABLESPACE {name} LOCATION '{point}'"))
    try:
        url = pg_schema_url + f"%20-cdefault_tablespace%3D{name}"
        runner = WorkflowRunner(database_url=url, instance=instance, progress=False)
        failed = runner.execute(SEED)
        _fill(point)
        with pytest.raises(DatabaseUnavailableError) as info:
            CheckpointStore.for_url(url).save_checkpoint(
                run_id=failed.run_id, workflow_name=SEED.name, step_name="step3", step_index=2,
                dagster_run_id=None, snapshot={"big": "x" * 500_000})
        message = str(info.value)
        assert "is full" in message and "No space left on device" in message, message
        assert "spine-dagster cleanup" in message
        (point / "filler").unlink()
        assert runner.get_run(failed.run_id).status.value == "failed"
    finally:
        spine_db.dispose_all()
        with admin.connect() as conn:  # the tables go first, with the schema
            schema = pg_schema_url.rsplit("%3D", 1)[-1]
            conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
            conn.execute(sa.text(f"DROP TABLESPACE IF EXISTS {name}"))
