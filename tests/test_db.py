"""spine_dagster.db: processes that open a new checkpoint database at the same moment.

Each process creates the schema on first use. Without a lock held for the whole creation, one
process saw the other's half-made schema (SQLite runs each CREATE TABLE in a transaction of its
own): "has schema version 0", or "table ... already exists". On [sqlite] and [postgres].
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

FIRST_USE = """
import sys, time
from spine_dagster import CheckpointStore
url, start = sys.argv[1], float(sys.argv[2])
while time.time() < start:
    time.sleep(0.001)
store = CheckpointStore.for_url(url)
print(len(store.list_runs()))
"""
PROCESSES = 4


def first_use_at_once(url: str) -> list[subprocess.CompletedProcess]:
    start = time.time() + 2.5  # after every interpreter has imported spine_dagster
    procs = [subprocess.Popen([sys.executable, "-c", FIRST_USE, url, repr(start)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={**os.environ})
             for _ in range(PROCESSES)]
    return [subprocess.CompletedProcess(p.args, p.wait(timeout=60), *p.communicate())
            for p in procs]


@pytest.mark.timeout(120)
def test_processes_that_open_a_new_database_at_once_all_get_the_schema(database_url, tmp_path):
    urls = ([database_url] if database_url.startswith("postgresql") else
            [f"sqlite:///{tmp_path}/round{i}/checkpoints.db" for i in range(3)])
    for url in urls:
        for done in first_use_at_once(url):
            assert done.returncode == 0 and done.stdout.strip() == "0", done.stderr[-2000:]
