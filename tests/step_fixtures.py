"""Fixtures for the step-type tests: one Dagster instance per test module, a runner per backend.

Starting a temporary instance costs seconds; the tests of a module tell their runs apart by run
id, so they share one. Import both names into a test module to use them::

    from step_fixtures import module_instance, runner  # noqa: F401 - fixtures
"""

from __future__ import annotations

from typing import Iterator

import pytest
from dagster import DagsterInstance, instance_for_test

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
