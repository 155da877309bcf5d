"""The Dagster instance that ``WorkflowRunner`` (and ``spine-dagster resume``) runs on, checked.

``$DAGSTER_HOME`` when it is set, else a persistent instance in ``~/.spine_dagster/dagster_home``.
Dagster reads ``dagster.yaml`` when it loads an instance, but builds the run coordinator, run
launcher and compute log manager it names only when they are first used: in the middle of a run,
which then fails without a word about the file, before any step could record it.
:func:`checked_instance` builds them at once, so that a bad ``$DAGSTER_HOME`` or ``dagster.yaml``
is an :class:`~spine_dagster.errors.InstanceConfigError`, naming the file, Dagster's own message
and the fix, before any run exists.

Example:
    >>> from dagster import instance_for_test
    >>> with instance_for_test() as instance:
    ...     checked_instance(instance) is instance
    True
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from dagster import DagsterInstance

from . import dburl
from .errors import InstanceConfigError

# Built lazily by Dagster; "module: dagster" has no DefaultRunCoordinator (see the README).
_LAZY_PARTS = ("run_coordinator", "run_launcher", "compute_log_manager")
_COORDINATOR_FIX = (" A run coordinator without the daemon is class DefaultRunCoordinator in "
                    "module dagster._core.run_coordinator (module dagster has "
                    "QueuedRunCoordinator and DefaultRunLauncher only).")
_MESSAGE_LIMIT = 500


def default_instance() -> DagsterInstance:
    """``$DAGSTER_HOME`` when set, else a persistent instance in ``<spine home>/dagster_home``;
    ``InstanceConfigError`` when it cannot be loaded."""
    home = os.environ.get("DAGSTER_HOME")
    try:
        if home:
            return DagsterInstance.get()
        path = dburl.spine_home() / "dagster_home"
        home = str(path)
        path.mkdir(parents=True, exist_ok=True)
        config = path / "dagster.yaml"
        if not config.exists():
            config.write_text("telemetry:\n  enabled: false\n")
        return DagsterInstance.from_config(str(path))
    except Exception as exc:  # noqa: BLE001 - Dagster raises many kinds; each becomes one error
        raise _error(home, "", exc) from exc


def checked_instance(instance: DagsterInstance) -> DagsterInstance:
    """``instance``, once the parts of it that Dagster builds on first use could be built."""
    for part in _LAZY_PARTS:
        try:
            getattr(instance, part)
        except Exception as exc:  # noqa: BLE001 - a user class may raise anything
            raise _error(getattr(instance, "root_directory", None), part, exc) from exc
    return instance


def _error(home: Any, part: str, exc: Exception) -> InstanceConfigError:
    """Where the instance is, what Dagster said (cut to one line), and the fix."""
    said = " ".join(f"{type(exc).__name__}: {exc}".split())
    if len(said) > _MESSAGE_LIMIT:
        said = said[:_MESSAGE_LIMIT - 3] + "..."
    config = Path(str(home)) / "dagster.yaml" if home else None
    verb = f"build its {part} from" if part else "load"
    fix = (f"Fix {config}, or set DAGSTER_HOME to the absolute path of another directory with "
           f"a valid dagster.yaml." if config else "Set DAGSTER_HOME to the absolute path of a "
           "directory with a valid dagster.yaml.")
    if part == "run_coordinator" or "RunCoordinator" in said:
        fix += _COORDINATOR_FIX
    return InstanceConfigError(
        f"the Dagster instance in {home or '$DAGSTER_HOME'} cannot be used: Dagster could not "
        f"{verb} {config or 'dagster.yaml'}: {said}. Nothing was run.", hint=fix)
