"""Workflows as YAML in Spine's envelope: loading, writing, errors naming file, step, problem."""

from __future__ import annotations

import random
import sys

import pytest

from spine_dagster import (
    AutoResume,
    Condition,
    ErrorPolicy,
    InvalidWorkflowError,
    QualityThresholds,
    RetryPolicy,
    Step,
    StepType,
    UnknownPipelineError,
    Workflow,
    WorkflowNotFoundError,
    load_workflow_yaml,
    workflow_from_yaml,
    workflow_to_yaml,
)

from random_workflows import random_workflow
from yaml_pipelines import pipelines  # noqa: F401 - fixture

FULL = """\
apiVersion: spine.io/v1
kind: Workflow
metadata:
  name: orders.daily
  domain: orders
  version: 3
  description: Daily orders, from the API to the warehouse
  tags: [daily, orders]
spec:
  defaults: {mode: full, region: eu}
  owners: [team:data]
  checkpoint_strategy: key_steps
  fuse: true
  auto_resume: {max_resumes: 2, categories: [TRANSIENT, TIMEOUT]}
  steps:
    - name: fetch
      pipeline: PKG.fetch
      params: {limit: 1000}
      on_error: retry
      retry: {max_attempts: 5, initial_delay_seconds: 2, retryable_categories: [TRANSIENT]}
      pool: orders_api
      checkpoint: true
      description: Download the day's orders
    - name: route
      type: choice
      condition:
        any:
          - {param: mode, equals: full}
          - {output: fetch, key: rows, gt: 100000}
      then_step: per_file
      else_step: load
    - name: per_file
      type: map
      items_path: files
      item_param: file
      max_concurrency: 8
      workflow:
        name: orders.per_file
        steps:
          - {name: parse, pipeline: PKG.parse}
    - name: settle
      type: wait
      duration_seconds: 30
      fuse: false
    - name: load
      pipeline: PKG.load
      config: {table: orders}
      quality_thresholds: {min_valid_rate: 0.95, max_null_rate: 0.01, min_record_count: 1}
      produces: warehouse/orders
      on_error: continue
"""


def write(tmp_path, text: str, name: str = "flow.yaml"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_a_full_yaml_file_loads_every_step_type_and_option(tmp_path, pipelines):
    path = write(tmp_path, FULL.replace("PKG", pipelines))
    wf = load_workflow_yaml(path, pipelines_module=pipelines)
    assert (wf.name, wf.domain, wf.version, wf.tags) == ("orders.daily", "orders", 3,
                                                         ["daily", "orders"])
    assert wf.description == "Daily orders, from the API to the warehouse"
    assert (wf.defaults, wf.owners, wf.checkpoint_strategy, wf.fuse) == (
        {"mode": "full", "region": "eu"}, ["team:data"], "key_steps", True)
    assert wf.auto_resume == AutoResume(max_resumes=2, categories=("TRANSIENT", "TIMEOUT"))
    assert (wf.source_file, wf.pipelines_module) == (str(path), pipelines)
    fetch, route, per_file, settle, load = wf.steps
    assert fetch.config == {"limit": 1000}, "Spine's params is an alias of config"
    assert fetch.on_error is ErrorPolicy.RETRY
    assert fetch.retry_policy == RetryPolicy(max_attempts=5, initial_delay_seconds=2,
                                             retryable_categories=("TRANSIENT",))
    assert (fetch.pool, fetch.checkpoint, fetch.description) == ("orders_api", True,
                                                                 "Download the day's orders")
    assert isinstance(route.condition, Condition)
    assert (route.then_step, route.else_step) == ("per_file", "load")
    assert per_file.step_type is StepType.MAP
    assert (per_file.items_path, per_file.item_param, per_file.max_concurrency) == (
        "files", "file", 8)
    assert per_file.iterator_workflow.step_names() == ["parse"]
    assert (settle.duration_seconds, settle.fuse) == (30.0, False)
    assert load.quality_thresholds == QualityThresholds(min_valid_rate=0.95, max_null_rate=0.01,
                                                        min_record_count=1)
    assert (load.produces, load.on_error) == ("warehouse/orders", ErrorPolicy.CONTINUE)


def test_workflow_to_yaml_reads_back_to_the_same_workflow(tmp_path, pipelines):
    wf = load_workflow_yaml(write(tmp_path, FULL.replace("PKG", pipelines)),
                            pipelines_module=pipelines)
    text = workflow_to_yaml(wf)
    assert text.startswith(
        "apiVersion: spine.io/v1\nkind: Workflow\nmetadata:\n  name: orders.daily")
    again = workflow_from_yaml(text)
    assert again.to_dict() == wf.to_dict()
    assert again.signature() == wf.signature()


def test_yaml_round_trip_is_a_fixed_point_for_random_workflows():
    rng = random.Random(7)
    for case in range(100):
        wf = random_workflow(rng, f"yaml.{case}")
        text = workflow_to_yaml(wf)
        again = workflow_from_yaml(text)
        assert again.to_dict() == wf.to_dict(), text
        assert workflow_to_yaml(again) == text


def test_an_iterator_workflow_with_settings_is_written_as_a_whole_envelope():
    inner = Workflow("per_item", [Step.wait("nap", 1)], defaults={"x": 1}, version=2)
    wf = Workflow("outer", [Step.map("fan", "items", inner),
                            Step.map("plain", "items", Workflow("p", [Step.wait("w", 0)]))])
    text = workflow_to_yaml(wf)
    assert "    workflow:\n      metadata:\n        name: per_item\n        version: 2\n" in text
    assert "    workflow:\n      name: p\n      steps:\n" in text
    assert workflow_from_yaml(text).to_dict() == wf.to_dict()


class Opaque:
    """A value that YAML cannot represent."""


def test_a_step_that_cannot_be_data_cannot_be_written_as_yaml():
    with pytest.raises(InvalidWorkflowError, match="step 'clean': a lambda step runs a Python"):
        workflow_to_yaml(Workflow("w", [Step.lambda_("clean", lambda c, k: None)]))
    with pytest.raises(InvalidWorkflowError, match=r"workflow 'w' cannot be written as YAML "
                                                   r".*Keep defaults, config and condition values"):
        workflow_to_yaml(Workflow("w", [Step.pipeline("a", "p", {"since": Opaque()})]))


def test_loading_imports_the_pipelines_module_first(tmp_path, pipelines):
    path = write(tmp_path, FULL.replace("PKG", pipelines))
    assert pipelines not in sys.modules
    with pytest.raises(UnknownPipelineError):
        load_workflow_yaml(path)  # without the module nothing registers the pipelines
    load_workflow_yaml(path, pipelines_module=pipelines)
    assert pipelines in sys.modules


def test_an_unknown_pipeline_names_the_file_and_the_step(tmp_path, pipelines):
    text = FULL.replace("PKG", pipelines).replace(f"{pipelines}.parse", "nope.parse")
    path = write(tmp_path, text)
    with pytest.raises(UnknownPipelineError) as caught:
        load_workflow_yaml(path, pipelines_module=pipelines)
    message = str(caught.value)
    assert message.startswith(f"{path}: steps[2]: step 'per_file': workflow.steps[0]: step "
                              f"'parse' names pipeline 'nope.parse', which is not registered.")
    assert f"load_workflow_yaml imported pipelines_module {pipelines!r} first" in message
    bare = write(tmp_path, "metadata: {name: w}\nspec:\n  steps: [{name: a, pipeline: nope.a}]\n",
                 "bare.yaml")
    with pytest.raises(UnknownPipelineError,
                       match=r"Pass pipelines_module='your_package\.pipelines'"):
        load_workflow_yaml(bare)


def test_a_missing_file_or_pipelines_module_is_a_workflow_not_found_error(tmp_path):
    with pytest.raises(WorkflowNotFoundError, match=f"{tmp_path}/absent.yaml: the workflow file "
                                                    f"cannot be read"):
        load_workflow_yaml(tmp_path / "absent.yaml")
    path = write(tmp_path, "metadata: {name: w}\nspec: {steps: []}\n")
    with pytest.raises(WorkflowNotFoundError, match="pipelines_module 'no_such_module_xyz' "
                                                    "could not be imported .ModuleNotFoundError"):
        load_workflow_yaml(path, pipelines_module="no_such_module_xyz")


STEP_ERRORS = [
    ("- {name: fetch}",
     "steps[0]: step 'fetch' (pipeline): missing 'pipeline' (the name of a pipeline registered"),
    ("- {name: fetch, type: sleep}",
     "steps[0]: step 'fetch': unknown type 'sleep'; use one of pipeline, wait, map, choice"),
    ("- {name: fetch, type: lambda}",
     "steps[0]: step 'fetch': type 'lambda' cannot be data (a lambda runs a Python function). "
     "Register the function with @spine_dagster.pipeline('NAME')"),
    ("- {name: a, type: wait, duration_seconds: 1}\n    - {name: fetch, pipline: x}",
     "steps[1]: step 'fetch' (pipeline): unknown key 'pipline' (did you mean 'pipeline'?); allowed "
     "keys: name, type, pipeline, config, params, description, on_error, retry, checkpoint, "
     "quality_thresholds, pool, fuse, produces"),
    ("- {name: fetch, pipeline: p, on_error: ignore}",
     "steps[0]: step 'fetch': on_error 'ignore' is not valid; use one of stop, continue, retry"),
    ("- {name: route, type: choice, then_step: route, condition: {param: mode, is: fast}}",
     "steps[0]: step 'route': condition: unknown key 'is'; allowed keys: param, equals, "
     "not_equals"),
    ("- {name: route, type: choice, then_step: route, condition: {param: mode}}",
     "steps[0]: step 'route': condition: a param clause needs exactly one operator, got none"),
    ("- {name: fetch, pipeline: p, produces: 'warehouse orders'}",
     "step 'fetch': produces='warehouse orders' is not an asset key"),
    ("- {name: fetch, pipeline: p, retry: {max_attempts: 0}}",
     "steps[0]: step 'fetch': RetryPolicy(max_attempts=0): use a whole number >= 1"),
    ("- {name: fetch, pipeline: p, quality_thresholds: {min_rate: 1}}",
     "steps[0]: step 'fetch': quality_thresholds: unknown key 'min_rate'"),
    ("- {name: fan, type: map, items_path: xs, workflow: {name: inner, steps: [{name: x}]}}",
     "steps[0]: step 'fan': workflow: steps[0]: step 'x' (pipeline): missing 'pipeline'"),
    ("- {name: fan, type: map, items_path: xs, workflow: {name: inner, stepz: []}}",
     "steps[0]: step 'fan': workflow: unknown key 'stepz' (did you mean 'steps'?)"),
    ("- {name: fan, type: map, items_path: xs, workflow: {metadata: {name: i}, spec: {steps: "
     "[{name: x, type: nap}]}}}",
     "steps[0]: step 'fan': workflow: steps[0]: step 'x': unknown type 'nap'"),
    ("- {name: fan, type: map, items_path: xs, workflow: {metadata: {}, spec: {steps: []}}}",
     "steps[0]: step 'fan': workflow.metadata: missing 'name'"),
    ("- fetch", "steps[0]: step: expected a mapping of keys to values, got str 'fetch'"),
    ("- {name: a, pipeline: p}\n    - {name: a, pipeline: q}", "Duplicate step name: a"),
    ("- {name: route, type: choice, condition: {param: m, exists: true}, then_step: nowhere}",
     "Choice step 'route' references unknown then_step: nowhere"),
    ("- {name: route, type: choice, condition: {param: m, exists: true}, then_step: route, "
     "else_step: gone}", "Choice step 'route' references unknown else_step: gone"),
]


@pytest.mark.parametrize("steps, fragment", STEP_ERRORS)
def test_a_malformed_step_names_the_file_the_step_and_the_problem(tmp_path, steps, fragment):
    path = write(tmp_path, f"apiVersion: spine.io/v1\nkind: Workflow\nmetadata: {{name: w}}\n"
                           f"spec:\n  steps:\n    {steps}\n")
    with pytest.raises(InvalidWorkflowError) as caught:
        load_workflow_yaml(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: "), message
    assert fragment in message, message


DOCUMENT_ERRORS = [
    ("", "the document is empty; write apiVersion: spine.io/v1"),
    ("- a\n- b\n", "top level: expected a mapping of keys to values, got list"),
    ("metadata: {name: w}\n", "top level: missing 'spec' (with the steps)"),
    ("metadata: {name: w}\nspec: {steps: []}\nspecs: {}\n",
     "top level: unknown key 'specs' (did you mean 'spec'?); allowed keys: apiVersion, kind, "
     "metadata, spec"),
    ("apiVersion: spine.io/v2\nmetadata: {name: w}\nspec: {steps: []}\n",
     "apiVersion 'spine.io/v2' is not supported; use apiVersion: spine.io/v1"),
    ("kind: PipelineGroup\nmetadata: {name: w}\nspec: {steps: []}\n",
     "kind 'PipelineGroup' is not supported; use kind: Workflow"),
    ("metadata: {domain: d}\nspec: {steps: []}\n", "metadata: missing 'name' (the workflow name)"),
    ("metadata: {name: w, owner: me}\nspec: {steps: []}\n",
     "metadata: unknown key 'owner'; allowed keys: name, domain, version, description, tags"),
    ("metadata: {name: w}\nspec: {steps: [], policy: {execution: parallel}}\n",
     "spec: unknown key 'policy'; allowed keys: defaults, steps, checkpoint_strategy, fuse, "
     "owners, auto_resume"),
    ("metadata: {name: w}\nspec: {defaults: {}}\n", "spec: missing 'steps' (the list of steps)"),
    ("metadata: {name: w}\nspec: {steps: {a: 1}}\n",
     "workflow 'w': steps must be a list, got dict"),
    ("metadata: {name: w, version: two}\nspec: {steps: []}\n",
     "workflow 'w': version must be a whole number >= 1, got str 'two'"),
    ("metadata: {name: w}\nspec: {steps: [], fuse: maybe}\n",
     "workflow 'w': fuse must be True or False, got str 'maybe'"),
    ("metadata: {name: w}\nspec: {steps: [], auto_resume: {max_resumes: 0}}\n",
     "AutoResume(max_resumes=0): use a whole number >= 1"),
    ("metadata: {name: w}\nspec: {steps: [], auto_resume: {retries: 2}}\n",
     "workflow 'w': auto_resume: unknown key 'retries'"),
    ("metadata: {name: w}\nspec:\n  steps:\n    - name: a\n     pipeline: p\n",
     "YAML syntax error at line 5, column 6: expected <block end>, but found '<block mapping "
     "start>'. Fix the indentation or quoting there."),
    ("metadata: {name: w}\nspec: {steps: [{name: a, pipeline: !!python/name:os.system }]}\n",
     "YAML tag not allowed at line 2, column 36: could not determine a constructor for the tag "
     "'tag:yaml.org,2002:python/name:os.system'. A workflow file holds plain data only."),
]


@pytest.mark.parametrize("text, fragment", DOCUMENT_ERRORS)
def test_a_malformed_document_names_the_file_and_the_problem(tmp_path, text, fragment):
    path = write(tmp_path, text)
    with pytest.raises(InvalidWorkflowError) as caught:
        load_workflow_yaml(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: "), message
    assert fragment in message, message


def test_workflow_from_yaml_names_its_source_and_skips_the_pipeline_check():
    wf = workflow_from_yaml("metadata: {name: w}\nspec: {steps: [{name: a, pipeline: not.yet}]}\n")
    assert wf.get_step("a").pipeline_name == "not.yet" and wf.source_file is None
    with pytest.raises(InvalidWorkflowError, match=r"^inline\.yaml: metadata: missing 'name'"):
        workflow_from_yaml("metadata: {}\nspec: {steps: []}\n", source="inline.yaml")
    with pytest.raises(InvalidWorkflowError, match=r"^<string>: YAML syntax error"):
        workflow_from_yaml("a: [1, 2\n")


def test_apiversion_and_kind_are_optional_and_an_empty_workflow_loads():
    wf = workflow_from_yaml("metadata: {name: w}\nspec: {steps: []}\n")
    assert (wf.name, wf.steps, wf.version) == ("w", [], 1)
