"""A fixture: an importable module that registers the pipelines of the YAML test workflows."""

from __future__ import annotations

import sys
import textwrap
import uuid
from typing import Iterator

import pytest

from spine_dagster.pipelines import unregister_pipeline

PIPELINES = ("fetch", "parse", "load")


@pytest.fixture
def pipelines(tmp_path, monkeypatch) -> Iterator[str]:
    """The name of a fresh module (not imported yet) that registers ``<name>.fetch``, ``.parse``
    and ``.load``; ``<name>.BROKEN["load"] = True`` makes load fail with a TRANSIENT error."""
    name = f"yaml_pipes_{uuid.uuid4().hex[:10]}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(f"""
        from spine_dagster import StepResult, pipeline

        BROKEN = {{"load": False}}

        @pipeline("{name}.fetch")
        def fetch(ctx, config):
            return {{"rows": config.get("limit", 3)}}

        @pipeline("{name}.parse")
        def parse(ctx, config):
            return {{"parsed": config.get("file")}}

        @pipeline("{name}.load")
        def load(ctx, config):
            if BROKEN["load"]:
                return StepResult.fail("warehouse down", "TRANSIENT")
            return {{"table": config.get("table"), "rows": ctx.get_output("fetch", "rows")}}
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    for pipe in PIPELINES:
        unregister_pipeline(f"{name}.{pipe}")
    sys.modules.pop(name, None)
