"""spine_dagster.pipelines: the registry of named pipelines."""

from __future__ import annotations

import logging

from spine_dagster import pipeline
from spine_dagster.pipelines import get_pipeline, unregister_pipeline


def test_another_function_under_a_taken_name_is_a_warning_naming_both(caplog):
    """Two README examples once registered different functions as 'orders.load': the one
    imported last ran in both workflows, silently. Re-registering the same function (a module
    imported again) stays silent."""
    def first(ctx, config):
        return {"from": "first"}

    def second(ctx, config):
        return {"from": "second"}

    try:
        with caplog.at_level(logging.WARNING, logger="spine_dagster"):
            pipeline("pipelines.test.load")(first)
            pipeline("pipelines.test.load")(first)  # the same function again: no warning
            assert not caplog.records
            pipeline("pipelines.test.load")(second)
        [record] = caplog.records
        message = record.getMessage()
        assert "'pipelines.test.load'" in message and "another name" in message
        assert "first" in message and "second" in message
        assert get_pipeline("pipelines.test.load") is second
    finally:
        unregister_pipeline("pipelines.test.load")
