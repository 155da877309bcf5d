"""Every public module's docstring example runs (the docs cannot drift from the code)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import spine_dagster

MODULES = sorted(m.name for m in pkgutil.iter_modules(spine_dagster.__path__, "spine_dagster."))
# internal plumbing with no public class of its own; every other module shows an example
NO_EXAMPLE = {"spine_dagster.db", "spine_dagster.errors", "spine_dagster.execution",
              "spine_dagster.locate", "spine_dagster.schema", "spine_dagster.version"}


@pytest.mark.parametrize("name", ["spine_dagster", *MODULES])
def test_docstring_examples_run(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # examples that write files write them here
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} docstring example(s) of {name} failed"
    assert result.attempted > 0 or name in NO_EXAMPLE, f"{name} has no docstring example"
