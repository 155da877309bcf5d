"""The ``spine_resume`` job: resume a failed spine run with changed params from the Dagster UI.

The Dagster UI cannot change the config of a re-execution (dagster-io/dagster#7474). With
``build_definitions(..., resume_job=True)`` the code location also serves a job named
``spine_resume``. Launch it from its Launchpad with::

    ops:
      spine_resume:
        config:
          run_id: "<the failed run's spine run id, or its Dagster run id>"
          params_override: {timeout: 120}
          wait: false            # true: this run waits for the resumed run and fails if it fails

It launches a true re-execution of the failed run (``SpineDagsterClient.resume``): only the steps
after the newest checkpoint run, with the merged params; the new run appears in the failed run's
run group, and this run's tags link to it (``spine/resumed_dagster_run``).

Why through the webserver: a run worker cannot launch a re-execution through public instance APIs
(``create_reexecuted_run``/``submit_run`` need the workspace's code location objects), and
``execute_job`` would run it inside this worker, bypassing the run launcher and coordinator and
leaving it ineligible for run retries. So the op sends the UI's own GraphQL mutation to the
webserver: set ``resources.spine_webserver.config.url`` (or ``$SPINE_DAGSTER_WEBSERVER_URL`` in
the run workers' environment) to the URL at which run workers reach the webserver.

Example:
    >>> from spine_dagster import Step, StepResult, Workflow, build_definitions
    >>> wf = Workflow("docs.resume_job", [Step.lambda_("a", lambda ctx, cfg: StepResult.ok())])
    >>> defs = build_definitions([wf], database_url="sqlite:///c.db", resume_job=True)
    >>> defs.get_job_def("spine_resume").name
    'spine_resume'
"""

# No `from __future__ import annotations`: Dagster reads the op's config annotation at runtime.

from typing import Any, Optional

from dagster import (
    Config,
    ConfigurableResource,
    Failure,
    JobDefinition,
    MetadataValue,
    Nothing,
    OpExecutionContext,
    Out,
    in_process_executor,
    job,
    op,
)
from pydantic import Field

from .client import SpineDagsterClient
from .graphql import default_webserver_url
from .io_manager import SpineCheckpointIOManager
from .resources import IO_MANAGER_KEY

RESUME_JOB_NAME = "spine_resume"
WEBSERVER_RESOURCE_KEY = "spine_webserver"
RESUMED_RUN_TAG = "spine/resumed_dagster_run"


class SpineWebserver(ConfigurableResource):
    """Where the run workers reach the Dagster webserver (resource key ``spine_webserver``)."""

    url: Optional[str] = Field(
        default=None, description="The webserver URL as seen from a run worker, e.g. "
        "http://dagster-webserver:3000. Default: $SPINE_DAGSTER_WEBSERVER_URL, else "
        "http://127.0.0.1:3000 (dagster dev).")

    api_token: Optional[str] = Field(
        default=None, description="An API token for a deployment that requires one (sent as "
        "Dagster-Cloud-Api-Token). Use an EnvVar; default: $SPINE_DAGSTER_API_TOKEN.")

    def get_url(self) -> str:
        return self.url or default_webserver_url()


class SpineResumeConfig(Config):
    """Launchpad config of ``spine_resume``."""

    run_id: str = Field(description="The failed run: its spine run id, or the id of any Dagster "
                        "run of it (copy it from the run's page).")
    params_override: dict[str, Any] = Field(
        default={}, description="Params to change, merged over the run's params, e.g. "
        "{timeout: 120}. The resumed steps also see __resumed__ = true.")
    wait: bool = Field(default=False, description="Wait for the resumed run, and fail if it "
                       "fails. Default: launch it and finish.")
    on_stale: str = Field(default="warn", description="When the override changes a param that a "
                          "reused step read: warn (reuse it anyway), rerun (start at the first "
                          "such step) or error (refuse).")
    start_from: Optional[str] = Field(default=None, description="Run again from this step "
                                      "instead (its checkpoint and the later ones are superseded).")
    run_config_override: dict[str, Any] = Field(
        default={}, description="Run config deep-merged over the failed run's: op config, "
        "resource config, executor config (e.g. a lower max_concurrent).")


@op(name=f"{RESUME_JOB_NAME}_launch", out=Out(Nothing),
    required_resource_keys={IO_MANAGER_KEY, WEBSERVER_RESOURCE_KEY},
    description="Resume a failed spine run from its newest checkpoint, with changed params.",
    tags={"kind": "spine"})
def spine_resume_op(context: OpExecutionContext, config: SpineResumeConfig) -> None:
    database_url = getattr(context.resources, IO_MANAGER_KEY).database_url
    url = getattr(context.resources, WEBSERVER_RESOURCE_KEY).get_url()
    webserver = getattr(context.resources, WEBSERVER_RESOURCE_KEY)
    client = SpineDagsterClient(url, database_url=database_url, api_token=webserver.api_token)
    plan = client.plan_resume(config.run_id, params_override=config.params_override,
                              start_from=config.start_from, on_stale=config.on_stale)
    context.log.info(f"resume plan:\n{plan}")
    for warning in plan.warnings:
        context.log.warning(warning)
    new_run = client.resume(config.run_id, params_override=config.params_override,
                            start_from=config.start_from, on_stale=config.on_stale,
                            run_config_override=config.run_config_override or None)
    context.instance.add_run_tags(context.run_id, {RESUMED_RUN_TAG: new_run})
    context.log.info(f"resumed spine run {config.run_id!r} as Dagster run {new_run} "
                     f"({client.base_url}/runs/{new_run})")
    context.add_output_metadata({"resumed run": MetadataValue.dagster_run(new_run),
                                 "spine run": config.run_id})
    if config.wait:
        remote = client.wait_for_run(new_run)
        if not remote.success:
            raise Failure(description=f"the resumed run {new_run} ended {remote.status}",
                          metadata={"resumed run": MetadataValue.dagster_run(new_run)})


def build_resume_job(*, io_manager: SpineCheckpointIOManager | None = None,
                     webserver_url: str | None = None) -> JobDefinition:
    """The ``spine_resume`` job (``build_definitions(..., resume_job=True)`` adds it).

    Args:
        io_manager: the code location's checkpoint IO manager: its database is where the
            checkpoints of the runs to resume are (default: ``SpineCheckpointIOManager()``).
        webserver_url: where run workers reach the webserver (default: see ``SpineWebserver``).
    """

    @job(name=RESUME_JOB_NAME, executor_def=in_process_executor,
         resource_defs={IO_MANAGER_KEY: io_manager or SpineCheckpointIOManager(),
                        WEBSERVER_RESOURCE_KEY: SpineWebserver(url=webserver_url)},
         description="Resume a failed spine run with changed params: set ops.spine_resume.config"
                     ".run_id and .params_override in the Launchpad. The resumed run joins the "
                     "failed run's run group.",
         tags={"spine/tool": "resume"})
    def spine_resume():
        # The node is named like the job so that the Launchpad path is ops.spine_resume.config.
        spine_resume_op.alias(RESUME_JOB_NAME)()

    return spine_resume
