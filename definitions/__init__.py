"""The Dagster code location with the example workflows: ``dagster dev -w workspace.yaml``."""

from examples.workflows import MY_WORKFLOW
from spine_dagster import build_definitions

defs = build_definitions([MY_WORKFLOW])
