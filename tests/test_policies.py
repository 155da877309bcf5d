"""ErrorCategory, ErrorPolicy and RetryPolicy: validation and the data form."""

from __future__ import annotations

import re

import pytest

from spine_dagster import ErrorCategory, InvalidWorkflowError, RetryPolicy
from spine_dagster.policies import error_categories


def test_retry_policy_normalizes_its_categories():
    policy = RetryPolicy(retryable_categories=["transient", ErrorCategory.DEPENDENCY, "TRANSIENT"])
    assert policy.retryable_categories == ("TRANSIENT", "DEPENDENCY")
    assert RetryPolicy(retryable_categories="TIMEOUT").retryable_categories == ("TIMEOUT",)
    assert policy.is_retryable("DEPENDENCY") and not policy.is_retryable(None)


@pytest.mark.parametrize("kwargs, fragment", [
    ({"max_attempts": 0}, "RetryPolicy(max_attempts=0): use a whole number >= 1"),
    ({"max_attempts": True}, "RetryPolicy(max_attempts=True)"),
    ({"initial_delay_seconds": -1}, "RetryPolicy(initial_delay_seconds=-1): use a number >= 0"),
    ({"backoff_multiplier": 0.5}, "RetryPolicy(backoff_multiplier=0.5): use a number >= 1"),
    ({"max_delay_seconds": "1"}, "RetryPolicy(max_delay_seconds='1')"),
    ({"retryable_categories": ["FLAKY"]},
     "RetryPolicy: unknown error category 'FLAKY'; use some of"),
    ({"retryable_categories": []}, "RetryPolicy: categories is empty"),
])
def test_retry_policy_refuses_invalid_values(kwargs, fragment):
    with pytest.raises(InvalidWorkflowError, match=re.escape(fragment)):
        RetryPolicy(**kwargs)


def test_retry_policy_data_form():
    policy = RetryPolicy(max_attempts=5, initial_delay_seconds=0.5,
                         retryable_categories=("TIMEOUT",))
    assert policy.to_dict() == {"max_attempts": 5, "initial_delay_seconds": 0.5,
                                "backoff_multiplier": 2.0, "max_delay_seconds": 60.0,
                                "retryable_categories": ["TIMEOUT"]}
    assert RetryPolicy.from_dict(policy.to_dict()) == policy
    assert RetryPolicy.from_dict({}) == RetryPolicy()
    with pytest.raises(InvalidWorkflowError, match=re.escape(
            "retry: unknown key 'attempts' (did you mean 'max_attempts'?); allowed keys: "
            "max_attempts, initial_delay_seconds")):
        RetryPolicy.from_dict({"attempts": 3})


def test_error_categories_names_the_owner():
    assert error_categories(ErrorCategory.TIMEOUT, owner="X") == ("TIMEOUT",)
    with pytest.raises(InvalidWorkflowError, match="AutoResume: unknown error category 'nope'"):
        error_categories(["nope"], owner="AutoResume")
