"""``QualityThresholds``: the data-quality limits that a step's ``QualityMetrics`` must meet.

Pure Python, no Dagster import. A step declares its limits with
``Step.pipeline(..., quality_thresholds=QualityThresholds(...))``; ``check`` compares the metrics a
step reported (``StepResult.quality``) with them and explains every limit that is not met.

Example:
    >>> from spine_dagster import QualityMetrics, QualityThresholds
    >>> limits = QualityThresholds(min_valid_rate=0.95, min_record_count=10)
    >>> limits.check(QualityMetrics(record_count=100, valid_count=82))
    ['valid_rate 0.82 is below min_valid_rate 0.95']
    >>> limits.check(QualityMetrics(record_count=100, valid_count=99))
    []
    >>> limits.to_dict()
    {'min_valid_rate': 0.95, 'min_record_count': 10}
    >>> QualityThresholds.from_dict(limits.to_dict()) == limits
    True
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Mapping

from .data_checks import check_keys, is_number, require_mapping
from .errors import InvalidWorkflowError
from .results import QualityMetrics

RATES = ("min_valid_rate", "max_null_rate")
COUNTS = ("min_record_count", "max_record_count")


@dataclass(frozen=True)
class QualityThresholds:
    """Limits on a step's quality metrics; ``None`` leaves a limit out.

    Args:
        min_valid_rate: the lowest ``valid_rate`` allowed, from 0 to 1 (0.95 means 95%).
        max_null_rate: the highest ``null_rate`` allowed, from 0 to 1.
        min_record_count: the fewest records allowed (>= 0).
        max_record_count: the most records allowed (>= ``min_record_count``).
    """

    min_valid_rate: float | None = None
    max_null_rate: float | None = None
    min_record_count: int | None = None
    max_record_count: int | None = None

    def __post_init__(self) -> None:
        for name in RATES:
            value = getattr(self, name)
            if value is not None and not (is_number(value) and 0 <= value <= 1):
                raise InvalidWorkflowError(
                    f"QualityThresholds({name}={value!r}): a rate is a number from 0 to 1 (0.95 "
                    f"means 95%).")
        for name in COUNTS:
            value = getattr(self, name)
            if value is not None and not (is_number(value) and isinstance(value, int)
                                          and value >= 0):
                raise InvalidWorkflowError(
                    f"QualityThresholds({name}={value!r}): a record count is a whole number >= 0.")
        low, high = self.min_record_count, self.max_record_count
        if low is not None and high is not None and low > high:
            raise InvalidWorkflowError(
                f"QualityThresholds(min_record_count={low}, max_record_count={high}): the minimum "
                f"is above the maximum; swap them or raise max_record_count.")

    def check(self, metrics: QualityMetrics | Mapping[str, Any]) -> list[str]:
        """One line per limit that ``metrics`` does not meet (empty when all are met).

        ``metrics`` is a ``QualityMetrics`` or its ``to_dict()`` form (as kept in a checkpoint).
        """
        if isinstance(metrics, Mapping):
            metrics = QualityMetrics.from_dict(metrics)
        failures = []
        if self.min_valid_rate is not None and metrics.valid_rate < self.min_valid_rate:
            failures.append(_line("valid_rate", metrics.valid_rate, "is below", "min_valid_rate",
                                  self.min_valid_rate))
        if self.max_null_rate is not None and metrics.null_rate > self.max_null_rate:
            failures.append(_line("null_rate", metrics.null_rate, "is above", "max_null_rate",
                                  self.max_null_rate))
        if self.min_record_count is not None and metrics.record_count < self.min_record_count:
            failures.append(_line("record_count", metrics.record_count, "is below",
                                  "min_record_count", self.min_record_count))
        if self.max_record_count is not None and metrics.record_count > self.max_record_count:
            failures.append(_line("record_count", metrics.record_count, "is above",
                                  "max_record_count", self.max_record_count))
        return failures

    def to_dict(self) -> dict[str, Any]:
        """The limits that are set, by name."""
        return {f.name: getattr(self, f.name) for f in fields(self)
                if getattr(self, f.name) is not None}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> QualityThresholds:
        """Build thresholds from their ``to_dict()`` form; unknown keys are refused."""
        require_mapping(data, "quality_thresholds")
        check_keys(data, [f.name for f in fields(cls)], "quality_thresholds")
        return cls(**data)


def _line(measure: str, value: float, relation: str, limit_name: str, limit: float) -> str:
    shown, shown_limit = _number(value), _number(limit)
    if shown == shown_limit:  # rounding hid the difference: show every digit
        shown, shown_limit = repr(value), repr(limit)
    return f"{measure} {shown} {relation} {limit_name} {shown_limit}"


def _number(value: float) -> str:
    return str(value) if isinstance(value, int) else f"{value:.4g}"
