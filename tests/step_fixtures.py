"""Fixtures and helpers for the step-type tests: one Dagster instance per test module, a runner
per backend, and readers of the run log and of a map's item rows.

Starting a temporary instance costs seconds; the tests of a module tell their runs apart by run
id, so they share one. Import both names into a test module to use them::

    from step_fixtures import module_instance, runner  # noqa: F401 - fixtures
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Iterator

import pytest
from dagster import DagsterEventType, DagsterInstance, instance_for_test

from spine_dagster import WorkflowRunner


@pytest.fixture(scope="module")
def module_instance() -> Iterator[DagsterInstance]:
    """A real, temporary, persistent Dagster instance shared by the tests of one module."""
    with instance_for_test(set_dagster_home=False) as instance:
        yield instance


@pytest.fixture
def runner(database_url, module_instance) -> WorkflowRunner:
    """A runner on the module's instance and the test's checkpoint database (both backends)."""
    return WorkflowRunner(database_url=database_url, instance=module_instance)


PROGRESS = re.compile(r"map fan: (\d+) done, (\d+) failed, (\d+) remaining of (\d+)")


@pytest.fixture
def files(tmp_path) -> dict[str, str]:
    """The side-effect files of ``workflows_steps``: calls made, and items that fail."""
    return {"calls_file": str(tmp_path / "calls.txt"), "broken_file": str(tmp_path / "broken.json")}


def break_items(files: dict[str, str], broken: dict[int, str]) -> None:
    """Make these items fail (item -> category, or ``raise``) until the next call."""
    Path(files["broken_file"]).write_text(json.dumps({str(k): v for k, v in broken.items()}))


def messages(instance: DagsterInstance, dagster_run_id: str) -> list[str]:
    """The run log of a Dagster run, as text."""
    return [entry.user_message for entry in instance.all_logs(dagster_run_id)]


def progress_lines(instance: DagsterInstance, dagster_run_id: str) -> list[tuple[int, ...]]:
    """(done, failed, remaining, total) of each progress line of the map step ``fan``."""
    return [tuple(int(n) for n in m.groups())
            for m in map(PROGRESS.search, messages(instance, dagster_run_id)) if m]


def output_metadata(instance: DagsterInstance, dagster_run_id: str, step_key: str) -> dict:
    """The output metadata of an op, as plain values."""
    for record in instance.get_records_for_run(
            dagster_run_id, of_type=DagsterEventType.STEP_OUTPUT).records:
        event = record.event_log_entry.dagster_event
        if event.step_key == step_key:
            return {k: getattr(v, "value", v)
                    for k, v in event.step_output_data.metadata.items()}
    raise AssertionError(f"no output event for {step_key}")


def item_rows(runner: WorkflowRunner, run_id: str) -> dict[int, tuple[str, str, str | None]]:
    """item index -> (row name, state, Dagster run) of the map's per-item checkpoint rows."""
    return {c.item_index: (c.step_name, c.state, c.dagster_run_id)
            for c in runner.store.list_checkpoints(run_id, items=True) if c.item_index is not None}
