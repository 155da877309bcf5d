"""Data conditions for choice steps: ``Condition({"param": "mode", "equals": "fast"})``.

Pure Python, no Dagster import. A choice step's condition can be a Python callable or data; data
can be written to YAML, and it reads the context only through ``ctx.params[...]`` / ``in`` and
``ctx.get_output``. The forms:

* ``{"param": NAME, OPERATOR: VALUE}`` tests ``ctx.params[NAME]``;
* ``{"output": STEP, "key": KEY, OPERATOR: VALUE}`` tests ``ctx.get_output(STEP, KEY)`` (without
  ``key``: the step's whole output);
* ``{"all": [...]}``, ``{"any": [...]}`` (non-empty lists) and ``{"not": {...}}`` combine them.

Operators (exactly one per clause): ``equals``, ``not_equals``, ``in`` / ``not_in`` (a list),
``gt``, ``gte``, ``lt``, ``lte`` (a number or a string), ``exists`` and ``truthy`` (true or false).
A missing param or output fails every test except ``not_equals``, ``not_in``, ``exists: false``
and ``truthy: false``.

Example:
    >>> from spine_dagster import Condition, WorkflowContext
    >>> fast = Condition({"param": "mode", "equals": "fast"})
    >>> fast(WorkflowContext.create("docs.cond", params={"mode": "fast"}))
    True
    >>> big = Condition({"all": [{"param": "rows", "gt": 1000},
    ...                          {"output": "fetch", "key": "status", "in": ["ok", "partial"]}]})
    >>> ctx = WorkflowContext.create("docs.cond", params={"rows": 5000})
    >>> big(ctx), big(ctx.with_output("fetch", {"status": "ok"}))
    (False, True)
    >>> big.to_dict()["all"][0]
    {'param': 'rows', 'gt': 1000}
"""

from __future__ import annotations

import copy
import operator
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from .data_checks import check_keys, describe
from .errors import ConditionError, InvalidWorkflowError

OPERATORS = ("equals", "not_equals", "in", "not_in", "gt", "gte", "lt", "lte", "exists", "truthy")
COMBINATORS = ("all", "any", "not")
HELP = ("A condition is {'param': NAME, OPERATOR: VALUE}, {'output': STEP, 'key': KEY, OPERATOR: "
        "VALUE}, {'all': [...]}, {'any': [...]} or {'not': {...}}; operators: equals, not_equals, "
        "in, not_in (a list), gt, gte, lt, lte (a number or a string), exists, truthy (true or "
        "false).")

_ORDER = {"gt": operator.gt, "gte": operator.ge, "lt": operator.lt, "lte": operator.le}
_MISSING = object()

Test = Callable[[Any], bool]


@dataclass(frozen=True, repr=False)
class Condition:
    """A choice condition written as data; call it with a context: ``condition(ctx) -> bool``.

    Args:
        data: the condition (see the module documentation). It is checked here, so a malformed
            condition fails when the workflow is built, not when the step runs.
    """

    data: Mapping[str, Any]
    _test: Test = field(init=False, compare=False)

    def __post_init__(self) -> None:
        data = copy.deepcopy(dict(_mapping(self.data, "condition")))
        object.__setattr__(self, "data", data)
        object.__setattr__(self, "_test", _compile(data, "condition"))

    def __call__(self, ctx: Any) -> bool:
        return self._test(ctx)

    def to_dict(self) -> dict[str, Any]:
        """The condition in its data form, as given."""
        return copy.deepcopy(dict(self.data))

    def __repr__(self) -> str:
        return f"Condition({dict(self.data)!r})"


def _invalid(where: str, problem: str) -> InvalidWorkflowError:
    return InvalidWorkflowError(f"{where}: {problem}. {HELP}")


def _mapping(node: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(node, Mapping):
        raise _invalid(where, f"expected a mapping, got {describe(node)}")
    return node


def _compile(node: Any, where: str) -> Test:
    node = _mapping(node, where)
    forms = [key for key in (*COMBINATORS, "param", "output") if key in node]
    if len(forms) != 1:
        found = f"it has {' and '.join(repr(f) for f in forms)}" if forms else \
            f"it has none of them (keys: {', '.join(map(repr, node)) or 'none'})"
        raise _invalid(where, f"a condition needs exactly one of 'param', 'output', 'all', 'any', "
                              f"'not'; {found}")
    form = forms[0]
    if form in COMBINATORS:
        return _combine(node, form, where)
    return _clause(node, form, where)


def _combine(node: Mapping[str, Any], form: str, where: str) -> Test:
    extra = [key for key in node if key != form]
    if extra:
        raise _invalid(where, f"{form!r} cannot share its mapping with {extra}; nest the other "
                              f"tests inside it")
    if form == "not":
        inner = _compile(node["not"], f"{where}.not")
        return lambda ctx: not inner(ctx)
    items = node[form]
    if not isinstance(items, list) or not items:
        raise _invalid(where, f"{form!r} needs a non-empty list of conditions, got "
                              f"{describe(items)}")
    tests = [_compile(item, f"{where}.{form}[{i}]") for i, item in enumerate(items)]
    if form == "all":
        return lambda ctx: all(test(ctx) for test in tests)
    return lambda ctx: any(test(ctx) for test in tests)


def _clause(node: Mapping[str, Any], form: str, where: str) -> Test:
    source = ("param",) if form == "param" else ("output", "key")
    try:
        check_keys(node, (*source, *OPERATORS), where)
    except InvalidWorkflowError as exc:
        raise InvalidWorkflowError(f"{exc}. {HELP}") from None
    name = node[form]
    if not isinstance(name, str) or not name:
        raise _invalid(where, f"{form!r} must name a {'param' if form == 'param' else 'step'} "
                              f"(a non-empty string), got {describe(name)}")
    key = node.get("key")
    if "key" in node and (not isinstance(key, str) or not key):
        raise _invalid(where, f"'key' must be a non-empty string, got {describe(key)}")
    ops = [k for k in node if k in OPERATORS]
    if len(ops) != 1:
        got = f"got {', '.join(map(repr, ops))}; combine tests with 'all'" if ops else "got none"
        raise _invalid(where, f"a {form} clause needs exactly one operator, {got}")
    op, expected = ops[0], node[ops[0]]
    _check_operand(op, expected, where)
    if form == "param":
        label, read = f"param {name!r}", _param_reader(name)
    else:
        label = f"output {name!r}" + (f" key {key!r}" if key is not None else "")
        read = _output_reader(name, key)
    return lambda ctx: _evaluate(op, expected, read(ctx), where, label)


def _check_operand(op: str, expected: Any, where: str) -> None:
    if op in ("in", "not_in") and not isinstance(expected, list):
        raise _invalid(where, f"{op!r} needs a list of values, got {describe(expected)}")
    if op in ("exists", "truthy") and not isinstance(expected, bool):
        raise _invalid(where, f"{op!r} needs true or false, got {describe(expected)}")
    if op in _ORDER and (isinstance(expected, bool) or not isinstance(expected, (int, float, str))):
        raise _invalid(where, f"{op!r} needs a number or a string, got {describe(expected)}")


def _param_reader(name: str) -> Callable[[Any], Any]:
    def read(ctx: Any) -> Any:
        params = ctx.params  # only `in` and [...]: another layer may track which params are read
        return params[name] if name in params else _MISSING
    return read


def _output_reader(step: str, key: str | None) -> Callable[[Any], Any]:
    def read(ctx: Any) -> Any:
        if not ctx.has_output(step):
            return _MISSING
        if key is None:
            return ctx.outputs[step]
        return ctx.get_output(step, key, _MISSING)
    return read


def _evaluate(op: str, expected: Any, value: Any, where: str, label: str) -> bool:
    present = value is not _MISSING
    if op == "exists":
        return present is expected
    if op == "truthy":
        return (present and bool(value)) is expected
    if not present:
        return op in ("not_equals", "not_in")
    if op == "equals":
        return bool(value == expected)
    if op == "not_equals":
        return bool(value != expected)
    if op == "in":
        return value in expected
    if op == "not_in":
        return value not in expected
    try:
        return bool(_ORDER[op](value, expected))
    except TypeError:
        raise ConditionError(
            f"{where}: cannot compare {label} = {describe(value)} with {op} {expected!r}; give "
            f"{label} a value of type {type(expected).__name__}, or change the condition"
        ) from None
