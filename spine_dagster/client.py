"""``SpineDagsterClient``: resume and re-execute spine runs through a Dagster deployment.

The client speaks the webserver's GraphQL API, the one the Dagster UI uses (see
:mod:`spine_dagster.graphql`). Every run it starts is launched by the deployment's own run
launcher and run coordinator, joins its parent's run group in the UI, and is eligible for the
daemon's run retries.

``resume(run_id, params_override=...)`` closes dagster-io/dagster#7474 (the UI cannot change the
config of a re-execution) for spine runs: it plans with the same rules as
``WorkflowRunner.resume`` (:func:`spine_dagster.resume.plan_resume`, on the job's steps as the
deployment serves them), then launches a true re-execution of the run's last Dagster run from the
plan's start step, with the parent's config deep-merged with the overrides and the run-group
tags. It needs the deployment's checkpoint database to read the checkpoints.

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
from typing import Any, Mapping, Sequence

from .errors import (
    RunInProgressError,
    UnknownRunError,
    WorkflowMismatchError,
)
from .graphql import (
    JOB_QUERY,
    LAUNCH_RUN,
    LAUNCH_RUN_REEXECUTION,
    RUN_GROUP_QUERY,
    RUN_QUERY,
    WORKSPACE_QUERY,
    GraphQLTransport,
    RemoteRun,
    launched,
    raise_for,
    selector,
    tag_list,
)
from .outcome import result_from_store
from .records import RunRecord
from .results import WorkflowResult
from .resume import (
    RUN_ID_TAG,
    WORKFLOW_TAG,
    ResumeLease,
    ResumePlan,
    guard_not_running,
    nodes_from,
    plan_resume,
    refuse_completed,
    resume_run_config,
    resume_tags,
)
from .snapshot import utcnow
from .store import CheckpointStore

STRATEGIES = ("FROM_FAILURE", "ALL_STEPS", "FROM_ASSET_FAILURE")
__all__ = ["RemoteRun", "SpineDagsterClient"]


class SpineDagsterClient(GraphQLTransport):
    """Launches, re-executes and resumes spine runs through a Dagster webserver.

    Args:
        url: the webserver, e.g. ``http://127.0.0.1:3000`` or ``https://...`` (``/graphql`` is
            added). Default: ``$SPINE_DAGSTER_WEBSERVER_URL``, else the URL ``make ui``
            recorded, else ``http://127.0.0.1:3000``.
        database_url: the deployment's checkpoint database (``resume`` reads the checkpoints).
            Default: ``$SPINE_DAGSTER_DATABASE_URL``, else the local SQLite default.
        headers: extra HTTP headers (e.g. for an authenticating proxy).
        api_token: a deployment API token, sent as ``Dagster-Cloud-Api-Token``.
        timeout: seconds to wait for each HTTP answer.
    """

    def __init__(self, url: str | None = None, *, database_url: str | None = None,
                 headers: Mapping[str, str] | None = None, api_token: str | None = None,
                 timeout: float = 60.0) -> None:
        super().__init__(url, headers=headers, api_token=api_token, timeout=timeout)
        self.database_url = database_url

    @property
    def store(self) -> CheckpointStore:
        return CheckpointStore.for_url(self.database_url)

    # -- reading ----------------------------------------------------------------------------------
    def get_run(self, run_id: str) -> RemoteRun:
        """The Dagster run ``run_id`` in the deployment."""
        result = self.graphql(RUN_QUERY, {"runId": run_id})["runOrError"]
        if result["__typename"] == "RunNotFoundError":
            raise UnknownRunError(
                f"the deployment at {self.base_url} has no Dagster run {run_id!r}; copy the run "
                f"id from the UI's Runs page (or pass a spine run id to resume()).")
        raise_for(result, f"reading Dagster run {run_id!r}")
        return RemoteRun.from_graphql(result)

    def run_group(self, run_id: str) -> list[RemoteRun]:
        """Every run in ``run_id``'s run group (its root run and all re-executions of it)."""
        result = self.graphql(RUN_GROUP_QUERY, {"runId": run_id})["runGroupOrError"]
        if result["__typename"] == "RunGroupNotFoundError":
            raise UnknownRunError(f"the deployment at {self.base_url} has no run {run_id!r}")
        raise_for(result, f"reading the run group of {run_id!r}")
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
        raise_for(data, "reading the workspace")
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

    def job_metadata(self, location_name: str, repository_name: str,
                     job_name: str) -> dict[str, Any]:
        """The spine metadata of a job: ``workflow``, ``steps``, ``signature`` and ``ops``."""
        params = {"repositoryLocationName": location_name, "repositoryName": repository_name,
                  "pipelineName": job_name}
        result = self.graphql(JOB_QUERY, {"selector": params})["pipelineOrError"]
        raise_for(result, f"reading job {job_name!r}")
        entries = {e["label"]: e for e in result.get("metadataEntries") or []}
        steps, workflow = entries.get("spine/steps"), entries.get("spine/workflow")
        if not steps or "jsonString" not in steps or not workflow:
            raise WorkflowMismatchError(
                f"job {job_name!r} in {location_name} is not a spine job (no spine/steps "
                f"metadata); build it with spine_dagster.build_job or build_definitions.")
        names = list(json.loads(steps["jsonString"]))

        def entry(label: str, default: Any) -> Any:
            found = entries.get(label)
            return json.loads(found["jsonString"]) if found and "jsonString" in found else default

        # JSON metadata comes back with its keys sorted: put the ops back in step order
        ops = entry("spine/ops", {n: [n] for n in names})
        position = {name: index for index, name in enumerate(names)}
        ops = dict(sorted(ops.items(), key=lambda item: position.get(item[1][0], len(names))))
        return {"workflow": workflow.get("text", ""), "steps": names,
                "signature": entry("spine/signature", [[n, None, None] for n in names]),
                "ops": ops}

    def job_steps(self, location_name: str, repository_name: str,
                  job_name: str) -> tuple[str, list[str]]:
        """(workflow name, step names in order) of a spine job, from the job's metadata."""
        meta = self.job_metadata(location_name, repository_name, job_name)
        return meta["workflow"], meta["steps"]

    # -- launching --------------------------------------------------------------------------------
    def launch_run(self, job_name: str, *, run_config: Mapping[str, Any] | None = None,
                   tags: Mapping[str, str] | None = None, location_name: str | None = None,
                   repository_name: str | None = None) -> str:
        """Launch a new run of ``job_name`` (like the Launchpad); returns its Dagster run id."""
        if location_name is None or repository_name is None:
            location_name, repository_name = self.find_job(job_name)
        params = {
            "selector": selector(location_name, repository_name, job_name),
            "runConfigData": dict(run_config or {}),
            "executionMetadata": {"tags": tag_list(tags or {})},
        }
        data = self.graphql(LAUNCH_RUN, {"executionParams": params})["launchRun"]
        return launched(data, f"launching job {job_name!r}")

    def reexecute(self, parent_run_id: str, strategy: str = "FROM_FAILURE", *,
                  extra_tags: Mapping[str, str] | None = None) -> str:
        """What the UI's "Re-execute from failure" / "Re-execute all" buttons send.

        The parent's config and tags are reused (the UI cannot change them). ``strategy`` is
        ``FROM_FAILURE``, ``ALL_STEPS`` or ``FROM_ASSET_FAILURE``. Returns the new run id.
        """
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
        self.get_run(parent_run_id)  # a clear UnknownRunError instead of a PythonError
        params: dict[str, Any] = {"parentRunId": parent_run_id, "strategy": strategy}
        if extra_tags:
            params["extraTags"] = tag_list(extra_tags)
        data = self.graphql(LAUNCH_RUN_REEXECUTION, {"reexecutionParams": params})
        return launched(data["launchRunReexecution"],
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
            tags = resume_tags(parent.tags, parent_run_id=parent.run_id, root_run_id=root,
                               spine_run_id=parent.tags.get(RUN_ID_TAG, root),
                               workflow_name=parent.tags.get(WORKFLOW_TAG, ""),
                               resume_retry=False)
            if not parent.tags.get(WORKFLOW_TAG):  # not a spine job: add no spine tags
                tags = {k: v for k, v in tags.items() if k not in (RUN_ID_TAG, WORKFLOW_TAG)}
        return self._launch_reexecution(parent, location, repository,
                                        run_config if run_config is not None else parent.run_config,
                                        tags, list(step_keys))

    # -- resuming ---------------------------------------------------------------------------------
    def _record(self, run_id: str) -> RunRecord:
        record = self.store.get_run(run_id)
        if record is None:
            raise UnknownRunError(
                f"no spine run or Dagster run with id {run_id!r} in the checkpoint database at "
                f"{self.store.display_url}. Point the client at the deployment's checkpoint "
                f"database (database_url=, --database-url or $SPINE_DAGSTER_DATABASE_URL).")
        return record

    def _planned(self, run_id: str, *, params_override: Mapping[str, Any] | None,
                 start_from: str | None, on_stale: str
                 ) -> tuple[RunRecord, ResumePlan, RemoteRun, str, str, dict[str, Any]]:
        record = self._record(run_id)
        refuse_completed(record, start_from)  # before asking the webserver anything
        parent_id = record.last_dagster_run_id
        if parent_id is None:
            raise UnknownRunError(f"spine run {record.run_id!r} has no Dagster run to resume")
        parent = self.get_run(parent_id)
        location, repository = self._location_of(parent)
        meta = self.job_metadata(location, repository, parent.job_name)
        if meta["workflow"] != record.workflow_name:
            raise WorkflowMismatchError(
                f"run {record.run_id!r} is a run of workflow {record.workflow_name!r}, but job "
                f"{parent.job_name!r} in {location} now serves {meta['workflow']!r}.")
        plan = plan_resume(self.store, record, meta["signature"], params_override=params_override,
                           start_from=start_from, on_stale=on_stale)
        return record, plan, parent, location, repository, meta

    def plan_resume(self, run_id: str, *, params_override: Mapping[str, Any] | None = None,
                    start_from: str | None = None, on_stale: str = "warn") -> ResumePlan:
        """What ``resume`` would do, computed with the rules of :mod:`spine_dagster.resume`."""
        return self._planned(run_id, params_override=params_override, start_from=start_from,
                             on_stale=on_stale)[1]

    def resume(self, run_id: str, *, params_override: Mapping[str, Any] | None = None,
               on_stale: str = "warn", start_from: str | None = None,
               run_config_override: Mapping[str, Any] | None = None) -> str:
        """Resume a failed spine run through the deployment; returns the new Dagster run id.

        ``run_id`` is a spine run id or the id of any Dagster run of it. The plan is
        :meth:`plan_resume`'s; the new run re-executes the run's last Dagster run from the plan's
        start step, with the parent's config, ``params_override`` merged into its params, and
        ``run_config_override`` deep-merged over it. It does not wait; see ``wait_for_run``.
        """
        record, plan, parent, location, repository, meta = self._planned(
            run_id, params_override=params_override, start_from=start_from, on_stale=on_stale)
        run_config = resume_run_config(parent.run_config, plan,
                                       run_config_override=run_config_override)
        tags = resume_tags(parent.tags, parent_run_id=parent.run_id,
                           root_run_id=parent.root_run_id or parent.run_id,
                           spine_run_id=record.run_id, workflow_name=record.workflow_name,
                           # not dagster/is_resume_retry: with it, the webserver would replace
                           # the plan's steps by its own from-failure selection
                           resume_retry=False)

        def busy() -> str | None:
            running = [r for r in self.run_group(parent.run_id) if not r.finished]
            return f"Dagster run {running[0].run_id} is {running[0].status}" if running else None

        guard_not_running(record, busy)
        statuses = (("failed", "partial", "running") if start_from is None
                    else ("completed", "failed", "partial", "running"))
        with ResumeLease(self.store, record.run_id, statuses,
                         planned_from=record.last_dagster_run_id):
            return self._launch_reexecution(parent, location, repository, run_config, tags,
                                            nodes_from(plan, meta["ops"]))

    def resume_and_wait(self, run_id: str, *, params_override: Mapping[str, Any] | None = None,
                        timeout: float | None = None, **options: Any) -> WorkflowResult:
        """``resume``, then wait for the new run and return the spine run's result."""
        started = utcnow()
        plan = self.plan_resume(run_id, params_override=params_override,
                                start_from=options.get("start_from"),
                                on_stale=options.get("on_stale", "warn"))
        new_run = self.resume(run_id, params_override=params_override, **options)
        remote = self.wait_for_run(new_run, timeout=timeout)
        record = self.store.get_run(new_run) or self._record(run_id)
        names = self.job_metadata(*self._location_of(remote), remote.job_name)["steps"]
        result = result_from_store(
            self.store, workflow_name=record.workflow_name, step_names=names,
            spine_id=record.run_id, dagster_run_id=new_run, success=remote.success,
            failure=None if remote.success else (
                f"Dagster run {new_run} ended {remote.status}; see {self.base_url}/runs/{new_run}"),
            started=started)
        result.warnings, result.plan = list(plan.warnings), plan
        return result

    # -- internals --------------------------------------------------------------------------------
    def _location_of(self, run: RemoteRun) -> tuple[str, str]:
        if run.location_name and run.repository_name:
            return run.location_name, run.repository_name
        # Launched outside a code location (an older WorkflowRunner run): find its job by name.
        return self.find_job(run.job_name)

    def _launch_reexecution(self, parent: RemoteRun, location: str, repository: str,
                            run_config: Mapping[str, Any], tags: Mapping[str, str],
                            step_keys: list[str]) -> str:
        params = {
            "selector": selector(location, repository, parent.job_name),
            "runConfigData": dict(run_config),
            "stepKeys": step_keys,
            "executionMetadata": {"parentRunId": parent.run_id,
                                  "rootRunId": parent.root_run_id or parent.run_id,
                                  "tags": tag_list(tags)},
        }
        data = self.graphql(LAUNCH_RUN_REEXECUTION, {"executionParams": params})
        return launched(data["launchRunReexecution"],
                        f"re-executing Dagster run {parent.run_id} (steps {step_keys})")
