"""Is the process that ran a spine run still alive? The answer for runs whose process was killed.

A ``WorkflowRunner`` executes Dagster runs in its own process (``execute_job``). When that process
is killed (``SIGKILL``, OOM, a machine reboot), nothing reports the end of the run: the Dagster run
stays ``STARTED`` and the spine run ``running``, so a resume would wait forever. Dagster's own run
monitoring only watches runs launched through a run launcher (the webserver, the daemon).

So the runner tags each Dagster run it executes with the identity of its process
(``spine/launcher``: ``pid@host:start:boot``, the pid, the host name, the process start time and
the first 8 characters of the boot id; short, so that the UI's runs list still shows
``spine/run_id``). A run is *orphaned* when all of these hold:

* the Dagster run is still in progress and was not launched through a deployment (it has no
  remote job origin; those are Dagster's run monitoring's to judge);
* its ``RUN_START`` event was logged by the tagged pid (so the tag is this run's own, not one copied
  from a parent run);
* the tagged process is certainly gone: it ran on this host and either the host rebooted since
  (another boot id), or no process has that pid, or the pid now belongs to a process that started
  at another time (a reused pid), or it is a zombie.

Anything uncertain (another host, no tag, Windows) counts as alive: a resume then raises
``RunInProgressError``, whose message says how to mark the run failed by hand. Pure Python apart
from reading the Dagster run and its ``RUN_START`` event through public API.

Example:
    >>> import os
    >>> from spine_dagster.liveness import launcher_tag, process_is_gone
    >>> process_is_gone(launcher_tag())  # this very process
    False
"""

from __future__ import annotations

import json
import os
import socket
from typing import Any

LAUNCHER_TAG = "spine/launcher"
_BOOT_ID = "/proc/sys/kernel/random/boot_id"


def _boot_id() -> str | None:
    try:
        with open(_BOOT_ID, encoding="ascii") as fh:
            return fh.read().strip() or None
    except OSError:
        return None


def _proc_stat(pid: int) -> tuple[str, str] | None:
    """(state, start time in clock ticks since boot) of ``pid`` from ``/proc``; None if unknown."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[0], fields[19]  # fields 3 (state) and 22 (starttime) of proc(5)


def launcher_tag() -> str:
    """The identity of this process, as the value of the ``spine/launcher`` run tag."""
    pid = os.getpid()
    stat = _proc_stat(pid)
    boot = (_boot_id() or "")[:8]
    return f"{pid}@{socket.gethostname()}:{stat[1] if stat else ''}:{boot}"


def parse_tag(value: str | None) -> dict[str, Any] | None:
    """The identity in a ``spine/launcher`` tag; None when absent or unreadable."""
    if not value:
        return None
    if value.startswith("{"):  # the older JSON form
        try:
            identity = json.loads(value)
        except ValueError:
            return None
        if not isinstance(identity, dict) or not isinstance(identity.get("pid"), int):
            return None
        if identity.get("boot"):
            identity["boot"] = str(identity["boot"])[:8]
        return identity
    pid, sep, rest = value.partition("@")
    host, _, rest = rest.rpartition(":") if rest.count(":") >= 2 else ("", "", "")
    host, _, start = host.rpartition(":") if host else ("", "", "")
    if not sep or not pid.isdigit() or not host:
        return None
    return {"pid": int(pid), "host": host, "start": start or None, "boot": rest or None}


def process_is_gone(tag: str | None) -> bool:
    """True only when the process named by ``tag`` has certainly ended."""
    identity = parse_tag(tag)
    if identity is None or os.name == "nt":  # os.kill(pid, 0) is not a probe on Windows
        return False
    if identity.get("host") != socket.gethostname():
        return False
    boot = (_boot_id() or "")[:8]
    if boot and identity.get("boot") and identity["boot"] != boot:
        return True  # the machine rebooted since: every process of the old boot is gone
    pid = identity["pid"]
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # a process of another user has that pid: compare start times below
    stat = _proc_stat(pid)
    if stat is None:
        return False
    state, start = stat
    if state in ("Z", "X"):
        return True  # killed, not yet reaped by its parent
    return identity.get("start") is not None and identity["start"] != start


def orphaned_reason(instance: Any, dagster_run: Any) -> str | None:
    """Why ``dagster_run`` (in progress) can be declared failed, or None if it may be alive."""
    if getattr(dagster_run, "remote_job_origin", None) is not None:
        return None  # launched through a deployment: Dagster's run monitoring decides
    tag = dagster_run.tags.get(LAUNCHER_TAG)
    identity = parse_tag(tag)
    if identity is None:
        return None
    from dagster import DagsterEventType

    records = instance.get_records_for_run(dagster_run.run_id, of_type=DagsterEventType.RUN_START,
                                           limit=1).records
    event = records[0].event_log_entry.dagster_event if records else None
    if event is not None and event.pid != identity["pid"]:
        return None  # the tag was copied from another run; this run's process is unknown
    if not process_is_gone(tag):
        return None
    return (f"the process that ran Dagster run {dagster_run.run_id} (pid {identity['pid']} on "
            f"{identity.get('host')}) ended without reporting the end of the run: it was killed "
            f"or crashed")
