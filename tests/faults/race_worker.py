"""A worker process of the concurrency tests: ``python race_worker.py SPEC.json``.

It imports Dagster and spine_dagster once, then for each round waits at a file barrier (the
test creates ``go-<round>`` once every worker wrote ``ready-<round>-<name>``), does its action
at that moment, and writes ``result-<round>-<name>.json``:

Its action (``action``, or ``actions[round]``):

* ``resume``: ``WorkflowRunner.resume(run_id)`` of the run named in ``run-<round>``;
* ``start_from``: ``WorkflowRunner.execute(OUTAGE, run_id=..., start_from="enrich")``;
* ``run``: a new run of ``OUTAGE`` with the params in the spec (``fail_file`` makes it fail at
  ``publish``); when it fails, the worker removes the file and resumes it.

The result is ``{"outcome": "completed" | "failed" | <error class>, "error": ..., ...}``.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from pathlib import Path


def wait_for(path: Path, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {path}")
        time.sleep(0.002)


def act(runner, spec: dict, round_no: int, folder: Path) -> dict:
    from outage_flows import OUTAGE  # noqa: PLC0415

    action = spec["actions"][round_no] if "actions" in spec else spec["action"]
    if action == "run":
        first = runner.execute(OUTAGE, params=spec["params"])
        result = {"run_id": first.run_id, "first": first.status.value,
                  "first_step": first.error_step}
        if first.status.value == "failed":
            Path(spec["params"]["fail_file"]).unlink(missing_ok=True)
            first = runner.resume(first.run_id)
        return {**result, "outcome": first.status.value, "error": first.error,
                "completed_steps": first.completed_steps}
    run_id = (folder / f"run-{round_no}").read_text()
    began = time.monotonic()
    try:
        if action == "resume":
            result = runner.resume(run_id)
        else:
            result = runner.execute(OUTAGE, run_id=run_id, start_from="enrich")
    except Exception as exc:  # noqa: BLE001 - the test judges it
        from spine_dagster import SpineDagsterError  # noqa: PLC0415

        return {"outcome": type(exc).__name__, "error": str(exc),
                "spine_error": isinstance(exc, SpineDagsterError),
                "seconds": time.monotonic() - began,
                "trace": "" if isinstance(exc, SpineDagsterError) else traceback.format_exc()}
    return {"outcome": result.status.value, "error": result.error,
            "completed_steps": result.completed_steps, "seconds": time.monotonic() - began}


def main() -> None:
    spec = json.loads(Path(sys.argv[1]).read_text())
    folder = Path(spec["folder"])
    from dagster import DagsterInstance  # noqa: PLC0415

    from spine_dagster import WorkflowRunner  # noqa: PLC0415

    instance = DagsterInstance.from_config(spec["dagster_home"])
    runner = WorkflowRunner(database_url=spec["database_url"], instance=instance,
                            progress=False)
    for round_no in range(len(spec.get("actions", [None]))):
        (folder / f"ready-{round_no}-{spec['name']}").touch()
        wait_for(folder / f"go-{round_no}")
        result = act(runner, spec, round_no, folder)
        out = folder / f"result-{round_no}-{spec['name']}.json"
        out.with_suffix(".tmp").write_text(json.dumps(result))
        os.replace(out.with_suffix(".tmp"), out)
    instance.dispose()


if __name__ == "__main__":
    main()
