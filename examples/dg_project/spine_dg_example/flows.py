"""``customers.sync``: a workflow written in Python (served by ``defs/customer_sync.py``).

``fetch`` calls a slow CRM: it takes ``params.crm_seconds`` and gives up after
``params.timeout`` seconds (a ``TIMEOUT`` failure). ``upsert`` writes to the warehouse, in the
Dagster concurrency pool ``warehouse``: set its limit with ``dagster instance concurrency set
warehouse 1`` and two runs never write at the same time.
"""

import time

from spine_dagster import ErrorCategory, Step, StepResult, Workflow


def fetch(ctx, config):
    """Fetch the customers changed since the last sync from the CRM."""
    seconds, timeout = float(config["crm_seconds"]), float(config["timeout"])
    if seconds > timeout:
        return StepResult.fail(f"the CRM did not answer within {timeout:g}s",
                               ErrorCategory.TIMEOUT)
    time.sleep(seconds)
    return StepResult.ok(output={"customers": 42, "timeout_used": timeout})


def upsert(ctx, config):
    """Upsert the fetched customers into the warehouse."""
    return StepResult.ok(output={"upserted": ctx.get_output("fetch", "customers")})


CUSTOMER_SYNC = Workflow(
    "customers.sync",
    [Step.lambda_("fetch", fetch), Step.lambda_("upsert", upsert, pool="warehouse")],
    domain="crm", description="Sync the customers changed in the CRM into the warehouse.",
    defaults={"timeout": 5, "crm_seconds": 0}, tags=["hourly"], owners=["team:crm"])
