"""JSON, never pickle: how contexts become checkpoints and come back, exactly.

Plain JSON values (dict with ``str`` keys, list, str, int, float, bool, None) are stored as they
are. These values are stored as tagged objects and come back as the same value:

=====================  =======================================================================
``datetime``           ``{"__spine_type__": "datetime", "value": "2026-01-10T12:00:00+00:00"}``
``date`` / ``time``    ``{"__spine_type__": "date", "value": "2026-01-10"}`` (``time`` alike)
``Decimal``            ``{"__spine_type__": "decimal", "value": "10.50"}``
``UUID``               ``{"__spine_type__": "uuid", "value": "..."}``
``Enum`` member        ``{"__spine_type__": "enum", "class": "module:Qualname", "value": ...}``
pydantic model         ``{"__spine_type__": "pydantic", "class": "module:Qualname",
                       "value": model.model_dump(mode="json")}``
large float, ``-0.0``  ``{"__spine_type__": "float", "value": "1e+16"}``: PostgreSQL's JSONB
                       stores numbers as ``numeric``, which would turn ``1e16`` into the integer
                       ``10000000000000000`` and ``-0.0`` into ``0``
text with NUL chars    ``{"__spine_type__": "nul_str", "parts": ["a", "b"]}`` for ``"a\\x00b"``
                       (JSONB cannot hold ``\\u0000``)
=====================  =======================================================================

Tuples are stored as lists. Anything else is refused where it enters a run, with an error naming
the path of the value, e.g. ``outputs.fetch.records[3]: set is not JSON-serializable``: sets,
bytes, NaN and infinity, arbitrary objects, classes defined inside a function, dicts that use the
reserved key ``__spine_type__``, dict keys that are not strings (JSON would silently turn ``1``
into ``"1"``), text that is not valid Unicode (a lone surrogate), dict keys with a NUL character,
and values nested more than :data:`MAX_DEPTH` (100) levels deep.

**Decoding runs no code but the type's own.** Stored rows are untrusted input: anyone with access
to the database can edit them. A tagged value is rebuilt only as one of the types above. An enum
or pydantic class is looked up, without importing anything, in the modules this process has
already imported (``sys.modules``), and must be an ``Enum`` or a pydantic ``BaseModel``
subclass; only the enum's own lookup by value or the model's own validation then runs. The
processes that read a run's checkpoints for a resume import the run's workflow (and so the modules
its classes live in) first. Anything else (an unknown tag, a malformed tagged value, a class of
the wrong kind, a module that is not imported, invalid JSON, ``NaN`` or a number too large for a
float, nesting deeper than a checkpoint can hold) raises
:class:`~spine_dagster.errors.CheckpointCorruptError` naming where it was read and the path within
the value.

Example:
    >>> from datetime import date
    >>> text = dumps({"day": date(2026, 1, 10), "big": 1e16, "neg": -0.0})
    >>> loads(text)
    {'day': datetime.date(2026, 1, 10), 'big': 1e+16, 'neg': -0.0}
    >>> loads('{"x": {"__spine_type__": "enum", "class": "os:system", "value": "true"}}',
    ...       where="run 'r1', step 'fetch'")
    Traceback (most recent call last):
    ...
    spine_dagster.errors.CheckpointCorruptError: run 'r1', step 'fetch', at x: a stored enum ...
"""

from __future__ import annotations

import copy
import json
import math
import re
import sys
import uuid
from datetime import date, datetime, time
from decimal import Decimal, InvalidOperation
from enum import Enum
from typing import Any, Mapping

from .errors import CheckpointCorruptError, CheckpointSerializationError

TAG = "__spine_type__"
MAX_DEPTH = 100
"""The deepest nesting of containers accepted in params, outputs and context updates."""
READ_DEPTH = MAX_DEPTH + 16
"""The deepest nesting a stored row may have (a snapshot wraps outputs in a few levels)."""
_BIG_EXPONENT = re.compile(r"[eE]\+?[0-9]{3}")  # 1e308 and up can read as inf
_BIG_FLOAT = 1e16  # from here on, repr() uses an exponent and JSONB would store an integer
FIX = "Inspect it (spine-dagster checkpoint RUN STEP --json), repair or delete it."
"""What a ``CheckpointCorruptError`` tells the reader to do, unless the caller says better."""


class RawJSON(str):
    """JSON text that is already serialized; the store writes it as it is."""


def _class_path(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


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


def _float(value: float) -> Any:
    if value - value != 0:  # NaN or infinity: refused, as every reader refuses it
        raise ValueError(f"{value!r} is not valid JSON")
    if abs(value) >= _BIG_FLOAT or (value == 0.0 and math.copysign(1.0, value) < 0):
        return {TAG: "float", "value": repr(value)}
    return value


def _text(value: str) -> Any:
    return {TAG: "nul_str", "parts": value.split("\x00")} if "\x00" in value else value


# -- checking values where they enter a run ------------------------------------------------------
def find_unserializable(obj: Any, path: str = "", depth: int = 0) -> str | None:
    """The first path at which ``obj`` holds something we cannot store, with the reason."""
    where = path or "<value>"
    kind = type(obj)
    if obj is None or kind in (bool, int):
        return None
    if kind is str:
        return _text_problem(obj, where)
    if depth > MAX_DEPTH:
        return (f"{where}: nested more than {MAX_DEPTH} levels deep; flatten the value or store "
                f"it elsewhere")
    if isinstance(obj, Enum):  # before str/int: a str or int enum must keep its class
        problem = _class_problem(obj, where)
        return problem or find_unserializable(obj.value, path, depth + 1)
    if isinstance(obj, float):
        return None if math.isfinite(obj) else (
            f"{where}: {obj!r} is not valid JSON (JSON has no NaN or infinity, and spine_dagster "
            f"stores none); return None or a finite number instead")
    if isinstance(obj, str):
        return _text_problem(obj, where)
    if isinstance(obj, int):
        return None  # other subclasses are stored as their plain value
    if isinstance(obj, Mapping):
        for key, value in obj.items():
            if not isinstance(key, str):
                return (f"{where}: dict key {key!r} is not a string ({type(key).__name__}); JSON "
                        f"keys must be strings, and JSON would turn it into "
                        f"{json.dumps(str(key))}")
            if key == TAG:
                return f"{where}: the dict key {TAG!r} is reserved by spine_dagster"
            if "\x00" in key:
                return f"{where}: dict key {key!r} contains a NUL character, which JSONB refuses"
            problem = _text_problem(key, f"{where} (a key)")
            found = problem or find_unserializable(value, f"{path}.{key}" if path else key,
                                                   depth + 1)
            if found:
                return found
        return None
    if isinstance(obj, (list, tuple)):
        for index, value in enumerate(obj):
            found = find_unserializable(value, f"{path}[{index}]", depth + 1)
            if found:
                return found
        return None
    try:
        _encode_special(obj)
    except TypeError as exc:
        return f"{where}: {exc}"
    return _class_problem(obj, where) if _is_pydantic(obj) else None


def _text_problem(text: str, where: str) -> str | None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return f"{where}: text with a lone surrogate character is not valid Unicode"
    return None


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


# -- encoding ------------------------------------------------------------------------------------
_PLAIN = frozenset({int, bool, type(None)})


class _KeyError(TypeError):
    """A dict key that is not a string (JSON would silently turn it into one)."""


def _prepare(obj: Any, depth: int = 0) -> Any:
    """``obj`` with every special value in its tagged form; plain JSON values are kept as they are.

    A walk of our own rather than ``json.dumps(default=...)``: JSON writes an enum that subclasses
    ``str`` or ``int`` as its bare value without calling ``default``, writes every float as its
    ``repr`` (which JSONB may not keep), and turns non-string keys into strings, all silently.
    """
    kind = type(obj)
    if kind is str:
        return obj if "\x00" not in obj else _text(obj)
    if kind is float:
        return _float(obj)
    if kind in _PLAIN:
        return obj
    if depth > MAX_DEPTH:
        raise TypeError(f"nested more than {MAX_DEPTH} levels deep")
    if kind is dict:
        out = {k: (v if type(v) in _PLAIN else _prepare(v, depth + 1)) for k, v in obj.items()}
        if not all(type(k) is str for k in out):
            raise _KeyError("dict key is not a string")
        return out
    if kind is list or kind is tuple:
        return [v if type(v) in _PLAIN else _prepare(v, depth + 1) for v in obj]
    if isinstance(obj, Enum):
        return {TAG: "enum", "class": _class_path(kind), "value": _prepare(obj.value, depth + 1)}
    if isinstance(obj, str):
        return _text(str(obj))
    if isinstance(obj, float):
        return _float(float(obj))
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, Mapping):
        return _prepare(dict(obj), depth)
    if isinstance(obj, (list, tuple)):
        return _prepare(list(obj), depth)
    return _encode_special(obj)


def dumps(obj: Any, *, what: str = "value", path: str = "") -> str:
    """Serialize ``obj`` to JSON text, or raise ``CheckpointSerializationError`` naming the path."""
    try:
        text = json.dumps(_prepare(obj), allow_nan=False, ensure_ascii=False,
                          separators=(",", ":"))
        text.encode("utf-8")
        return text
    except (TypeError, ValueError, RecursionError) as exc:
        where = find_unserializable(obj, path) or str(exc)
        raise CheckpointSerializationError(
            f"{what} cannot be stored as JSON: {where}. Return only JSON values (see "
            f"spine_dagster.serialization for the types that round-trip), or store the data "
            f"elsewhere and return a reference to it."
        ) from None


def to_json_value(value: Any, *, what: str = "value") -> Any:
    """``value`` in its stored JSON form (plain dicts and lists, special values tagged).

    For places that need plain JSON but not text, such as Dagster run config.
    """
    return json.loads(dumps(value, what=what))


class EncodedOutputs:
    """The JSON text of each step's output, encoded once while the output is the same object.

    A step's output never changes after the step returned (the context is immutable), so the
    checkpoint of step N re-uses the text of the outputs of steps 1..N-1 and encodes only its own.
    The same holds for the params each step read (``metadata.params_read``, one entry per step).
    This keeps a checkpoint's encoding cost proportional to the new step, not the whole context.
    A step must therefore never modify another step's output in place. One instance belongs to
    one run (see :mod:`spine_dagster.run_state`).
    """

    def __init__(self) -> None:
        self._texts: dict[tuple[str, str], tuple[Any, str]] = {}
        # within -> (keys, ids of the values, the values (alive: their ids stay theirs), text)
        self._joined: dict[str, tuple[tuple, tuple, tuple, str]] = {}

    def members(self, within: str, mapping: Mapping[str, Any]) -> str:
        """The members of ``mapping`` as JSON, comma-separated. The previous call's text is
        reused when ``mapping`` starts with the same members, the very same objects (a context
        only grows by a step): one comparison in C instead of a loop over every step."""
        keys, values = tuple(mapping), tuple(mapping.values())
        ids = tuple(map(id, values))
        previous = self._joined.get(within)
        start, text = 0, ""
        if previous is not None:
            done = len(previous[0])
            if keys[:done] == previous[0] and ids[:done] == previous[1]:
                start, text = done, previous[3]
        added = [self.text(keys[i], values[i], within=within) for i in range(start, len(keys))]
        if added:
            text = ",".join([text, *added]) if text else ",".join(added)
        self._joined[within] = (keys, ids, values, text)
        return text

    def text(self, step: str, output: Any, *, within: str = "outputs") -> str:
        """``"step":<value as JSON>``: the step's member of the snapshot's ``within`` object."""
        known = self._texts.get((within, step))
        if known is not None and known[0] is output:
            return known[1]
        text = dumps(output, what=f"the output of step {step!r}", path=f"{within}.{step}")
        member = f"{json.dumps(step, ensure_ascii=False)}:{text}"
        self._texts[(within, step)] = (output, member)
        return member

    def __len__(self) -> int:
        return len(self._texts)


# The members of these objects of a snapshot are encoded once per run (see EncodedOutputs).
_ENCODED_ONCE = {"outputs": None, "metadata": "params_read"}


def dumps_snapshot(snapshot: Mapping[str, Any], outputs_cache: EncodedOutputs | None,
                   *, what: str = "value") -> str:
    """``dumps(snapshot)``, with the per-step members of ``outputs`` and ``metadata.params_read``
    encoded through ``outputs_cache``.

    Example:
        >>> cache = EncodedOutputs()
        >>> text = dumps_snapshot({"params": {}, "outputs": {"a": {"n": 1}},
        ...                        "metadata": {"params_read": {"a": ["k"]}, "x": 1}}, cache)
        >>> loads(text) == {"params": {}, "outputs": {"a": {"n": 1}},
        ...                 "metadata": {"x": 1, "params_read": {"a": ["k"]}}}
        True
    """
    if outputs_cache is None:
        return dumps(snapshot, what=what)
    return _dumps_with(snapshot, outputs_cache, what, None)


def _dumps_with(obj: Mapping[str, Any], cache: EncodedOutputs, what: str,
                within: str | None) -> str:
    """``obj`` as JSON: its members named in ``_ENCODED_ONCE`` (or, ``within`` one of them,
    all of them) through ``cache``."""
    if within is not None:
        return "{" + cache.members(within, obj) + "}"
    plain: dict[str, Any] = {}
    cached: list[str] = []
    for key, value in obj.items():
        if key in _ENCODED_ONCE and isinstance(value, Mapping) and value:
            inner = _ENCODED_ONCE[key]
            if inner is None:
                text = _dumps_with(value, cache, what, key)
            else:
                nested = value.get(inner)
                if not isinstance(nested, Mapping) or not nested:
                    plain[key] = value
                    continue
                rest = dumps({k: v for k, v in value.items() if k != inner}, what=what)
                text = (f'{rest[:-1]}{"," if len(rest) > 2 else ""}"{inner}":'
                        f"{_dumps_with(nested, cache, what, inner)}}}")
            cached.append(f"{json.dumps(key, ensure_ascii=False)}:{text}")
        else:
            plain[key] = value
    head = dumps(plain, what=what)
    if not cached:
        return head
    return f'{head[:-1]}{"," if len(head) > 2 else ""}{",".join(cached)}}}'


def displayable(obj: Any) -> Any:
    """``obj`` as plain JSON for display (Dagster metadata): special values become strings.

    Example:
        >>> from decimal import Decimal
        >>> displayable({"max_price": Decimal("10.50"), "ids": {1, 2}})
        {'max_price': '10.50', 'ids': '{1, 2}'}
    """
    return json.loads(json.dumps(obj, default=str, ensure_ascii=False))


# -- decoding: untrusted input -------------------------------------------------------------------
def loads(text: str | bytes, *, where: str = "a stored value", fix: str = FIX) -> Any:
    """Parse JSON text written by ``dumps``, restoring tagged values; nothing else is run.

    Raises ``CheckpointCorruptError`` naming ``where`` (and ending with ``fix``, what to do) when
    the text is not valid JSON, holds ``NaN``, ``Infinity`` or a number too large for a float
    (Python's ``json`` would read them as ``nan`` and ``inf``; ``dumps`` never writes them), is
    nested deeper than a checkpoint can be, or holds a tagged value that is not one we write.
    """
    if isinstance(text, (bytes, bytearray)):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CheckpointCorruptError(
                f"{where}: the stored text is not UTF-8 ({exc}). {fix}") from None
    if not isinstance(text, str):
        raise CheckpointCorruptError(
            f"{where}: expected JSON text, found {type(text).__name__}. {fix}")
    non_finite: list[str] = []

    def number(literal: str) -> float:
        value = float(literal)
        if value - value != 0:  # 1e999 overflows to inf
            non_finite.append(literal)
        return value

    def constant(literal: str) -> float:  # NaN, Infinity, -Infinity
        non_finite.append(literal)
        return float(literal)

    try:
        # Only a 3-digit exponent can overflow: else floats parse at C speed, not in `number`.
        slow = _BIG_EXPONENT.search(text) is not None
        data = json.loads(text, parse_float=number if slow else None, parse_constant=constant)
    except RecursionError:
        raise CheckpointCorruptError(
            f"{where}: the stored JSON is nested far deeper than spine_dagster writes "
            f"(limit {READ_DEPTH}). {fix}") from None
    except ValueError as exc:
        raise CheckpointCorruptError(
            f"{where}: the stored text is not valid JSON ({exc}). {fix}") from None
    if non_finite:
        raise _non_finite(data, where, fix, non_finite[0])
    return decode(data, where=where, tagged=TAG in text, in_place=True, fix=fix, finite=True)


def decode(value: Any, *, where: str = "a stored value", tagged: bool = True,
           in_place: bool = False, fix: str = FIX, finite: bool = False) -> Any:
    """Restore tagged values in an already-parsed JSON value (e.g. Dagster run config).

    ``tagged=False`` is a promise that the value holds no ``__spine_type__`` key (the raw text did
    not contain it): then only the nesting is checked. ``in_place=True`` lets the decoder reuse
    the containers of ``value`` (which it then owns); otherwise ``value`` is left untouched.
    ``finite=True`` is a promise that it holds no NaN or infinity (``loads`` checked it).
    """
    _check_depth(value, where, fix)
    if not finite and _first_non_finite(value) is not None:
        raise _non_finite(value, where, fix, None)
    if not tagged:
        return value
    return _decode(value if in_place else copy.deepcopy(value), where, "", 0, fix)


_WALKED = frozenset({dict, list, float})


def _first_non_finite(value: Any) -> tuple[str, float] | None:
    """The path and value of the first NaN or infinity in ``value``, in document order."""
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        item, path = stack.pop()
        kind = type(item)
        if kind is float:
            if item - item != 0:
                return path, item
        elif kind is dict:
            stack.extend(reversed([(v, f"{path}.{k}" if path else k) for k, v in item.items()
                                   if type(v) in _WALKED]))
        elif kind is list:
            stack.extend(reversed([(v, f"{path}[{i}]") for i, v in enumerate(item)
                                   if type(v) in _WALKED]))
    return None


def _non_finite(data: Any, where: str, fix: str, literal: str | None) -> CheckpointCorruptError:
    path, value = _first_non_finite(data) or ("", math.nan)
    stored = f"the stored number {literal} (read as {value!r})" if literal else repr(value)
    return _corrupt(where, path, f"{stored} is not a finite number; JSON has no NaN or "
                                 f"infinity, and spine_dagster never stores them", fix)


def _check_depth(value: Any, where: str, fix: str = "") -> None:
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > READ_DEPTH:
            raise CheckpointCorruptError(
                f"{where}: the stored value is nested more than {READ_DEPTH} levels deep, deeper "
                f"than spine_dagster writes; the row was edited. {fix}".rstrip())
        if type(item) is dict:
            stack.extend((v, depth + 1) for v in item.values() if type(v) in (dict, list))
        elif type(item) is list:
            stack.extend((v, depth + 1) for v in item if type(v) in (dict, list))


def _corrupt(where: str, path: str, problem: str, fix: str = FIX) -> CheckpointCorruptError:
    at = f", at {path}" if path else ""
    return CheckpointCorruptError(
        f"{where}{at}: {problem}. spine_dagster did not write this; the row was edited or "
        f"damaged. {fix}")


def _decode(value: Any, where: str, path: str, depth: int, fix: str) -> Any:
    if depth > READ_DEPTH:
        raise _corrupt(where, path, f"the value is nested more than {READ_DEPTH} levels deep",
                       fix)
    kind = type(value)
    if kind is dict:
        if TAG in value:
            return _decode_tagged(value, where, path, depth, fix)
        for key, item in value.items():
            if type(item) in (dict, list):
                value[key] = _decode(item, where, f"{path}.{key}" if path else key, depth + 1,
                                     fix)
        return value
    if kind is list:
        for index, item in enumerate(value):
            if type(item) in (dict, list):
                value[index] = _decode(item, where, f"{path}[{index}]", depth + 1, fix)
        return value
    return value


_SIMPLE = {"datetime": datetime.fromisoformat, "date": date.fromisoformat,
           "time": time.fromisoformat, "decimal": Decimal, "uuid": uuid.UUID}


def _decode_tagged(obj: dict[str, Any], where: str, path: str, depth: int, fix: str) -> Any:
    kind = obj.get(TAG)
    keys = set(obj)
    if kind in _SIMPLE or kind == "float":
        if keys != {TAG, "value"} or not isinstance(obj["value"], str):
            raise _corrupt(where, path, f"a stored {kind} must be {{{TAG!r}: {kind!r}, 'value': "
                                        f"<text>}}, found keys {sorted(keys)}", fix)
        try:
            if kind == "float":
                number = float(obj["value"])
                if not math.isfinite(number):
                    raise ValueError("not a finite number")
                return number
            return _SIMPLE[kind](obj["value"])
        except (ValueError, TypeError, InvalidOperation) as exc:
            raise _corrupt(where, path, f"{obj['value']!r} is not a valid {kind} ({exc})",
                           fix) from None
    if kind == "nul_str":
        parts = obj.get("parts")
        if keys != {TAG, "parts"} or not isinstance(parts, list) or not all(
                isinstance(p, str) for p in parts):
            raise _corrupt(where, path, "a stored nul_str must hold a list of text parts", fix)
        return "\x00".join(parts)
    if kind in ("enum", "pydantic"):
        if keys != {TAG, "class", "value"} or not isinstance(obj["class"], str):
            raise _corrupt(where, path, f"a stored {kind} must be {{{TAG!r}, 'class', 'value'}}, "
                                        f"found keys {sorted(keys)}", fix)
        cls = _stored_class(obj["class"], kind, where, path, fix)
        value = _decode(obj["value"], where, f"{path}.value" if path else "value", depth + 1,
                        fix)
        try:
            return cls(value) if kind == "enum" else cls.model_validate(value)
        except Exception as exc:  # noqa: BLE001 - the type's own validation refused the value
            raise _corrupt(where, path, f"{value!r} is not a valid {obj['class']} "
                                        f"({type(exc).__name__}: {exc})", fix) from None
    raise _corrupt(where, path, f"unknown stored type {kind!r} (known: "
                                f"{', '.join(sorted([*_SIMPLE, 'float', 'nul_str', 'enum', 'pydantic']))})", fix)


def _stored_class(class_path: str, kind: str, where: str, path: str, fix: str) -> type:
    """The Enum or pydantic class named ``module:Qualname``, found without importing or calling."""
    module_name, sep, qualname = class_path.partition(":")
    if not sep or not module_name or not qualname:
        raise _corrupt(where, path, f"a stored {kind} names the class {class_path!r}, which is "
                                    f"not of the form module:Qualname", fix)
    module = sys.modules.get(module_name)
    if module is None:
        raise CheckpointCorruptError(
            f"{where}{f', at {path}' if path else ''}: a stored {kind} is of class {class_path}, "
            f"but module {module_name!r} is not imported in this process, and spine_dagster "
            f"never imports a module that a stored row names. Import the workflow that uses this "
            f"class (or the module) before reading the checkpoint; a resume does this for you.")
    obj: Any = module
    for part in qualname.split("."):
        namespace = getattr(obj, "__dict__", None)
        obj = namespace.get(part) if isinstance(namespace, Mapping) else None
        if obj is None:
            raise _corrupt(where, path, f"a stored {kind} names the class {class_path}, which "
                                        f"module {module_name!r} does not define", fix)
    if kind == "enum":
        ok = isinstance(obj, type) and issubclass(obj, Enum)
    else:
        from pydantic import BaseModel  # noqa: PLC0415 - only for stored pydantic values

        ok = isinstance(obj, type) and issubclass(obj, BaseModel)
    if not ok:
        expected = "an Enum" if kind == "enum" else "a pydantic BaseModel"
        raise _corrupt(where, path, f"a stored {kind} names {class_path}, which is not {expected} "
                                    f"class", fix)
    return obj
