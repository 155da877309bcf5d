"""Schedules and sensors for spine jobs: evaluated by Dagster, then their run requests are run.

Each test evaluates a schedule or sensor the way Dagster does (``build_schedule_context`` /
``build_sensor_context``), validates the run request's config against the job, runs it on a real
instance, and checks what the steps saw (``ctx.params``, ``ctx.partition``) in the checkpoints.
"""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from dagster import (
    DailyPartitionsDefinition,
    RunRequest,
    SkipReason,
    StaticPartitionsDefinition,
    build_schedule_context,
    build_sensor_context,
    validate_run_config,
)

import definitions as example_location
from spine_dagster import (
    InvalidAutomationError,
    SpineJob,
    Step,
    StepResult,
    Workflow,
    WorkflowRunner,
    build_definitions,
    build_job,
    spine_partitioned_schedule,
    spine_run_config,
    spine_schedule,
    spine_sensor,
)

SEEN: list[dict] = []


def look(ctx, config):
    """Records what the step saw, in the side-effect list and in its output."""
    seen = {"params": dict(ctx.params), "partition": ctx.partition, "config": dict(config)}
    SEEN.append(seen)
    return StepResult.ok(output=seen)


def then(ctx, config):
    return StepResult.ok(output={"after": ctx.get_output("look", "partition")})


LOOK = Workflow("auto.look", [Step.lambda_("look", look), Step.lambda_("then", then)],
                defaults={"tier": "standard"})


@pytest.fixture(autouse=True)
def _clear_seen():
    SEEN.clear()


def run_request(job, request: RunRequest, instance):
    """Launch a run request the way the daemon does: its config, tags and partition."""
    validate_run_config(job, request.run_config)
    return job.execute_in_process(run_config=request.run_config, tags=request.tags,
                                  partition_key=request.partition_key, instance=instance)


def checkpoint_output(database_url, instance, run_id, step):
    runner = WorkflowRunner(database_url=database_url, instance=instance)
    return runner.get_checkpoint(run_id, step).context.get_output(step)


def test_spine_run_config_shape():
    config = spine_run_config({"when": datetime(2026, 1, 10, tzinfo=timezone.utc)},
                              partition={"date": "2026-01-10"},
                              step_config={"ingest.fetch": {"limit": 5}})
    assert config["resources"]["spine"]["config"]["partition"] == {"date": "2026-01-10"}
    assert config["ops"] == {"ingest__fetch": {"config": {"limit": 5}}}
    assert isinstance(config["resources"]["spine"]["config"]["params"]["when"], dict)  # JSON form


# -- a cron schedule with fixed params -------------------------------------------------------------
def test_cron_schedule_with_fixed_params(database_url, instance):
    schedule = spine_schedule(LOOK, "30 2 * * *", params={"tier": "gold", "n": 3},
                              step_config={"look": {"verbose": True}}, tags={"team": "data"})
    defs = build_definitions([LOOK], database_url=database_url, schedules=[schedule])
    repo = defs.get_repository_def()
    job = repo.get_job("auto__look")
    assert repo.get_schedule_def("auto__look_schedule").cron_schedule == "30 2 * * *"

    request = schedule(build_schedule_context(
        instance=instance, scheduled_execution_time=datetime(2026, 3, 1, 2, 30, tzinfo=timezone.utc)))
    assert isinstance(request, RunRequest) and request.tags == {"team": "data"}
    result = run_request(job, request, instance)

    assert result.success
    assert [s["params"] for s in SEEN] == [{"tier": "gold", "n": 3}]
    assert SEEN[0]["config"] == {"verbose": True} and SEEN[0]["partition"] == {}
    stored = checkpoint_output(database_url, instance, result.run_id, "look")
    assert stored["params"] == {"tier": "gold", "n": 3}
    assert instance.get_run_by_id(result.run_id).tags["team"] == "data"


def test_a_plain_schedule_refuses_a_partitioned_job():
    spec = SpineJob(LOOK, partitions_def=DailyPartitionsDefinition(start_date="2026-01-01"))
    with pytest.raises(InvalidAutomationError, match="partitioned.*spine_partitioned_schedule"):
        spine_schedule(spec, "0 1 * * *")
    with pytest.raises(InvalidAutomationError, match="no partitions_def"):
        spine_partitioned_schedule(LOOK)
    with pytest.raises(InvalidAutomationError, match="pass a SpineJob, a Workflow"):
        spine_schedule(42, "0 1 * * *")


# -- partitioned schedules: daily and static -----------------------------------------------------
def test_daily_partitioned_schedule_runs_the_last_ended_day(database_url, instance):
    spec = SpineJob(LOOK, partitions_def=DailyPartitionsDefinition(start_date="2026-01-01"))
    schedule = spine_partitioned_schedule(spec, hour_of_day=1, params={"tier": "gold"})
    job = build_definitions([spec], database_url=database_url, schedules=[schedule]) \
        .get_repository_def().get_job("auto__look")
    assert schedule.cron_schedule == "0 1 * * *"

    early = schedule(build_schedule_context(
        instance=instance, scheduled_execution_time=datetime(2025, 12, 1, 1, tzinfo=timezone.utc)))
    assert isinstance(early, SkipReason)
    request = schedule(build_schedule_context(
        instance=instance, scheduled_execution_time=datetime(2026, 1, 11, 1, tzinfo=timezone.utc)))
    assert request.partition_key == "2026-01-10" and request.run_key == "2026-01-10"
    result = run_request(job, request, instance)

    assert result.success
    assert [(s["partition"], s["params"]) for s in SEEN] == [("2026-01-10", {"tier": "gold"})]
    assert instance.get_run_by_id(result.run_id).tags["dagster/partition"] == "2026-01-10"
    runner = WorkflowRunner(database_url=database_url, instance=instance)
    record = runner.get_run(result.run_id)
    assert record.status == "completed" and record.partition == "2026-01-10"
    assert checkpoint_output(database_url, instance, result.run_id, "then") == {
        "after": "2026-01-10"}


def test_static_partitioned_schedule_runs_every_key(database_url, instance):
    spec = SpineJob(LOOK, partitions_def=StaticPartitionsDefinition(["eu", "us", "apac"]))
    with pytest.raises(InvalidAutomationError, match="cron_schedule="):
        spine_partitioned_schedule(spec)
    with pytest.raises(InvalidAutomationError, match=r"\['mars'\] are not partitions"):
        spine_partitioned_schedule(spec, cron_schedule="0 6 * * *", partition_keys=["mars"])
    schedule = spine_partitioned_schedule(spec, cron_schedule="0 6 * * *",
                                          partition_keys=["eu", "us"])
    job = build_definitions([spec], database_url=database_url, schedules=[schedule]) \
        .get_repository_def().get_job("auto__look")

    requests = schedule(build_schedule_context(instance=instance))
    assert [r.partition_key for r in requests] == ["eu", "us"]
    results = [run_request(job, r, instance) for r in requests]

    assert all(r.success for r in results)
    assert [s["partition"] for s in SEEN] == ["eu", "us"]
    assert [checkpoint_output(database_url, instance, r.run_id, "look")["partition"]
            for r in results] == ["eu", "us"]


def test_partitioned_schedule_accepts_a_built_job(tmp_path):
    job = build_job(LOOK, database_url=f"sqlite:///{tmp_path}/c.db",
                    partitions_def=DailyPartitionsDefinition(start_date="2026-01-01"))
    schedule = spine_partitioned_schedule(job, minute_of_hour=15)
    assert (schedule.job_name, schedule.cron_schedule) == ("auto__look", "15 0 * * *")


# -- sensors: params computed at tick time ---------------------------------------------------------
def test_example_sensor_launches_one_run_per_new_file(database_url, instance, tmp_path,
                                                      monkeypatch):
    monkeypatch.setenv("SPINE_DAGSTER_DATABASE_URL", database_url)
    monkeypatch.setenv("SPINE_EXAMPLES_INBOX", str(tmp_path / "inbox"))
    repo = example_location.defs.get_repository_def()
    sensor = repo.get_sensor_def("examples__file_ingest_sensor")
    job = repo.get_job("examples__file_ingest")

    assert isinstance(sensor(build_sensor_context(instance=instance)), SkipReason)
    (tmp_path / "inbox").mkdir()
    (tmp_path / "inbox" / "a.csv").write_text("1\n2\n3\n")
    (tmp_path / "inbox" / "b.csv").write_text("1\n\n2\n")
    context = build_sensor_context(instance=instance)
    requests = sensor(context)
    assert [r.run_config["resources"]["spine"]["config"]["params"]["path"] for r in requests] == [
        str(tmp_path / "inbox" / "a.csv"), str(tmp_path / "inbox" / "b.csv")]
    assert context.cursor == "b.csv"
    assert requests[0].run_key and requests[0].run_key != requests[1].run_key
    assert isinstance(sensor(build_sensor_context(instance=instance, cursor="b.csv")), SkipReason)

    results = [run_request(job, r, instance) for r in requests]
    runner = WorkflowRunner(database_url=database_url, instance=instance)
    loaded = [runner.get_run(r.run_id).context.get_output("load", "loaded") for r in results]
    assert loaded == [3, 2]
    assert [runner.get_run(r.run_id).status for r in results] == ["completed", "completed"]


def test_sensor_params_are_computed_at_tick_time(database_url, instance):
    ticks = iter([None, {"batch": 1}, [{"batch": 2}, {"batch": 3}], "nonsense"])
    sensor = spine_sensor(LOOK, lambda context: next(ticks), name="look_sensor",
                          step_config={"look": {"mode": "fast"}})
    job = build_definitions([LOOK], database_url=database_url, sensors=[sensor]) \
        .get_repository_def().get_job("auto__look")
    assert sensor.job_name == "auto__look"

    assert isinstance(sensor(build_sensor_context(instance=instance)), SkipReason)
    one = sensor(build_sensor_context(instance=instance))
    two = sensor(build_sensor_context(instance=instance))
    with pytest.raises(InvalidAutomationError, match="returned str.*dict of params"):
        sensor(build_sensor_context(instance=instance))
    assert one.run_key is None  # no dedup unless asked for
    for request in [one, *two]:
        assert run_request(job, request, instance).success

    assert [s["params"] for s in SEEN] == [{"tier": "standard", "batch": n} for n in (1, 2, 3)]
    assert {s["config"]["mode"] for s in SEEN} == {"fast"}


def test_sensor_may_return_its_own_run_request(instance, tmp_path):
    spec = SpineJob(LOOK, partitions_def=StaticPartitionsDefinition(["eu", "us"]))
    sensor = spine_sensor(spec, lambda context: RunRequest(
        partition_key="us", run_config=spine_run_config({"tier": "vip"})))
    job = build_definitions([spec], database_url=f"sqlite:///{tmp_path}/c.db",
                            sensors=[sensor]).get_repository_def().get_job("auto__look")
    assert run_request(job, sensor(build_sensor_context(instance=instance)), instance).success
    assert [(s["partition"], s["params"]["tier"]) for s in SEEN] == [("us", "vip")]

    params_only = spine_sensor(spec, lambda context: {"tier": "vip"}, name="params_only")
    with pytest.raises(InvalidAutomationError, match="'params_only'.*partitioned.*partition_key"):
        params_only(build_sensor_context(instance=instance))
