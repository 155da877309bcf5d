"""``SpineDagsterClient``: resume and re-execute spine runs through a Dagster deployment.

The client speaks the webserver's GraphQL API, the one the Dagster UI uses. Every run it starts is
launched by the deployment's own run launcher and run coordinator, joins its parent's run group in
the UI, and is eligible for the daemon's run retries.

``resume(run_id, params_override=...)`` closes dagster-io/dagster#7474 (the UI cannot change the
config of a re-execution) for spine runs: it is a true re-execution of the run's last Dagster run,
with the parent's config deep-merged with the overrides, the steps after the newest checkpoint,
and the run-group tags. It needs the deployment's checkpoint database to find that checkpoint.

Example:
    >>> from spine_dagster import SpineDagsterClient
    >>> client = SpineDagsterClient("127.0.0.1:3000", database_url="sqlite:///checkpoints.db")
    >>> client.url
    'http://127.0.0.1:3000/graphql'

    With the webserver running (``dagster dev`` or ``dagster-webserver``)::

        run_id = client.resume("abc-123", params_override={"timeout": 120})
        client.wait_for_run(run_id).status          # 'SUCCESS'
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from .compiler import WORKFLOW_TAG, op_name_for
from .errors import (
    NothingToResumeError,
    RunInProgressError,
    UnknownRunError,
    WebserverQueryError,
    WebserverUnavailableError,
    WorkflowChangedError,
    WorkflowMismatchError,
)
from .io_manager import RUN_ID_TAG, store_for
from .results import WorkflowResult, WorkflowStatus
from .runner import (
    LEASE_SECONDS,
    reexecution_run_config,
    reexecution_tags,
    result_from_store,
    resume_index,
    resume_overrides,
)
from .store import CheckpointStore, utcnow

ENV_WEBSERVER_URL = "SPINE_DAGSTER_WEBSERVER_URL"
TERMINAL_STATUSES = ("SUCCESS", "FAILURE", "CANCELED")
STRATEGIES = ("FROM_FAILURE", "ALL_STEPS")

_LAUNCH_RESULT = """
    __typename
    ... on LaunchRunSuccess { run { runId status } }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on PythonError { message className }
    ... on Error { message }
"""
LAUNCH_RUN = """mutation SpineLaunchRun($executionParams: ExecutionParams!) {
  launchRun(executionParams: $executionParams) {%s}
}""" % _LAUNCH_RESULT
LAUNCH_RUN_REEXECUTION = """mutation SpineLaunchRunReexecution(
    $executionParams: ExecutionParams, $reexecutionParams: ReexecutionParams) {
  launchRunReexecution(executionParams: $executionParams,
                       reexecutionParams: $reexecutionParams) {%s}
}""" % _LAUNCH_RESULT
_RUN_FIELDS = """
    runId status jobName parentRunId rootRunId stepKeysToExecute runConfig
    tags { key value }
    repositoryOrigin { repositoryLocationName repositoryName }
"""
RUN_QUERY = """query SpineRun($runId: ID!) {
  runOrError(runId: $runId) {
    __typename
    ... on Run {%s}
    ... on Error { message }
  }
}""" % _RUN_FIELDS
RUN_GROUP_QUERY = """query SpineRunGroup($runId: ID!) {
  runGroupOrError(runId: $runId) {
    __typename
    ... on RunGroup { rootRunId runs {%s} }
    ... on Error { message }
  }
}""" % _RUN_FIELDS
JOB_QUERY = """query SpineJob($selector: PipelineSelector!) {
  pipelineOrError(params: $selector) {
    __typename
    ... on Pipeline {
      name
      metadataEntries {
        label
        ... on JsonMetadataEntry { jsonString }
        ... on TextMetadataEntry { text }
      }
    }
    ... on Error { message }
  }
}"""
WORKSPACE_QUERY = """query SpineWorkspace {
  workspaceOrError {
    __typename
    ... on Workspace {
      locationEntries {
        name
        locationOrLoadError {
          __typename
          ... on RepositoryLocation { name repositories { name pipelines { name } } }
          ... on PythonError { message }
        }
      }
    }
    ... on Error { message }
  }
}"""


@dataclass(frozen=True)
class RemoteRun:
    """A Dagster run as the deployment reports it."""

    run_id: str
    status: str
    job_name: str
    location_name: str | None = None
    repository_name: str | None = None
    run_config: dict[str, Any] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    parent_run_id: str | None = None
    root_run_id: str | None = None
    step_keys_to_execute: list[str] | None = None

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def success(self) -> bool:
        return self.status == "SUCCESS"

    @classmethod
    def from_graphql(cls, data: Mapping[str, Any]) -> RemoteRun:
        origin = data.get("repositoryOrigin") or {}
        return cls(
            run_id=data["runId"], status=data["status"], job_name=data["jobName"],
            location_name=origin.get("repositoryLocationName"),
            repository_name=origin.get("repositoryName"),
            run_config=dict(data.get("runConfig") or {}),
            tags={t["key"]: t["value"] for t in data.get("tags") or []},
            parent_run_id=data.get("parentRunId"), root_run_id=data.get("rootRunId"),
            step_keys_to_execute=data.get("stepKeysToExecute"))


def normalize_url(url: str) -> str:
    """``host:port``, ``http://host:port`` or ``.../graphql`` -> ``http://host:port/graphql``."""
    url = (url or "").strip().rstrip("/")
    if not url:
        raise WebserverUnavailableError(
            "no Dagster webserver URL given; pass one like http://127.0.0.1:3000 (or set "
            f"${ENV_WEBSERVER_URL}).")
    if "://" not in url:
        url = f"http://{url}"
    return url if url.endswith("/graphql") else f"{url}/graphql"


class SpineDagsterClient:
    """Launches, re-executes and resumes spine runs through a Dagster webserver.

    Args:
        url: the webserver, e.g. ``http://127.0.0.1:3000`` (``/graphql`` is added).
        database_url: the deployment's checkpoint database (``resume`` reads the checkpoints).
            Default: ``$SPINE_DAGSTER_DATABASE_URL``, else the local SQLite default.
        timeout: seconds to wait for each HTTP answer.
    """

    def __init__(self, url: str, *, database_url: str | None = None,
                 timeout: float = 60.0) -> None:
        self.url = normalize_url(url)
        self.base_url = self.url[: -len("/graphql")]
        self.database_url = database_url
        self.timeout = timeout

    @property
    def store(self) -> CheckpointStore:
        return store_for(self.database_url)

    # -- transport --------------------------------------------------------------------------------
    def graphql(self, query: str, variables: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """POST one GraphQL request; returns its ``data``.

        The webserver answers some errors with HTTP 500 and a GraphQL body (a ``PythonError``), so
        the body is parsed whatever the status. Raises ``WebserverUnavailableError`` when the
        webserver cannot be reached, ``WebserverQueryError`` for GraphQL-level errors.
        """
        body = json.dumps({"query": query, "variables": dict(variables or {})}).encode()
        request = urllib.request.Request(self.url, data=body, method="POST", headers={
            "Content-Type": "application/json", "Accept": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                raw, status = response.read(), response.status
        except urllib.error.HTTPError as exc:
            raw, status = exc.read(), exc.code
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise WebserverUnavailableError(
                f"cannot reach the Dagster webserver at {self.base_url}: {reason}. Check that "
                f"dagster-webserver (or dagster dev) is running there and that the URL is the "
                f"one the UI is served at.") from None
        try:
            payload = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise WebserverUnavailableError(
                f"{self.url} answered HTTP {status} without a GraphQL body; is it a Dagster "
                f"webserver? (pass the URL the UI is served at, e.g. http://127.0.0.1:3000)"
            ) from None
        errors = payload.get("errors") if isinstance(payload, dict) else None
        if errors:
            messages = "; ".join(str(e.get("message", e)) for e in errors)
            raise WebserverQueryError(
                f"the Dagster webserver at {self.base_url} rejected the request (HTTP {status}): "
                f"{messages}", "GraphQLError")
        if not isinstance(payload, dict) or not isinstance(payload.get("data"), dict):
            raise WebserverQueryError(
                f"the Dagster webserver at {self.base_url} answered HTTP {status} with no data",
                None)
        return payload["data"]

    # -- reading ----------------------------------------------------------------------------------
    def get_run(self, run_id: str) -> RemoteRun:
        """The Dagster run ``run_id`` in the deployment."""
        result = self.graphql(RUN_QUERY, {"runId": run_id})["runOrError"]
        if result["__typename"] == "RunNotFoundError":
            raise UnknownRunError(
                f"the deployment at {self.base_url} has no Dagster run {run_id!r}; copy the run "
                f"id from the UI's Runs page (or pass a spine run id to resume()).")
        _raise_for(result, f"reading Dagster run {run_id!r}")
        return RemoteRun.from_graphql(result)

    def run_group(self, run_id: str) -> list[RemoteRun]:
        """Every run in ``run_id``'s run group (its root run and all re-executions of it)."""
        result = self.graphql(RUN_GROUP_QUERY, {"runId": run_id})["runGroupOrError"]
        if result["__typename"] == "RunGroupNotFoundError":
            raise UnknownRunError(f"the deployment at {self.base_url} has no run {run_id!r}")
        _raise_for(result, f"reading the run group of {run_id!r}")
        return [RemoteRun.from_graphql(r) for r in result["runs"] or []]

    def wait_for_run(self, run_id: str, *, timeout: float | None = None,
                     poll_interval: float = 0.5) -> RemoteRun:
        """Poll until the run ends (SUCCESS, FAILURE or CANCELED); returns its last state."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            run = self.get_run(run_id)
            if run.finished:
                return run
            if deadline is not None and time.monotonic() > deadline:
                raise RunInProgressError(
                    f"Dagster run {run_id} is still {run.status} after {timeout:g}s; follow it "
                    f"at {self.base_url}/runs/{run_id}")
            time.sleep(poll_interval)

    def find_job(self, job_name: str) -> tuple[str, str]:
        """(location name, repository name) of the one job named ``job_name``."""
        data = self.graphql(WORKSPACE_QUERY)["workspaceOrError"]
        _raise_for(data, "reading the workspace")
        found, broken = [], []
        for entry in data.get("locationEntries") or []:
            location = entry.get("locationOrLoadError") or {}
            if location.get("__typename") != "RepositoryLocation":
                broken.append(f"{entry['name']} ({location.get('message', 'not loaded')})")
                continue
            for repo in location["repositories"]:
                if any(p["name"] == job_name for p in repo["pipelines"]):
                    found.append((location["name"], repo["name"]))
        if len(found) == 1:
            return found[0]
        if not found:
            extra = f"; these code locations failed to load: {', '.join(broken)}" if broken else ""
            raise WorkflowMismatchError(
                f"no job named {job_name!r} in the deployment at {self.base_url}{extra}. Serve "
                f"the workflow from a code location (build_definitions) and reload it.")
        raise WorkflowMismatchError(
            f"job {job_name!r} is in several code locations {found}; pass location_name= and "
            f"repository_name=.")

    def job_steps(self, location_name: str, repository_name: str,
                  job_name: str) -> tuple[str, list[str]]:
        """(workflow name, step names in order) of a spine job, from the job's metadata."""
        selector = {"repositoryLocationName": location_name, "repositoryName": repository_name,
                    "pipelineName": job_name}
        result = self.graphql(JOB_QUERY, {"selector": selector})["pipelineOrError"]
        _raise_for(result, f"reading job {job_name!r}")
        entries = {e["label"]: e for e in result.get("metadataEntries") or []}
        steps, workflow = entries.get("spine/steps"), entries.get("spine/workflow")
        if not steps or "jsonString" not in steps or not workflow:
            raise WorkflowMismatchError(
                f"job {job_name!r} in {location_name} is not a spine job (no spine/steps "
                f"metadata); build it with spine_dagster.build_job or build_definitions.")
        return workflow.get("text", ""), list(json.loads(steps["jsonString"]))

    # -- launching --------------------------------------------------------------------------------
    def launch_run(self, job_name: str, *, run_config: Mapping[str, Any] | None = None,
                   tags: Mapping[str, str] | None = None, location_name: str | None = None,
                   repository_name: str | None = None) -> str:
        """Launch a new run of ``job_name`` (like the Launchpad); returns its Dagster run id."""
        if location_name is None or repository_name is None:
            location_name, repository_name = self.find_job(job_name)
        params = {
            "selector": _selector(location_name, repository_name, job_name),
            "runConfigData": dict(run_config or {}),
            "executionMetadata": {"tags": _tag_list(tags or {})},
        }
        data = self.graphql(LAUNCH_RUN, {"executionParams": params})["launchRun"]
        return _launched(data, f"launching job {job_name!r}")

    def reexecute(self, parent_run_id: str, strategy: str = "FROM_FAILURE", *,
                  extra_tags: Mapping[str, str] | None = None) -> str:
        """What the UI's "Re-execute from failure" / "Re-execute all" buttons send.

        The parent's config and tags are reused (the UI cannot change them). ``strategy`` is
        ``FROM_FAILURE`` or ``ALL_STEPS``. Returns the new Dagster run id.
        """
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
        self.get_run(parent_run_id)  # a clear UnknownRunError instead of a PythonError
        params: dict[str, Any] = {"parentRunId": parent_run_id, "strategy": strategy}
        if extra_tags:
            params["extraTags"] = _tag_list(extra_tags)
        data = self.graphql(LAUNCH_RUN_REEXECUTION, {"reexecutionParams": params})
        return _launched(data["launchRunReexecution"],
                         f"re-executing Dagster run {parent_run_id} ({strategy})")

    def reexecute_steps(self, parent_run_id: str, step_keys: Sequence[str], *,
                        run_config: Mapping[str, Any] | None = None,
                        tags: Mapping[str, str] | None = None) -> str:
        """Re-execute the given steps of a run ("Re-execute selected" in the UI).

        Default config and tags: the parent's, plus the run-group tags.
        """
        parent = self.get_run(parent_run_id)
        location, repository = self._location_of(parent)
        root = parent.root_run_id or parent.run_id
        if tags is None:
            tags = reexecution_tags(parent.tags, parent_run_id=parent.run_id, root_run_id=root,
                                    spine_run_id=parent.tags.get(RUN_ID_TAG, root),
                                    workflow_name=parent.tags.get(WORKFLOW_TAG, ""))
            if not parent.tags.get(WORKFLOW_TAG):  # not a spine job: add no spine tags
                tags = {k: v for k, v in tags.items() if k not in (RUN_ID_TAG, WORKFLOW_TAG)}
        return self._launch_reexecution(parent, location, repository,
                                        run_config if run_config is not None else parent.run_config,
                                        tags, list(step_keys))

    def resume(self, run_id: str, *, params_override: Mapping[str, Any] | None = None) -> str:
        """Resume a failed spine run from its newest checkpoint; returns the new Dagster run id.

        ``run_id`` is a spine run id or the id of any Dagster run of it. The new run re-executes
        the run's last Dagster run: the steps after the checkpoint written last, with the parent's
        config and ``params_override`` merged into its params (the same rules as
        ``WorkflowRunner.resume``). It does not wait; see ``wait_for_run``.
        """
        store = self.store
        record = store.get_run(run_id)
        if record is None:
            raise UnknownRunError(
                f"no spine run or Dagster run with id {run_id!r} in the checkpoint database at "
                f"{store.display_url}. Point the client at the deployment's checkpoint database "
                f"(database_url=, --database-url or $SPINE_DAGSTER_DATABASE_URL).")
        if record.status is WorkflowStatus.COMPLETED:
            raise NothingToResumeError(
                f"run {record.run_id!r} completed; there is nothing to resume. To run it again, "
                f"launch the job {record.job_name or record.workflow_name!r} with the same params, "
                f"or re-execute steps with reexecute_steps().")
        parent_id = record.last_dagster_run_id
        if parent_id is None:
            raise UnknownRunError(f"spine run {record.run_id!r} has no Dagster run to resume")
        parent = self.get_run(parent_id)
        location, repository = self._location_of(parent)
        workflow_name, names = self.job_steps(location, repository, parent.job_name)
        if workflow_name != record.workflow_name:
            raise WorkflowMismatchError(
                f"run {record.run_id!r} is a run of workflow {record.workflow_name!r}, but job "
                f"{parent.job_name!r} in {location} now serves {workflow_name!r}.")

        def index_of(step: str) -> int:
            if step not in names:
                raise WorkflowMismatchError(
                    f"run {record.run_id!r} has a checkpoint for step {step!r}, which job "
                    f"{parent.job_name!r} no longer has (its steps: {names}); resume it with the "
                    f"workflow it was started with.")
            return names.index(step)

        start = resume_index(store, record.run_id, index_of)
        recorded = [s[0] for s in (record.workflow_signature or [])[:start + 1]]
        if recorded and recorded != names[:len(recorded)]:
            raise WorkflowChangedError(
                f"workflow {workflow_name!r} changed since run {record.run_id!r} wrote its "
                f"checkpoints: its steps up to the resume point were {recorded}, job "
                f"{parent.job_name!r} now has {names[:len(recorded)]}. Resuming would continue "
                f"from a context the current steps did not produce; start a new run instead.")
        if start >= len(names):
            raise NothingToResumeError(
                f"run {record.run_id!r}: every step up to the last one has a checkpoint; there "
                f"is nothing to resume.")
        run_config = reexecution_run_config(parent.run_config, resume_overrides(params_override))
        tags = reexecution_tags(parent.tags, parent_run_id=parent.run_id,
                                root_run_id=parent.root_run_id or parent.run_id,
                                spine_run_id=record.run_id, workflow_name=record.workflow_name)
        owner = uuid.uuid4().hex
        if not store.acquire_lease(record.run_id, owner, LEASE_SECONDS,
                                   ("failed", "partial", "running")):
            raise RunInProgressError(
                f"another resume of run {record.run_id!r} is in progress; wait for it to finish.")
        try:
            busy = [r for r in self.run_group(parent.run_id) if not r.finished]
            if busy:
                raise RunInProgressError(
                    f"run {record.run_id!r} is still running (Dagster run {busy[0].run_id} is "
                    f"{busy[0].status}); wait for it to finish, or terminate it first.")
            keys = [op_name_for(name) for name in names[start:]]
            return self._launch_reexecution(parent, location, repository, run_config, tags, keys)
        finally:
            store.release_lease(record.run_id, owner)

    def resume_and_wait(self, run_id: str, *, params_override: Mapping[str, Any] | None = None,
                        timeout: float | None = None) -> WorkflowResult:
        """``resume``, then wait for the new run and return the spine run's result."""
        started = utcnow()
        new_run = self.resume(run_id, params_override=params_override)
        remote = self.wait_for_run(new_run, timeout=timeout)
        record = self.store.get_run(new_run) or self.store.get_run(run_id)
        names = self.job_steps(*self._location_of(remote), remote.job_name)[1]
        return result_from_store(
            self.store, workflow_name=record.workflow_name, step_names=names,
            spine_id=record.run_id, dagster_run_id=new_run, success=remote.success,
            failure=None if remote.success else (
                f"Dagster run {new_run} ended {remote.status}; see {self.base_url}/runs/{new_run}"),
            started=started)

    # -- internals --------------------------------------------------------------------------------
    def _location_of(self, run: RemoteRun) -> tuple[str, str]:
        if run.location_name and run.repository_name:
            return run.location_name, run.repository_name
        # Launched outside a code location (WorkflowRunner.execute): find its job by name.
        return self.find_job(run.job_name)

    def _launch_reexecution(self, parent: RemoteRun, location: str, repository: str,
                            run_config: Mapping[str, Any], tags: Mapping[str, str],
                            step_keys: list[str]) -> str:
        params = {
            "selector": _selector(location, repository, parent.job_name),
            "runConfigData": dict(run_config),
            "stepKeys": step_keys,
            "executionMetadata": {"parentRunId": parent.run_id,
                                  "rootRunId": parent.root_run_id or parent.run_id,
                                  "tags": _tag_list(tags)},
        }
        data = self.graphql(LAUNCH_RUN_REEXECUTION, {"executionParams": params})
        return _launched(data["launchRunReexecution"],
                         f"re-executing Dagster run {parent.run_id} (steps {step_keys})")


def _selector(location: str, repository: str, job_name: str) -> dict[str, str]:
    return {"repositoryLocationName": location, "repositoryName": repository,
            "jobName": job_name}


def _tag_list(tags: Mapping[str, str]) -> list[dict[str, str]]:
    return [{"key": str(k), "value": str(v)} for k, v in tags.items()]


def _raise_for(result: Mapping[str, Any], doing: str) -> None:
    typename = result.get("__typename", "")
    if typename.endswith("Error") or typename.endswith("Invalid"):
        raise WebserverQueryError(f"{doing} failed: {typename}: {_message(result)}", typename)


def _message(result: Mapping[str, Any]) -> str:
    if result.get("errors"):
        return "; ".join(e["message"] for e in result["errors"])
    return str(result.get("message") or "").strip()


def _launched(result: Mapping[str, Any], doing: str) -> str:
    if result.get("__typename") == "LaunchRunSuccess":
        return result["run"]["runId"]
    typename = result.get("__typename")
    raise WebserverQueryError(f"{doing} failed: {typename}: {_message(result)}", typename)
