"""The main demo: a workflow fails because an external API is down, and is resumed.

Run it with ``make demo`` (or ``python examples/demo.py``). It uses the embedded defaults: an
SQLite checkpoint database and a persistent Dagster instance, both under ``~/.spine_dagster``
(``$SPINE_DAGSTER_HOME``). Open the runs in the Dagster UI afterwards with ``make ui``.
"""

from __future__ import annotations

import http.server
import json
import socket
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from examples.workflows import MY_WORKFLOW  # noqa: E402
from spine_dagster import WorkflowRunner  # noqa: E402


class ExternalAPI:
    """A tiny HTTP API on 127.0.0.1 that we can take down and bring back."""

    def __init__(self) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/health"
        self._server: http.server.HTTPServer | None = None

    def start(self) -> None:
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's naming
                body = json.dumps({"status": "ok"}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self._server = http.server.HTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()


def show_checkpoints(runner: WorkflowRunner, run_id: str) -> None:
    for cp in runner.list_checkpoints(run_id):
        print(f"    {cp.step_name}: {cp.created_at:%Y-%m-%d %H:%M:%S}  "
              f"output={cp.step_outputs.get(cp.step_name)}")


def main() -> int:
    api = ExternalAPI()  # not started: the API is down
    runner = WorkflowRunner(log_level="CRITICAL")  # quiet Dagster's console log for the demo
    print(f"Checkpoints: {runner.store.display_url}")
    print(f"Dagster instance: {runner.instance.root_directory}\n")

    print(f"1. Run {MY_WORKFLOW.name!r} while the external API at {api.url} is down")
    result = runner.execute(MY_WORKFLOW, params={"api_url": api.url, "timeout": 30})
    print(f"   status={result.status} error_step={result.error_step} "
          f"category={result.error_category}\n   error={result.error}")
    print(f"   run_id={result.run_id} completed_steps={result.completed_steps}")
    print("   checkpoints:")
    show_checkpoints(runner, result.run_id)

    print("\n2. The API is back up; resume with a bigger timeout (30 -> 120)")
    api.start()
    try:
        resumed = runner.resume(result.run_id, params_override={"timeout": 120})
    finally:
        api.stop()
    print(f"   status={resumed.status} run_id={resumed.run_id} "
          f"completed_steps={resumed.completed_steps}")
    print(f"   step3 output: {resumed.context.outputs['step3']}")
    print(f"   step4 says: {resumed.context.outputs['step4']['message']!r}")
    print("   checkpoints:")
    show_checkpoints(runner, result.run_id)
    print(f"   Dagster runs (oldest first; the resume is a re-execution of the first): "
          f"{resumed.dagster_run_ids}")
    child = runner.instance.get_run_by_id(resumed.dagster_run_id)
    print(f"   re-execution parent_run_id={child.parent_run_id} root_run_id={child.root_run_id}")
    print("\nSee both runs, in one run group, in the UI: make ui  (then open http://127.0.0.1:3000)")
    ok = (result.status == "failed" and resumed.status == "completed"
          and resumed.completed_steps == ["step3", "step4"] and resumed.run_id == result.run_id)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
