"""The Dagster instance the runner uses: a bad ``$DAGSTER_HOME`` or ``dagster.yaml`` is an
``InstanceConfigError`` before any run exists (it used to fail the run, whose id was unknown)."""

from __future__ import annotations

import pytest
from dagster import DagsterInstance

from spine_dagster import InstanceConfigError, InvalidSettingError, WorkflowRunner
from spine_dagster.instance import checked_instance, default_instance

from seed_workflows import SEED

BAD_COORDINATOR = "run_coordinator:\n  module: dagster\n  class: DefaultRunCoordinator\n"
GOOD_COORDINATOR = ("run_coordinator:\n  module: dagster._core.run_coordinator\n"
                    "  class: DefaultRunCoordinator\n")


def _home(tmp_path, name: str, yaml_text: str | None):
    home = tmp_path / name
    home.mkdir()
    if yaml_text is not None:
        (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n" + yaml_text)
    return home


def test_execute_with_a_run_coordinator_that_does_not_exist(tmp_path, monkeypatch, database_url):
    home = _home(tmp_path, "home", BAD_COORDINATOR)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    runner = WorkflowRunner(database_url=database_url, progress=False)
    with pytest.raises(InstanceConfigError) as info:
        runner.execute(SEED, params={"timeout": 30})
    message = str(info.value)
    assert f"{home}/dagster.yaml" in message and "run_coordinator" in message
    assert "Couldn't find class DefaultRunCoordinator" in message
    assert "module dagster._core.run_coordinator" in message and "Nothing was run" in message
    assert isinstance(info.value, InvalidSettingError)
    assert runner.store.list_runs() == []  # no run record, and no Dagster run either
    with DagsterInstance.from_config(str(home)) as instance:
        assert instance.get_runs() == []


def test_the_coordinator_the_readme_names_works(tmp_path):
    home = _home(tmp_path, "home", GOOD_COORDINATOR)
    with DagsterInstance.from_config(str(home)) as instance:
        assert checked_instance(instance) is instance
        from dagster._core.run_coordinator import DefaultRunCoordinator  # noqa: PLC0415

        assert isinstance(instance.run_coordinator, DefaultRunCoordinator)


@pytest.mark.parametrize("case", ["bad-yaml", "missing-dir", "relative", "unknown-key",
                                  "launcher-module"])
def test_every_instance_loading_failure_is_one_error(case, tmp_path, monkeypatch):
    yaml_text = {"bad-yaml": "run_coordinator:\n  module: [dagster\n",
                 "unknown-key": "run_coordinatr:\n  module: dagster\n",
                 "launcher-module": "run_launcher:\n  module: no_such_module\n  class: X\n"}
    if case == "missing-dir":
        home = str(tmp_path / "no_such_dir")
    elif case == "relative":
        home = "relative/dagster_home"
    else:
        home = str(_home(tmp_path, "home", yaml_text[case]))
    monkeypatch.setenv("DAGSTER_HOME", home)
    with pytest.raises(InstanceConfigError) as info:
        checked_instance(default_instance())
    message = str(info.value)
    assert home in message and "DAGSTER_HOME" in message, message
    expected = {"bad-yaml": "ParserError", "missing-dir": "is not a directory",
                "relative": "must be an absolute path", "unknown-key": "run_coordinatr",
                "launcher-module": "Couldn't import module no_such_module"}[case]
    assert expected in message, message
