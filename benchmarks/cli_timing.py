"""How fast the command line answers: ``spine-dagster --help`` and ``resume --plan`` of a 200-step run.

Each figure is the median wall time of a fresh process (what a user waits for at a terminal),
over ``--repeat`` runs. The 200-step run fails at step 150 and is planned with a param change
that one reused step read, so the plan does all its work (checkpoint index, param impact, diff).

    .venv/bin/python benchmarks/cli_timing.py [--repeat 7] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

SCRIPT = Path(sys.executable).parent / "spine-dagster"
WORKFLOW = textwrap.dedent('''
    from spine_dagster import Step, StepResult, Workflow

    def make(i):
        def step(ctx, config):
            if i == 150 and ctx.params.get("fail"):
                return StepResult.fail("step 150 fails", "TRANSIENT")
            return {"i": i, "day": ctx.params["day"] if i == 3 else None}
        return step

    BIG = Workflow("cli.timing", [Step.lambda_(f"s{i}", make(i)) for i in range(200)], fuse=True)
''')


def _median_seconds(command: list[str], env: dict[str, str], cwd: Path, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(command, env=env, cwd=cwd, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "cli_timing_flow.py").write_text(WORKFLOW)
        env = {**os.environ, "SPINE_DAGSTER_HOME": str(root / "home"),
               "SPINE_DAGSTER_WORKSPACE": "", "PYTHONPATH": str(root)}
        env.pop("DAGSTER_HOME", None)
        env.pop("SPINE_DAGSTER_DATABASE_URL", None)
        setup = textwrap.dedent('''
            from spine_dagster import WorkflowRunner
            from cli_timing_flow import BIG
            result = WorkflowRunner(progress=False).execute(BIG, params={"fail": True, "day": "d1"})
            print(result.run_id)
        ''')
        run_id = subprocess.run([sys.executable, "-c", setup], env=env, cwd=root, check=True,
                                capture_output=True, text=True).stdout.split()[-1]
        command = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "spine_dagster.cli"]
        results = {
            "help_seconds": _median_seconds([*command, "--help"], env, root, args.repeat),
            "plan_200_steps_seconds": _median_seconds(
                [*command, "resume", run_id, "--plan", "--param", "day=d2"], env, root,
                args.repeat),
            "repeat": args.repeat,
        }
    print(json.dumps(results, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
