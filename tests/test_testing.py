"""spine_dagster.testing: the helpers a user's own tests call, and the README's example test.

Each helper runs for real: temporary SQLite files and PostgreSQL schemas are created and are gone
afterwards; ``run_and_fail_at`` fails the real run at the step and the resume runs the real step.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from conftest import PG_URL, require_postgres

from spine_dagster import (
    CheckpointStore,
    InvalidSettingError,
    Step,
    StepResult,
    UnknownStepError,
    Workflow,
    WorkflowRunner,
    WorkflowStatus,
)
from spine_dagster.testing import (
    assert_resumes_from,
    run_and_fail_at,
    spine_test_runner,
    temporary_instance,
    temporary_store,
)

ROOT = Path(__file__).resolve().parent.parent
CALLS: list[str] = []


def step(name):
    def run(ctx, config):
        CALLS.append(name)
        return StepResult.ok(output={"n": len(CALLS)})
    return run


FLOW = Workflow("testing.flow", [Step.lambda_(s, step(s)) for s in ("extract", "clean", "load")])


@pytest.fixture(autouse=True)
def _reset():
    CALLS.clear()


def test_temporary_sqlite_store_is_deleted_afterwards():
    with temporary_store() as url:
        path = Path(url.removeprefix("sqlite:///"))
        CheckpointStore.for_url(url).check()
        assert path.exists()
    assert not path.exists()


@pytest.mark.postgres
def test_temporary_postgres_store_is_a_schema_dropped_afterwards():
    admin = require_postgres()
    with temporary_store(PG_URL) as url:
        schema = re.search(r"search_path%3D(\w+)|search_path=(\w+)", url)
        name = next(g for g in schema.groups() if g)
        CheckpointStore.for_url(url).check()  # creates its tables in that schema
        with admin.connect() as conn:
            tables = conn.execute(sa.text(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = :s"),
                {"s": name}).scalars().all()
        assert "core_workflow_checkpoints" in tables
    with admin.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM information_schema.schemata WHERE "
                                    "schema_name = :s"), {"s": name}).scalar() == 0
    with pytest.raises(InvalidSettingError, match="takes a PostgreSQL URL"):
        with temporary_store("sqlite:///elsewhere.db"):
            pass


def test_temporary_instance_keeps_runs_for_reexecution():
    with temporary_instance() as instance:
        root = Path(instance.root_directory)
        assert root.exists() and instance.get_runs() == []
    assert not root.exists()


@pytest.fixture(params=["sqlite", "postgres"])
def server_url(request) -> str | None:
    """What a user passes to spine_test_runner: None (SQLite), or their PostgreSQL URL."""
    if request.param == "sqlite":
        return None
    require_postgres()
    return PG_URL


def test_run_and_fail_at_then_resume_runs_the_real_step(server_url):
    with spine_test_runner(server_url) as runner:
        failed = run_and_fail_at(FLOW, "clean", runner=runner, params={"day": "mon"})
        assert (failed.status, failed.error_step, failed.error_category) == (
            WorkflowStatus.FAILED, "clean", "TRANSIENT")
        assert CALLS == ["extract"], "the injected failure replaces the step for that run only"
        assert [c.step_name for c in runner.list_checkpoints(failed.run_id)] == ["extract"]
        assert FLOW.get_step("clean").handler is not None  # restored

        CALLS.clear()
        resumed = runner.resume(failed.run_id)
        assert_resumes_from(resumed, "clean")
        assert CALLS == ["clean", "load"]
        assert resumed.context.params == {"day": "mon", "__resumed__": True}


def test_assert_resumes_from_says_what_happened_instead():
    with spine_test_runner() as runner:
        failed = run_and_fail_at(FLOW, "load", runner=runner)
        fresh = runner.execute(FLOW)
        with pytest.raises(AssertionError, match="not a resume"):
            assert_resumes_from(fresh, "extract")
        resumed = runner.resume(failed.run_id)
        with pytest.raises(AssertionError, match=r"ran \['load'\], not starting at 'clean'"):
            assert_resumes_from(resumed, "clean")
        with pytest.raises(UnknownStepError, match="has no step 'nope'"):
            run_and_fail_at(FLOW, "nope", runner=runner)
        with pytest.raises(InvalidSettingError, match="in_process"):
            run_and_fail_at(FLOW, "load", runner=WorkflowRunner(
                database_url=runner.database_url, instance=runner.instance,
                executor="multiprocess"))


def test_run_and_fail_at_works_on_the_asset_view():
    with spine_test_runner(assets=True) as runner:
        failed = run_and_fail_at(FLOW, "load", runner=runner, category="TIMEOUT")
        assert failed.error_category == "TIMEOUT"
        assert_resumes_from(runner.resume(failed.run_id), "load")
        child = runner.instance.get_run_by_id(runner.get_run(failed.run_id).dagster_run_ids[-1])
        assert child.tags["spine/view"] == "assets"


def test_the_readme_example_test_passes(tmp_path):
    """The README's "Testing your workflows" block, run by pytest as a user would."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Testing your workflows", 1)[1]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    flows, test = blocks[0], blocks[1]
    (tmp_path / "my_flows.py").write_text(flows)
    (tmp_path / "test_my_flows.py").write_text(test)
    test_lines = [line for line in test.splitlines()
                  if line.strip() and not line.startswith(("from ", "import ", "def "))]
    assert len(test_lines) <= 5, test_lines  # "a five-line test"
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "test_my_flows.py"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout
