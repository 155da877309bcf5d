"""SpineWorkflowComponent and the example dg project, with the real ``dg`` CLI (1.13.27).

``dg list components`` shows the component (through the ``dagster_dg_cli.registry_modules``
entry point), ``dg scaffold defs spine_dagster.SpineWorkflowComponent nightly`` creates an
instance that ``dg check defs`` accepts and that runs, ``dg check defs`` passes on
examples/dg_project, and each ``defs.yaml`` attribute does what its schema says. A run of a
YAML-defined workflow records its ``yaml:`` reference and resumes from a new process, on
[sqlite] and [postgres], as an op job and as assets. ``dg dev`` is in test_dg_dev.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import uuid
from datetime import datetime, timezone
from pathlib import Path

import dagster as dg
import pytest

from spine_dagster import (
    CheckpointStore,
    InvalidSettingError,
    SpineWorkflowComponent,
    WorkflowNotFoundError,
    WorkflowStatus,
    spine_run_config,
)

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "dg_project"
DG = str(Path(sys.executable).parent / "dg")

WORKFLOW_YAML = """\
apiVersion: spine.io/v1
kind: Workflow
metadata: {name: flow.orders, domain: sales, tags: [daily], description: Three steps.}
spec:
  owners: [team:data]
  defaults: {outage: ""}
  steps:
    - {name: extract, pipeline: PKG.extract}
    - {name: clean, pipeline: PKG.clean}
    - {name: load, pipeline: PKG.load}
"""

PIPELINES = '''\
import os
from spine_dagster import ErrorCategory, StepResult, pipeline

@pipeline("PKG.extract")
def extract(ctx, config):
    return {"rows": 7, "day": ctx.partition}

@pipeline("PKG.clean")
def clean(ctx, config):
    return {"rows": ctx.get_output("extract", "rows")}

@pipeline("PKG.load")
def load(ctx, config):
    if config["outage"] and os.path.exists(config["outage"]):
        return StepResult.fail("the warehouse is down", ErrorCategory.TRANSIENT)
    return {"loaded": ctx.get_output("clean", "rows"), "resumed": bool(ctx.params.get("__resumed__"))}
'''


def dg_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    home = tmp_path / "dg_home"
    home.mkdir(exist_ok=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    return {**os.environ, "DAGSTER_HOME": str(home), **extra}


def run_dg(args: list[str], cwd: Path, env: dict[str, str], timeout: float = 180):
    done = subprocess.run([DG, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)
    return done.returncode, done.stdout + done.stderr, done.stdout


def make_project(tmp_path: Path, attributes: str | None = None, *, folder: str = "orders",
                 workflow_yaml: str = WORKFLOW_YAML) -> tuple[Path, str]:
    """A dg project (flat layout) in ``tmp_path``; with ``attributes``, one component instance
    in ``defs/<folder>/`` with the workflow and its pipelines. Returns (root, root module)."""
    package = f"proj_{uuid.uuid4().hex[:8]}"
    root = tmp_path / "project"
    (root / package / "defs").mkdir(parents=True)
    (root / "pyproject.toml").write_text(textwrap.dedent(f"""\
        [project]
        name = "{package}"
        version = "0.1.0"
        [tool.dg]
        directory_type = "project"
        [tool.dg.project]
        root_module = "{package}"
        """))
    (root / package / "__init__.py").write_text("")
    (root / package / "defs" / "__init__.py").write_text("")
    (root / package / "definitions.py").write_text(textwrap.dedent("""\
        from pathlib import Path
        import dagster as dg

        @dg.definitions
        def defs():
            return dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
        """))
    if attributes is not None:
        component = root / package / "defs" / folder
        component.mkdir()
        (component / "defs.yaml").write_text(
            "type: spine_dagster.SpineWorkflowComponent\nattributes:\n"
            + textwrap.indent(textwrap.dedent(attributes), "  "))
        (component / "workflow.yaml").write_text(workflow_yaml.replace("PKG", package))
        (component / "pipelines.py").write_text(PIPELINES.replace("PKG", package))
    return root, package


def load_defs(root: Path, monkeypatch) -> dg.Definitions:
    monkeypatch.syspath_prepend(str(root))
    return dg.load_from_defs_folder(path_within_project=root)


# -- dg -------------------------------------------------------------------------------------------
def test_dg_lists_the_component_and_its_schema_documents_every_attribute(tmp_path):
    code, out, stdout = run_dg(["list", "components", "--json"], tmp_path, dg_env(tmp_path))
    assert code == 0, out
    listed = {c["key"]: c["summary"] for c in json.loads(stdout)["items"]}
    assert "checkpointed and resumable" in listed["spine_dagster.SpineWorkflowComponent"]

    schema = SpineWorkflowComponent.get_model_cls().model_json_schema()
    models = [schema, *schema["$defs"].values()]
    fields = {f"{m.get('title')}.{name}": prop for m in models
              for name, prop in (m.get("properties") or {}).items()}
    for name in ("workflow", "pipelines_module", "checkpoint_strategy", "schedule", "partitions",
                 "auto_resume", "assets", "fuse", "database_url"):
        assert any(key.endswith(f".{name}") for key in fields), name
    undocumented = [key for key, prop in fields.items() if not prop.get("description")]
    assert not undocumented
    assert "SPINE_DAGSTER_DATABASE_URL" in fields[next(k for k in fields
                                                      if k.endswith(".database_url"))]["description"]


def test_dg_scaffold_creates_a_working_instance(tmp_path, monkeypatch):
    root, package = make_project(tmp_path)
    env = dg_env(tmp_path)

    code, out, _ = run_dg(["scaffold", "defs", "spine_dagster.SpineWorkflowComponent", "nightly"],
                       root, env)
    assert code == 0, out
    folder = root / package / "defs" / "nightly"
    assert sorted(p.name for p in folder.iterdir()) == ["defs.yaml", "pipelines.py",
                                                       "workflow.yaml"]
    assert "type: spine_dagster.SpineWorkflowComponent" in (folder / "defs.yaml").read_text()
    code, out, _ = run_dg(["check", "defs"], root, env)
    assert code == 0 and "All definitions loaded successfully" in out, out

    job = load_defs(root, monkeypatch).resolve_job_def("nightly")
    with dg.instance_for_test() as instance:
        result = job.execute_in_process(instance=instance)
    assert result.success
    assert [e.step_key for e in result.get_step_success_events()] == ["extract", "load"]


def test_the_example_project_passes_dg_check_defs(tmp_path):
    code, out, _ = run_dg(["check", "defs"], EXAMPLE, dg_env(tmp_path))
    assert code == 0, out
    assert "All component YAML validated successfully" in out
    assert "All definitions loaded successfully" in out


# -- the attributes, loaded the way dg loads them ---------------------------------------------
def test_attributes_build_the_job_schedule_partitions_and_auto_resume(tmp_path, monkeypatch):
    root, _ = make_project(tmp_path, """\
        workflow: workflow.yaml
        pipelines_module: .pipelines
        checkpoint_strategy: key_steps
        job_name: orders_nightly
        schedule: {cron_schedule: "0 2 * * *", params: {tier: gold}}
        partitions: {daily: {start_date: "2026-01-01"}}
        auto_resume: {max_resumes: 2, categories: [TRANSIENT, TIMEOUT]}
        fuse: true
        """)
    defs = load_defs(root, monkeypatch)

    job = defs.resolve_job_def("orders_nightly")
    assert [n.name for n in job.graph.nodes] == ["extract__thru__load"]  # fuse
    assert job.tags["dagster/max_retries"] == "2" and job.tags["spine/auto_resume"] == \
        "TRANSIENT,TIMEOUT"
    assert job.tags["spine/domain"] == "sales" and job.tags["daily"] == ""
    assert job.tags["spine/workflow_ref"].startswith("yaml:")
    assert job.tags["spine/workflow_ref"].endswith(".defs.orders.pipelines")
    assert job.resource_defs["spine_io"].config_schema.default_value["checkpoint_strategy"] == \
        "key_steps"
    assert isinstance(job.partitions_def, dg.DailyPartitionsDefinition)
    schedule = defs.resolve_schedule_def("orders_nightly_schedule")
    assert schedule.cron_schedule == "0 2 * * *"
    assert schedule.job_name == "orders_nightly"
    tick = datetime(2026, 1, 10, 2, 0, tzinfo=timezone.utc)
    with dg.instance_for_test() as instance:
        [request] = schedule.evaluate_tick(dg.build_schedule_context(
            instance=instance, scheduled_execution_time=tick,
            repository_def=defs.get_repository_def())).run_requests
    assert request.partition_key == "2026-01-09"  # the newest day that has ended
    assert request.run_config == spine_run_config({"tier": "gold"})


def test_assets_attribute_serves_the_asset_view(tmp_path, monkeypatch):
    root, _ = make_project(tmp_path, """\
        workflow: workflow.yaml
        pipelines_module: .pipelines
        assets: true
        partitions: {static: [eu, us]}
        """)
    defs = load_defs(root, monkeypatch)

    job = defs.resolve_job_def("flow__orders")
    assert job.tags["spine/view"] == "assets"
    keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    assert keys == {"flow__orders/extract", "flow__orders/clean", "flow__orders/load"}
    spec = defs.resolve_asset_graph().get(dg.AssetKey(["flow__orders", "load"]))
    assert spec.group_name == "sales" and spec.kinds == {"spine"} and spec.owners == ["team:data"]
    assert list(job.partitions_def.get_partition_keys()) == ["eu", "us"]


def test_a_python_workflow_by_module_and_attribute(tmp_path, monkeypatch):
    root, package = make_project(tmp_path, """\
        workflow: .flows:FLOW
        """)
    (root / package / "defs" / "orders" / "flows.py").write_text(textwrap.dedent("""\
        from spine_dagster import Step, StepResult, Workflow
        FLOW = Workflow("flow.python", [Step.lambda_("a", lambda ctx, cfg: StepResult.ok())])
        """))
    job = load_defs(root, monkeypatch).resolve_job_def("flow__python")
    assert job.tags["spine/workflow_ref"] == f"{package}.defs.orders.flows:FLOW"


@pytest.mark.parametrize("attributes, error, match", [
    ("workflow: workflow.yaml\npipelines_module: .pipelines\npartitions: "
     "{daily: {start_date: '2026-01-01'}, static: [a]}\n", InvalidSettingError,
     "exactly one of daily, hourly or static"),
    ("workflow: nothing_here\n", WorkflowNotFoundError, "neither a YAML file"),
    ("workflow: missing.yaml\n", WorkflowNotFoundError, "cannot be read"),
    ("workflow: workflow.yaml\npipelines_module: no_such_module_xyz\n", WorkflowNotFoundError,
     "no_such_module_xyz"),
], ids=["two-partitions", "not-a-workflow", "missing-file", "missing-pipelines"])
def test_bad_attributes_name_the_problem(tmp_path, monkeypatch, attributes, error, match):
    root, _ = make_project(tmp_path, attributes)
    with pytest.raises(Exception) as info:
        load_defs(root, monkeypatch)
    chain, exc = [], info.value
    while exc is not None:
        chain.append(exc)
        exc = exc.__cause__ or exc.__context__
    assert any(isinstance(e, error) and match in str(e) for e in chain), chain


# -- a YAML-defined workflow resumes from a new process ----------------------------------------
@pytest.mark.parametrize("view", ["ops", "assets"])
def test_a_yaml_workflow_run_resumes_from_a_new_process(tmp_path, monkeypatch, deployment, view):
    home, database_url = deployment
    root, _ = make_project(tmp_path, f"""\
        workflow: workflow.yaml
        pipelines_module: .pipelines
        database_url: "{database_url}"
        assets: {str(view == "assets").lower()}
        """)
    outage = tmp_path / "warehouse_down"
    outage.touch()
    job = load_defs(root, monkeypatch).resolve_job_def("flow__orders")
    instance = dg.DagsterInstance.from_config(home)
    try:
        first = job.execute_in_process(
            instance=instance, raise_on_error=False,
            run_config=spine_run_config({"outage": str(outage)}))
    finally:
        instance.dispose()
    assert not first.success
    store = CheckpointStore.for_url(database_url)
    record = store.get_run(first.run_id)
    assert record.status is WorkflowStatus.FAILED and record.error_step == "load"
    assert record.workflow_ref.startswith("yaml:") and "#" in record.workflow_ref

    outage.unlink()
    script = textwrap.dedent(f"""\
        import json, sys
        from dagster import DagsterInstance
        from spine_dagster import WorkflowRunner
        instance = DagsterInstance.from_config({home!r})
        result = WorkflowRunner(database_url={database_url!r}, instance=instance,
                                progress=False).resume({first.run_id!r})
        print(json.dumps({{"status": result.status.value, "ran": result.completed_steps,
                           "load": dict(result.context.outputs["load"]),
                           "run": result.dagster_run_id}}))
        """)
    env = {**os.environ, "PYTHONPATH": str(root), "SPINE_DAGSTER_WORKSPACE": ""}
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["status"] == "completed" and result["ran"] == ["load"]
    assert result["load"] == {"loaded": 7, "resumed": True}
    instance = dg.DagsterInstance.from_config(home)
    try:
        child = instance.get_run_by_id(result["run"])
        assert child.parent_run_id == first.run_id
        assert child.tags.get("spine/view") == ("assets" if view == "assets" else None)
    finally:
        instance.dispose()
