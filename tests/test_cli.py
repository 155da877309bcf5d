"""The ``spine-dagster`` command line, through its real entry point (the console script)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import sqlalchemy as sa

from spine_dagster import CheckpointStore, SchemaOutOfDateError, WorkflowRunner
from spine_dagster import db as spine_db
from spine_dagster.cli import main, parse_param
from spine_dagster.schema import SCHEMA_VERSION

from checkpoint_rows import KEPT_AFTER_POLICY, make_run, remaining, seed_policy_cases

TESTS_DIR = Path(__file__).resolve().parent
SCRIPT = Path(sys.executable).parent / "spine-dagster"


def spine(*args: str, env: dict[str, str], input: str | None = None,
          cwd: Path = TESTS_DIR) -> subprocess.CompletedProcess:
    command = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "spine_dagster.cli"]
    return subprocess.run([*command, *args], env=env, cwd=cwd, input=input, capture_output=True,
                          text=True, timeout=240)


def one_line_error(proc: subprocess.CompletedProcess, code: int = 1) -> str:
    assert proc.returncode == code, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


@pytest.fixture
def env(tmp_path) -> dict[str, str]:
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    environ = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    # The package under test (this checkout), whichever checkout the console script was
    # installed from; the tests directory comes from the working directory (cwd=TESTS_DIR).
    return {**environ, "PYTHONPATH": str(TESTS_DIR.parent), "DAGSTER_HOME": str(home),
            "SEED_CALLS_FILE": str(tmp_path / "calls.txt")}


def calls(env) -> list[str]:
    return Path(env["SEED_CALLS_FILE"]).read_text().splitlines()


def failed_seed_run(database_url: str, env: dict[str, str]) -> str:
    """Run the seed workflow in another process, with its API down: it fails at step3."""
    code = textwrap.dedent(f"""
        from seed_workflows import SEED
        from spine_dagster import WorkflowRunner
        result = WorkflowRunner(database_url={database_url!r}, log_level="ERROR").execute(
            SEED, params={{"timeout": 30}})
        print(result.run_id, result.status.value)
    """)
    proc = subprocess.run([sys.executable, "-c", code], env={**env, "SEED_API_DOWN": "1"},
                          cwd=TESTS_DIR, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_id, status = proc.stdout.split()[-2:]
    assert status == "failed"
    return run_id


def run_main(capsys, *args: str) -> tuple[int, str, str]:
    """The same CLI in this process: for output details that need no process boundary."""
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("damage", ["checkpoint-state", "run-status"])
def test_delete_clears_a_run_whose_rows_are_damaged(database_url, capsys, damage):
    """The corruption errors advise deleting a damaged run's checkpoints: `delete` (and
    `WorkflowRunner.delete_checkpoints`) must do it without decoding the damaged rows; a damaged
    run whose stored status says running is still refused."""
    store = CheckpointStore.for_url(database_url)
    db = ("--database-url", database_url)
    for run_id in ("damaged-1", "damaged-2", "damaged-running"):
        make_run(store, run_id, "running" if run_id.endswith("running") else "failed",
                 checkpoint_days=0, steps=3)
    with store.engine.begin() as conn:
        if damage == "checkpoint-state":
            conn.execute(sa.text("UPDATE core_workflow_checkpoints SET state = 'bogus' "
                                 "WHERE step_name = 's1'"))
        else:
            conn.execute(sa.text("UPDATE core_workflow_runs SET status = 'weird' "
                                 "WHERE run_id <> 'damaged-running'"))
    code, _, err = run_main(capsys, "checkpoints", "damaged-1", *db)
    assert code == 1 and err.startswith("error: "), err  # damaged: it cannot be shown

    code, out, err = run_main(capsys, "delete", "damaged-1", "--yes", *db)
    assert code == 0, err
    assert out.strip().splitlines()[-1] == "deleted 3 checkpoint(s) of run damaged-1"
    assert WorkflowRunner(database_url=database_url).delete_checkpoints("damaged-2") == 3
    code, out, err = run_main(capsys, "delete", "damaged-running", "--yes", *db)
    assert code == 1 and "is running" in err, (out, err)
    assert remaining(store)["damaged-running"] == 3
    assert "damaged-1" not in remaining(store) and "damaged-2" not in remaining(store)



def test_inspect_resume_and_delete_a_run_that_failed_in_another_process(database_url, env,
                                                                         capsys):
    run_id = failed_seed_run(database_url, env)
    store = CheckpointStore(database_url)
    make_run(store, "other-run", "completed", checkpoint_days=1, steps=1)  # tests.retention
    db = ("--database-url", database_url)

    failed = spine("runs", "--status", "failed", *db, env=env)
    assert failed.returncode == 0, failed.stderr
    header, *rows = failed.stdout.splitlines()
    assert header.split() == ["RUN", "ID", "WORKFLOW", "STATUS", "FAILED", "STEP", "AGE", "ERROR"]
    assert [row.split()[:4] for row in rows] == [[run_id, "my.workflow", "failed", "step3"]]
    assert rows[0].split()[4].endswith("s")  # its age, in seconds
    code, out, _ = run_main(capsys, "runs", *db)
    assert code == 0 and {line.split()[0] for line in out.splitlines()[1:]} == {run_id, "other-run"}
    code, out, _ = run_main(capsys, "runs", "--workflow", "tests.retention", *db)
    assert [line.split()[0] for line in out.splitlines()[1:]] == ["other-run"]
    code, out, _ = run_main(capsys, "runs", "--status", "running", *db)
    assert (code, out) == (0, "no runs with status running\n")

    code, out, _ = run_main(capsys, "checkpoints", run_id, *db)
    lines = out.splitlines()
    assert lines[0].startswith(f"run {run_id} (workflow my.workflow): failed at step step3")
    assert [line.split()[0] for line in lines[1:]] == ["STEP", "step1", "step2"]
    as_json = json.loads(spine("checkpoint", run_id, "step2", "--json", *db, env=env).stdout)
    assert as_json["params"]["timeout"] == 30
    assert as_json["outputs"] == {"step1": {"records": 1000}, "step2": {"processed": 950}}
    code, out, _ = run_main(capsys, "checkpoint", run_id, "step2", *db)
    assert "params:" in out and '"derived_key": "computed_value"' in out
    code, _, err = run_main(capsys, "checkpoint", run_id, "step4", *db)
    assert code == 1 and err.count("\n") == 1 and "no checkpoint for step 'step4'" in err

    # The API is back. Resume from the CLI, from the project directory (no PYTHONPATH): the run
    # recorded that its workflow is seed_workflows:SEED.
    resumed = spine("resume", run_id, "--param", "timeout=120", *db,
                    env={**env, "SEED_API_DOWN": "0"})
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    out = resumed.stdout.splitlines()
    assert out[0].startswith(f"resuming run {run_id}")
    assert out[1].startswith("param timeout: 30 -> 120")
    progress = [line.split()[:2] for line in out if line.startswith("  ")]
    assert ["step3", "completed"] in progress and ["step4", "completed"] in progress
    assert progress.index(["step3", "completed"]) < progress.index(["step4", "completed"])
    assert not any(step in ("step1", "step2") for step, _ in progress)
    assert out[-1].startswith(f"run {run_id} completed") and out[-1].endswith("step3, step4")
    assert calls(env) == ["step1 0 30", "step2 0 30", "step3 0 30", "step3 1 120", "step4 1 120"]
    step3 = store.get_checkpoint(run_id, "step3").context
    assert step3.params["timeout"] == 120 and step3.params["__resumed__"] is True
    assert step3.outputs["step3"]["timeout"] == 120

    declined = spine("delete", run_id, *db, env=env, input="n\n")
    assert declined.returncode == 1 and "Delete 4 checkpoint(s)" in declined.stdout
    assert "nothing deleted" in declined.stdout
    assert len(store.list_checkpoints(run_id)) == 4
    accepted = spine("delete", run_id, *db, env=env, input="y\n")
    assert accepted.returncode == 0
    assert f"deleted 4 checkpoint(s) of run {run_id}" in accepted.stdout
    assert store.list_checkpoints(run_id) == []
    code, out, _ = run_main(capsys, "delete", "other-run", "--yes", *db)
    assert code == 0 and "Delete" not in out
    assert remaining(store) == {}


def test_bad_input_is_one_line_and_changes_nothing(database_url, env, capsys):
    store = CheckpointStore(database_url)
    make_run(store, "kept", "failed", checkpoint_days=1)
    db = ("--database-url", database_url)
    error = one_line_error(spine("checkpoints", "no-such-run", *db, env=env))
    assert "no spine run or Dagster run with id 'no-such-run'" in error
    assert "spine-dagster runs" in error
    for args in (("checkpoint", "no-such-run", "step1"), ("resume", "no-such-run"),
                 ("delete", "no-such-run", "--yes")):
        code, out, err = run_main(capsys, *args, *db)
        assert code == 1 and out == "" and err.count("\n") == 1
        assert err.startswith("error: no spine run or Dagster run with id 'no-such-run'")
    for days in ("0", "-1", "nan"):
        code, _, err = run_main(capsys, "cleanup", "--retention-days", days, *db)
        assert code == 1 and "--retention-days must be a positive number of days" in err, err
        assert "--retention-days 7" in err and "checkpoint_retention_days" not in err
    assert remaining(store) == {"kept": 2}


def test_usage_errors_and_help():
    env = dict(os.environ)
    error = one_line_error(spine("resume", "some-run", "--param", "timeout", env=env), code=2)
    assert "'timeout' is not key=value" in error and "spine-dagster resume --help" in error
    error = one_line_error(spine("runs", "--database-url", "mysql://x/y", env=env))
    assert "unsupported database" in error
    top = spine("--help", env=env)
    assert top.returncode == 0
    for command in ("runs", "checkpoints", "checkpoint", "resume", "delete", "cleanup", "db"):
        assert command in top.stdout


def test_usage_errors_in_process(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["runs", "--status", "bogus"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "invalid choice: 'bogus'" in err


@pytest.mark.parametrize("command", [["runs"], ["checkpoints"], ["checkpoint"], ["resume"],
                                     ["delete"], ["cleanup"], ["db", "upgrade"]])
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--help"])
    assert exit_info.value.code == 0
    assert "--database-url" in capsys.readouterr().out


def test_param_values_are_json_when_they_parse():
    assert parse_param("timeout=120") == ("timeout", 120)
    assert parse_param("force=true") == ("force", True)
    assert parse_param("ids=[1, 2]") == ("ids", [1, 2])
    assert parse_param("url=https://api.example.com/v1?a=b") == ("url", "https://api.example.com/v1?a=b")
    assert parse_param('name="120"') == ("name", "120")
    assert parse_param("empty=") == ("empty", "")


def test_cleanup(database_url, env, capsys):
    store = CheckpointStore(database_url)
    seed_policy_cases(store)
    before = remaining(store)
    db = ("--database-url", database_url)
    dry = spine("cleanup", "--retention-days", "7", "--dry-run", *db, env=env)
    assert dry.returncode == 0 and dry.stdout.startswith("would delete 6 checkpoint(s)")
    assert remaining(store) == before
    code, out, _ = run_main(capsys, "cleanup", "--batch-size", "2", *db)  # default: 7 days
    assert code == 0 and out.startswith("deleted 6 checkpoint(s)")
    assert remaining(store) == KEPT_AFTER_POLICY


def _column_names(store: CheckpointStore, table: str) -> set[str]:
    with store.engine.connect() as conn:
        return {c["name"] for c in sa.inspect(conn).get_columns(table)}


def test_db_upgrade_on_an_empty_and_on_an_older_database(database_url, env, capsys):
    db = ("--database-url", database_url)
    code, out, _ = run_main(capsys, "db", "upgrade", *db)
    assert code == 0 and out.startswith(f"created the spine_dagster tables (schema version {SCHEMA_VERSION})")
    code, out, _ = run_main(capsys, "db", "upgrade", *db)
    assert code == 0 and "nothing to do" in out

    # An older database: no version row, no workflow_signature column, a nested-form checkpoint.
    store = CheckpointStore(database_url)
    make_run(store, "old-run", "failed", checkpoint_days=1, steps=1)
    with store.engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM spine_dagster_schema"))
        conn.execute(sa.text("ALTER TABLE core_workflow_runs DROP COLUMN workflow_signature"))
        conn.execute(sa.update(sa.table("core_workflow_checkpoints",
                                        sa.column("context_snapshot", sa.JSON)))
                     .values(context_snapshot={
                         "run_id": "old-run", "step_name": "s0",
                         "context": {"params": {"timeout": 30}, "outputs": {"s0": {"i": 0}}},
                         "metadata": {"created_at": "2026-01-10T12:00:00+00:00"}}))
    spine_db.dispose_all()  # this process checked the schema already; forget that

    with pytest.raises(SchemaOutOfDateError, match="Run: spine-dagster db upgrade"):
        WorkflowRunner(database_url=database_url).get_run("old-run")
    error = one_line_error(spine("runs", *db, env=env))
    assert "has schema version 0" in error and "spine-dagster db upgrade --database-url" in error

    upgraded = spine("db", "upgrade", *db, env=env)
    assert upgraded.returncode == 0, upgraded.stderr
    assert upgraded.stdout.splitlines() == [
        f"upgraded {spine_db.mask_url(spine_db.resolve_url(database_url))} from schema version "
        f"0 to {SCHEMA_VERSION}", "  added column core_workflow_runs.workflow_signature",
        "  ran migration step 2", "  ran migration step 3"]
    assert "workflow_signature" in _column_names(store, "core_workflow_runs")

    spine_db.dispose_all()
    runner = WorkflowRunner(database_url=database_url)
    assert runner.get_run("old-run").status == "failed"
    checkpoint = runner.get_checkpoint("old-run", "s0")  # the nested form was rewritten
    assert checkpoint.context.params == {"timeout": 30}
    assert checkpoint.context.outputs == {"s0": {"i": 0}}


def test_a_missing_column_is_caught_even_when_the_version_is_current(database_url):
    store = CheckpointStore(database_url)
    make_run(store, "r", "completed", checkpoint_days=1, steps=1)
    with store.engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE core_workflow_checkpoints DROP COLUMN size_bytes"))
    spine_db.dispose_all()
    with pytest.raises(SchemaOutOfDateError, match="lacks core_workflow_checkpoints.size_bytes"):
        CheckpointStore(database_url).list_checkpoints("r")
    assert spine_db.upgrade(database_url).changes == [
        "added column core_workflow_checkpoints.size_bytes"]
    assert [c.size_bytes for c in CheckpointStore(database_url).list_checkpoints("r")] == [0]


def test_the_command_line_imports_no_dagster_until_a_command_runs():
    code = ("import sys, spine_dagster.cli as c; c.build_parser(); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('dagster', 'sqlalchemy')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_plan_start_from_rerun_stale_and_config(database_url, env, tmp_path, capsys):
    import workflows_resume as wr

    (tmp_path / "fail.txt").write_text("publish")
    runner = WorkflowRunner(database_url=database_url, progress=False,
                            instance=_instance_of(env))
    failed = runner.execute(wr.IMPACT, params={"dir": str(tmp_path), "date": "2026-01-09",
                                               "tier": "gold", "timeout": 30})
    db = ("--database-url", database_url)

    plan = spine("resume", failed.run_id, "--plan", "--param", "date=2026-01-10", *db, env=env)
    assert plan.returncode == 0, plan.stderr
    assert "start: publish (the run failed at 'publish')" in plan.stdout
    assert "STALE: read date" in plan.stdout
    assert 'param date: "2026-01-09" -> "2026-01-10"' in plan.stdout
    as_json = json.loads(spine("resume", failed.run_id, "--plan", "--json", "--rerun-stale",
                               "--param", "date=2026-01-10", *db, env=env).stdout)
    assert as_json["start_step"] == "load" and as_json["stale_steps"] == []
    assert as_json["steps_to_run"] == ["load", "enrich", "publish", "report"]
    assert (tmp_path / "ran.txt").read_text().split() == ["load", "enrich", "publish"]  # no run

    config = tmp_path / "config.yaml"
    config.write_text("ops:\n  publish:\n    config: {retries: 2}\n")
    resumed = spine("resume", failed.run_id, "--config", str(config), *db, env=env)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert resumed.stdout.splitlines()[-1].endswith("steps run: publish, report")

    code, _, err = run_main(capsys, "resume", failed.run_id, *db)
    assert code == 1 and "spine-dagster resume" in err and "--start-from STEP" in err
    assert "start_from=" not in err  # CLI advice, not Python's
    again = spine("resume", failed.run_id, "--start-from", "report", *db, env=env)
    assert again.returncode == 0 and again.stdout.splitlines()[-1].endswith("steps run: report")
    code, _, err = run_main(capsys, "resume", failed.run_id, "--start-from", "nope", *db)
    assert code == 1 and "--start-from STEP" in err


def test_the_plan_of_a_map_resume_is_the_same_from_the_cli_and_from_python(database_url, env,
                                                                           tmp_path, capsys,
                                                                           monkeypatch):
    from workflows_steps import MAPPED, calls as item_calls

    files = {"calls_file": str(tmp_path / "calls.txt"), "broken_file": str(tmp_path / "b.json")}
    Path(files["broken_file"]).write_text('{"2": "TRANSIENT"}')
    runner = WorkflowRunner(database_url=database_url, progress=False,
                            instance=_instance_of(env))
    failed = runner.execute(MAPPED, params={"items": [0, 1, 2, 3], **files})
    assert (failed.status, failed.error_step) == ("failed", "fan")
    db = ("--database-url", database_url)

    # in this process: a subprocess would import the installed spine_dagster, not this checkout's
    code, shown, _ = run_main(capsys, "resume", failed.run_id, "--plan", "--param",
                              "hold_from=100", *db)
    plan = runner.plan_resume(failed.run_id, params_override={"hold_from": 100})
    assert code == 0 and shown == f"{plan}\n", "the CLI prints the plan that plan_resume computes"
    line = ("param hold_from: (absent) -> 100 (read by 3 completed items of map step fan, which "
            "run again)")
    assert f"  {line}" in shown.splitlines()
    code, as_json, _ = run_main(capsys, "resume", failed.run_id, "--plan", "--json", "--param",
                                "hold_from=100", *db)
    fan = json.loads(as_json)["steps"][1]["items"]
    assert (fan["total"], fan["reused"], [r["index"] for r in fan["rerun"]]) == (4, [], [0, 1, 3])

    Path(files["broken_file"]).write_text("{}")
    Path(files["calls_file"]).write_text("")
    monkeypatch.setenv("DAGSTER_HOME", env["DAGSTER_HOME"])  # the run's instance
    code, out, err = run_main(capsys, "resume", failed.run_id, "--param", "hold_from=100", *db)
    assert code == 0 and out.splitlines()[1] == line, out + err
    assert sorted(item_calls(files["calls_file"])[:-1]) == [f"work:{i}" for i in range(4)]


def _instance_of(env):
    from dagster import DagsterInstance

    return DagsterInstance.from_config(env["DAGSTER_HOME"])


def test_showing_a_run_never_runs_the_script_its_record_names(database_url, env, tmp_path, capsys):
    """The run record is stored data: a ``file:`` workflow ref edited to name some script is not
    run by the commands that only show a run (``checkpoints``, ``checkpoint``)."""
    marker = tmp_path / "ran"
    script = tmp_path / "planted.py"
    script.write_text(f"open({str(marker)!r}, 'w').close()\nWF = None\n")
    store = CheckpointStore(database_url)
    make_run(store, "shown-run", "failed", checkpoint_days=0, steps=2)
    with store.engine.begin() as conn:
        conn.execute(sa.text("UPDATE core_workflow_runs SET workflow_ref = :r WHERE run_id = :i"),
                     {"r": f"file:{script}:WF", "i": "shown-run"})
    db = ("--database-url", database_url)
    code, out, _ = run_main(capsys, "checkpoints", "shown-run", *db)
    assert code == 0 and "s1" in out
    code, out, _ = run_main(capsys, "checkpoint", "shown-run", "s1", *db)
    assert code == 0 and "s1" in out, out
    assert not marker.exists()


def _edit(store: CheckpointStore, sql: str, **params: str) -> None:
    with store.engine.begin() as conn:
        conn.execute(sa.text(sql), params)


def test_runs_lists_the_healthy_runs_and_flags_a_damaged_record(database_url, env):
    """One edited row in core_workflow_runs: `runs` still lists every other run, names the
    damaged one with the problem and the fix on stderr, and exits 1."""
    store = CheckpointStore(database_url)
    for run_id in ("healthy-1", "damaged", "healthy-2"):
        make_run(store, run_id, "failed", checkpoint_days=0)
    _edit(store, "UPDATE core_workflow_runs SET status = 'weird' WHERE run_id = 'damaged'")
    db = ("--database-url", database_url)
    proc = spine("runs", *db, env=env)
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert "healthy-1" in proc.stdout and "healthy-2" in proc.stdout
    assert "damaged" not in proc.stdout
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith("error: the record of run 'damaged' in core_workflow_runs: status "
                           "'weird'"), line
    assert "Set the status back" in line
    proc = spine("runs", "--status", "failed", *db, env=env)  # the filter leaves it out
    assert proc.returncode == 0 and proc.stderr == "" and "healthy-1" in proc.stdout
    # The Python API names it too, and lists the others when asked.
    with pytest.raises(Exception, match="status 'weird'") as info:
        store.list_runs()
    assert type(info.value).__name__ == "CheckpointCorruptError"
    assert "skip_damaged=True" in str(info.value)
    listing = store.list_runs(skip_damaged=True)
    assert sorted(r.run_id for r in listing) == ["healthy-1", "healthy-2"]
    assert [(d.run_id, d.step_name) for d in listing.damaged] == [("damaged", None)]


def test_runs_flags_a_timestamp_that_is_not_one(tmp_path, env):
    """SQLite keeps any text in a timestamp column: SQLAlchemy's own parser raised a bare
    ValueError and `runs` listed nothing."""
    url = f"sqlite:///{tmp_path}/edited.db"
    store = CheckpointStore(url)
    make_run(store, "healthy", "failed", checkpoint_days=0)
    make_run(store, "edited", "completed", checkpoint_days=0)
    _edit(store, "UPDATE core_workflow_runs SET created_at = 'garbage' WHERE run_id = 'edited'")
    proc = spine("runs", "--database-url", url, env=env)
    assert proc.returncode == 1 and "healthy" in proc.stdout and "edited" not in proc.stdout
    assert "run 'edited' in core_workflow_runs: created_at is 'garbage', not a timestamp" \
        in proc.stderr


def test_checkpoints_lists_the_healthy_ones_and_flags_a_damaged_one(database_url, env, capsys):
    store = CheckpointStore(database_url)
    make_run(store, "r", "failed", checkpoint_days=0, steps=4)
    _edit(store, "UPDATE core_workflow_checkpoints SET context_snapshot = :bad "
                 "WHERE run_id = 'r' AND step_name = 's1'", bad='[1, 2]')
    code, out, err = run_main(capsys, "checkpoints", "r", "--database-url", database_url)
    assert code == 1
    assert "run r (workflow tests.retention): failed" in out
    steps = [line.split()[0] for line in out.splitlines()[2:]]
    assert steps == ["s0", "s2", "s3"], out
    [line] = err.strip().splitlines()
    assert line.startswith("error: the checkpoint of step 's1' in run 'r'"), line
    assert "spine-dagster checkpoint r s1 --json" in line
    listing = store.list_checkpoints("r", skip_damaged=True)
    assert [c.step_name for c in listing] == ["s0", "s2", "s3"]
    assert [(d.run_id, d.step_name) for d in listing.damaged] == [("r", "s1")]


def test_resume_with_a_dagster_yaml_that_dagster_cannot_load(database_url, env, tmp_path):
    """A run coordinator class that does not exist: one line naming the file, Dagster's
    message and the fix; nothing is launched."""
    run_id = failed_seed_run(database_url, env)
    bad = tmp_path / "bad_home"
    bad.mkdir()
    (bad / "dagster.yaml").write_text("run_coordinator:\n  module: dagster\n"
                                      "  class: DefaultRunCoordinator\n")
    before = [(r.run_id, r.status.value, r.attempts)
              for r in CheckpointStore(database_url).list_runs()]
    error = one_line_error(spine("resume", run_id, "--database-url", database_url,
                                 env={**env, "DAGSTER_HOME": str(bad)}))
    assert f"{bad}/dagster.yaml" in error
    assert "Couldn't find class DefaultRunCoordinator" in error
    assert "dagster._core.run_coordinator" in error
    assert [(r.run_id, r.status.value, r.attempts)
            for r in CheckpointStore(database_url).list_runs()] == before
    error = one_line_error(spine("resume", run_id, "--database-url", database_url,
                                 env={**env, "DAGSTER_HOME": str(tmp_path / "no_such_dir")}))
    assert "InstanceConfigError" not in error and "is not a directory or does not exist" in error
    assert "Set DAGSTER_HOME" in error or "set DAGSTER_HOME" in error
