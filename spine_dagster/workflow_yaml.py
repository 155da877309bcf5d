"""Workflows as YAML files, in Spine's own format (``apiVersion: spine.io/v1``, ``kind: Workflow``).

Pure Python, no Dagster import. ``metadata`` holds ``name``, ``domain``, ``version``,
``description``, ``tags``; ``spec`` holds ``defaults`` and ``steps``, and may hold
``checkpoint_strategy``, ``fuse``, ``owners`` and ``auto_resume`` (``{max_resumes, categories}``).
Each step is ``{name, type, ...}``, ``type`` one of ``pipeline`` (the default; ``pipeline``,
``config`` or Spine's ``params``), ``wait`` (``duration_seconds``), ``map`` (``items_path``,
``workflow``: a whole envelope or just ``{name, steps}``, ``max_concurrency``, ``item_param``) and
``choice`` (``condition``: see :class:`~spine_dagster.Condition`, ``then_step``, ``else_step``).
Any step may also have ``description``, ``on_error`` (stop, continue, retry), ``retry`` (the
``RetryPolicy`` fields), ``checkpoint``, ``quality_thresholds``, ``pool``, ``fuse``, ``produces``.

A workflow loaded with :func:`load_workflow_yaml` remembers its file (``source_file``) and its
pipelines module, so a run records ``yaml:/abs/flow.yaml#pkg.pipelines`` as its workflow reference
and another process (a resume, a multiprocess step) loads it from there.

Example:
    >>> from spine_dagster import workflow_from_yaml, workflow_to_yaml
    >>> wf = workflow_from_yaml('''
    ... apiVersion: spine.io/v1
    ... kind: Workflow
    ... metadata: {name: docs.yaml, version: 2}
    ... spec:
    ...   steps:
    ...     - {name: fetch, pipeline: docs.fetch, params: {limit: 10}, pool: warehouse}
    ...     - {name: pause, type: wait, duration_seconds: 1}
    ... ''')
    >>> wf.step_names(), wf.get_step("fetch").config
    (['fetch', 'pause'], {'limit': 10})
    >>> print(workflow_to_yaml(wf), end="")
    apiVersion: spine.io/v1
    kind: Workflow
    metadata:
      name: docs.yaml
      version: 2
    spec:
      steps:
      - name: fetch
        type: pipeline
        pipeline: docs.fetch
        config:
          limit: 10
        pool: warehouse
      - name: pause
        type: wait
        duration_seconds: 1.0
"""

from __future__ import annotations

import importlib
import os
from typing import Any, Mapping

import yaml

from .data_checks import check_keys, require_mapping, within
from .errors import InvalidWorkflowError, UnknownPipelineError, WorkflowNotFoundError
from .model import StepType, Workflow
from .pipelines import get_pipeline

API_VERSION = "spine.io/v1"
KIND = "Workflow"
ENVELOPE_KEYS = ("apiVersion", "kind", "metadata", "spec")
METADATA_KEYS = ("name", "domain", "version", "description", "tags")
SPEC_KEYS = ("defaults", "steps", "checkpoint_strategy", "fuse", "owners", "auto_resume")


def load_workflow_yaml(path: str | os.PathLike[str], *,
                       pipelines_module: str | None = None) -> Workflow:
    """Load the workflow in the YAML file at ``path``.

    Args:
        path: the file (a relative path is taken from the working directory).
        pipelines_module: a module to import first, the one that registers the pipelines the
            steps name (``@spine_dagster.pipeline``). Another process imports it too before it
            loads the file, so give it whenever the pipelines live outside the file's caller.

    Raises:
        InvalidWorkflowError: the file is not a valid workflow; the message names the file, the
            step and the problem.
        UnknownPipelineError: a step names a pipeline that is not registered.
        WorkflowNotFoundError: the file cannot be read, or ``pipelines_module`` cannot be imported.
    """
    source = os.path.abspath(os.fspath(path))
    if pipelines_module is not None:
        _import_pipelines(pipelines_module, source)
    try:
        with open(source, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as exc:
        raise WorkflowNotFoundError(
            f"{source}: the workflow file cannot be read ({exc.strerror or exc}). Check the path "
            f"(a relative path is taken from the working directory, {os.getcwd()}).") from exc
    workflow = workflow_from_yaml(text, source=source)
    _check_pipelines(workflow, source, pipelines_module, "")
    workflow.source_file = source
    workflow.pipelines_module = pipelines_module
    return workflow


def workflow_from_yaml(text: str, *, source: str = "<string>") -> Workflow:
    """The workflow in the YAML document ``text``; ``source`` names it in errors.

    Pipelines are not looked up here (see :func:`load_workflow_yaml`): the compiler does that.
    """
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        if isinstance(exc, yaml.constructor.ConstructorError):  # e.g. a !!python/... tag
            raise InvalidWorkflowError(f"{source}: YAML tag not allowed{at}: {problem}. A "
                                       f"workflow file holds plain data only.") from None
        raise InvalidWorkflowError(f"{source}: YAML syntax error{at}: {problem}. Fix the "
                                   f"indentation or quoting there.") from None
    if document is None:
        raise InvalidWorkflowError(
            f"{source}: the document is empty; write apiVersion: {API_VERSION}, kind: {KIND}, "
            f"metadata: {{name: ...}} and spec: {{steps: [...]}}")
    with within(source):
        return Workflow.from_dict(_data_form(document, ""))


def workflow_to_yaml(workflow: Workflow) -> str:
    """``workflow`` as a YAML document that :func:`workflow_from_yaml` reads back.

    Raises:
        InvalidWorkflowError: a step cannot be data (a lambda, a choice on a callable), or a
            value (in ``defaults``, ``config``, a condition) is not plain data.
    """
    document = {"apiVersion": API_VERSION, "kind": KIND, **_envelope(workflow.to_dict())}
    try:
        return yaml.safe_dump(document, sort_keys=False, allow_unicode=True,
                              default_flow_style=False)
    except yaml.YAMLError as exc:
        raise InvalidWorkflowError(
            f"workflow {workflow.name!r} cannot be written as YAML ({exc}). Keep defaults, config "
            f"and condition values to plain data: strings, numbers, booleans, lists, dicts."
        ) from None


# -- YAML document -> Workflow.from_dict form ----------------------------------------------------
def _data_form(document: Any, path: str) -> dict[str, Any]:
    """The ``Workflow.from_dict`` form of an envelope, or (in a map step) of ``{name, steps}``."""
    root = path.rstrip(".") or "top level"
    document = require_mapping(document, root)
    if path and not any(key in document for key in ENVELOPE_KEYS):
        check_keys(document, ("name", "steps"), root,
                   required={"name": "the workflow name", "steps": "the list of steps"})
        data = dict(document)
    else:
        check_keys(document, ENVELOPE_KEYS, root,
                   required={"metadata": "with the workflow name", "spec": "with the steps"})
        for key, expected in (("apiVersion", API_VERSION), ("kind", KIND)):
            if document.get(key, expected) != expected:
                raise InvalidWorkflowError(f"{path}{key} {document[key]!r} is not supported; use "
                                           f"{key}: {expected}")
        metadata = require_mapping(document["metadata"], f"{path}metadata")
        check_keys(metadata, METADATA_KEYS, f"{path}metadata",
                   required={"name": "the workflow name"})
        spec = require_mapping(document["spec"], f"{path}spec")
        check_keys(spec, SPEC_KEYS, f"{path}spec", required={"steps": "the list of steps"})
        data = {**metadata, **spec}
    if isinstance(data["steps"], list):
        data["steps"] = [_step_form(raw, index) for index, raw in enumerate(data["steps"])]
    return data


def _step_form(raw: Any, index: int) -> Any:
    if not (isinstance(raw, Mapping) and raw.get("type") == StepType.MAP.value
            and raw.get("workflow") is not None):
        return raw
    with within(f"steps[{index}]: step {raw.get('name')!r}"):
        return {**raw, "workflow": _data_form(raw["workflow"], "workflow.")}


# -- Workflow.to_dict form -> YAML document ------------------------------------------------------
def _envelope(data: Mapping[str, Any]) -> dict[str, Any]:
    metadata = {key: data[key] for key in METADATA_KEYS if key in ("name", "version") or data[key]}
    spec = {key: data[key] for key in SPEC_KEYS if key != "steps" and data.get(key)}
    spec["steps"] = [_yaml_step(step) for step in data["steps"]]
    return {"metadata": metadata, "spec": spec}


def _yaml_step(step: dict[str, Any]) -> dict[str, Any]:
    if step["type"] != StepType.MAP.value:
        return step
    inner = step["workflow"]
    plain = inner["version"] == 1 and not any(
        inner.get(key) for key in (*METADATA_KEYS, *SPEC_KEYS) if key not in ("name", "version",
                                                                               "steps"))
    inner_form = ({"name": inner["name"], "steps": [_yaml_step(s) for s in inner["steps"]]}
                  if plain else _envelope(inner))
    return {**step, "workflow": inner_form}


# -- pipelines -----------------------------------------------------------------------------------
def _import_pipelines(module: str, source: str) -> None:
    try:
        importlib.import_module(module)
    except Exception as exc:  # noqa: BLE001 - any failure while importing user code
        raise WorkflowNotFoundError(
            f"{source}: pipelines_module {module!r} could not be imported "
            f"({type(exc).__name__}: {exc}). Check the module name, and that its package is "
            f"installed or on sys.path.") from exc


def _check_pipelines(workflow: Workflow, source: str, module: str | None, path: str) -> None:
    for index, step in enumerate(workflow.steps):
        where = f"{path}steps[{index}]"
        if step.step_type is StepType.PIPELINE:
            try:
                get_pipeline(step.pipeline_name, step_name=step.name)
            except UnknownPipelineError as exc:
                hint = (f" load_workflow_yaml imported pipelines_module {module!r} first, and it "
                        f"does not register it." if module else
                        " Pass pipelines_module='your_package.pipelines' (the module that "
                        "registers it) to load_workflow_yaml.")
                raise UnknownPipelineError(f"{source}: {where}: {exc}{hint}") from None
        elif step.step_type is StepType.MAP:
            _check_pipelines(step.iterator_workflow, source, module,
                             f"{where}: step {step.name!r}: workflow.")
