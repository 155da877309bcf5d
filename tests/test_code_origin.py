"""spine_dagster.code_origin: which workspace the runner reads to find the code location that
serves a workflow (the UI re-executes script runs through it; tests/test_ui.py and
tests/test_dg_dev.py re-execute them through real webservers)."""

from __future__ import annotations

from pathlib import Path

from spine_dagster.code_origin import _location_origins, dg_project, workspace_file

DG = """[project]
name = "my-project"
[tool.dg]
directory_type = "project"
[tool.dg.project]
root_module = "my_project"
"""


def test_the_dg_project_of_the_working_directory_is_the_default_workspace(tmp_path, monkeypatch):
    monkeypatch.delenv("SPINE_DAGSTER_WORKSPACE", raising=False)
    project = tmp_path / "proj"
    (project / "my_project" / "defs").mkdir(parents=True)
    (project / "pyproject.toml").write_text(DG)
    monkeypatch.chdir(project / "my_project" / "defs")
    assert dg_project(Path.cwd()) == project
    assert workspace_file(None) == str(project / "pyproject.toml")
    assert workspace_file(project) == str(project / "pyproject.toml")  # a directory: its project
    [origin] = _location_origins(workspace_file(None))
    assert origin.location_name == "proj"  # dg dev's name: the project directory's
    target = origin.loadable_target_origin
    assert (target.module_name, target.working_directory) == ("my_project.definitions",
                                                               str(project))
    (project / "pyproject.toml").write_text(DG + 'code_location_name = "sales"\n'
                                            'code_location_target_module = "my_project.defs2"\n')
    [origin] = _location_origins(workspace_file(None))
    assert (origin.location_name, origin.loadable_target_origin.module_name) == (
        "sales", "my_project.defs2")


def test_a_workspace_yaml_comes_first_and_other_pyprojects_are_not_projects(tmp_path,
                                                                            monkeypatch):
    monkeypatch.delenv("SPINE_DAGSTER_WORKSPACE", raising=False)
    (tmp_path / "pyproject.toml").write_text(DG)
    (tmp_path / "workspace.yaml").write_text("load_from: []\n")
    monkeypatch.chdir(tmp_path)
    assert workspace_file(None) == str(tmp_path / "workspace.yaml")
    plain = tmp_path / "lib"
    plain.mkdir()
    (plain / "pyproject.toml").write_text('[project]\nname = "lib"\n')  # the nearest: not dg
    monkeypatch.chdir(plain)
    assert dg_project(plain) is None and workspace_file(None) is None
    monkeypatch.setenv("SPINE_DAGSTER_WORKSPACE", "none")
    monkeypatch.chdir(tmp_path)
    assert workspace_file(None) is None
