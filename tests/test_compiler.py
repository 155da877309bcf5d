"""build_job: one op per step, chained in order, with Dagster-safe names."""

from __future__ import annotations

import pytest
from dagster import Definitions

from spine_dagster import (
    InvalidWorkflowError,
    Step,
    StepResult,
    Workflow,
    build_job,
    op_name_for,
)


def ok(ctx, config):
    return StepResult.ok()


def test_one_op_per_step_chained_in_order():
    wf = Workflow("ingest.daily", [Step.lambda_("ingest.fetch", ok), Step.lambda_("clean-up", ok),
                                   Step.lambda_("load", ok)])
    job = build_job(wf)

    assert job.name == "ingest__daily"
    assert [n.name for n in job.graph.nodes_in_topological_order] == [
        "ingest__fetch", "clean_up", "load"]
    deps = job.graph.dependency_structure
    upstream = {node: [h.node_name for h in deps.all_upstream_outputs_from_node(node)]
                for node in ("ingest__fetch", "clean_up", "load")}
    assert upstream == {"ingest__fetch": [], "clean_up": ["ingest__fetch"], "load": ["clean_up"]}
    node = job.graph.node_named("ingest__fetch")
    assert node.definition.name == "ingest__daily__ingest__fetch"
    assert node.definition.tags["spine/step"] == "ingest.fetch"
    assert node.definition.tags["spine/workflow"] == "ingest.daily"
    assert node.definition.output_defs[0].metadata["spine/step"] == "ingest.fetch"
    assert job.tags["spine/workflow"] == "ingest.daily"


def test_op_names_are_dagster_safe():
    assert op_name_for("ingest.fetch") == "ingest__fetch"
    assert op_name_for("a b/c-d") == "a_b_c_d"
    assert op_name_for("1st") == "s_1st"


def test_two_workflows_sharing_step_names_live_in_one_definitions():
    a = Workflow("wf.a", [Step.lambda_("fetch", ok), Step.lambda_("load", ok)])
    b = Workflow("wf.b", [Step.lambda_("fetch", ok), Step.lambda_("load", ok)])
    defs = Definitions(jobs=[build_job(a), build_job(b)])
    assert defs.get_job_def("wf__a").name == "wf__a"
    assert defs.get_job_def("wf__b").name == "wf__b"


def test_step_names_that_collide_after_sanitizing_are_refused():
    wf = Workflow("collide", [Step.lambda_("a.b", ok), Step.lambda_("a__b", ok)])
    with pytest.raises(InvalidWorkflowError, match="'a.b' and 'a__b'"):
        build_job(wf)


def test_unknown_checkpoint_strategy_is_refused():
    with pytest.raises(InvalidWorkflowError, match="checkpoint_strategy"):
        build_job(Workflow("s", [Step.lambda_("a", ok)]), checkpoint_strategy="sometimes")
