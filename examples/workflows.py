"""The example workflows: the seed's "my.workflow", whose step3 calls an external API.

``step3`` calls ``params["api_url"]`` with ``params["timeout"]``. When the API is down, the step
fails with ``ErrorCategory.TRANSIENT`` (connection refused) or ``TIMEOUT``; resume it once the API
is back, with a bigger timeout if needed. ``examples/demo.py`` tells the whole story.

The other workflows show Dagster-native triggers (``definitions/`` wires them up):
``DAILY_REPORT`` is partitioned by day, ``NIGHTLY_DIGEST`` runs on a cron schedule with fixed
params, and ``FILE_INGEST`` is launched by a sensor for each new file in an inbox directory.
"""

from __future__ import annotations

import json
import os
import socket
import urllib.error
import urllib.request
from pathlib import Path

from dagster import DailyPartitionsDefinition

from spine_dagster import ErrorCategory, QualityMetrics, Step, StepResult, Workflow, pipeline
from spine_dagster.db import spine_home


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


# -- Dagster-native examples: a partitioned, a scheduled and a sensor-triggered workflow ----------
# definitions/ serves them with a daily partitioned schedule, a nightly cron schedule and a sensor.

DAILY_PARTITIONS = DailyPartitionsDefinition(start_date="2026-01-01")


def extract_day(ctx, config):
    """Extract one day: the day is the run's partition key, e.g. ``"2026-01-10"``."""
    return StepResult.ok(output={"day": ctx.partition, "records": 24},
                         quality=QualityMetrics(record_count=24, valid_count=24))


def summarize_day(ctx, config):
    records = ctx.get_output("extract", "records", 0)
    return StepResult.ok(output={"day": ctx.partition,
                                 "summary": f"{records} records on {ctx.partition}"})


DAILY_REPORT = Workflow(
    name="examples.daily_report",
    description="Partitioned by day: each run handles the day in ctx.partition.",
    steps=[Step.lambda_("extract", extract_day), Step.lambda_("summarize", summarize_day)],
)


def collect_digest(ctx, config):
    """Collect the items of the digest for ``params["tier"]``."""
    return StepResult.ok(output={"tier": ctx.params["tier"], "items": 3})


def send_digest(ctx, config):
    return StepResult.ok(output={"sent_to": list(ctx.params["recipients"]),
                                 "items": ctx.get_output("collect", "items")})


NIGHTLY_DIGEST = Workflow(
    name="examples.nightly_digest",
    description="Runs every night on a cron schedule with fixed params.",
    defaults={"tier": "standard", "recipients": []},
    steps=[Step.lambda_("collect", collect_digest), Step.lambda_("send", send_digest)],
)


def count_rows(ctx, config):
    """Count the non-empty rows of the file at ``params["path"]``."""
    path = ctx.params["path"]
    with open(path, encoding="utf-8") as fh:
        rows = sum(1 for line in fh if line.strip())
    return StepResult.ok(output={"path": path, "rows": rows},
                         quality=QualityMetrics(record_count=rows, valid_count=rows))


def load_rows(ctx, config):
    return StepResult.ok(output={"loaded": ctx.get_output("count", "rows")})


FILE_INGEST = Workflow(
    name="examples.file_ingest",
    description="Launched by a sensor for each new CSV file in the inbox (params['path']).",
    steps=[Step.lambda_("count", count_rows), Step.lambda_("load", load_rows)],
)


def inbox_dir() -> Path:
    """Where ``new_inbox_files`` looks: ``$SPINE_EXAMPLES_INBOX``, else ``<spine home>/inbox``."""
    return Path(os.environ.get("SPINE_EXAMPLES_INBOX") or spine_home() / "inbox")


def new_inbox_files(context) -> list[dict] | None:
    """Sensor function: params for each ``*.csv`` in the inbox newer than the sensor's cursor.

    The cursor is the name of the newest file already handed out, so each file is run once.
    """
    inbox = inbox_dir()
    files = sorted(inbox.glob("*.csv")) if inbox.is_dir() else []
    new = [path for path in files if path.name > (context.cursor or "")]
    if not new:
        return None
    context.update_cursor(new[-1].name)
    return [{"path": str(path)} for path in new]
