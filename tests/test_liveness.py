"""spine_dagster.liveness: a run's process is declared gone only when that is certain.

Real processes: children that exited, a zombie, and this process. The end-to-end case (a run
killed with SIGKILL, then resumed) is in test_idempotent_load.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from dagster import instance_for_test, job, op

from spine_dagster import liveness
from spine_dagster.liveness import (
    LAUNCHER_TAG,
    launcher_tag,
    orphaned_reason,
    parse_tag,
    process_is_gone,
)

linux_only = pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="needs /proc")
# The child loads liveness.py by path: it needs only the standard library, so it starts fast.
CHILD = [sys.executable, "-c",
         "import importlib.util, sys, time; "
         "spec = importlib.util.spec_from_file_location('liveness', sys.argv[2]); "
         "mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod); "
         "print(mod.launcher_tag(), flush=True); time.sleep(float(sys.argv[1]))"]


def _child_tag(seconds: float) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([*CHILD, str(seconds), liveness.__file__], stdout=subprocess.PIPE,
                            text=True)
    return proc, proc.stdout.readline().strip()


def _edit(tag: str, **changes) -> str:
    return json.dumps({**parse_tag(tag), **changes})  # the (older) JSON form is still read


def test_this_process_is_alive():
    tag = launcher_tag()
    assert parse_tag(tag)["pid"] == os.getpid()
    assert process_is_gone(tag) is False


def test_a_process_that_exited_is_gone():
    proc, tag = _child_tag(0)
    proc.wait()
    proc.stdout.close()
    assert process_is_gone(tag) is True


@linux_only
def test_a_killed_unreaped_process_is_gone():
    proc, tag = _child_tag(60)
    try:
        assert process_is_gone(tag) is False
        os.kill(proc.pid, signal.SIGKILL)
        deadline = time.monotonic() + 30  # a guard against a hang, not a speed assertion
        while True:  # until the kernel has turned it into a zombie (we have not reaped it)
            with open(f"/proc/{proc.pid}/stat") as fh:
                state = fh.read().rsplit(")", 1)[1].split()[0]
            if state == "Z":
                break
            assert time.monotonic() < deadline, f"SIGKILLed child still in state {state} after 30 s"
            time.sleep(0.01)
        assert process_is_gone(tag) is True
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()


@linux_only
def test_a_reused_pid_or_another_boot_means_gone():
    tag = launcher_tag()
    assert process_is_gone(_edit(tag, start="1")) is True, "same pid, another start time"
    assert process_is_gone(_edit(tag, boot="00000000-old-boot")) is True


def test_uncertain_cases_count_as_alive():
    proc, tag = _child_tag(0)
    proc.wait()
    proc.stdout.close()
    assert process_is_gone(_edit(tag, host="another-machine")) is False
    for garbage in (None, "", "not json", '{"pid": "12"}', "[1, 2]"):
        assert process_is_gone(garbage) is False


def test_a_tag_copied_from_another_run_is_ignored():
    """The UI copies a parent's tags into a re-execution: the tag names a process that did not
    run this Dagster run, so the run is not declared orphaned even though that process is gone."""
    proc, dead = _child_tag(0)
    proc.wait()
    proc.stdout.close()

    @op
    def noop():
        return 1

    @job
    def liveness_probe():
        noop()

    with instance_for_test() as instance:
        result = liveness_probe.execute_in_process(instance=instance, tags={LAUNCHER_TAG: dead})
        assert process_is_gone(dead) is True
        assert orphaned_reason(instance, result.dagster_run) is None
        ours = liveness_probe.execute_in_process(instance=instance,
                                                 tags={LAUNCHER_TAG: launcher_tag()})
        assert orphaned_reason(instance, ours.dagster_run) is None, "its process is alive"
