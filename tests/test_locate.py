"""Workflow references: the ``yaml:`` form of a workflow loaded from a YAML file."""

from __future__ import annotations

import sys
import textwrap

import pytest

from spine_dagster import WorkflowNotFoundError, load_workflow_yaml
from spine_dagster.locate import is_importable, load_workflow, workflow_ref, yaml_ref
from spine_dagster.pipelines import unregister_pipeline

from yaml_pipelines import PIPELINES, pipelines  # noqa: F401 - fixture


@pytest.fixture
def flow(tmp_path, pipelines):
    """A YAML workflow (fetch -> load) and the module that registers its pipelines."""
    path = tmp_path / "flow.yaml"
    path.write_text(textwrap.dedent(f"""
        apiVersion: spine.io/v1
        kind: Workflow
        metadata: {{name: locate.yaml}}
        spec:
          steps:
            - {{name: fetch, pipeline: {pipelines}.fetch}}
            - {{name: load, pipeline: {pipelines}.load}}
    """))
    return path, pipelines


def test_yaml_ref_encoding():
    assert yaml_ref("/a/flow.yaml") == "yaml:/a/flow.yaml"
    assert yaml_ref("/a/flow.yaml", "pkg.pipelines") == "yaml:/a/flow.yaml#pkg.pipelines"
    assert yaml_ref("/a/b#c.yaml") == "yaml:/a/b#c.yaml#", "the module part is never ambiguous"
    assert is_importable("yaml:/a/flow.yaml")


def test_a_workflow_loaded_from_yaml_is_referenced_by_its_file(flow):
    path, module = flow
    wf = load_workflow_yaml(path, pipelines_module=module)
    ref = workflow_ref(wf)
    assert ref == f"yaml:{path}#{module}"
    sys.modules.pop(module)  # another process: nothing imported yet
    for name in PIPELINES:
        unregister_pipeline(f"{module}.{name}")
    again = load_workflow(ref)
    assert again.to_dict() == wf.to_dict()
    assert (again.source_file, again.pipelines_module) == (str(path), module)
    assert module in sys.modules, "load_workflow imported the pipelines module"
    assert workflow_ref(again) == ref


def test_a_path_with_a_hash_round_trips(tmp_path, flow):
    path, module = flow
    odd = tmp_path / "odd#name.yaml"
    odd.write_text(path.read_text())
    wf = load_workflow_yaml(odd, pipelines_module=module)
    assert load_workflow(workflow_ref(wf)).source_file == str(odd)
    plain = load_workflow_yaml(odd)  # the pipelines are registered by now
    assert workflow_ref(plain) == f"yaml:{odd}#"
    assert load_workflow(workflow_ref(plain)).pipelines_module is None


def test_a_yaml_ref_that_cannot_be_loaded_explains_the_fix(tmp_path, flow):
    path, module = flow
    with pytest.raises(WorkflowNotFoundError, match=(
            f"workflow 'x' is defined in the YAML file {tmp_path}/gone.yaml, which could not be "
            f"loaded .WorkflowNotFoundError: .*Restore the file at that path")):
        load_workflow(f"yaml:{tmp_path}/gone.yaml", workflow_name="x")
    with pytest.raises(WorkflowNotFoundError, match=(
            f"with the pipelines of module 'missing_mod_q', which could not be loaded "
            f".WorkflowNotFoundError: .*could not be imported")):
        load_workflow(f"yaml:{path}#missing_mod_q")
    with pytest.raises(WorkflowNotFoundError,
                       match="UnknownPipelineError: .*steps.0.: step 'fetch'"):
        load_workflow(f"yaml:{path}")  # no module given, none registered


def test_a_yaml_workflow_runs_and_resumes_from_its_file(runner, flow):
    path, module = flow
    wf = load_workflow_yaml(path, pipelines_module=module)
    sys.modules[module].BROKEN["load"] = True
    result = runner.execute(wf)
    assert result.status == "failed" and result.error_step == "load"
    assert runner.get_run(result.run_id).workflow_ref == f"yaml:{path}#{module}"
    sys.modules[module].BROKEN["load"] = False
    resumed = runner.resume(result.run_id)  # no workflow=: loaded again from the file
    assert resumed.status == "completed"
    assert resumed.completed_steps == ["load"]
    assert resumed.context.outputs["load"] == {"table": None, "rows": 3}
