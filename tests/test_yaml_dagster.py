"""Workflows as data through Dagster: YAML files served by ``build_definitions``, run by
``WorkflowRunner``, and resumed from a new process that knows only the run id.

The YAML workflow uses every step type that can be data: pipeline, choice (a data condition),
map (an inline iterator workflow) and wait. Its pipelines live in a module written for the test
(``pipelines_module``), which the resuming process imports because the run recorded it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest
from dagster import DagsterInstance

from spine_dagster import (
    CheckpointStore,
    InvalidAutomationError,
    InvalidWorkflowError,
    UnknownPipelineError,
    WorkflowRunner,
    build_definitions,
    load_workflow_yaml,
)
from spine_dagster.compiler import WORKFLOW_REF_TAG
from spine_dagster.pipelines import unregister_pipeline
from step_fixtures import module_instance  # noqa: F401 - fixture

PIPELINES = textwrap.dedent('''
    import os
    from spine_dagster import StepResult, pipeline

    def record(ctx, label):
        with open(ctx.params["calls_file"], "a") as fh:
            fh.write(label + "\\n")

    @pipeline("NAME.fetch")
    def fetch(ctx, config):
        record(ctx, "fetch")
        return {"files": len(config["files"])}

    @pipeline("NAME.parse")
    def parse(ctx, config):
        record(ctx, "parse:" + config["file"])
        return {"file": config["file"], "rows": len(config["file"])}

    @pipeline("NAME.load")
    def load(ctx, config):
        record(ctx, "load")
        if os.path.exists(config["broken_file"]):
            return StepResult.fail("the warehouse is down", "TRANSIENT")
        return {"rows": sum(item["rows"] for item in ctx.get_output("fan", default=[])),
                "table": config["table"]}
''')

FLOW = textwrap.dedent('''
    apiVersion: spine.io/v1
    kind: Workflow
    metadata: {name: NAME.flow, domain: test, version: 2, description: YAML through Dagster}
    spec:
      defaults: {mode: full}
      steps:
        - {name: fetch, type: pipeline, pipeline: NAME.fetch}
        - name: route
          type: choice
          condition: {param: mode, equals: quick}
          then_step: load
        - name: fan
          type: map
          items_path: files
          item_param: file
          max_concurrency: 2
          workflow:
            name: per_file
            steps: [{name: parse, pipeline: NAME.parse}]
        - {name: pause, type: wait, duration_seconds: 0}
        - {name: load, pipeline: NAME.load, config: {table: orders}, on_error: stop}
''')


@pytest.fixture
def yaml_flow(tmp_path, monkeypatch):
    """(path of the YAML file, name of its pipelines module), both written for this test."""
    name = f"yaml_dagster_{uuid.uuid4().hex[:10]}"
    (tmp_path / f"{name}.py").write_text(PIPELINES.replace("NAME", name))
    path = tmp_path / "flow.yaml"
    path.write_text(FLOW.replace("NAME", name))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield path, name
    for pipe in ("fetch", "parse", "load"):
        unregister_pipeline(f"{name}.{pipe}")
    sys.modules.pop(name, None)


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_build_definitions_serves_yaml_files_next_to_workflows(
        yaml_flow, tmp_path, database_url, module_instance):
    path, module = yaml_flow
    other = tmp_path / "other.yaml"
    other.write_text("metadata: {name: other.flow}\nspec: {steps: [{name: nap, type: wait, "
                     "duration_seconds: 0}]}\n")
    defs = build_definitions([path, str(other)], pipelines_module=module,
                             database_url=database_url)
    job = defs.get_job_def(f"{module}__flow")
    assert job.tags[WORKFLOW_REF_TAG] == f"yaml:{path}#{module}"
    assert defs.get_job_def("other__flow").tags[WORKFLOW_REF_TAG] == f"yaml:{other}#{module}"

    calls = tmp_path / "calls.txt"
    params = {"files": ["a.csv", "bb.csv"], "calls_file": str(calls),
              "broken_file": str(tmp_path / "broken")}
    result = job.execute_in_process(
        instance=module_instance, raise_on_error=False,
        run_config={"resources": {"spine": {"config": {"params": params}}}})
    assert result.success
    spine_id = module_instance.get_run_by_id(result.run_id).tags["spine/run_id"]
    record = CheckpointStore.for_url(database_url).get_run(spine_id)
    assert (record.status.value, record.workflow_ref) == ("completed", f"yaml:{path}#{module}")
    assert record.context.outputs["load"] == {"rows": 11, "table": "orders"}
    assert sorted(lines(calls)) == ["fetch", "load", "parse:a.csv", "parse:bb.csv"]


RESUME = """
import json, sys
from spine_dagster import WorkflowRunner
result = WorkflowRunner(log_level="ERROR").resume(sys.argv[1])
print(json.dumps({"status": result.status.value, "completed": result.completed_steps,
                  "skipped": [e.step_name for e in result.step_executions
                              if e.status == "skipped"],
                  "outputs": result.context.to_dict()["outputs"]}))
"""


def test_a_yaml_run_records_its_file_and_resumes_from_a_new_process(
        yaml_flow, tmp_path, database_url):
    path, module = yaml_flow
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    instance = DagsterInstance.from_config(str(home))
    calls, broken = tmp_path / "calls.txt", tmp_path / "broken"
    broken.write_text("down")
    try:
        runner = WorkflowRunner(database_url=database_url, instance=instance, progress=False)
        wf = load_workflow_yaml(path, pipelines_module=module)
        first = runner.execute(wf, params={"files": ["a.csv", "bb.csv", "ccc.csv"],
                                           "calls_file": str(calls), "broken_file": str(broken)})
        assert (first.status, first.error_step) == ("failed", "load")
        assert runner.get_run(first.run_id).workflow_ref == f"yaml:{path}#{module}"
        assert sorted(lines(calls)) == ["fetch", "load", "parse:a.csv", "parse:bb.csv",
                                        "parse:ccc.csv"]
    finally:
        instance.dispose()

    broken.unlink()
    env = {**os.environ, "DAGSTER_HOME": str(home), "SPINE_DAGSTER_DATABASE_URL": database_url,
           "PYTHONPATH": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-c", RESUME, first.run_id], env=env,
                          cwd=tmp_path, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    resumed = json.loads(proc.stdout.strip().splitlines()[-1])

    assert resumed["status"] == "completed"
    assert resumed["completed"] == ["load"]
    assert lines(calls)[5:] == ["load"], "only load ran in the new process"
    assert resumed["outputs"]["load"] == {"rows": 18, "table": "orders"}
    assert resumed["outputs"]["fan"] == [{"file": f, "rows": len(f)}
                                         for f in ("a.csv", "bb.csv", "ccc.csv")]


def write(tmp_path: Path, text: str, name: str = "bad.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_bad_yaml_files_fail_build_definitions_naming_the_file_the_step_and_the_problem(
        yaml_flow, tmp_path):
    _, module = yaml_flow
    malformed = write(tmp_path, """
        metadata: {name: bad.flow}
        spec:
          steps:
            - {name: fetch, pipeline: MOD.fetch}
            - {name: nap, type: wait, duration: 5}
    """.replace("MOD", module))
    with pytest.raises(InvalidWorkflowError) as caught:
        build_definitions([malformed], pipelines_module=module)
    assert str(caught.value).startswith(
        f"{malformed}: steps[1]: step 'nap' (wait): unknown key 'duration'")

    unknown = write(tmp_path, """
        metadata: {name: bad.flow}
        spec:
          steps:
            - {name: fetch, pipeline: MOD.fetch}
            - {name: load, pipeline: MOD.lode}
    """.replace("MOD", module), "unknown.yaml")
    with pytest.raises(UnknownPipelineError) as caught:
        build_definitions([unknown], pipelines_module=module)
    assert str(caught.value).startswith(
        f"{unknown}: steps[1]: step 'load' names pipeline '{module}.lode', which is not "
        f"registered.")

    target = write(tmp_path, """
        metadata: {name: bad.flow}
        spec:
          steps:
            - {name: route, type: choice, condition: {param: m, equals: x}, then_step: lood}
            - {name: load, pipeline: MOD.load}
    """.replace("MOD", module), "target.yaml")
    with pytest.raises(InvalidWorkflowError) as caught:
        build_definitions([target], pipelines_module=module)
    assert str(caught.value) == (
        f"{target}: Choice step 'route' references unknown then_step: lood")

    for item, got in ((3, "int"), ("orders.daily", "'orders.daily'")):
        with pytest.raises(InvalidAutomationError, match=(
                rf"build_definitions takes Workflow or SpineJob items, or paths of YAML workflow "
                rf"files \(ending in .yaml or .yml\), got {got}; pass other Dagster jobs")):
            build_definitions([item])


# -- the README's YAML example runs as written -------------------------------------------------
ROOT = Path(__file__).resolve().parent.parent


def readme_block(first_line: str) -> str:
    """The fenced block of README.md whose first line is ``first_line``."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    for block in text.split("```")[1::2]:
        body = block.split("\n", 1)[1] if "\n" in block else ""
        if body.startswith(first_line):
            return body
    raise AssertionError(f"README.md has no code block starting with {first_line!r}")


@pytest.fixture
def readme_example(tmp_path, monkeypatch):
    """The README's ``flows/orders.yaml`` (its 60 s wait cut to 0) and ``orders/pipelines.py``."""
    (tmp_path / "flows").mkdir()
    (tmp_path / "orders").mkdir()
    (tmp_path / "orders" / "__init__.py").write_text("")
    (tmp_path / "orders" / "pipelines.py").write_text(readme_block("# orders/pipelines.py"))
    text = readme_block("# flows/orders.yaml")
    assert "duration_seconds: 60}" in text
    path = tmp_path / "flows" / "orders.yaml"
    path.write_text(text.replace("duration_seconds: 60}", "duration_seconds: 0}"))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield path
    for pipe in ("fetch", "parse", "load", "report"):
        unregister_pipeline(f"orders.{pipe}")
    for name in ("orders.pipelines", "orders"):
        sys.modules.pop(name, None)


def test_the_readme_yaml_example_runs(readme_example, database_url, module_instance):
    runner = WorkflowRunner(database_url=database_url, instance=module_instance, progress=False)
    wf = load_workflow_yaml(readme_example, pipelines_module="orders.pipelines")
    assert [s.step_type.value for s in wf.steps] == [
        "pipeline", "choice", "map", "wait", "pipeline", "pipeline"]

    result = runner.execute(wf, params={"day": "2026-01-10"})
    assert result.status == "completed", result.error
    assert result.context.outputs["parse_files"] == [
        {"file": f"2026-01-10/part-{i}.csv", "rows": 100, "valid": 99} for i in range(2)]
    assert result.context.outputs["report"] == {"loaded": 200}
    assert runner.get_run(result.run_id).workflow_ref == (
        f"yaml:{readme_example}#orders.pipelines")

    nothing = runner.execute(wf, params={"day": "2026-01-11", "max_files": 0})
    assert nothing.status == "completed", nothing.error
    assert [e.step_name for e in nothing.step_executions if e.status == "skipped"] == [
        "parse_files", "settle", "load"]
    assert nothing.context.outputs["report"] == {"loaded": 0}
