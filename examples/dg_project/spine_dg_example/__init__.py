"""An example dg project with two Spine workflows (see pyproject.toml)."""
