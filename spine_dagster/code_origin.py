"""Runs made by a script carry the code location that serves their job, so the UI can re-execute them.

The Dagster UI re-executes a run (its "Re-execute from failure", "Re-execute all" and "Re-execute
from selected" buttons) through the run's *remote job origin*: the code location and repository
that serve its job. Runs created by ``execute_job`` (what ``WorkflowRunner`` and the CLI use) have
none, and the webserver then answers HTTP 500. This module finds, in a ``workspace.yaml``, the code
location that serves a workflow's job, and stamps that origin on the runs the runner makes.

**This is the one module that uses Dagster's private API**, because there is no public way to
do either thing from a script:

* reading a ``workspace.yaml`` into code location origins (the names the webserver uses) is
  ``dagster._core.workspace.load.location_origins_from_yaml_paths`` (for a ``dg`` project,
  ``location_origin_from_module_name``, with the name and module ``dg dev`` uses);
* setting a run's origin is ``RunStorage.replace_job_origin``, which is what Dagster's own
  ``dagster run migrate-repository`` command uses to move runs between code locations. A public
  alternative would be to launch runs through the code location (``instance.submit_run`` with a
  workspace), which needs a gRPC code server per process: far heavier than a script's run.

Everything here degrades to "no origin": runs still work, the UI just cannot re-execute them.

Example:
    >>> find_serving_job(None, "docs.none", "sqlite:///x.db") is None
    True
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import sys
import threading
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .dburl import resolve_url
from .names import FUSE_TAG
from .resources import IO_MANAGER_KEY

ENV_WORKSPACE = "SPINE_DAGSTER_WORKSPACE"
REPOSITORY_NAME = "__repository__"  # the repository of a Definitions object
_log = logging.getLogger("spine_dagster")
_cache: dict[tuple[str, float, str, bool], Any] = {}  # (workspace, mtime, workflow, fuse) -> found
_lock = threading.Lock()


@dataclass(frozen=True)
class ServingJob:
    """The code location (and job) of a workspace that serves a workflow."""

    workspace: str
    location_name: str
    repository_name: str
    job_name: str
    origin: Any  # the code location origin (a Dagster object)


def workspace_file(workspace: str | os.PathLike | None) -> str | None:
    """The workspace to use: ``workspace``, else ``$SPINE_DAGSTER_WORKSPACE``, else the
    ``workspace.yaml`` of the working directory when there is one, else the ``dg`` project the
    working directory is in (its ``pyproject.toml``, what ``dg dev`` serves). A directory names
    a ``dg`` project. ``""`` or ``"none"``: none."""
    value = os.fspath(workspace) if workspace is not None else os.environ.get(ENV_WORKSPACE)
    if value is None:
        default = Path.cwd() / "workspace.yaml"
        if default.exists():
            return str(default)
        project = dg_project(Path.cwd())
        return str(project / "pyproject.toml") if project else None
    if value.strip().lower() in ("", "none"):
        return None
    path = Path(value).expanduser().resolve()
    if path.is_dir():
        project = dg_project(path)
        return str(project / "pyproject.toml") if project else str(path / "workspace.yaml")
    return str(path)


def dg_project(directory: Path) -> Path | None:
    """The root of the ``dg`` project ``directory`` is in: the nearest ``pyproject.toml`` at or
    above it, when its ``[tool.dg]`` says ``directory_type = "project"``; else None."""
    for candidate in (directory, *directory.parents):
        pyproject = candidate / "pyproject.toml"
        if pyproject.is_file():
            try:
                tool = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("tool", {})
            except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
                return None
            dg = tool.get("dg", {}) if isinstance(tool, dict) else {}
            return candidate if isinstance(dg, dict) and \
                dg.get("directory_type") == "project" else None
    return None


def _location_origins(workspace: str) -> list[Any]:
    """The code location origins of a ``workspace.yaml``, or of a ``dg`` project's
    ``pyproject.toml``: one location, named and loaded as ``dg dev`` does (its
    ``code_location_name``, else the project directory's name; its
    ``code_location_target_module``, else ``<root_module>.definitions``)."""
    from dagster._core.workspace.load import (
        location_origin_from_module_name,
        location_origins_from_yaml_paths,
    )

    if Path(workspace).name != "pyproject.toml":
        return list(location_origins_from_yaml_paths([workspace]))
    root = Path(workspace).parent
    project = tomllib.loads(Path(workspace).read_text(encoding="utf-8"))["tool"]["dg"].get(
        "project", {})
    module = project.get("code_location_target_module") or (
        f"{project['root_module']}.definitions")
    name = project.get("code_location_name") or root.name
    return [location_origin_from_module_name(module, None, str(root), name)]


def find_serving_job(workspace: str | None, workflow_name: str, database_url: str, *,
                     fuse: bool = False) -> ServingJob | None:
    """The job of ``workspace`` that serves workflow ``workflow_name`` with the same checkpoint
    database and op layout (``fuse``: fused steps or one op per step), or None (no workspace, no
    such job, another database or layout, or a location that fails to load; a warning says
    which)."""
    if not workspace:
        return None
    try:
        mtime = os.path.getmtime(workspace)
    except OSError:
        _log.warning("spine_dagster: workspace %s not found; runs will not be re-executable "
                     "from the Dagster UI", workspace)
        return None
    key = (workspace, mtime, workflow_name, fuse)
    with _lock:
        if key in _cache:
            return _cache[key]
    found = _search(workspace, workflow_name, resolve_url(database_url), fuse)
    with _lock:
        _cache[key] = found
    return found


def _search(workspace: str, workflow_name: str, database_url: str,
            fuse: bool) -> ServingJob | None:
    try:
        origins = _location_origins(workspace)
    except Exception as exc:  # noqa: BLE001
        _log.warning("spine_dagster: cannot read the workspace %s (%s); runs will not be "
                     "re-executable from the Dagster UI", workspace, exc)
        return None
    for origin in origins:
        target = getattr(origin, "loadable_target_origin", None)
        if target is None:  # a gRPC server: its code is not importable here
            continue
        try:
            defs = _load_definitions(target)
        except Exception as exc:  # noqa: BLE001
            _log.warning("spine_dagster: code location %r of %s does not load here (%s: %s)",
                         origin.location_name, workspace, type(exc).__name__, exc)
            continue
        if defs is None:
            continue
        for job in _jobs(defs):
            metadata = getattr(job, "metadata", {}) or {}
            served = metadata.get("spine/workflow")
            if getattr(served, "value", served) != workflow_name:
                continue
            if (job.tags or {}).get(FUSE_TAG, "false") != str(fuse).lower():
                _log.warning(
                    "spine_dagster: code location %r serves workflow %r %s; runs made here (%s) "
                    "will not be re-executable from the UI. Use the same fuse setting in both.",
                    origin.location_name, workflow_name,
                    "with fused steps" if not fuse else "one op per step",
                    "fused" if fuse else "one op per step")
                continue
            if _database_of(defs) != database_url:
                _log.warning(
                    "spine_dagster: code location %r serves workflow %r with another checkpoint "
                    "database; runs made here will not be re-executable from the UI. Use the "
                    "same database_url (or $SPINE_DAGSTER_DATABASE_URL) in both.",
                    origin.location_name, workflow_name)
                return None
            return ServingJob(workspace, origin.location_name, REPOSITORY_NAME, job.name, origin)
    return None


def _load_definitions(target: Any) -> Any:
    from dagster import Definitions

    directory = target.working_directory
    if directory and directory not in sys.path:
        sys.path.insert(0, directory)
    if target.python_file:
        path = os.path.abspath(os.path.join(directory or os.getcwd(), target.python_file))
        name = f"spine_dagster_location_{abs(hash(path))}"
        module = sys.modules.get(name)
        if module is None:
            spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
    else:
        module = importlib.import_module(target.module_name or target.package_name)
    if target.attribute:
        value = getattr(module, target.attribute, None)
        return value if isinstance(value, Definitions) else None
    found = [v for v in vars(module).values() if isinstance(v, Definitions)]
    if not found:  # @dg.definitions (a dg project's definitions module): load it as dg does
        from dagster.components.definitions import LazyDefinitions

        lazy = [v for v in vars(module).values()
                if isinstance(v, LazyDefinitions) and not v.has_context_arg]
        found = [lazy[0]()] if len(lazy) == 1 else []
    return found[0] if len(found) == 1 else None


def _jobs(defs: Any) -> list[Any]:
    try:
        return list(defs.resolve_all_job_defs())
    except Exception:  # noqa: BLE001 - an older Dagster
        return list(defs.get_repository_def().get_all_jobs())


def _database_of(defs: Any) -> str | None:
    io = (getattr(defs, "resources", None) or {}).get(IO_MANAGER_KEY)
    url = getattr(io, "database_url", None)
    if url is not None and type(url).__name__ == "EnvVar":
        url = os.environ.get(str(url))
    try:
        return resolve_url(url)
    except Exception:  # noqa: BLE001
        return None


def attach_origin(instance: Any, dagster_run_id: str, serving: ServingJob) -> bool:
    """Stamp the serving code location on a run (see the module docs); True when done."""
    try:
        from dagster._core.remote_origin import RemoteJobOrigin, RemoteRepositoryOrigin

        run = instance.get_run_by_id(dagster_run_id)
        if run is None or run.remote_job_origin is not None:
            return run is not None
        origin = RemoteJobOrigin(
            repository_origin=RemoteRepositoryOrigin(code_location_origin=serving.origin,
                                                     repository_name=serving.repository_name),
            job_name=run.job_name)
        instance.run_storage.replace_job_origin(run, origin)
        return True
    except Exception as exc:  # noqa: BLE001 - the run is fine; only the UI re-execution is lost
        _log.warning("spine_dagster: could not record code location %r on Dagster run %s (%s); "
                     "the UI cannot re-execute it", serving.location_name, dagster_run_id, exc)
        return False
