"""build_definitions and the example code location (definitions/, workspace.yaml), on real Dagster.

* Dagster loads the code location (``dagster definitions validate -w workspace.yaml``).
* The Launchpad's run config (params, partition, per-step config) is typed, documented, and
  enough on its own to launch a run.
* The output metadata of each op (checkpoint, size, quality, error category) is in the event log
  of a real instance ([sqlite-instance] / [postgres-instance]).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest
import sqlalchemy as sa
import yaml
from dagster import (
    DagsterInstance,
    DagsterEventType,
    DagsterInvalidConfigError,
    DagsterRunStatus,
    DefaultScheduleStatus,
    Definitions,
    StaticPartitionsDefinition,
    validate_run_config,
)

import definitions as example_location
from conftest import write_dagster_home
from deployment_support import STARTUP_SECONDS, ProcessSession, body_timeout, free_port, wait_until
from examples.demo import ExternalAPI
from examples.workflows import MY_WORKFLOW
from spine_dagster import (
    ErrorCategory,
    InvalidAutomationError,
    InvalidRetentionError,
    QualityMetrics,
    SpineJob,
    Step,
    StepResult,
    Workflow,
    WorkflowRunner,
    build_definitions,
    spine_schedule,
    spine_sensor,
)

ROOT = Path(__file__).resolve().parent.parent


def ok(ctx, config):
    return StepResult.ok(output={"seen": dict(config)})


def fields_of(config_type):
    return getattr(config_type, "fields", None) or {}


def field_at(job, *path):
    """The config field at ``path`` in the job's run config schema (what the Launchpad shows)."""
    config_field = None
    config_type = job.run_config_schema.config_type
    for key in path:
        config_field = fields_of(config_type)[key]
        config_type = config_field.config_type
    return config_field


def events(instance, run_id, event_type):
    records = instance.get_records_for_run(run_id, of_type=event_type).records
    return [r.event_log_entry.dagster_event for r in records]


def metadata_values(metadata):
    return {key: getattr(value, "value", value) for key, value in metadata.items()}


# -- the code location, as Dagster loads it -----------------------------------------------------
def test_dagster_validates_the_workspace(tmp_path):
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path),
           "SPINE_DAGSTER_HOME": str(tmp_path / "spine")}
    (tmp_path / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    done = subprocess.run(
        [str(Path(sys.executable).parent / "dagster"), "definitions", "validate",
         "-w", "workspace.yaml"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "Validation successful for code location definitions" in output


def test_code_location_serves_the_examples_with_their_schedules_and_sensor():
    Definitions.validate_loadable(example_location.defs)
    repo = example_location.defs.get_repository_def()

    assert {job.name for job in repo.get_all_jobs()} == {
        "my__workflow", "examples__daily_report", "examples__nightly_digest",
        "examples__file_ingest", "spine_checkpoint_cleanup", "spine_resume"}
    assert {s.name: s.job_name for s in repo.schedule_defs} == {
        "examples__daily_report_schedule": "examples__daily_report",
        "examples__nightly_digest_schedule": "examples__nightly_digest",
        "spine_checkpoint_cleanup_schedule": "spine_checkpoint_cleanup"}
    assert {s.name: s.job_name for s in repo.sensor_defs} == {
        "examples__file_ingest_sensor": "examples__file_ingest"}
    daily = repo.get_job("examples__daily_report")
    assert daily.partitions_def is not None
    assert daily.partitions_def.get_first_partition_key() == "2026-01-01"
    for job in repo.get_all_jobs():
        if job.name.startswith(("my__", "examples__")):
            assert set(job.resource_defs) >= {"spine", "spine_io"}
            assert job.tags["spine/workflow_ref"].startswith("examples.workflows:")


# -- build_definitions -----------------------------------------------------------------------------
def test_per_workflow_options_and_extra_definitions(tmp_path):
    plain = Workflow("defs.plain", [Step.lambda_("a", ok)])
    regions = Workflow("defs.regions", [Step.lambda_("a", ok), Step.lambda_("b", ok)])
    spec = SpineJob(regions, partitions_def=StaticPartitionsDefinition(["eu", "us"]),
                    executor="multiprocess", name="regional", tags={"team": "data"})
    extra = build_definitions([Workflow("defs.extra", [Step.lambda_("x", ok)])]).get_job_def(
        "defs__extra")

    defs = build_definitions(
        [plain, spec], database_url=f"sqlite:///{tmp_path}/c.db", checkpoint_strategy="key_steps",
        jobs=[extra], schedules=[spine_schedule(plain, "0 2 * * *")],
        sensors=[spine_sensor("regional", lambda context: None)])
    repo = defs.get_repository_def()

    assert sorted(j.name for j in repo.get_all_jobs()) == [
        "defs__extra", "defs__plain", "regional", "spine_checkpoint_cleanup"]
    regional = repo.get_job("regional")
    assert regional.partitions_def.get_partition_keys() == ["eu", "us"]
    assert regional.executor_def.name == "multiprocess"
    assert regional.tags["team"] == "data"
    assert regional.tags["spine/workflow"] == "defs.regions"
    assert repo.get_job("defs__plain").executor_def.name == "in_process"
    io = repo.get_job("defs__plain").resource_defs["spine_io"]
    assert io.config_schema.default_value["checkpoint_strategy"] == "key_steps"
    assert io.config_schema.default_value["database_url"] == f"sqlite:///{tmp_path}/c.db"


def test_retention_schedule_is_daily_by_default_configurable_and_optional(tmp_path):
    wf = Workflow("defs.kept", [Step.lambda_("a", ok)])
    url = f"sqlite:///{tmp_path}/c.db"

    default = build_definitions([wf], database_url=url).get_repository_def()
    cleanup = default.get_schedule_def("spine_checkpoint_cleanup_schedule")
    assert (cleanup.cron_schedule, cleanup.default_status) == ("0 3 * * *",
                                                               DefaultScheduleStatus.RUNNING)
    resource = default.get_job("spine_checkpoint_cleanup").resource_defs["spine_retention"]
    assert resource.config_schema.default_value["database_url"] == url
    assert resource.config_schema.default_value["retention_days"] == 7

    custom = build_definitions([wf], database_url=url, checkpoint_retention_days=30,
                               retention_cron_schedule="0 4 * * 0").get_repository_def()
    cleanup = custom.get_schedule_def("spine_checkpoint_cleanup_schedule")
    assert cleanup.cron_schedule == "0 4 * * 0"
    assert custom.get_job("spine_checkpoint_cleanup").resource_defs["spine_retention"] \
        .config_schema.default_value["retention_days"] == 30

    off = build_definitions([wf], database_url=url, checkpoint_retention_days=None)
    assert [s.name for s in off.get_repository_def().schedule_defs] == []
    assert not off.get_repository_def().has_job("spine_checkpoint_cleanup")
    with pytest.raises(InvalidRetentionError, match="positive number of days"):
        build_definitions([wf], checkpoint_retention_days=0)


def test_bad_items_and_colliding_job_names_are_refused():
    a = Workflow("defs.same", [Step.lambda_("a", ok)])
    b = Workflow("defs__same", [Step.lambda_("a", ok)])
    with pytest.raises(InvalidAutomationError, match="'defs.same' and 'defs__same'.*name="):
        build_definitions([a, b])
    build_definitions([a, SpineJob(b, name="defs_same_too")])  # the fix the message names
    with pytest.raises(InvalidAutomationError, match="Workflow or SpineJob.*jobs="):
        build_definitions([a, "defs.same"])
    with pytest.raises(Exception, match="unknown executor"):
        build_definitions([SpineJob(a, executor="threads")])


def test_run_config_schema_documents_params_partition_and_step_config():
    job = example_location.defs.get_repository_def().get_job("my__workflow")

    params = field_at(job, "resources", "spine", "config", "params")
    partition = field_at(job, "resources", "spine", "config", "partition")
    step3 = field_at(job, "ops", "step3", "config")
    assert "Workflow params" in params.description and not params.is_required
    # the Launchpad shows the params the workflow knows, with their defaults
    assert field_at(job, "resources", "spine", "config").default_value["params"] == \
        MY_WORKFLOW.defaults
    assert "ctx.partition" in partition.description and not partition.is_required
    assert "Per-step config of step 'step3'" in step3.description and not step3.is_required
    assert field_at(job, "resources", "spine_io", "config", "database_url").description
    assert set(fields_of(field_at(job, "ops").config_type)) == {"step1", "step2", "step3",
                                                                  "step4"}
    # typed: a value of the wrong type is refused before any run starts
    with pytest.raises(DagsterInvalidConfigError, match="params"):
        validate_run_config(job, {"resources": {"spine": {"config": {"params": "timeout=5"}}}})


LAUNCHPAD_YAML = """
resources:
  spine:
    config:
      params:
        api_url: {api_url}
        key: value
ops:
  step3:
    config:
      timeout: 7
"""


def test_launching_with_only_the_launchpad_config(database_url, dagster_instance, monkeypatch):
    monkeypatch.setenv("SPINE_DAGSTER_DATABASE_URL", database_url)
    job = example_location.defs.get_repository_def().get_job("my__workflow")
    api = ExternalAPI()
    api.start()
    try:
        run_config = yaml.safe_load(LAUNCHPAD_YAML.format(api_url=api.url))
        validate_run_config(job, run_config)
        result = job.execute_in_process(run_config=run_config, instance=dagster_instance)
    finally:
        api.stop()

    assert result.success
    record = WorkflowRunner(database_url=database_url, instance=dagster_instance).get_run(
        result.run_id)
    assert record.status == "completed"
    assert record.run_id == result.run_id  # launched without a spine run id: it is the Dagster id
    final = record.context
    assert final.params["key"] == "value"
    assert final.params["api_url"] == api.url
    assert final.params["timeout"] == 30  # the workflow default: the step config is per step
    assert final.get_output("step3", "timeout_used") == 7
    assert final.get_output("step3", "api_status") == "ok"
    assert final.get_output("step4", "message") == "Workflow completed successfully"


# -- output metadata in the event log -----------------------------------------------------------
def measured(ctx, config):
    return StepResult.ok(output={"rows": 10},
                         quality=QualityMetrics(record_count=10, valid_count=9, null_count=1))


def bad_rows(ctx, config):
    return StepResult.fail("3 rows have no id", ErrorCategory.DATA_QUALITY)


METADATA_WF = Workflow("defs.metadata", [Step.lambda_("measure", measured),
                                        Step.lambda_("check", bad_rows)])


def test_ops_show_checkpoint_quality_and_error_category(database_url, dagster_instance):
    defs = build_definitions([METADATA_WF], database_url=database_url)
    job = defs.get_repository_def().get_job("defs__metadata")
    result = job.execute_in_process(instance=dagster_instance, raise_on_error=False)
    assert not result.success
    run_id = result.run_id

    handled = {e.step_key: metadata_values(e.event_specific_data.metadata)
               for e in events(dagster_instance, run_id, DagsterEventType.HANDLED_OUTPUT)}
    checkpoint = WorkflowRunner(database_url=database_url, instance=dagster_instance) \
        .get_checkpoint(run_id, "measure")
    assert handled == {"measure": {"spine/checkpoint": "measure",
                                   "spine/checkpoint_bytes": checkpoint.size_bytes}}
    assert checkpoint.size_bytes > 0

    outputs = {e.step_key: metadata_values(e.step_output_data.metadata)
               for e in events(dagster_instance, run_id, DagsterEventType.STEP_OUTPUT)}
    quality = outputs["measure"]["spine/quality"]
    assert quality["record_count"] == 10 and quality["valid_count"] == 9
    assert quality["null_count"] == 1 and quality["passed"] is True

    [failure] = events(dagster_instance, run_id, DagsterEventType.STEP_FAILURE)
    assert failure.step_key == "check"
    failed = metadata_values(failure.step_failure_data.user_failure_data.metadata)
    assert failed["spine/error_category"] == "DATA_QUALITY"
    assert failed["spine/error"] == "3 rows have no id"
    assert failed["spine/step"] == "check" and failed["spine/attempt"] == 1


# -- the README's deployment examples ------------------------------------------------------------
def readme_block(first_line: str) -> str:
    """The fenced block of README.md whose first line is ``first_line``."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    for block in text.split("```")[1::2]:
        body = block.split("\n", 1)[1] if "\n" in block else ""
        if body.startswith(first_line):
            return body
    raise AssertionError(f"README.md has no code block starting with {first_line!r}")


def test_readme_production_dagster_yaml_loads_on_postgres(tmp_path, pg_dagster_url, monkeypatch):
    url = sa.make_url(pg_dagster_url)
    for key, value in {"HOST": url.host, "PORT": str(url.port or 5432), "USER": url.username,
                       "PASSWORD": url.password or "", "DB": url.database}.items():
        monkeypatch.setenv(f"DAGSTER_PG_{key}", value)
    (tmp_path / "dagster.yaml").write_text(readme_block("# $DAGSTER_HOME/dagster.yaml"))

    instance = DagsterInstance.from_config(str(tmp_path))
    try:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        assert instance.run_retries_enabled and instance.run_monitoring_enabled
        assert instance.get_runs(limit=1) is not None  # the storage answers
    finally:
        instance.dispose()


def test_readme_launchpad_config_is_valid_for_the_example_job():
    job = example_location.defs.get_repository_def().get_job("my__workflow")
    config = yaml.safe_load(readme_block("resources:\n  spine:"))
    validate_run_config(job, config)
    assert config["ops"]["step3"]["config"] == {"timeout": 120}


# -- `dagster dev -w workspace.yaml`: the UI serves the examples and launches from the Launchpad --
def _graphql(url: str, query: str, variables: dict | None = None) -> dict:
    request = urllib.request.Request(
        f"{url}/graphql", data=json.dumps({"query": query, "variables": variables or {}}).encode(),
        headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            body = json.loads(response.read())
    except urllib.error.HTTPError as exc:  # GraphQL errors can come with HTTP 500
        body = json.loads(exc.read())
    assert "errors" not in body, body
    return body["data"]


REPOSITORIES = """{ repositoriesOrError { ... on RepositoryConnection { nodes {
    name location { name } jobs { name } schedules { name } sensors { name } } } } }"""
LAUNCH = """mutation($p: ExecutionParams!) { launchRun(executionParams: $p) {
    __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message }
    ... on RunConfigValidationInvalid { errors { message } } } }"""


LOCATIONS = """{ workspaceOrError { ... on Workspace { locationEntries { name
    locationOrLoadError { __typename ... on PythonError { message } } } } } }"""


def _repositories(url: str) -> list | None:
    """The repositories served, or None while the webserver is not serving; a code location that
    failed to load fails the caller at once, with Dagster's error, rather than at the deadline."""
    try:
        entries = _graphql(url, LOCATIONS)["workspaceOrError"].get("locationEntries") or []
        for entry in entries:
            error = entry.get("locationOrLoadError") or {}
            assert error.get("__typename") != "PythonError", (
                f"code location {entry['name']} failed to load: {error.get('message')}")
        return _graphql(url, REPOSITORIES)["repositoriesOrError"].get("nodes")
    except (urllib.error.URLError, ConnectionError, json.JSONDecodeError):
        return None  # not serving yet


@pytest.fixture
def dagster_dev(tmp_path) -> Iterator[tuple[str, str, DagsterInstance, list]]:
    """``dagster dev -w workspace.yaml`` from the repository root, on an all-SQLite home, serving
    its code location (a start-up deadline of its own); yields (URL, checkpoint URL, instance,
    the repositories it serves). Teardown stops its whole session and checks nothing survived."""
    home = write_dagster_home(tmp_path / "dagster_home", "sqlite")
    database_url = f"sqlite:///{tmp_path}/checkpoints.db"
    url = f"http://127.0.0.1:{free_port()}"
    env = {**os.environ, "DAGSTER_HOME": home, "SPINE_DAGSTER_DATABASE_URL": database_url,
           "SPINE_DAGSTER_HOME": str(tmp_path / "spine")}
    # The instance first: it creates and stamps the SQLite storage. `dagster dev` starts a
    # webserver, a daemon and a code server that would otherwise all create it at once, and
    # Dagster's SQLite migrations race ("alembic_version has more than one head", seen in CI).
    instance = DagsterInstance.from_config(home)
    proc = ProcessSession(
        "dagster dev", [str(Path(sys.executable).parent / "dagster"), "dev", "-w",
                        "workspace.yaml", "-h", "127.0.0.1", "-p", url.rsplit(":", 1)[1]],
        env, tmp_path / "dagster_dev.log", cwd=ROOT)
    try:
        nodes = wait_until("dagster dev to serve the code location", lambda: _repositories(url),
                           STARTUP_SECONDS, [proc])
        yield url, database_url, instance, nodes
    finally:
        try:
            proc.stop()  # SIGTERM the session, SIGKILL what is left, assert nothing survived
        finally:
            instance.dispose()


@pytest.mark.slow
@body_timeout(300)
def test_dagster_dev_serves_the_examples_and_launches_from_the_launchpad(dagster_dev):
    url, database_url, instance, nodes = dagster_dev
    [repo] = nodes
    assert repo["location"]["name"] == "definitions"
    assert {j["name"] for j in repo["jobs"]} >= {
        "my__workflow", "examples__daily_report", "examples__nightly_digest",
        "examples__file_ingest", "spine_checkpoint_cleanup", "spine_resume"}
    assert {s["name"] for s in repo["schedules"]} >= {
        "examples__daily_report_schedule", "examples__nightly_digest_schedule"}
    assert {s["name"] for s in repo["sensors"]} >= {"examples__file_ingest_sensor"}

    launchpad = yaml.safe_load("""
        resources: {spine: {config: {params: {tier: gold, recipients: [ops@example.com]}}}}
        ops: {collect: {config: {note: from the launchpad}}}
    """)
    launched = _graphql(url, LAUNCH, {"p": {
        "selector": {"repositoryLocationName": "definitions",
                     "repositoryName": repo["name"], "jobName": "examples__nightly_digest"},
        "runConfigData": launchpad}})["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    run_id = launched["run"]["runId"]
    finished = (DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE)
    wait_until("the launched run to finish",
               lambda: instance.get_run_by_id(run_id).status in finished, 180)
    assert instance.get_run_by_id(run_id).status == DagsterRunStatus.SUCCESS
    record = WorkflowRunner(database_url=database_url, instance=instance).get_run(run_id)
    assert (record.run_id, record.status, record.dagster_run_ids) == (run_id, "completed",
                                                                      [run_id])
    assert record.context.params["tier"] == "gold"
    assert record.context.get_output("send") == {"sent_to": ["ops@example.com"], "items": 3}
