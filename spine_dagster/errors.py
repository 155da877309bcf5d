"""One error hierarchy. Every message says what went wrong and what to do next."""

from __future__ import annotations


class SpineDagsterError(Exception):
    """Base class of every error that spine_dagster raises on purpose."""


class UnknownRunError(SpineDagsterError, KeyError):
    """No spine run (and no Dagster run of one) has the given id."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class NothingToResumeError(SpineDagsterError):
    """The run already completed, so there is nothing to resume."""


class RunInProgressError(SpineDagsterError):
    """The run is still running (or another resume of it is), so it cannot be resumed now."""


class WorkflowMismatchError(SpineDagsterError):
    """The workflow given does not match the workflow the run was started with."""


class WorkflowChangedError(WorkflowMismatchError):
    """The workflow's steps up to the resume point changed since the run's checkpoints were written."""


class UnknownStepError(SpineDagsterError, ValueError):
    """A step name (for example ``start_from``) names no step of the workflow."""


class CheckpointNotFoundError(SpineDagsterError, LookupError):
    """There is no checkpoint for that step of that run."""


class UnknownPipelineError(SpineDagsterError, LookupError):
    """A ``Step.pipeline`` names a pipeline that nobody registered with ``@pipeline``."""


class WorkflowNotFoundError(SpineDagsterError):
    """The workflow of a run cannot be imported in this process."""


class DatabaseUnavailableError(SpineDagsterError):
    """The checkpoint database cannot be reached."""


class SchemaOutOfDateError(SpineDagsterError):
    """The checkpoint database schema is older than this version of spine_dagster."""


class CheckpointSerializationError(SpineDagsterError, TypeError):
    """A step's output or context updates cannot be stored as JSON."""


class CheckpointWriteError(SpineDagsterError):
    """A step's checkpoint could not be written (for example, the database went down)."""


class CheckpointTooLargeError(SpineDagsterError, ValueError):
    """A checkpoint is larger than the configured limit."""


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

    def __init__(self, message: str, typename: str | None = None) -> None:
        super().__init__(message)
        self.typename = typename
