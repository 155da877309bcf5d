"""Smoke test: ``benchmarks/run.py`` still runs, on both backends, and writes the JSON it documents.

Only that it runs: the figures of a tiny run mean nothing, and speed is never asserted here.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import PG_URL, require_postgres

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = ("overhead_ratio", "resume_ratio", "checkpoint_cost_fraction", "many_steps_ratio",
              "store_scale_ratio", "retention_block_ms", "checkpoint_bytes_per_run",
              "write_throughput_8_writers", "fused_step_vs_dbos", "fused_run_vs_dbos",
              "fused_vs_unfused", "checkpoint_write_vs_driver")


def test_run_py_writes_every_benchmark_for_both_backends(tmp_path):
    require_postgres()
    out = tmp_path / "bench.json"
    env = {**os.environ, "SPINE_BENCH_PG_URL": PG_URL}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--tiny", "--backend", "both",
         "--json", str(out)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "overhead_ratio" in proc.stdout  # the table
    data = json.loads(out.read_text())
    assert sorted(data) == sorted(BENCHMARKS)
    for name, entry in data.items():
        if "dbos" in name and importlib.util.find_spec("dbos") is None:
            continue
        assert isinstance(entry["ratio"], float), name
        assert sorted(entry["backends"]) == ["postgres", "sqlite"], name
        for backend, result in entry["backends"].items():
            assert isinstance(result["ratio"], float), (name, backend)
    assert data["overhead_ratio"]["backends"]["sqlite"]["spine_median_s"] > 0
    assert data["store_scale_ratio"]["backends"]["postgres"]["large_rows"] > \
        data["store_scale_ratio"]["backends"]["postgres"]["small_rows"]
    for backend in ("sqlite", "postgres"):  # every goal of the fused mode, with its evidence
        write = data["checkpoint_write_vs_driver"]["backends"][backend]
        assert write["save_checkpoint_ms"] > 0 and write["driver_upsert_ms"] > 0
        # a per-step cost is a difference of two run times: in a tiny run, noise can make it < 0
        assert isinstance(data["fused_vs_unfused"]["backends"][backend]["unfused_per_step_ms"],
                          float)
        assert data["fused_vs_unfused"]["backends"][backend]["unfused_n_median_s"] > 0
        run = data["fused_run_vs_dbos"]["backends"][backend]
        if importlib.util.find_spec("dbos") is None:  # optional: the `bench` extra
            assert run["ratio"] is None and "pip install" in run["skipped"]
            continue
        assert run["spine_durability"] and run["dbos_durability"]
        assert run["dagster_fixed_cost_s"]["events"] > 0
    assert data["fused_run_vs_dbos"]["goal"] == 1.5 and data["fused_vs_unfused"]["goal"] == 0.1
