"""One error hierarchy. Every message says what went wrong and what to do next.

Errors whose fix differs between Python and the command line carry both: ``str(error)`` gives
the Python advice (``start_from=...``), and ``error.cli_message`` the command-line one
(``--start-from ...``), which ``spine-dagster`` prints.

Example:
    >>> error = UnknownStepError("no step 'x'.", hint="Pass start_from=STEP.",
    ...                          cli_hint="Pass --start-from STEP.")
    >>> str(error), error.cli_message
    ("no step 'x'. Pass start_from=STEP.", "no step 'x'. Pass --start-from STEP.")
"""

from __future__ import annotations

from typing import Any


class SpineDagsterError(Exception):
    """Base class of every error that spine_dagster raises on purpose.

    Args:
        message: what went wrong (and the fix, when it is the same everywhere).
        hint: the fix, in Python terms; appended to ``message``.
        cli_hint: the fix, in ``spine-dagster`` terms (default: ``hint``).
    """

    def __init__(self, message: str = "", *args: Any, hint: str | None = None,
                 cli_hint: str | None = None) -> None:
        self.problem = str(message)
        self.hint = hint
        self.cli_hint = cli_hint if cli_hint is not None else hint
        super().__init__(self._join(hint), *args)

    def _join(self, hint: str | None) -> str:
        return f"{self.problem} {hint}".strip() if hint else self.problem

    @property
    def cli_message(self) -> str:
        """The message with the command-line advice."""
        return self._join(self.cli_hint)

    def __str__(self) -> str:  # KeyError subclasses would repr() the message
        return str(self.args[0]) if self.args else ""


class UnknownRunError(SpineDagsterError, KeyError):
    """No spine run (and no Dagster run of one) has the given id."""


class InvalidRunIdError(UnknownRunError, ValueError):
    """A run id that cannot name any run (not a string, empty, too long, a NUL byte...)."""


class NothingToResumeError(SpineDagsterError):
    """The run already completed, so there is nothing to resume."""


class RunInProgressError(SpineDagsterError):
    """The run is still running (or another resume of it is), so it cannot be resumed now."""


class WorkflowMismatchError(SpineDagsterError):
    """The workflow given does not match the workflow the run was started with."""


class WorkflowChangedError(WorkflowMismatchError):
    """The steps a resume would build on changed since the run's checkpoints were written."""


class StaleStepsError(SpineDagsterError):
    """A resume with ``on_stale="error"`` would reuse steps that read a changed param.

    ``plan`` is the :class:`~spine_dagster.resume.ResumePlan` that was refused.
    """

    def __init__(self, message: str = "", *args: Any, plan: Any = None, **hints: Any) -> None:
        super().__init__(message, *args, **hints)
        self.plan = plan


class UnknownStepError(SpineDagsterError, ValueError):
    """A step name (for example ``start_from``) names no step of the workflow."""


class CheckpointNotFoundError(SpineDagsterError, LookupError):
    """There is no (usable) checkpoint for that step of that run."""


class CheckpointCorruptError(SpineDagsterError, ValueError):
    """A stored checkpoint (or run record, or a Dagster run's ``spine/run_id`` tag) is not what
    spine_dagster wrote: edited, truncated or tampered with. The message names the run, the step
    and what is wrong. Nothing was run."""


class UnknownPipelineError(SpineDagsterError, LookupError):
    """A ``Step.pipeline`` names a pipeline that nobody registered with ``@pipeline``."""


class WorkflowNotFoundError(SpineDagsterError):
    """The workflow of a run cannot be imported in this process."""


class DatabaseUnavailableError(SpineDagsterError):
    """The checkpoint database cannot be reached, or cannot be written (read-only, disk full)."""


class InvalidDatabaseUrlError(DatabaseUnavailableError, ValueError):
    """The checkpoint database URL is malformed or names an unsupported database."""


class SchemaOutOfDateError(SpineDagsterError):
    """The checkpoint database schema is older than this version of spine_dagster."""


class CheckpointSerializationError(SpineDagsterError, TypeError):
    """A value cannot be stored as JSON (or is nested deeper than the limit)."""


class InvalidParamsError(CheckpointSerializationError, ValueError):
    """Params, a params override or a run config override are not of the expected shape."""


class CheckpointWriteError(SpineDagsterError):
    """A step's checkpoint could not be written (for example, the database went down)."""


class CheckpointTooLargeError(SpineDagsterError, ValueError):
    """A checkpoint is larger than the configured limit."""


class InvalidSettingError(SpineDagsterError, ValueError):
    """A setting of the runner, the IO manager or a job is out of range."""


class InstanceConfigError(InvalidSettingError):
    """The Dagster instance cannot be loaded: ``$DAGSTER_HOME`` is not a usable directory, or its
    ``dagster.yaml`` is not valid (bad YAML, a run coordinator or launcher class that does not
    exist, storage that cannot be reached). Raised before any run is created."""


class InvalidWorkflowError(SpineDagsterError, ValueError):
    """A workflow cannot be compiled to a Dagster job."""


class ConditionError(SpineDagsterError, TypeError):
    """A choice step's data condition cannot compare the value it read (say, text with a number)."""


class InvalidAutomationError(SpineDagsterError, ValueError):
    """A schedule, sensor or code-location option cannot be built as asked."""


class InvalidRetentionError(SpineDagsterError, ValueError):
    """A retention period or batch size for checkpoint cleanup is missing or not valid."""


class WebserverUnavailableError(SpineDagsterError, ConnectionError):
    """The Dagster webserver cannot be reached, or does not answer GraphQL."""


class WebserverQueryError(SpineDagsterError):
    """The Dagster webserver refused a GraphQL request (a ``PythonError``, invalid config...).

    ``typename`` is the GraphQL error type (for example ``PythonError``).
    """

    def __init__(self, message: str = "", typename: str | None = None, **hints: Any) -> None:
        super().__init__(message, **hints)
        self.typename = typename
