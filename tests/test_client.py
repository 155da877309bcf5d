"""``SpineDagsterClient`` without a deployment: URLs, unreachable or wrong servers, and the checks
that run before any request. The GraphQL paths against a real webserver are in
tests/test_deployment.py.
"""

from __future__ import annotations

import http.server
import socket
import threading

import pytest

from spine_dagster import (
    NothingToResumeError,
    SpineDagsterClient,
    Step,
    StepResult,
    UnknownRunError,
    WebserverUnavailableError,
    Workflow,
    WorkflowStatus,
)
from spine_dagster.graphql import normalize_url


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _maybe_fail(ctx, config):
    return StepResult.ok() if ctx.params.get("fixed") else StepResult.fail("down", "TRANSIENT")


CLIENT_WF = Workflow("client.wf", [Step.lambda_("a", lambda ctx, cfg: StepResult.ok()),
                                   Step.lambda_("b", _maybe_fail)])


@pytest.mark.parametrize("given, expected", [
    ("127.0.0.1:3000", "http://127.0.0.1:3000/graphql"),
    ("http://dagster:3000/", "http://dagster:3000/graphql"),
    ("https://dagster.example.com/prefix/graphql", "https://dagster.example.com/prefix/graphql"),
])
def test_urls_are_normalized(given, expected):
    assert normalize_url(given) == expected


def test_missing_url_means_the_default_and_a_bad_scheme_is_refused(monkeypatch):
    monkeypatch.delenv("SPINE_DAGSTER_WEBSERVER_URL", raising=False)
    assert SpineDagsterClient("").url == "http://127.0.0.1:3000/graphql"
    monkeypatch.setenv("SPINE_DAGSTER_WEBSERVER_URL", "127.0.0.1:3001")
    assert SpineDagsterClient().url == "http://127.0.0.1:3001/graphql"
    with pytest.raises(WebserverUnavailableError, match="not an http"):
        SpineDagsterClient("ftp://127.0.0.1:3000")


def test_unreachable_webserver_says_what_to_check():
    client = SpineDagsterClient(f"127.0.0.1:{_closed_port()}")
    with pytest.raises(WebserverUnavailableError, match="cannot reach the Dagster webserver at "
                                                        "http://127.0.0.1:.*dagster-webserver"):
        client.get_run("anything")


def test_a_server_that_is_not_dagster_is_named():
    class Html(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server API
            self.send_response(404)
            self.end_headers()
            self.wfile.write(b"<html>not here</html>")

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Html)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        client = SpineDagsterClient(f"127.0.0.1:{server.server_port}")
        with pytest.raises(WebserverUnavailableError, match="HTTP 404 without a GraphQL body"):
            client.get_run("x")
    finally:
        server.shutdown()
        server.server_close()


def test_resume_checks_the_checkpoint_database_before_the_webserver(database_url, runner):
    # No webserver listens there: these errors come from the checkpoint database alone.
    client = SpineDagsterClient(f"127.0.0.1:{_closed_port()}", database_url=database_url)
    with pytest.raises(UnknownRunError, match="no spine run or Dagster run with id 'nope'"):
        client.resume("nope")
    done = runner.execute(CLIENT_WF, params={"fixed": True})
    with pytest.raises(NothingToResumeError, match="completed; there is nothing to resume"):
        client.resume(done.run_id)
    failed = runner.execute(CLIENT_WF)
    with pytest.raises(WebserverUnavailableError):
        runner.resume(failed.run_id, webserver=client.base_url)
    record = runner.get_run(failed.run_id)  # nothing changed
    assert record.status is WorkflowStatus.FAILED
    assert record.dagster_run_ids == [failed.dagster_run_id]


class _Recorder(http.server.BaseHTTPRequestHandler):
    """Answers GraphQL with an empty run lookup and records the headers it got."""

    seen: list[dict[str, str]] = []

    def do_POST(self):  # noqa: N802 - http.server API
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        type(self).seen.append(dict(self.headers))
        body = b'{"data": {"runOrError": {"__typename": "RunNotFoundError", "message": "no"}}}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_headers_and_an_api_token_reach_the_webserver(monkeypatch):
    monkeypatch.delenv("SPINE_DAGSTER_API_TOKEN", raising=False)
    _Recorder.seen = []
    server = http.server.HTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        client = SpineDagsterClient(f"127.0.0.1:{server.server_port}", api_token="t0k3n",
                                    headers={"X-Team": "data"})
        with pytest.raises(UnknownRunError, match="has no Dagster run 'x'"):
            client.get_run("x")
        monkeypatch.setenv("SPINE_DAGSTER_API_TOKEN", "from-env")
        with pytest.raises(UnknownRunError):
            SpineDagsterClient(f"127.0.0.1:{server.server_port}").get_run("x")
    finally:
        server.shutdown()
        server.server_close()
    first, second = _Recorder.seen
    assert first["Dagster-Cloud-Api-Token"] == "t0k3n" and first["X-Team"] == "data"
    assert second["Dagster-Cloud-Api-Token"] == "from-env"
    assert SpineDagsterClient("https://acme.dagster.cloud/prod").url == (
        "https://acme.dagster.cloud/prod/graphql")
