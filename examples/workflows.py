"""The example workflows: the seed's "my.workflow", whose step3 calls an external API.

``step3`` calls ``params["api_url"]`` with ``params["timeout"]``. When the API is down, the step
fails with ``ErrorCategory.TRANSIENT`` (connection refused) or ``TIMEOUT``; resume it once the API
is back, with a bigger timeout if needed. ``examples/demo.py`` tells the whole story.
"""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request

from spine_dagster import ErrorCategory, QualityMetrics, Step, StepResult, Workflow, pipeline


@pipeline("my.step1")
def fetch_records(ctx, config):
    """Pretend to fetch a batch of records for the partition."""
    return StepResult.ok(output={"records": 1000},
                         quality=QualityMetrics(record_count=1000, valid_count=1000))


@pipeline("my.step2")
def process_records(ctx, config):
    records = ctx.get_output("step1", "records", 0)
    return StepResult.ok(output={"processed": records - 50},
                         context_updates={"derived_key": "computed_value"})


@pipeline("my.step3")
def call_external_api(ctx, config):
    """Enrich through the external API. This is the step that fails when the API is down."""
    url = config.get("api_url")
    if not url:
        return StepResult.fail("params.api_url is not set", ErrorCategory.CONFIGURATION)
    try:
        with urllib.request.urlopen(url, timeout=float(config.get("timeout", 30))) as response:
            body = json.loads(response.read().decode())
    except (socket.timeout, TimeoutError):
        return StepResult.fail(f"External API timeout after {config.get('timeout')}s",
                               ErrorCategory.TIMEOUT)
    except (urllib.error.URLError, ConnectionError) as exc:
        return StepResult.fail(f"External API unavailable: {exc}", ErrorCategory.TRANSIENT)
    return StepResult.ok(output={"enriched": ctx.get_output("step2", "processed"),
                                 "api_status": body.get("status"),
                                 "timeout_used": config.get("timeout")})


@pipeline("my.step4")
def publish(ctx, config):
    resumed = ctx.params.get("__resumed__", False)
    message = ("Workflow RESUMED and completed successfully" if resumed
               else "Workflow completed successfully")
    return StepResult.ok(output={"sent": True, "message": message})


MY_WORKFLOW = Workflow(
    name="my.workflow",
    description="The seed's four-step workflow; step3 calls an external API.",
    defaults={"api_url": "http://127.0.0.1:8765/health", "timeout": 30},
    steps=[
        Step.pipeline("step1", "my.step1"),
        Step.pipeline("step2", "my.step2"),
        Step.pipeline("step3", "my.step3"),
        Step.pipeline("step4", "my.step4"),
    ],
)
