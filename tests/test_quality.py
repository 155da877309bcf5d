"""QualityThresholds: validated limits, one human line per failed limit, a strict data form."""

from __future__ import annotations

import dataclasses
import re

import pytest

from spine_dagster import InvalidWorkflowError, QualityMetrics, QualityThresholds


def test_check_explains_every_failed_limit_with_the_value_and_the_limit():
    limits = QualityThresholds(min_valid_rate=0.95, max_null_rate=0.1, min_record_count=200)
    metrics = QualityMetrics(record_count=100, valid_count=82, null_count=20)
    assert limits.check(metrics) == [
        "valid_rate 0.82 is below min_valid_rate 0.95",
        "null_rate 0.2 is above max_null_rate 0.1",
        "record_count 100 is below min_record_count 200",
    ]
    assert QualityThresholds(max_record_count=50).check(metrics) == [
        "record_count 100 is above max_record_count 50"]


def test_check_passes_at_the_limits_and_without_limits():
    at_limits = QualityThresholds(min_valid_rate=0.8, max_null_rate=0.1, min_record_count=10,
                                  max_record_count=10)
    assert at_limits.check(QualityMetrics(record_count=10, valid_count=8, null_count=1)) == []
    assert QualityThresholds().check(QualityMetrics()) == []


def test_check_reads_the_checkpoint_form_of_the_metrics():
    metrics = QualityMetrics(record_count=3, valid_count=1).to_dict()
    assert QualityThresholds(min_valid_rate=0.5).check(metrics) == [
        "valid_rate 0.3333 is below min_valid_rate 0.5"]


def test_check_shows_every_digit_when_rounding_would_hide_the_difference():
    metrics = QualityMetrics(record_count=100000, valid_count=94999)
    assert QualityThresholds(min_valid_rate=0.95).check(metrics) == [
        "valid_rate 0.94999 is below min_valid_rate 0.95"]
    close = QualityMetrics(record_count=1000000, valid_count=949999)
    assert QualityThresholds(min_valid_rate=0.95).check(close) == [
        "valid_rate 0.949999 is below min_valid_rate 0.95"]


@pytest.mark.parametrize("kwargs, fragment", [
    ({"min_valid_rate": 1.5},
     "QualityThresholds(min_valid_rate=1.5): a rate is a number from 0 to 1"),
    ({"max_null_rate": -0.1}, "QualityThresholds(max_null_rate=-0.1): a rate is a number"),
    ({"max_null_rate": float("nan")}, "QualityThresholds(max_null_rate=nan)"),
    ({"min_valid_rate": True}, "QualityThresholds(min_valid_rate=True)"),
    ({"min_valid_rate": "0.9"}, "QualityThresholds(min_valid_rate='0.9')"),
    ({"min_record_count": -1}, "QualityThresholds(min_record_count=-1): a record count is a whole "
                               "number >= 0"),
    ({"max_record_count": 2.5}, "QualityThresholds(max_record_count=2.5)"),
    ({"min_record_count": 10, "max_record_count": 5},
     "QualityThresholds(min_record_count=10, max_record_count=5): the minimum is above the "
     "maximum"),
])
def test_invalid_thresholds_are_refused_at_construction(kwargs, fragment):
    with pytest.raises(InvalidWorkflowError, match=re.escape(fragment)):
        QualityThresholds(**kwargs)


def test_thresholds_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        QualityThresholds().min_valid_rate = 0.5


def test_data_form_round_trips_and_refuses_unknown_keys():
    limits = QualityThresholds(max_null_rate=0.05, min_record_count=0)
    assert limits.to_dict() == {"max_null_rate": 0.05, "min_record_count": 0}
    assert QualityThresholds.from_dict(limits.to_dict()) == limits
    assert QualityThresholds.from_dict({}) == QualityThresholds()
    with pytest.raises(InvalidWorkflowError, match=re.escape(
            "quality_thresholds: unknown key 'min_valid' (did you mean 'min_valid_rate'?); allowed "
            "keys: min_valid_rate, max_null_rate, min_record_count, max_record_count")):
        QualityThresholds.from_dict({"min_valid": 0.9})
    with pytest.raises(InvalidWorkflowError, match="quality_thresholds: expected a mapping"):
        QualityThresholds.from_dict([0.9])
