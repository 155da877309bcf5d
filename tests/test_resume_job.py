"""The ``spine_resume`` job: its Launchpad config, and its errors without a webserver.

Resuming through it in a real deployment is tested in tests/test_deployment.py.
"""

from __future__ import annotations

import socket

import pytest

from spine_dagster import (
    SpineWebserver,
    Step,
    StepResult,
    UnknownRunError,
    WebserverUnavailableError,
    Workflow,
    build_definitions,
)
from spine_dagster.graphql import ENV_WEBSERVER_URL


def _maybe_fail(ctx, config):
    return StepResult.ok() if ctx.params.get("fixed") else StepResult.fail("down", "TRANSIENT")


RESUME_WF = Workflow("resume_job.wf", [Step.lambda_("a", lambda ctx, cfg: StepResult.ok()),
                                       Step.lambda_("b", _maybe_fail)])


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_resume_job_is_served_with_its_launchpad_config(tmp_path):
    defs = build_definitions([RESUME_WF], database_url=f"sqlite:///{tmp_path}/c.db",
                             resume_job=True)
    defs.get_repository_def()  # loads like a code location: no name conflicts
    job = defs.get_job_def("spine_resume")
    fields = job.run_config_schema.config_type.fields
    op_config = fields["ops"].config_type.fields["spine_resume"].config_type.fields["config"]
    assert set(op_config.config_type.fields) == {"run_id", "params_override", "wait", "on_stale",
                                                 "start_from", "run_config_override"}
    assert op_config.config_type.fields["run_id"].is_required
    assert not op_config.config_type.fields["params_override"].is_required
    assert {"spine_io", "spine_webserver"} <= set(job.resource_defs)
    assert "spine_resume" not in {j.name for j in build_definitions(
        [RESUME_WF], database_url=f"sqlite:///{tmp_path}/c.db").jobs}


def test_webserver_url_comes_from_config_then_environment(monkeypatch):
    monkeypatch.delenv(ENV_WEBSERVER_URL, raising=False)
    assert SpineWebserver().get_url() == "http://127.0.0.1:3000"
    monkeypatch.setenv(ENV_WEBSERVER_URL, "http://dagster-webserver:3000")
    assert SpineWebserver().get_url() == "http://dagster-webserver:3000"
    assert SpineWebserver(url="http://other:80").get_url() == "http://other:80"


def test_resume_job_errors_name_the_problem(database_url, runner, monkeypatch):
    monkeypatch.setenv(ENV_WEBSERVER_URL, f"http://127.0.0.1:{_closed_port()}")
    job = build_definitions([RESUME_WF], database_url=database_url,
                            resume_job=True).get_job_def("spine_resume")

    def launch(run_id):
        return job.execute_in_process(
            instance=runner.instance,
            run_config={"ops": {"spine_resume": {"config": {"run_id": run_id}}}})

    with pytest.raises(UnknownRunError, match="no spine run or Dagster run with id 'nope'"):
        launch("nope")
    failed = runner.execute(RESUME_WF)
    with pytest.raises(WebserverUnavailableError, match="cannot reach the Dagster webserver"):
        launch(failed.run_id)
