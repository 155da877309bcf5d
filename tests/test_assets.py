"""The asset view (spine_dagster.assets) on a real Dagster instance, on [sqlite] and [postgres].

The asset graph (keys, lineage, kinds, group, owners, tags, checks), then runs through
``WorkflowRunner(assets=True)``: materializations with ``dagster/row_count``, checkpoints, resume as
a Dagster re-execution, quality checks (a failed gate is a failed blocking check), and an asset
subset run that restores the upstream context from the checkpoints. Which steps ran is read
from ``CALLS``, never assumed. The UI's re-executions and backfills are in
test_deployment_assets.py.
"""

from __future__ import annotations

import pytest
from dagster import (
    AssetCheckSeverity,
    AssetKey,
    DagsterEventType,
    DailyPartitionsDefinition,
    Definitions,
    StaticPartitionsDefinition,
    execute_job,
)

from spine_dagster import (
    ErrorCategory,
    InvalidWorkflowError,
    QualityMetrics,
    QualityThresholds,
    SpineJob,
    Step,
    StepResult,
    Workflow,
    WorkflowRunner,
    WorkflowStatus,
    build_assets,
    build_definitions,
    build_job,
)
from spine_dagster.assets import asset_job_definition, asset_step_ops
from spine_dagster.compiler import reconstructable_job

CALLS: list[str] = []
STATE = {"fail_load": True}


def extract(ctx, config):
    CALLS.append("extract")
    return StepResult.ok(output={"rows": 10})


def clean(ctx, config):
    CALLS.append("clean")
    rows = ctx.get_output("extract", "rows")
    valid = int(ctx.params.get("valid", rows))
    return StepResult.ok(output={"rows": valid},
                         quality=QualityMetrics(record_count=rows, valid_count=valid,
                                                passed=not ctx.params.get("flag_quality")))


def load(ctx, config):
    CALLS.append("load")
    if STATE["fail_load"]:
        return StepResult.fail("the warehouse is down", ErrorCategory.TRANSIENT)
    return StepResult.ok(output={"loaded": ctx.get_output("clean", "rows"),
                                 "resumed": bool(ctx.params.get("__resumed__"))})


ORDERS = Workflow("assets.orders", [
    Step.lambda_("extract", extract, description="Read the orders."),
    Step.lambda_("clean", clean, quality_thresholds=QualityThresholds(min_valid_rate=0.8)),
    Step.lambda_("load", load),
], domain="sales.eu", tags=["daily", "tier=gold"], owners=["team:data", "ana@example.com"])

PRODUCES = Workflow("assets.produces", [
    Step.lambda_("extract", extract, produces="raw/orders"),
    Step.lambda_("clean", clean),
    Step.lambda_("load", load, produces="mart/orders"),
])

RAW, CLEAN, LOADED = (AssetKey(["assets__orders", s]) for s in ("extract", "clean", "load"))


@pytest.fixture(autouse=True)
def _reset():
    CALLS.clear()
    STATE["fail_load"] = True
    yield
    STATE["fail_load"] = True


@pytest.fixture
def asset_runner(database_url, instance) -> WorkflowRunner:
    return WorkflowRunner(database_url=database_url, instance=instance, assets=True,
                          progress=False)


# -- the asset graph ----------------------------------------------------------------------------
def test_every_step_is_an_asset_with_lineage_kind_group_owners_and_tags():
    assets = build_assets(ORDERS, database_url="sqlite:///unused.db")

    assert set(assets.keys) == {RAW, CLEAN, LOADED}
    assert assets.asset_deps[RAW] == set()
    assert assets.asset_deps[CLEAN] == {RAW} and assets.asset_deps[LOADED] == {CLEAN}
    for key in (RAW, CLEAN, LOADED):
        spec = assets.specs_by_key[key]
        assert spec.kinds == {"spine"}
        assert spec.group_name == "sales__eu"  # the domain, sanitized
        assert list(spec.owners) == ["team:data", "ana@example.com"]
        assert spec.tags["daily"] == "" and spec.tags["tier"] == "gold"
        assert spec.metadata["spine/workflow"] == "assets.orders"
    assert assets.specs_by_key[RAW].description == "Read the orders."
    # one op per step, in the multi-asset's graph
    assert [n.name for n in assets.node_def.nodes_in_topological_order] == [
        "extract", "clean", "load"]
    # the step with quality thresholds has a blocking check
    [check] = assets.check_specs
    assert (check.asset_key, check.name, check.blocking) == (CLEAN, "spine_quality", True)


def test_only_steps_that_declare_produces_are_assets():
    assets = build_assets(PRODUCES, database_url="sqlite:///unused.db")

    raw, mart = AssetKey(["raw", "orders"]), AssetKey(["mart", "orders"])
    assert set(assets.keys) == {raw, mart}
    assert assets.asset_deps[mart] == {raw}  # through the clean step, which is an op only
    assert [n.name for n in assets.node_def.nodes_in_topological_order] == [
        "extract", "clean", "load"]
    assert list(asset_step_ops(PRODUCES)) == [
        "assets__produces__steps.extract", "assets__produces__steps.clean",
        "assets__produces__steps.load"]


def test_fused_asset_view_keeps_each_asset_step_last_in_its_op():
    fused = Workflow("assets.fused", PRODUCES.steps, fuse=True)
    assets = build_assets(fused, database_url="sqlite:///unused.db")
    assert [n.name for n in assets.node_def.nodes_in_topological_order] == [
        "extract", "clean__thru__load"]
    assert asset_step_ops(fused) == {"assets__fused__steps.extract": ["extract"],
                                     "assets__fused__steps.clean__thru__load": ["clean", "load"]}


def test_bad_owners_tags_and_duplicate_assets_are_refused_with_the_fix():
    step = [Step.lambda_("a", extract)]
    with pytest.raises(InvalidWorkflowError, match="owner 'data team'.*'team:data'"):
        build_assets(Workflow("assets.bad_owner", step, owners=["data team"]))
    with pytest.raises(InvalidWorkflowError, match="tag 'two words'.*'tier=gold'"):
        build_job(Workflow("assets.bad_tag", step, tags=["two words"]))
    twice = [Step.lambda_("a", extract, produces="x/y"), Step.lambda_("b", clean, produces="x/y")]
    with pytest.raises(InvalidWorkflowError, match="both produce asset 'x/y'"):
        build_assets(Workflow("assets.twice", twice))


def test_op_jobs_carry_the_workflow_tags_domain_owners_and_compute_kind():
    job = build_job(ORDERS, database_url="sqlite:///unused.db")

    assert job.tags["spine/domain"] == "sales.eu"
    assert job.tags["daily"] == "" and job.tags["tier"] == "gold"
    assert list(job.owners) == ["team:data", "ana@example.com"]
    for node in job.graph.nodes:
        assert node.definition.tags["dagster/compute_kind"] == "spine"


def test_build_definitions_serves_the_asset_view_and_its_job():
    daily = DailyPartitionsDefinition(start_date="2026-01-01")
    defs = build_definitions([SpineJob(ORDERS, assets=True, partitions_def=daily), PRODUCES],
                             database_url="sqlite:///unused.db", checkpoint_retention_days=None)

    job = defs.resolve_job_def("assets__orders")
    assert job.tags["spine/view"] == "assets" and job.tags["spine/workflow"] == "assets.orders"
    assert job.metadata["spine/ops"].value == {
        "assets__orders__steps.extract": ["extract"], "assets__orders__steps.clean": ["clean"],
        "assets__orders__steps.load": ["load"]}
    assert job.partitions_def == daily
    graph = defs.resolve_asset_graph()
    assert graph.get(LOADED).partitions_def == daily
    assert defs.resolve_job_def("assets__produces").tags.get("spine/view") is None  # op job
    # the implicit asset job (the UI's "Materialize") can subset the spine assets
    assert defs.resolve_implicit_global_asset_job_def().get_subset(
        asset_selection={CLEAN, LOADED}) is not None


# -- runs ---------------------------------------------------------------------------------------
def _materialized(instance, run_id: str) -> dict[str, dict]:
    records = instance.get_records_for_run(
        run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION).records
    return {r.event_log_entry.dagster_event.asset_key.path[-1]:
            r.event_log_entry.dagster_event.step_materialization_data.materialization.metadata
            for r in records}


def _checks(instance, run_id: str) -> list:
    records = instance.get_records_for_run(
        run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION).records
    return [r.event_log_entry.dagster_event.event_specific_data for r in records]


def test_asset_run_fails_checkpoints_and_resumes_as_a_reexecution(asset_runner, instance):
    failed = asset_runner.execute(ORDERS)

    assert failed.status is WorkflowStatus.FAILED and failed.error_step == "load"
    assert CALLS == ["extract", "clean", "load"]
    assert [c.step_name for c in asset_runner.list_checkpoints(failed.run_id)] == [
        "extract", "clean"]
    first = _materialized(instance, failed.dagster_run_id)
    assert sorted(first) == ["clean", "extract"]
    assert first["clean"]["dagster/row_count"].value == 10  # QualityMetrics.record_count
    [check] = _checks(instance, failed.dagster_run_id)
    assert check.passed and check.check_name == "spine_quality"

    CALLS.clear()
    STATE["fail_load"] = False
    resumed = WorkflowRunner(database_url=asset_runner.database_url, instance=instance,
                             progress=False).resume(failed.run_id)  # follows the run's view

    assert resumed.status is WorkflowStatus.COMPLETED and resumed.run_id == failed.run_id
    assert CALLS == ["load"], "extract and clean must not run again"
    assert resumed.context.outputs["load"] == {"loaded": 10, "resumed": True}
    child = instance.get_run_by_id(resumed.dagster_run_id)
    assert child.parent_run_id == failed.dagster_run_id
    assert child.job_name == "assets__orders"
    assert list(child.step_keys_to_execute) == ["assets__orders__steps.load"]
    assert sorted(_materialized(instance, child.run_id)) == ["load"]
    assert instance.get_latest_materialization_event(LOADED).run_id == child.run_id
    checkpoints = {c.step_name: c for c in asset_runner.list_checkpoints(failed.run_id)}
    assert checkpoints["clean"].dagster_run_id == failed.dagster_run_id
    assert checkpoints["load"].dagster_run_id == child.run_id


def test_a_failed_quality_gate_is_a_failed_blocking_check(asset_runner, instance):
    failed = asset_runner.execute(ORDERS, params={"valid": 5})  # valid_rate 0.5 < 0.8

    assert failed.status is WorkflowStatus.FAILED and failed.error_step == "clean"
    assert failed.error_category == "DATA_QUALITY"
    assert CALLS == ["extract", "clean"], "nothing downstream of a failed blocking check runs"
    [check] = _checks(instance, failed.dagster_run_id)
    assert (check.passed, check.severity) == (False, AssetCheckSeverity.ERROR)
    assert check.metadata["spine/quality"].value["valid_rate"] == 0.5
    assert sorted(_materialized(instance, failed.dagster_run_id)) == ["extract"]

    CALLS.clear()
    STATE["fail_load"] = False
    resumed = asset_runner.resume(failed.run_id, params_override={"valid": 9})
    assert resumed.status is WorkflowStatus.COMPLETED
    assert CALLS == ["clean", "load"]
    [again] = _checks(instance, resumed.dagster_run_id)
    assert again.passed


def test_passed_false_without_a_gate_failure_is_a_warning_check(asset_runner, instance):
    STATE["fail_load"] = False
    result = asset_runner.execute(ORDERS, params={"flag_quality": True})

    assert result.status is WorkflowStatus.COMPLETED  # the step met its thresholds
    [check] = _checks(instance, result.dagster_run_id)
    assert (check.passed, check.severity) == (False, AssetCheckSeverity.WARN)


def test_an_asset_subset_run_restores_the_upstream_context_from_the_checkpoints(
        asset_runner, instance):
    failed = asset_runner.execute(ORDERS)
    CALLS.clear()
    STATE["fail_load"] = False
    # What the UI's "from asset failure" launches: only the assets that failed, no step keys;
    # the upstream step's op is not in the run at all.
    job = reconstructable_job(ORDERS, loader="load_asset_job",
                              database_url=asset_runner.database_url)
    subset = execute_job(job, instance=instance, asset_selection=[LOADED],
                         tags={"spine/run_id": failed.run_id}, raise_on_error=False)

    assert subset.success
    assert CALLS == ["load"]
    run = instance.get_run_by_id(subset.run_id)
    assert run.asset_selection == {LOADED}
    assert list(run.step_keys_to_execute) == ["assets__orders__steps.load"]
    record = asset_runner.get_run(failed.run_id)
    assert record.status is WorkflowStatus.COMPLETED
    assert record.dagster_run_ids == [failed.dagster_run_id, subset.run_id]
    final = asset_runner.get_checkpoint(failed.run_id, "load").context
    assert final.outputs["load"]["loaded"] == 10  # clean's output, from its checkpoint


def test_partitioned_asset_steps_see_the_partition(database_url, instance):
    seen = []
    wf = Workflow("assets.parts", [Step.lambda_("a", lambda ctx, cfg: seen.append(ctx.partition)
                                                or {"day": ctx.partition})])
    daily = DailyPartitionsDefinition(start_date="2026-01-01")
    job = asset_job_definition(wf, partitions_def=daily, database_url=database_url)
    result = job.execute_in_process(instance=instance, partition_key="2026-01-03")

    assert result.success and seen == ["2026-01-03"]
    key = AssetKey(["assets__parts", "a"])
    assert instance.get_materialized_partitions(key) == {"2026-01-03"}
    assert Definitions(assets=[build_assets(wf, partitions_def=daily,
                                            database_url=database_url)]) is not None


def test_partitions_are_recorded_so_another_process_rebuilds_them():
    from spine_dagster.assets import partitions_from_tag, partitions_tag

    daily = DailyPartitionsDefinition(start_date="2026-01-01", end_date="2026-02-01")
    rebuilt = partitions_from_tag(partitions_tag(daily))
    assert rebuilt.get_partition_keys() == daily.get_partition_keys()
    static = partitions_from_tag(partitions_tag(StaticPartitionsDefinition(["eu", "us"])))
    assert static.get_partition_keys() == ["eu", "us"]
    job = build_definitions([SpineJob(ORDERS, assets=True, partitions_def=daily)],
                            database_url="sqlite:///unused.db").resolve_job_def("assets__orders")
    assert partitions_from_tag(job.tags["spine/partitions"]).get_partition_keys()[0] == \
        "2026-01-01"


def test_materializing_only_downstream_assets_in_a_new_run_says_to_reexecute(database_url,
                                                                               instance):
    STATE["fail_load"] = False
    job = reconstructable_job(ORDERS, loader="load_asset_job", database_url=database_url)
    fresh = execute_job(job, instance=instance, asset_selection=[LOADED], raise_on_error=False)

    assert not fresh.success and CALLS == []
    [failure] = fresh.get_step_failure_events()
    assert "has no checkpoint" in str(failure.step_failure_data.error)
