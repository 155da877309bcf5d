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

Tuples are stored as lists. Anything else (sets, bytes, NaN, non-string dict keys, arbitrary
objects) is refused with an error naming the path of the value, e.g.
``outputs.fetch.records[3]: set is not JSON-serializable``.

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
from typing import Any

from .errors import CheckpointSerializationError

TAG = "__spine_type__"


class RawJSON(str):
    """JSON text that is already serialized; the store writes it as it is."""


def _class_path(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _load_class(path: str) -> type:
    module, _, qualname = path.partition(":")
    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def _is_pydantic(obj: Any) -> bool:
    return hasattr(obj, "model_dump") and hasattr(type(obj), "model_validate")


def _encode_special(obj: Any) -> dict[str, Any]:
    """The tagged form of a non-JSON value we know how to round-trip; TypeError otherwise."""
    if isinstance(obj, Enum):
        return {TAG: "enum", "class": _class_path(type(obj)), "value": obj.value}
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
    if obj is None or isinstance(obj, (str, bool, int)):
        return None
    if isinstance(obj, float):
        return None if math.isfinite(obj) else f"{path or '<value>'}: {obj!r} is not valid JSON"
    if isinstance(obj, dict):
        for key, value in obj.items():
            if not isinstance(key, str):
                return (f"{path or '<value>'}: dict key {key!r} is a {type(key).__name__}; "
                        f"JSON keys must be strings")
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
        return f"{path or '<value>'}: {exc}"
    return None


def dumps(obj: Any, *, what: str = "value") -> str:
    """Serialize ``obj`` to JSON text, or raise ``CheckpointSerializationError`` naming the path."""
    try:
        return json.dumps(obj, default=_encode_special, allow_nan=False, ensure_ascii=False,
                          separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        where = find_unserializable(obj) or str(exc)
        raise CheckpointSerializationError(
            f"{what} cannot be stored as JSON: {where}. Return only JSON values (see "
            f"spine_dagster.serialization for the types that round-trip), or store the data "
            f"elsewhere and return a reference to it."
        ) from None


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
