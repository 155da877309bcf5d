"""Fused mode: consecutive steps in one op, every step still checkpointed and resumable on its own.

Every test runs on both checkpoint backends (``[sqlite]`` / ``[postgres]``). The steps write a
trace file (tests/workflows_fused.py), so the tests see which steps really ran; the UI's
"Re-execute from failure" of a fused op is tested through a real webserver in tests/test_ui.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from dagster import DagsterEventType, DagsterInstance

import workflows_fused as wf
from spine_dagster import SpineJob, WorkflowRunner, build_definitions, build_job
from spine_dagster.compiler import op_groups

TESTS_DIR = Path(__file__).resolve().parent
VOLATILE = ("run_id", "workflow_name", "started_at", "context")
VOLATILE_METADATA = ("created_at", "dagster_run_id", "python_version", "spine_dagster_version",
                     "dagster_version")


def _dir(tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    path.mkdir()
    return path


def _fail(directory: Path, *steps: str) -> None:
    (directory / "fail.txt").write_text("\n".join(steps))


def _comparable(checkpoint) -> dict:
    """A checkpoint's snapshot without what differs between two runs (ids, times, versions)."""
    snapshot = {k: v for k, v in checkpoint.context_snapshot.items() if k not in VOLATILE}
    snapshot["metadata"] = {k: v for k, v in snapshot["metadata"].items()
                            if k not in VOLATILE_METADATA}
    snapshot["params"] = {k: v for k, v in snapshot["params"].items() if k != "dir"}
    return {"step": checkpoint.step_name, "state": checkpoint.state, "snapshot": snapshot}


def _ops_run(instance: DagsterInstance, dagster_run_id: str) -> list[str]:
    return [s.step_key for s in instance.get_run_step_stats(dagster_run_id)]


# -- every step checkpointed, in the same format and strategy ----------------------------------------
@pytest.mark.parametrize("fused_wf, plain_wf", [(wf.FUSED, wf.UNFUSED),
                                                (wf.FUSED_KEY, wf.UNFUSED_KEY)],
                         ids=["every_step", "key_steps"])
def test_a_fused_run_checkpoints_every_step_like_one_op_per_step(runner, instance, tmp_path,
                                                                  fused_wf, plain_wf):
    fused = runner.execute(fused_wf, params={"dir": str(_dir(tmp_path, "fused"))})
    plain = runner.execute(plain_wf, params={"dir": str(_dir(tmp_path, "plain"))})

    assert (fused.status, plain.status) == ("completed", "completed")
    assert _ops_run(instance, fused.dagster_run_id) == ["a__thru__e"]
    assert _ops_run(instance, plain.dagster_run_id) == wf.NAMES
    fused_checkpoints = runner.list_checkpoints(fused.run_id)
    expected = wf.NAMES if fused_wf is wf.FUSED else ["b", "c", "d"]  # key steps, c by result
    assert [c.step_name for c in fused_checkpoints] == expected
    assert [_comparable(c) for c in fused_checkpoints] == \
        [_comparable(c) for c in runner.list_checkpoints(plain.run_id)]
    rows = runner.store.step_rows(fused.run_id)
    assert {n: (r.status, r.attempts, r.dagster_run_id) for n, r in rows.items()} == \
        {n: ("completed", 1, fused.dagster_run_id) for n in wf.NAMES}
    # steps, not ops, everywhere a user looks
    assert fused.completed_steps == wf.NAMES
    record = runner.get_run(fused.run_id)
    assert (record.status, record.context.get_output("e", "total")) == ("completed", 15)


def test_attempt_resumed_choice_continue_and_quality_gates_inside_a_fused_op(runner, tmp_path):
    plain_wf = wf.Workflow("fused.semantics_unfused", wf.SEMANTICS.steps, fuse=False)
    outcomes = {}
    for name, workflow in (("fused", wf.SEMANTICS), ("plain", plain_wf)):
        directory = _dir(tmp_path, name)
        first = runner.execute(workflow, params={"dir": str(directory), "valid": 5})
        assert (first.status, first.error_step, first.error_category) == (
            "failed", "counted", "DATA_QUALITY")
        rejected = runner.store.get_checkpoint(first.run_id, "counted")
        assert rejected.state == "rejected"
        resumed = runner.resume(first.run_id, params_override={"valid": 10})
        rows = runner.store.step_rows(first.run_id)
        outcomes[name] = {
            "ran": wf.ran(directory),
            "trace": [(t["step"], t["attempt"], t["resumed"]) for t in wf.read_trace(directory)],
            "first": first.completed_steps,
            "resumed": (resumed.status.value, resumed.completed_steps),
            "finish": resumed.context.outputs["finish"],
            "rows": {n: (r.status, r.attempts) for n, r in rows.items()},
            "checkpoints": [_comparable(c) for c in runner.list_checkpoints(first.run_id)],
        }
    fused = outcomes["fused"]
    # the choice jumped over "skipped"; "soft" failed and the run went on; the gate stopped it
    assert fused["ran"] == ["start", "soft", "counted", "counted", "finish"]
    assert fused["trace"][0] == ("start", 1, False)
    assert fused["trace"][3:] == [("counted", 2, True), ("finish", 1, True)]
    assert fused["finish"] == {"attempt": 1, "resumed": True, "soft_failed": True}
    assert fused["rows"]["soft"] == ("failed", 1) and fused["rows"]["skipped"] == ("skipped", 1)
    assert fused["rows"]["counted"] == ("completed", 2)
    assert fused == outcomes["plain"]  # the same semantics as one op per step


# -- resume at step granularity --------------------------------------------------------------------
def test_resume_reruns_the_failed_fused_op_from_the_failed_step(runner, instance, tmp_path):
    directory = _dir(tmp_path, "run")
    _fail(directory, "c")
    first = runner.execute(wf.FUSED, params={"dir": str(directory)})
    assert (first.status, first.error_step, first.completed_steps) == ("failed", "c", ["a", "b"])
    assert [c.step_name for c in runner.list_checkpoints(first.run_id)] == ["a", "b"]

    plan = runner.plan_resume(first.run_id)
    assert (plan.start_step, plan.reused_steps, plan.steps_to_run) == (
        "c", ["a", "b"], ["c", "d", "e"])
    resumed = runner.resume(first.run_id)

    assert (resumed.status, resumed.completed_steps) == ("completed", ["c", "d", "e"])
    assert wf.ran(directory) == ["a", "b", "c", "c", "d", "e"]  # a and b did not run again
    assert _ops_run(instance, resumed.dagster_run_id) == ["a__thru__e"]
    assert runner.store.step_rows(first.run_id)["c"].attempts == 2
    assert resumed.context.get_output("e", "total") == 15
    assert [c.step_name for c in runner.list_checkpoints(first.run_id)] == wf.NAMES


def test_a_new_runner_resumes_with_the_layout_of_the_failed_run(database_url, instance, tmp_path):
    """The layout (fused or not) is the failed run's, whatever the resuming runner's setting."""
    directory = _dir(tmp_path, "run")
    _fail(directory, "d")
    fusing = WorkflowRunner(database_url=database_url, instance=instance, fuse=True,
                            progress=False)
    first = fusing.execute(wf.UNFUSED, params={"dir": str(directory)})
    assert (first.status, first.error_step) == ("failed", "d")
    assert _ops_run(instance, first.dagster_run_id) == ["a__thru__e"]

    resumed = WorkflowRunner(database_url=database_url, instance=instance,
                             progress=False).resume(first.run_id)
    assert (resumed.status, resumed.completed_steps) == ("completed", ["d", "e"])
    assert wf.ran(directory) == ["a", "b", "c", "d", "d", "e"]


KILLED = """
import json, sys
from workflows_fused import FUSED
from spine_dagster import WorkflowRunner
WorkflowRunner(database_url=sys.argv[1], log_level="CRITICAL").execute(
    FUSED, params={"dir": sys.argv[2], "hold": "c"})
"""


def test_a_fused_op_killed_halfway_resumes_at_the_step_after_its_last_checkpoint(
        database_url, tmp_path):
    home, directory = _dir(tmp_path, "dagster_home"), _dir(tmp_path, "run")
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {**os.environ, "DAGSTER_HOME": str(home), "PYTHONPATH": str(TESTS_DIR)}
    log = tmp_path / "killed.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-c", KILLED, database_url, str(directory)],
                                env=env, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 180  # a guard against a hang, not a speed assertion
        while not (directory / "holding").exists():
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.1)
        run_id = (directory / "holding").read_text()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    instance = DagsterInstance.from_config(str(home))
    try:
        runner = WorkflowRunner(database_url=database_url, instance=instance, progress=False)
        record = runner.get_run(run_id)  # the run's process is gone: failed, at the held step
        assert (record.status, record.error_step) == ("failed", "c")
        assert [c.step_name for c in runner.list_checkpoints(run_id)] == ["a", "b"]
        resumed = runner.resume(run_id)
    finally:
        instance.dispose()
    assert (resumed.status, resumed.completed_steps) == ("completed", ["c", "d", "e"])
    assert wf.ran(directory) == ["a", "b", "c", "c", "d", "e"]
    assert [(t["step"], t["attempt"]) for t in wf.read_trace(directory)][3] == ("c", 2)


# -- what Dagster and the UI show ------------------------------------------------------------------
def test_the_op_names_and_describes_its_steps():
    job = build_job(wf.FUSED)
    (node,) = job.graph.nodes
    assert node.name == "a__thru__e"
    description = node.definition.description
    assert "5 fused spine steps" in description
    assert "1. a: Link a of the chain" in description  # the step's own description
    assert "2. b: A link of the chain" in description   # its handler's docstring
    assert node.definition.tags["spine/step"] == "a,b,c,d,e"
    assert job.tags["spine/fuse"] == "true" and build_job(wf.UNFUSED).tags["spine/fuse"] == "false"
    assert job.metadata["spine/ops"].value == {"a__thru__e": wf.NAMES}


def test_run_log_batches_progress_and_output_metadata_lists_every_step(runner, instance,
                                                                       tmp_path):
    directory = _dir(tmp_path, "run")
    _fail(directory, "s25")
    result = runner.execute(wf.LONG, params={"dir": str(directory), "sleep": 0.05})
    assert (result.status, result.error_step) == ("failed", "s25")

    logs = instance.all_logs(result.dagster_run_id)
    progress = [e for e in logs if e.user_message.startswith("spine: ") and "steps done" in e.user_message]
    started = next(e.timestamp for e in logs
                   if e.dagster_event_type == DagsterEventType.STEP_START)
    failed = next(e for e in logs if e.dagster_event_type == DagsterEventType.STEP_FAILURE)
    # batched: at most one line a second (plus the flush before the failure), never one per step
    assert 1 <= len(progress) <= (failed.timestamp - started) + 2 and len(progress) < 24
    assert progress[-1].user_message.startswith("spine: 24/30 steps done")
    assert "s25" in failed.dagster_event.step_failure_data.error.message

    resumed = runner.resume(result.run_id)
    assert (resumed.status, resumed.completed_steps[0]) == ("completed", "s25")
    output = next(e for e in instance.all_logs(resumed.dagster_run_id)
                  if e.dagster_event_type == DagsterEventType.STEP_OUTPUT)
    steps = output.dagster_event.step_output_data.metadata["spine/steps"].value
    assert [s["step"] for s in steps] == [f"s{i:02d}" for i in range(25, 31)]
    assert all(s["status"] == "completed" and s["seconds"] >= 0.05
               and s["checkpoint_bytes"] > 0 for s in steps)
    sizes = {c.step_name: c.size_bytes for c in runner.list_checkpoints(result.run_id)}
    assert [s["checkpoint_bytes"] for s in steps] == [sizes[s["step"]] for s in steps]


def test_map_pool_retry_and_opted_out_steps_get_their_own_op():
    groups = [[wf.MIXED.steps[i].name for i in g] for g in op_groups(wf.MIXED)]
    assert groups == [["a", "b"], ["fan"], ["c", "d"], ["pooled"], ["e"], ["retried"],
                      ["f", "g"], ["alone"], ["h"]]
    job = build_job(wf.MIXED)
    assert [n.name for n in job.graph.nodes_in_topological_order] == [
        "a__thru__b", "fan", "c__thru__d", "pooled", "e", "retried", "f__thru__g", "alone", "h"]
    assert op_groups(wf.MIXED, fuse=False) == [[i] for i in range(len(wf.MIXED.steps))]


def test_fuse_on_every_path(database_url, instance, tmp_path):
    # build_definitions and SpineJob: the definitions' default, a SpineJob's own wins
    defs = build_definitions([wf.UNFUSED, SpineJob(wf.FUSED, fuse=False),
                              SpineJob(wf.SEMANTICS, name="semantics")],
                             database_url=database_url, fuse=True,
                             checkpoint_retention_days=None)
    layout = {name: [n.name for n in defs.resolve_job_def(name).graph.nodes_in_topological_order]
              for name in ("fused__chain_unfused", "fused__chain", "semantics")}
    assert layout == {"fused__chain_unfused": ["a__thru__e"], "fused__chain": wf.NAMES,
                      "semantics": ["start__thru__finish"]}
    assert [n.name for n in build_definitions(
        [wf.FUSED], database_url=database_url, checkpoint_retention_days=None
    ).resolve_job_def("fused__chain").graph.nodes] == ["a__thru__e"]  # the workflow's own
    # build_job and WorkflowRunner
    assert len(build_job(wf.FUSED, fuse=False).graph.nodes) == 5
    unfusing = WorkflowRunner(database_url=database_url, instance=instance, fuse=False,
                              progress=False)
    result = unfusing.execute(wf.FUSED, params={"dir": str(_dir(tmp_path, "run"))})
    assert _ops_run(instance, result.dagster_run_id) == wf.NAMES
