"""Resume from a NEW Python process, after the first one exited with the run failed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).resolve().parent


def run_python(code: str, env: dict[str, str], cwd: Path) -> dict:
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture
def env(tmp_path, database_url) -> dict[str, str]:
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    return {**os.environ, "DAGSTER_HOME": str(home), "SPINE_DAGSTER_DATABASE_URL": database_url,
            "PYTHONPATH": str(TESTS_DIR), "SEED_CALLS_FILE": str(tmp_path / "calls.txt")}


def calls(env) -> list[str]:
    return Path(env["SEED_CALLS_FILE"]).read_text().splitlines()


def test_resume_from_a_fresh_process_of_a_module_level_workflow(env, tmp_path):
    first = run_python("""
        import json
        from seed_workflows import SEED
        from spine_dagster import WorkflowRunner
        result = WorkflowRunner(log_level="ERROR").execute(SEED, params={"timeout": 30})
        print(json.dumps({"run_id": result.run_id, "status": result.status.value}))
    """, {**env, "SEED_API_DOWN": "1"}, tmp_path)
    assert first["status"] == "failed"
    assert calls(env) == ["step1 0 30", "step2 0 30", "step3 0 30"]

    # the new process never imports seed_workflows itself: the run recorded where it lives
    second = run_python(f"""
        import json
        from spine_dagster import WorkflowRunner
        result = WorkflowRunner(log_level="ERROR").resume({first['run_id']!r},
                                                          params_override={{"timeout": 120}})
        print(json.dumps({{"run_id": result.run_id, "status": result.status.value,
                          "completed": result.completed_steps}}))
    """, {**env, "SEED_API_DOWN": "0"}, tmp_path)

    assert second == {"run_id": first["run_id"], "status": "completed",
                      "completed": ["step3", "step4"]}
    assert calls(env)[3:] == ["step3 1 120", "step4 1 120"]


SCRIPT = '''
import json, os, sys
from spine_dagster import Step, StepResult, Workflow, WorkflowRunner

def flaky(ctx, config):
    with open(os.environ["SEED_CALLS_FILE"], "a") as fh:
        fh.write("flaky\\n")
    if os.environ.get("BROKEN") == "1":
        return StepResult.fail("still broken")
    return StepResult.ok(output={"n": ctx.get_output("first", "n") + 1})

def first(ctx, config):
    with open(os.environ["SEED_CALLS_FILE"], "a") as fh:
        fh.write("first\\n")
    return {"n": 1}

WORKFLOW = Workflow("script.workflow", [Step.lambda_("first", first), Step.lambda_("flaky", flaky)])

if __name__ == "__main__":
    result = WorkflowRunner(log_level="ERROR").execute(WORKFLOW)
    print(json.dumps({"run_id": result.run_id, "status": result.status.value}))
'''


def fail_in_a_script(script: Path, env: dict[str, str]) -> str:
    """Write SCRIPT to ``script``, run it as ``python script.py`` with its step broken; the run id."""
    script.write_text(SCRIPT)
    proc = subprocess.run([sys.executable, str(script)], env={**env, "BROKEN": "1"},
                          capture_output=True, text=True, timeout=240, cwd=script.parent)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])["run_id"]


def test_resume_from_a_fresh_process_of_a_script_workflow(env, tmp_path):
    script = tmp_path / "nightly.py"
    run_id = fail_in_a_script(script, env)

    resumed = run_python(f"""
        import json
        from spine_dagster import WorkflowRunner
        result = WorkflowRunner(log_level="ERROR").resume({run_id!r})
        print(json.dumps({{"status": result.status.value, "out": result.context.outputs["flaky"]}}))
    """, {**env, "BROKEN": "0"}, tmp_path)

    assert resumed == {"status": "completed", "out": {"n": 2}}
    assert calls(env) == ["first", "flaky", "flaky"]  # the script's __main__ block did not re-run


def test_a_workflow_that_cannot_be_found_says_where_it_looked(env, tmp_path):
    script = tmp_path / "gone.py"
    run_id = fail_in_a_script(script, env)
    script.unlink()

    error = run_python(f"""
        import json
        from spine_dagster import WorkflowNotFoundError, WorkflowRunner
        try:
            WorkflowRunner().resume({run_id!r})
        except WorkflowNotFoundError as exc:
            print(json.dumps({{"error": str(exc)}}))
    """, env, tmp_path)

    assert str(script) in error["error"]
    assert "workflow=" in error["error"]
