"""Where a workflow is defined, so that another process can load it again.

A *workflow reference* is a string recorded with every spine run:

* ``module:attr``          a workflow at module level in an importable module;
* ``file:/abs/path.py:attr`` a workflow at module level in a script run as ``python script.py``;
* ``local:name:token``     a workflow built inside a function: usable only in this process;
* ``yaml:/abs/flow.yaml``  a workflow loaded with ``load_workflow_yaml``; when it was loaded
  with ``pipelines_module=``, the module follows a ``#``: ``yaml:/abs/flow.yaml#pkg.pipelines``.
  The ``#`` and the module are written whenever the path itself holds a ``#``
  (``yaml:/a#b.yaml#``), so the part after the last ``#`` is always the module (maybe empty).

A ``local:`` reference is held weakly: the workflow (with its closures) goes when the caller
drops it, so long-lived processes (notebooks, code servers) do not keep every workflow they ever
built. Pure Python, no Dagster import.

Example:
    >>> from spine_dagster import Step, StepResult, Workflow
    >>> def build():
    ...     return Workflow("docs.local", [Step.lambda_("a", lambda ctx, cfg: StepResult.ok())])
    >>> wf = build()
    >>> ref = workflow_ref(wf)
    >>> ref.startswith("local:docs.local:"), load_workflow(ref) is wf, is_importable(ref)
    (True, True, False)
"""

from __future__ import annotations

import copy
import importlib
import importlib.util
import os
import sys
import uuid
import weakref
from types import ModuleType
from typing import Any

from .errors import WorkflowNotFoundError
from .model import Workflow
from .workflow_yaml import load_workflow_yaml

_LOCAL: weakref.WeakValueDictionary[str, Workflow] = weakref.WeakValueDictionary()
_LOCAL_ATTR = "_spine_local_ref"
_REF_ATTR = "_spine_ref"  # a variant's reference: its original's (see variant())
_FILE_MODULES: dict[str, ModuleType] = {}  # script path -> the module we loaded it as
_FILE_MODULES_NAMES: set[str] = set()


def _find_attr(module: ModuleType, workflow: Workflow) -> str | None:
    for attr, value in vars(module).items():
        if value is workflow:
            return attr
    return None


def workflow_ref(workflow: Workflow) -> str:
    """The reference of ``workflow``: importable when possible, else a process-local one."""
    recorded = workflow.__dict__.get(_REF_ATTR)
    if recorded:
        return recorded
    if workflow.source_file:
        return yaml_ref(workflow.source_file, workflow.pipelines_module)
    module_name = workflow.defined_in
    module = sys.modules.get(module_name) if module_name else None
    if module is not None:
        attr = _find_attr(module, workflow)
        if attr is not None:
            if module_name == "__main__" or module_name in _FILE_MODULES_NAMES:
                path = getattr(module, "__file__", None)
                if path:
                    return f"file:{os.path.abspath(path)}:{attr}"
            else:
                return f"{module_name}:{attr}"
    return local_ref(workflow)


def yaml_ref(path: str, pipelines_module: str | None = None) -> str:
    """The reference of the YAML file at ``path`` (and the module that registers its pipelines)."""
    path = os.path.abspath(path)
    if pipelines_module or "#" in path:
        return f"yaml:{path}#{pipelines_module or ''}"
    return f"yaml:{path}"


def _load_yaml(ref: str, what: str) -> Workflow:
    rest = ref[len("yaml:"):]
    path, _, module = rest.rpartition("#") if "#" in rest else (rest, "", "")
    try:
        return load_workflow_yaml(path, pipelines_module=module or None)
    except Exception as exc:  # noqa: BLE001
        raise WorkflowNotFoundError(
            f"{what} is defined in the YAML file {path}"
            f"{f' with the pipelines of module {module!r}' if module else ''}, which could not be "
            f"loaded ({type(exc).__name__}: {exc}). Restore the file at that path (and make its "
            f"pipelines importable), or pass workflow= to resume().") from exc


def variant(workflow: Workflow, **changes: Any) -> Workflow:
    """A copy of ``workflow`` with some settings changed (e.g. ``auto_resume``: not its steps)
    whose runs record the original's reference: another process loads the original."""
    copied = copy.copy(workflow)
    for attr in (_LOCAL_ATTR, _REF_ATTR, "_spine_compiled_jobs"):
        copied.__dict__.pop(attr, None)
    for name, value in changes.items():
        setattr(copied, name, value)
    ref = workflow_ref(workflow)
    if is_importable(ref):
        copied.__dict__[_REF_ATTR] = ref
    return copied


def local_ref(workflow: Workflow) -> str:
    token = workflow.__dict__.get(_LOCAL_ATTR)
    if token is None or _LOCAL.get(token) is not workflow:
        token = f"local:{workflow.name}:{uuid.uuid4().hex[:12]}"
        workflow.__dict__[_LOCAL_ATTR] = token
        _LOCAL[token] = workflow
    return token


def is_importable(ref: str | None) -> bool:
    return bool(ref) and not ref.startswith("local:")


def _load_file_module(path: str) -> ModuleType:
    main = sys.modules.get("__main__")
    if main is not None and os.path.abspath(getattr(main, "__file__", "") or "") == path:
        return main
    if path in _FILE_MODULES:
        return _FILE_MODULES[path]
    if not os.path.exists(path):
        raise FileNotFoundError(path)
    name = f"spine_dagster_script_{abs(hash(path))}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    directory = os.path.dirname(path)
    if directory not in sys.path:
        sys.path.insert(0, directory)
    spec.loader.exec_module(module)  # the script's `if __name__ == "__main__":` block does not run
    _FILE_MODULES[path] = module
    _FILE_MODULES_NAMES.add(name)
    return module


def load_workflow(ref: str, *, workflow_name: str | None = None) -> Workflow:
    """Load the workflow that ``ref`` points at, or explain where we looked and how to fix it."""
    what = f"workflow {workflow_name!r}" if workflow_name else "the workflow"
    if ref.startswith("local:"):
        workflow = _LOCAL.get(ref)
        if workflow is not None:
            return workflow
        raise WorkflowNotFoundError(
            f"{what} was built inside a function in another process ({ref}), so this process "
            f"cannot load it. Resuming from another process, and the multiprocess executor, need "
            f"an importable workflow: define it at module level in an importable module (or a "
            f"script), or pass workflow= to resume()."
        )
    if ref.startswith("yaml:"):
        return _load_yaml(ref, what)
    if ref.startswith("file:"):
        path, _, attr = ref[len("file:"):].rpartition(":")
        try:
            module = _load_file_module(path)
        except Exception as exc:  # noqa: BLE001
            raise WorkflowNotFoundError(
                f"{what} is defined in the script {path}, which could not be loaded "
                f"({type(exc).__name__}: {exc}). Restore the script at that path, or pass "
                f"workflow= to resume()."
            ) from exc
    else:
        module_name, _, attr = ref.partition(":")
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:  # noqa: BLE001
            raise WorkflowNotFoundError(
                f"{what} is defined in module {module_name!r}, which could not be imported "
                f"({type(exc).__name__}: {exc}); sys.path is {sys.path[:5]}... Run from the "
                f"project directory, install the package, or pass workflow= to resume()."
            ) from exc
    workflow = getattr(module, attr, None)
    if not isinstance(workflow, Workflow):
        raise WorkflowNotFoundError(
            f"{what} was expected at {ref}, but {attr!r} there is "
            f"{'missing' if workflow is None else type(workflow).__name__}. Keep the workflow "
            f"under the same name, or pass workflow= to resume()."
        )
    return workflow
