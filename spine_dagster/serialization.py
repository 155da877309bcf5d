"""JSON, never pickle: how contexts become checkpoints and come back.

Plain JSON values (dict with ``str`` keys, list, str, int, float, bool, None) are stored as they
are. These types are stored as tagged objects and come back as the same type:

=====================  =======================================================================
``datetime``           ``{"__spine_type__": "datetime", "value": "2026-01-10T12:00:00+00:00"}``
``date`` / ``time``    ``{"__spine_type__": "date", "value": "2026-01-10"}`` (``time`` alike)
``Decimal``            ``{"__spine_type__": "decimal", "value": "10.50"}``
``UUID``               ``{"__spine_type__": "uuid", "value": "..."}``
``Enum`` member        ``{"__spine_type__": "enum", "class": "module:Qualname", "value": ...}``
pydantic model         ``{"__spine_type__": "pydantic", "class": "module:Qualname",
                       "value": model.model_dump(mode="json")}``
=====================  =======================================================================

Tuples are stored as lists. Enum and pydantic classes must be importable by that path (defined
at module level) for a resume in another process to rebuild them.

Anything else is refused with an error naming the step and the path of the value, e.g.
``outputs.fetch.records[3]: set is not JSON-serializable``: sets, bytes, NaN and infinity,
arbitrary objects, classes defined inside a function, dicts that use the reserved key
``__spine_type__``, and **dict keys that are not strings**. JSON itself would silently turn the key
``1`` into ``"1"``, so the value read back from a checkpoint would differ from the one the step
returned; spine_dagster refuses such keys instead. The check runs where values enter a run (step
outputs, context updates and quality metrics; the params, partition and context given to the
runner), before anything is written, so a refused value leaves no partial checkpoint behind.

Example:
    >>> from datetime import date
    >>> text = dumps({"day": date(2026, 1, 10)})
    >>> loads(text)
    {'day': datetime.date(2026, 1, 10)}
"""

from __future__ import annotations

import importlib
import json
import math
import uuid
from datetime import date, datetime, time
from decimal import Decimal
from enum import Enum
from typing import Any, Mapping

from .errors import CheckpointSerializationError

TAG = "__spine_type__"


class RawJSON(str):
    """JSON text that is already serialized; the store writes it as it is."""


def _class_path(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _load_class(path: str) -> type:
    module, _, qualname = path.partition(":")
    try:
        obj: Any = importlib.import_module(module)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise CheckpointSerializationError(
            f"a stored value is of class {path}, which cannot be imported here ({exc}). Run "
            f"where that module is importable (e.g. from the project directory), or restore the "
            f"class under that name.") from None
    return obj


def _is_pydantic(obj: Any) -> bool:
    return hasattr(obj, "model_dump") and hasattr(type(obj), "model_validate")


def _encode_special(obj: Any) -> dict[str, Any]:
    """The tagged form of a non-JSON value we know how to round-trip; TypeError otherwise.

    (Enums are tagged by the callers, before ``str`` and ``int``: an enum may subclass them.)
    """
    if isinstance(obj, datetime):
        return {TAG: "datetime", "value": obj.isoformat()}
    if isinstance(obj, date):
        return {TAG: "date", "value": obj.isoformat()}
    if isinstance(obj, time):
        return {TAG: "time", "value": obj.isoformat()}
    if isinstance(obj, Decimal):
        return {TAG: "decimal", "value": str(obj)}
    if isinstance(obj, uuid.UUID):
        return {TAG: "uuid", "value": str(obj)}
    if _is_pydantic(obj):
        return {TAG: "pydantic", "class": _class_path(type(obj)), "value": obj.model_dump(mode="json")}
    raise TypeError(f"{type(obj).__name__} is not JSON-serializable")


def _decode_special(obj: dict[str, Any]) -> Any:
    kind = obj.get(TAG)
    if kind is None:
        return obj
    value = obj.get("value")
    if kind == "datetime":
        return datetime.fromisoformat(value)
    if kind == "date":
        return date.fromisoformat(value)
    if kind == "time":
        return time.fromisoformat(value)
    if kind == "decimal":
        return Decimal(value)
    if kind == "uuid":
        return uuid.UUID(value)
    if kind == "enum":
        return _load_class(obj["class"])(value)
    if kind == "pydantic":
        return _load_class(obj["class"]).model_validate(value)
    return obj


def find_unserializable(obj: Any, path: str = "") -> str | None:
    """The first path at which ``obj`` holds something we cannot store, with the reason."""
    where = path or "<value>"
    kind = type(obj)
    if obj is None or kind in (str, bool, int):
        return None
    if isinstance(obj, Enum):  # before str/int: a str or int enum must keep its class
        problem = _class_problem(obj, where)
        return problem or find_unserializable(obj.value, path)
    if isinstance(obj, float):
        return None if math.isfinite(obj) else f"{where}: {obj!r} is not valid JSON"
    if isinstance(obj, (str, int)):
        return None  # other subclasses are stored as their plain value
    if isinstance(obj, Mapping):
        for key, value in obj.items():
            if not isinstance(key, str):
                return (f"{where}: dict key {key!r} is not a string ({type(key).__name__}); JSON "
                        f"keys must be strings, and JSON would turn it into "
                        f"{json.dumps(str(key))}")
            if key == TAG:
                return f"{where}: the dict key {TAG!r} is reserved by spine_dagster"
            found = find_unserializable(value, f"{path}.{key}" if path else key)
            if found:
                return found
        return None
    if isinstance(obj, (list, tuple)):
        for index, value in enumerate(obj):
            found = find_unserializable(value, f"{path}[{index}]")
            if found:
                return found
        return None
    try:
        _encode_special(obj)
    except TypeError as exc:
        return f"{where}: {exc}"
    return _class_problem(obj, where) if _is_pydantic(obj) else None


def _class_problem(obj: Any, where: str) -> str | None:
    if "<locals>" in type(obj).__qualname__:
        return (f"{where}: {type(obj).__name__} is defined inside a function, so a resume could "
                f"not rebuild it; define the class at module level")
    return None


def check_json(value: Any, path: str) -> None:
    """Refuse ``value`` unless it round-trips through a checkpoint; the error names the path.

    Example:
        >>> check_json({"when": {1: "a"}}, "params")
        Traceback (most recent call last):
        ...
        spine_dagster.errors.CheckpointSerializationError: params.when: dict key 1 is not a ...
    """
    problem = find_unserializable(value, path)
    if problem:
        raise CheckpointSerializationError(
            f"{problem}. Use only JSON values (see spine_dagster.serialization for the types that "
            f"round-trip), or store the data elsewhere and pass a reference to it.")


_PLAIN = frozenset({str, int, float, bool, type(None)})


class _KeyError(TypeError):
    """A dict key that is not a string (JSON would silently turn it into one)."""


def _prepare(obj: Any) -> Any:
    """``obj`` with every special value in its tagged form; plain JSON values are kept as they are.

    A walk of our own rather than ``json.dumps(default=...)``: JSON writes an enum that subclasses
    ``str`` or ``int`` as its bare value without calling ``default``, and turns non-string keys
    into strings, both silently.
    """
    kind = type(obj)
    if kind is dict:
        out = {k: (v if type(v) in _PLAIN else _prepare(v)) for k, v in obj.items()}
        if not all(type(k) is str for k in out):
            raise _KeyError("dict key is not a string")
        return out
    if kind is list or kind is tuple:
        return [v if type(v) in _PLAIN else _prepare(v) for v in obj]
    if kind in _PLAIN:
        return obj
    if isinstance(obj, Enum):
        return {TAG: "enum", "class": _class_path(kind), "value": _prepare(obj.value)}
    if isinstance(obj, (str, int, float)):
        return obj
    if isinstance(obj, Mapping):
        return _prepare(dict(obj))
    if isinstance(obj, (list, tuple)):
        return _prepare(list(obj))
    return _encode_special(obj)


def dumps(obj: Any, *, what: str = "value", path: str = "") -> str:
    """Serialize ``obj`` to JSON text, or raise ``CheckpointSerializationError`` naming the path."""
    try:
        return json.dumps(_prepare(obj), allow_nan=False, ensure_ascii=False,
                          separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        where = find_unserializable(obj, path) or str(exc)
        raise CheckpointSerializationError(
            f"{what} cannot be stored as JSON: {where}. Return only JSON values (see "
            f"spine_dagster.serialization for the types that round-trip), or store the data "
            f"elsewhere and return a reference to it."
        ) from None


class EncodedOutputs:
    """The JSON text of each step's output, encoded once while the output is the same object.

    A step's output never changes after the step returned (the context is immutable), so the
    checkpoint of step N re-uses the text of the outputs of steps 1..N-1 and encodes only its own.
    This keeps a checkpoint's encoding cost proportional to the new output, not the whole context.
    A step must therefore never modify another step's output in place.
    """

    def __init__(self) -> None:
        self._texts: dict[str, tuple[Any, str]] = {}

    def text(self, step: str, output: Any) -> str:
        known = self._texts.get(step)
        if known is not None and known[0] is output:
            return known[1]
        text = dumps(output, what=f"the output of step {step!r}", path=f"outputs.{step}")
        self._texts[step] = (output, text)
        return text


def dumps_snapshot(snapshot: Mapping[str, Any], outputs_cache: EncodedOutputs | None,
                   *, what: str = "value") -> str:
    """``dumps(snapshot)``, with ``snapshot["outputs"]`` encoded through ``outputs_cache``."""
    outputs = snapshot.get("outputs")
    if outputs_cache is None or not isinstance(outputs, Mapping) or not outputs:
        return dumps(snapshot, what=what)
    head = dumps({k: v for k, v in snapshot.items() if k != "outputs"}, what=what)
    parts = ",".join(f"{json.dumps(step, ensure_ascii=False)}:{outputs_cache.text(step, output)}"
                     for step, output in outputs.items())
    return f'{head[:-1]}{"," if len(head) > 2 else ""}"outputs":{{{parts}}}}}'


def displayable(obj: Any) -> Any:
    """``obj`` as plain JSON for display (Dagster metadata): special values become strings.

    Example:
        >>> from decimal import Decimal
        >>> displayable({"max_price": Decimal("10.50"), "ids": {1, 2}})
        {'max_price': '10.50', 'ids': '{1, 2}'}
    """
    return json.loads(json.dumps(obj, default=str, ensure_ascii=False))


def loads(text: str | bytes) -> Any:
    """Parse JSON text written by ``dumps``, restoring tagged values."""
    return json.loads(text, object_hook=_decode_special)


def decode(value: Any) -> Any:
    """Restore tagged values in an already-parsed JSON value (e.g. read from a JSONB column)."""
    if isinstance(value, dict):
        decoded = {k: decode(v) for k, v in value.items()}
        return _decode_special(decoded)
    if isinstance(value, list):
        return [decode(v) for v in value]
    return value
