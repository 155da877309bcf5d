"""Checks for workflows written as data (dicts from YAML or JSON): each error names the place.

Pure Python, no Dagster import. ``where`` is a label such as ``"steps[1] ('load')"`` or
``"quality_thresholds"``; every error is an ``InvalidWorkflowError`` that starts with it.

Example:
    >>> from spine_dagster.data_checks import check_keys
    >>> check_keys({"pipline": "x"}, ("name", "pipeline"), "steps[0]")
    Traceback (most recent call last):
    ...
    spine_dagster.errors.InvalidWorkflowError: steps[0]: unknown key 'pipline' (did you mean \
'pipeline'?); allowed keys: name, pipeline
"""

from __future__ import annotations

import difflib
from contextlib import contextmanager
from typing import Any, Iterator, Mapping, Sequence

from .errors import InvalidWorkflowError


def describe(value: Any) -> str:
    """``value`` for an error message: its type and (short) repr."""
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 60 else text[:57] + '...'}"


def is_number(value: Any) -> bool:
    """True for an int or a float (not a bool)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_name(value: Any) -> bool:
    """True for a string that is not blank."""
    return isinstance(value, str) and bool(value.strip())


def require_mapping(value: Any, where: str) -> Mapping[str, Any]:
    """``value`` if it is a mapping, else an error naming ``where``."""
    if not isinstance(value, Mapping):
        raise InvalidWorkflowError(f"{where}: expected a mapping of keys to values, got "
                                   f"{describe(value)}")
    return value


def check_keys(data: Mapping[str, Any], allowed: Sequence[str], where: str, *,
               required: Mapping[str, str] | None = None) -> None:
    """Refuse keys outside ``allowed`` (listing them) and missing ``required`` keys.

    ``required`` maps each required key to a hint, shown when the key is missing.
    """
    for key in data:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise InvalidWorkflowError(
                f"{where}: unknown key {key!r}{hint}; allowed keys: {', '.join(allowed)}")
    for key, hint in (required or {}).items():
        if key not in data:
            raise InvalidWorkflowError(f"{where}: missing {key!r} ({hint})")


@contextmanager
def within(where: str) -> Iterator[None]:
    """Prefix the message of an ``InvalidWorkflowError`` raised inside the block with ``where``."""
    try:
        yield
    except InvalidWorkflowError as exc:
        raise type(exc)(f"{where}: {exc}") from None
