"""How the ``spine-dagster`` command line prints things: tables, ages, sizes, contexts, progress.

Pure formatting: no database, no Dagster. :mod:`spine_dagster.cli` decides what to print.

Example:
    >>> from datetime import datetime, timedelta, timezone
    >>> now = datetime(2026, 1, 10, 12, tzinfo=timezone.utc)
    >>> age(now - timedelta(hours=5), now), size(2048)
    ('5h', '2.0 kB')
    >>> print(table(["STEP", "SIZE"], [["fetch", "2.0 kB"], ["load", "12 B"]]))
    STEP   SIZE
    fetch  2.0 kB
    load   12 B
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any, Iterable, Mapping, Sequence

from .records import Checkpoint, RunRecord


def now_utc() -> datetime:
    return datetime.now(timezone.utc)


def age(moment: datetime | None, now: datetime | None = None) -> str:
    """``42s``, ``5m``, ``3h`` or ``4d``: how long ago ``moment`` was."""
    if moment is None:
        return "-"
    seconds = max(0.0, ((now or now_utc()) - moment).total_seconds())
    for unit, length, limit in (("s", 1, 60), ("m", 60, 3600), ("h", 3600, 48 * 3600)):
        if seconds < limit:
            return f"{int(seconds // length)}{unit}"
    return f"{int(seconds // 86400)}d"


def size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    if n < 1024 * 1024:
        return f"{n / 1024:.1f} kB"
    return f"{n / (1024 * 1024):.1f} MB"


def one_line(text: Any, limit: int | None = None) -> str:
    """``text`` on a single line (whitespace collapsed), cut to ``limit`` characters."""
    flat = " ".join(str(text if text is not None else "").split())
    if limit is not None and len(flat) > limit:
        return flat[: max(0, limit - 3)] + "..."
    return flat


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A plain left-aligned table; the last column is not padded."""
    cells = [list(headers)] + [["-" if v is None or v == "" else str(v) for v in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in cells)


def to_json(value: Any, indent: int | None = 2) -> str:
    return json.dumps(value, indent=indent, default=str, ensure_ascii=False)


def runs_table(records: Sequence[RunRecord], now: datetime | None = None) -> str:
    rows = [[r.run_id, r.workflow_name, r.status.value, r.error_step, age(r.created_at, now),
             one_line(r.error, 60) if r.status.value == "failed" else ""] for r in records]
    return table(["RUN ID", "WORKFLOW", "STATUS", "FAILED STEP", "AGE", "ERROR"], rows)


def run_line(record: RunRecord) -> str:
    """``run <id> (workflow W): failed at step S: error``."""
    text = f"run {record.run_id} (workflow {record.workflow_name}): {record.status.value}"
    if record.error_step:
        text += f" at step {record.error_step}"
    if record.error and record.status.value == "failed":
        text += f": {one_line(record.error, 200)}"
    return text


def checkpoints_table(checkpoints: Sequence[Checkpoint], now: datetime | None = None) -> str:
    """One row per checkpoint; STATE is valid, superseded (a step at or before it ran again
    since: never resumed from) or rejected (failed its quality gate)."""
    rows = [[c.step_name, c.step_index, c.state, f"{c.created_at:%Y-%m-%d %H:%M:%S}",
             age(c.created_at, now), size(c.size_bytes), c.dagster_run_id] for c in checkpoints]
    return table(["STEP", "#", "STATE", "CREATED (UTC)", "AGE", "SIZE", "DAGSTER RUN"], rows)


def checkpoint_text(checkpoint: Checkpoint) -> str:
    """One checkpoint's context, section by section, for people (``--json`` is for programs)."""
    ctx = checkpoint.context
    head = [f"checkpoint of step {checkpoint.step_name} in run {checkpoint.run_id} "
            f"(workflow {checkpoint.workflow_name})",
            f"created {checkpoint.created_at:%Y-%m-%d %H:%M:%S} UTC ({age(checkpoint.created_at)}"
            f" ago), {size(checkpoint.size_bytes)}, Dagster run {checkpoint.dagster_run_id or '-'}"]
    sections: list[tuple[str, Any]] = [("params", dict(ctx.params)),
                                       ("outputs", dict(ctx.outputs)),
                                       ("quality_metrics", dict(ctx.quality_metrics)),
                                       ("partition", ctx.partition)]
    body = [f"{name}:\n{_indent(to_json(value))}" for name, value in sections]
    return "\n".join(head + body)


def checkpoint_json(checkpoint: Checkpoint) -> str:
    """The checkpoint as stored: run_id, workflow_name, step_name, params, outputs, ..."""
    snapshot = dict(checkpoint.context_snapshot)
    if "params" in snapshot:  # the nested "context" view is derived from the top-level keys
        snapshot.pop("context", None)
    return to_json(snapshot)


def _indent(text: str, prefix: str = "  ") -> str:
    return "\n".join(prefix + line for line in text.splitlines())


def params_text(params: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={to_json(v, indent=None)}" for k, v in params.items())
