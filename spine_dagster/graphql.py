"""Talking to a Dagster webserver: its GraphQL API, as the UI uses it.

:class:`GraphQLTransport` POSTs one query to exactly the URL it was given: it follows no redirect
(a redirect could carry the API token to another host), sends the extra headers and API token
given (for a deployment that requires one, such as Dagster+: ``Dagster-Cloud-Api-Token``), and
speaks HTTPS when the URL says so. The webserver answers some errors with HTTP 500 and a GraphQL
body, so the body is parsed whatever the status.

Where the webserver is, when no URL is given: ``$SPINE_DAGSTER_WEBSERVER_URL``, else the URL that
``make ui`` recorded in ``$SPINE_DAGSTER_HOME/webserver_url``, else ``http://127.0.0.1:3000``.

Example:
    >>> normalize_url("127.0.0.1:3001")
    'http://127.0.0.1:3001/graphql'
    >>> GraphQLTransport("https://acme.dagster.cloud/prod", api_token="t0k3n").headers["Dagster-Cloud-Api-Token"]
    't0k3n'
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any, Mapping

from .dburl import spine_home
from .errors import WebserverQueryError, WebserverUnavailableError

ENV_WEBSERVER_URL = "SPINE_DAGSTER_WEBSERVER_URL"
ENV_API_TOKEN = "SPINE_DAGSTER_API_TOKEN"
DEFAULT_WEBSERVER_URL = "http://127.0.0.1:3000"
TOKEN_HEADER = "Dagster-Cloud-Api-Token"
TERMINAL_STATUSES = ("SUCCESS", "FAILURE", "CANCELED")

_LAUNCH_RESULT = """
    __typename
    ... on LaunchRunSuccess { run { runId status } }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on PythonError { message className }
    ... on Error { message }
"""
LAUNCH_RUN = """mutation SpineLaunchRun($executionParams: ExecutionParams!) {
  launchRun(executionParams: $executionParams) {%s}
}""" % _LAUNCH_RESULT
LAUNCH_RUN_REEXECUTION = """mutation SpineLaunchRunReexecution(
    $executionParams: ExecutionParams, $reexecutionParams: ReexecutionParams) {
  launchRunReexecution(executionParams: $executionParams,
                       reexecutionParams: $reexecutionParams) {%s}
}""" % _LAUNCH_RESULT
_RUN_FIELDS = """
    runId status jobName parentRunId rootRunId stepKeysToExecute runConfig
    tags { key value }
    repositoryOrigin { repositoryLocationName repositoryName }
"""
RUN_QUERY = """query SpineRun($runId: ID!) {
  runOrError(runId: $runId) {
    __typename
    ... on Run {%s}
    ... on Error { message }
  }
}""" % _RUN_FIELDS
RUN_GROUP_QUERY = """query SpineRunGroup($runId: ID!) {
  runGroupOrError(runId: $runId) {
    __typename
    ... on RunGroup { rootRunId runs {%s} }
    ... on Error { message }
  }
}""" % _RUN_FIELDS
JOB_QUERY = """query SpineJob($selector: PipelineSelector!) {
  pipelineOrError(params: $selector) {
    __typename
    ... on Pipeline {
      name
      metadataEntries {
        label
        ... on JsonMetadataEntry { jsonString }
        ... on TextMetadataEntry { text }
      }
    }
    ... on Error { message }
  }
}"""
WORKSPACE_QUERY = """query SpineWorkspace {
  workspaceOrError {
    __typename
    ... on Workspace {
      locationEntries {
        name
        locationOrLoadError {
          __typename
          ... on RepositoryLocation { name repositories { name pipelines { name } } }
          ... on PythonError { message }
        }
      }
    }
    ... on Error { message }
  }
}"""


@dataclass(frozen=True)
class RemoteRun:
    """A Dagster run as the deployment reports it."""

    run_id: str
    status: str
    job_name: str
    location_name: str | None = None
    repository_name: str | None = None
    run_config: dict[str, Any] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    parent_run_id: str | None = None
    root_run_id: str | None = None
    step_keys_to_execute: list[str] | None = None

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def success(self) -> bool:
        return self.status == "SUCCESS"

    @classmethod
    def from_graphql(cls, data: Mapping[str, Any]) -> RemoteRun:
        origin = data.get("repositoryOrigin") or {}
        return cls(
            run_id=data["runId"], status=data["status"], job_name=data["jobName"],
            location_name=origin.get("repositoryLocationName"),
            repository_name=origin.get("repositoryName"),
            run_config=dict(data.get("runConfig") or {}),
            tags={t["key"]: t["value"] for t in data.get("tags") or []},
            parent_run_id=data.get("parentRunId"), root_run_id=data.get("rootRunId"),
            step_keys_to_execute=data.get("stepKeysToExecute"))


def default_webserver_url() -> str:
    """``$SPINE_DAGSTER_WEBSERVER_URL``, else what ``make ui`` recorded, else port 3000."""
    url = os.environ.get(ENV_WEBSERVER_URL)
    if url:
        return url
    recorded = spine_home() / "webserver_url"
    try:
        text = recorded.read_text(encoding="utf-8").strip()
    except OSError:
        text = ""
    return text or DEFAULT_WEBSERVER_URL


def normalize_url(url: str | None) -> str:
    """``host:port``, ``http(s)://host:port`` or ``.../graphql`` -> ``http(s)://host:port/graphql``."""
    url = (url or default_webserver_url()).strip().rstrip("/")
    if "://" not in url:
        url = f"http://{url}"
    scheme = url.split("://", 1)[0].lower()
    if scheme not in ("http", "https"):
        raise WebserverUnavailableError(
            f"{url} is not an http(s) URL; pass the URL the Dagster UI is served at, e.g. "
            f"http://127.0.0.1:3000")
    return url if url.endswith("/graphql") else f"{url}/graphql"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: D102, PLR0913
        raise WebserverUnavailableError(
            f"the Dagster webserver at {req.full_url} answered with a redirect (HTTP {code}) to "
            f"{newurl}; the client talks only to the URL it is given. Pass the final URL instead.")


class GraphQLTransport:
    """POSTs GraphQL to one webserver URL (see the module docs).

    Args:
        url: the webserver, e.g. ``http://127.0.0.1:3000`` (``/graphql`` is added); default: see
            :func:`default_webserver_url`.
        headers: extra HTTP headers sent with every request.
        api_token: sent as ``Dagster-Cloud-Api-Token`` (default ``$SPINE_DAGSTER_API_TOKEN``).
        timeout: seconds to wait for each HTTP answer.
    """

    def __init__(self, url: str | None = None, *, headers: Mapping[str, str] | None = None,
                 api_token: str | None = None, timeout: float = 60.0) -> None:
        self.url = normalize_url(url)
        self.base_url = self.url[: -len("/graphql")]
        self.timeout = timeout
        self.headers = {"Content-Type": "application/json", "Accept": "application/json",
                        **{str(k): str(v) for k, v in (headers or {}).items()}}
        token = api_token or os.environ.get(ENV_API_TOKEN)
        if token:
            self.headers[TOKEN_HEADER] = token
        self._opener = urllib.request.build_opener(_NoRedirect())

    def graphql(self, query: str, variables: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """POST one GraphQL request; returns its ``data``.

        Raises ``WebserverUnavailableError`` when the webserver cannot be reached,
        ``WebserverQueryError`` for GraphQL-level errors.
        """
        body = json.dumps({"query": query, "variables": dict(variables or {})}).encode()
        request = urllib.request.Request(self.url, data=body, method="POST",
                                         headers=dict(self.headers))
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                raw, status = response.read(), response.status
        except urllib.error.HTTPError as exc:
            raw, status = exc.read(), exc.code
        except WebserverUnavailableError:
            raise
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise WebserverUnavailableError(
                f"cannot reach the Dagster webserver at {self.base_url}: {reason}. Check that "
                f"dagster-webserver (or dagster dev) is running there and that the URL is the "
                f"one the UI is served at.") from None
        if status in (401, 403):
            raise WebserverUnavailableError(
                f"the Dagster webserver at {self.base_url} refused the request (HTTP {status}): "
                f"pass its API token (api_token= or --api-token, or $SPINE_DAGSTER_API_TOKEN) or "
                f"the headers it requires.")
        try:
            payload = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise WebserverUnavailableError(
                f"{self.url} answered HTTP {status} without a GraphQL body; is it a Dagster "
                f"webserver? (pass the URL the UI is served at, e.g. http://127.0.0.1:3000)"
            ) from None
        errors = payload.get("errors") if isinstance(payload, dict) else None
        if errors:
            messages = "; ".join(str(e.get("message", e)) for e in errors)
            raise WebserverQueryError(
                f"the Dagster webserver at {self.base_url} rejected the request (HTTP {status}): "
                f"{messages}", "GraphQLError")
        if not isinstance(payload, dict) or not isinstance(payload.get("data"), dict):
            raise WebserverQueryError(
                f"the Dagster webserver at {self.base_url} answered HTTP {status} with no data",
                None)
        return payload["data"]


def raise_for(result: Mapping[str, Any], doing: str) -> None:
    typename = result.get("__typename", "")
    if typename.endswith("Error") or typename.endswith("Invalid"):
        raise WebserverQueryError(f"{doing} failed: {typename}: {message_of(result)}", typename)


def message_of(result: Mapping[str, Any]) -> str:
    if result.get("errors"):
        return "; ".join(e["message"] for e in result["errors"])
    return str(result.get("message") or "").strip()


def launched(result: Mapping[str, Any], doing: str) -> str:
    if result.get("__typename") == "LaunchRunSuccess":
        return result["run"]["runId"]
    typename = result.get("__typename")
    raise WebserverQueryError(f"{doing} failed: {typename}: {message_of(result)}", typename)


def selector(location: str, repository: str, job_name: str) -> dict[str, str]:
    return {"repositoryLocationName": location, "repositoryName": repository,
            "jobName": job_name}


def tag_list(tags: Mapping[str, str]) -> list[dict[str, str]]:
    return [{"key": str(k), "value": str(v)} for k, v in tags.items()]
