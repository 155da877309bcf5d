"""The helpers that check workflows written as data and name the place that is wrong."""

from __future__ import annotations

import pytest

from spine_dagster import InvalidWorkflowError
from spine_dagster.data_checks import check_keys, describe, require_mapping, within


def test_check_keys_lists_the_allowed_keys_and_explains_missing_ones():
    check_keys({"a": 1}, ("a", "b"), "here", required={"a": "the a"})
    with pytest.raises(InvalidWorkflowError, match=r"^here: unknown key 'zz'; allowed keys: a, b$"):
        check_keys({"zz": 1}, ("a", "b"), "here")
    with pytest.raises(InvalidWorkflowError, match=r"^here: missing 'b' \(the b, e\.g\. 2\)$"):
        check_keys({"a": 1}, ("a", "b"), "here", required={"b": "the b, e.g. 2"})


def test_require_mapping_and_describe():
    assert require_mapping({"a": 1}, "x") == {"a": 1}
    with pytest.raises(InvalidWorkflowError, match=r"^x: expected a mapping of keys to values, got "
                                                   r"list \[1\]$"):
        require_mapping([1], "x")
    assert describe("y" * 100).endswith("...") and len(describe("y" * 100)) < 70


def test_within_prefixes_the_message_and_keeps_the_class():
    class Special(InvalidWorkflowError):
        pass

    with pytest.raises(Special, match="^outer: inner: boom$"):
        with within("outer"), within("inner"):
            raise Special("boom")
    with pytest.raises(KeyError):
        with within("outer"):
            raise KeyError("other errors pass through")
