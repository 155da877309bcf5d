"""Which params a step read: the basis of param-impact-aware resume.

While a step runs, its ``ctx.params`` and its ``config`` record the param keys the step reads:
indexing, ``get``, ``in`` and ``keys()`` record the keys they name; iterating, ``items()``,
``values()``, copying (``dict(...)``, ``{**...}``) and comparing record *every* key (``"*"``). The
checkpoint of each step keeps, in its context metadata (``params_read``), the keys every step so
far read, so that a resume that changes a param knows which reused steps saw the old value.

Pure Python, no Dagster.

Example:
    >>> reads = ParamReads({"date": "2026-01-10", "tier": "gold", "limit": 5})
    >>> params = reads.params()
    >>> params["date"], params.get("limit"), "region" in params
    ('2026-01-10', 5, False)
    >>> reads.keys()
    ['date', 'limit', 'region']
    >>> _ = dict(params)
    >>> reads.keys()
    ['*']
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Iterator

ALL = "*"
_FRAMEWORK_KEYS = frozenset({"__resumed__"})  # set by spine_dagster, not a user's param


class ParamReads:
    """Records the param keys read through the mappings it hands out (see the module docs)."""

    def __init__(self, params: Mapping[str, Any]) -> None:
        self.source = params
        self._keys: set[str] = set()
        self._all = False
        self._active = True

    def note(self, key: Any) -> None:
        if self._active and isinstance(key, str):
            self._keys.add(key)

    def note_all(self) -> None:
        if self._active:
            self._all = True

    def stop(self) -> None:
        """Stop recording (the step returned; the framework reads the params from here on)."""
        self._active = False

    def keys(self) -> list[str]:
        """The keys read, sorted; ``["*"]`` when the step read them all."""
        return [ALL] if self._all else sorted(self._keys - _FRAMEWORK_KEYS)

    def params(self) -> TrackedParams:
        return TrackedParams(self.source, self)

    def config(self, config: Mapping[str, Any]) -> TrackedConfig:
        """``config`` as a dict whose reads of keys that are params are recorded."""
        return TrackedConfig(config, self)


class TrackedParams(Mapping):
    """A read-only view of the params that records the keys read."""

    __slots__ = ("_data", "_reads")

    def __init__(self, data: Mapping[str, Any], reads: ParamReads) -> None:
        self._data = data
        self._reads = reads

    def __getitem__(self, key: str) -> Any:
        self._reads.note(key)
        return self._data[key]

    def get(self, key: str, default: Any = None) -> Any:
        self._reads.note(key)
        return self._data.get(key, default)

    def __contains__(self, key: object) -> bool:
        self._reads.note(key)
        return key in self._data

    def keys(self):  # noqa: D102 - Mapping API
        self._reads.note_all()
        return self._data.keys()

    def items(self):  # noqa: D102
        self._reads.note_all()
        return self._data.items()

    def values(self):  # noqa: D102
        self._reads.note_all()
        return self._data.values()

    def __iter__(self) -> Iterator[str]:
        self._reads.note_all()
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __eq__(self, other: object) -> bool:
        self._reads.note_all()
        return dict(self._data) == other

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"TrackedParams({dict(self._data)!r})"

    def untracked(self) -> Mapping[str, Any]:
        """The params themselves, for the framework (no read is recorded)."""
        return self._data


class TrackedConfig(dict):
    """A step's ``config`` dict; reading a key that is a param records it as read.

    A ``dict`` subclass, so that handlers that expect a dict keep working; every way of reading
    it goes through the methods below (overriding ``__iter__`` and ``keys`` also routes ``dict(c)``
    and ``{**c}`` through them).
    """

    def __init__(self, data: Mapping[str, Any], reads: ParamReads) -> None:
        super().__init__(data)
        self._reads = reads

    def _note(self, key: Any) -> None:
        if key in self._reads.source:
            self._reads.note(key)

    def __getitem__(self, key: str) -> Any:
        self._note(key)
        return super().__getitem__(key)

    def get(self, key: str, default: Any = None) -> Any:
        self._note(key)
        return super().get(key, default)

    def __contains__(self, key: object) -> bool:
        self._note(key)
        return super().__contains__(key)

    def keys(self):  # noqa: D102
        self._reads.note_all()
        return super().keys()

    def items(self):  # noqa: D102
        self._reads.note_all()
        return super().items()

    def values(self):  # noqa: D102
        self._reads.note_all()
        return super().values()

    def __iter__(self):
        self._reads.note_all()
        return super().__iter__()

    def copy(self) -> dict[str, Any]:
        self._reads.note_all()
        return dict(super().items())

    def pop(self, key: str, *default: Any) -> Any:
        self._note(key)
        return super().pop(key, *default)

    def setdefault(self, key: str, default: Any = None) -> Any:
        self._note(key)
        return super().setdefault(key, default)

    def __eq__(self, other: object) -> bool:
        self._reads.note_all()
        return dict(super().items()) == other

    __hash__ = None  # type: ignore[assignment]

    def __reduce__(self):  # a plain dict when copied or pickled by a library
        return (dict, (dict(super().items()),))
