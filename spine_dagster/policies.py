"""How steps fail: ``ErrorCategory`` (why), ``ErrorPolicy`` and ``RetryPolicy`` (what happens next).

Pure Python, no Dagster import. The model, the results and auto-resume all build on this module.

Example:
    >>> from spine_dagster import ErrorCategory, RetryPolicy
    >>> policy = RetryPolicy(max_attempts=4, retryable_categories=["transient"])
    >>> policy.is_retryable(ErrorCategory.TRANSIENT), policy.delay_for(3)
    (True, 4.0)
    >>> RetryPolicy.from_dict(policy.to_dict()) == policy
    True
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from enum import Enum
from typing import Any, Iterable, Mapping

from .data_checks import check_keys, is_number, require_mapping
from .errors import InvalidWorkflowError


class ErrorCategory(str, Enum):
    """Why a step failed. Auto-resume and retries act on the category."""

    INTERNAL = "INTERNAL"
    DATA_QUALITY = "DATA_QUALITY"
    TRANSIENT = "TRANSIENT"
    TIMEOUT = "TIMEOUT"
    DEPENDENCY = "DEPENDENCY"
    CONFIGURATION = "CONFIGURATION"


def error_categories(values: Iterable[Any] | str | ErrorCategory, *, owner: str) -> tuple[str, ...]:
    """``values`` as a tuple of category names (upper case, duplicates dropped, order kept).

    Accepts one category or an iterable of ``ErrorCategory`` members and names. ``owner`` names
    the policy in the error, e.g. ``"AutoResume"``.
    """
    if isinstance(values, (str, ErrorCategory)):
        values = (values,)
    known = [c.value for c in ErrorCategory]
    result = []
    for value in values:
        name = value.value if isinstance(value, ErrorCategory) else str(value).upper()
        if name not in known:
            raise InvalidWorkflowError(
                f"{owner}: unknown error category {value!r}; use some of {known}.")
        result.append(name)
    if not result:
        raise InvalidWorkflowError(f"{owner}: categories is empty; name at least one category.")
    return tuple(dict.fromkeys(result))


class ErrorPolicy(str, Enum):
    """What a failing step does to its run."""

    STOP = "stop"
    CONTINUE = "continue"
    RETRY = "retry"


@dataclass(frozen=True)
class RetryPolicy:
    """How a step with ``on_error=ErrorPolicy.RETRY`` is retried inside one run."""

    max_attempts: int = 3
    initial_delay_seconds: float = 1.0
    backoff_multiplier: float = 2.0
    max_delay_seconds: float = 60.0
    retryable_categories: tuple[str, ...] = ("TRANSIENT", "TIMEOUT")

    def __post_init__(self) -> None:
        if not isinstance(self.max_attempts, int) or isinstance(self.max_attempts, bool) \
                or self.max_attempts < 1:
            raise InvalidWorkflowError(f"RetryPolicy(max_attempts={self.max_attempts!r}): use a "
                                       f"whole number >= 1 (it counts the first attempt).")
        for name, low in (("initial_delay_seconds", 0), ("max_delay_seconds", 0),
                          ("backoff_multiplier", 1)):
            value = getattr(self, name)
            if not is_number(value) or not value >= low:
                raise InvalidWorkflowError(f"RetryPolicy({name}={value!r}): use a number >= {low}.")
        object.__setattr__(self, "retryable_categories",
                           error_categories(self.retryable_categories, owner="RetryPolicy"))

    def delay_for(self, attempt: int) -> float:
        """Seconds to wait before attempt ``attempt + 1`` (``attempt`` counts from 1)."""
        delay = self.initial_delay_seconds * self.backoff_multiplier ** max(attempt - 1, 0)
        return min(delay, self.max_delay_seconds)

    def is_retryable(self, category: str | ErrorCategory | None) -> bool:
        value = category.value if isinstance(category, ErrorCategory) else category
        return value in self.retryable_categories

    def to_dict(self) -> dict[str, Any]:
        """The data form: every field, ``retryable_categories`` as a list."""
        return {**asdict(self), "retryable_categories": list(self.retryable_categories)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RetryPolicy:
        """Build a policy from its data form; unknown keys are refused."""
        require_mapping(data, "retry")
        check_keys(data, [f.name for f in fields(cls)], "retry")
        return cls(**data)
