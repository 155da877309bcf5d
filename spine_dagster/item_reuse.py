"""Which items of a map step a re-run reuses: one rule, for the map step and for the resume plan.

A map step that runs again (a resume that starts at it, the UI's re-execution from failure, an
``ErrorPolicy.RETRY`` retry) reuses an item's checkpoint row only if the row is usable, holds the
same item at that index, and no param that the item's steps read changed since the row was
written (the item param itself aside). :class:`~spine_dagster.services.DagsterServices` applies
the rule while the map runs; :func:`spine_dagster.resume.plan_resume` applies it beforehand
(:func:`plan_items`), so that the plan says which completed items run again, and why. When a step
before the map runs again, every item row of the map is superseded unread: all its items run
again (:func:`plan_items_again`).

Pure Python, no Dagster.

Example:
    >>> before = {"item": 3, "bad": [2, 5], "mode": "full"}
    >>> changed_reads(before, {"work": ["bad", "item"]}, {"item": 3, "bad": [], "mode": "x"},
    ...               "item")
    ['bad']
    >>> item_hash({"file": "a.csv"}) == item_hash({"file": "a.csv"}), len(item_hash(3))
    (True, 32)
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Mapping

from .param_reads import ALL
from .records import Checkpoint
from .serialization import dumps
from .snapshot import PARAMS_READ

ITEM_HASH = "item_hash"
ITEM_PARAM = "item_param"  # the param that held the item (rows written before it: inferred)
_FRAMEWORK_KEYS = ("__resumed__",)
_MISSING = object()


def item_hash(item: Any) -> str:
    """A fingerprint of one map item, as stored."""
    return hashlib.sha256(dumps(item, what="a map item").encode("utf-8")).hexdigest()[:32]


def changed_reads(before: Mapping[str, Any], reads: Any, now: Mapping[str, Any],
                  item_param: str | None) -> list[str]:
    """The params an item's steps read (``reads``: step -> keys) whose value differs between
    ``before`` (the params its row was written with) and ``now``; sorted."""
    keys = {k for step_keys in (reads.values() if isinstance(reads, Mapping) else [])
            if isinstance(step_keys, list) for k in step_keys if isinstance(k, str)}
    if ALL in keys:
        keys = set(before) | set(now)
    keys.difference_update((item_param, *_FRAMEWORK_KEYS))
    return sorted(k for k in keys if before.get(k, _MISSING) != now.get(k, _MISSING))


def item_param_of(checkpoint: Checkpoint) -> str | None:
    """The param that held the item of an item row: recorded, or (older rows) the param whose
    value has the row's item hash."""
    metadata = checkpoint.metadata
    recorded = metadata.get(ITEM_PARAM)
    if isinstance(recorded, str):
        return recorded
    params = checkpoint.context_snapshot.get("params") or {}
    digest = metadata.get(ITEM_HASH)
    matches = [k for k, v in params.items() if _hash_or_none(v) == digest]
    return "item" if "item" in matches else (matches[0] if matches else None)


def _hash_or_none(value: Any) -> str | None:
    try:
        return item_hash(value)
    except Exception:  # noqa: BLE001 - a value that is not JSON is not the item
        return None


def item_changes(checkpoint: Checkpoint, digest: str, now: Mapping[str, Any],
                 item_param: str | None) -> tuple[bool, list[str]]:
    """(same item at this index, the read params that changed) of one usable item row, for the
    item whose :func:`item_hash` is ``digest``; the item is reused when the first is true and
    the second empty."""
    before = checkpoint.context_snapshot.get("params") or {}
    same = checkpoint.metadata.get(ITEM_HASH) == digest
    return same, changed_reads(before, checkpoint.metadata.get(PARAMS_READ), now, item_param)


@dataclass(frozen=True)
class ItemRerun:
    """A completed item (it has a usable row) that the resume runs again, and why."""

    index: int
    reason: str
    changed: list[str] = field(default_factory=list)
    """The params the item read that differ now (whatever the reason it runs again)."""


@dataclass(frozen=True)
class MapItemsPlan:
    """What a resume does with the items of one map step that it runs.

    ``total`` is the number of items (``None`` when the plan cannot read the items: the workflow's
    step signature does not name the items param); ``reused`` the items whose rows it reuses;
    ``rerun`` the completed items that run again. The other items (failed, or never finished)
    have no row and run.
    """

    total: int | None
    reused: list[int] = field(default_factory=list)
    rerun: list[ItemRerun] = field(default_factory=list)

    @property
    def to_run(self) -> int | None:
        return None if self.total is None else self.total - len(self.reused)

    def rerun_reading(self, key: str) -> list[int]:
        """The completed items that run again and read ``key``, which changed."""
        return [r.index for r in self.rerun if key in r.changed]

    def param_note(self, key: str, step_name: str) -> str | None:
        """What the plan says of a changed param ``key`` that completed items read."""
        read = self.rerun_reading(key)
        if not read:
            return None
        many = len(read) > 1
        return (f"read by {len(read)} completed item{'s' if many else ''} of map step "
                f"{step_name}, which run{'' if many else 's'} again")

    def lines(self) -> list[str]:
        """The plan's lines under the map step: counts, then the completed items that run again."""
        reasons: dict[str, list[int]] = {}
        for rerun in self.rerun:
            reasons.setdefault(rerun.reason, []).append(rerun.index)
        unknown = self.total is None
        return [f"items: reuse {len(self.reused)}, run {'?' if unknown else self.to_run} of "
                f"{'?' if unknown else self.total}"] + [
            f"completed items {', '.join(map(str, idx))} run again: {why}"
            for why, idx in reasons.items()]


def items_path_of(target: Any) -> str | None:
    """The items param of a map step, from its signature target ``items=PATH workflow=NAME``."""
    if not isinstance(target, str) or not target.startswith("items="):
        return None
    path, separator, _ = target[len("items="):].rpartition(" workflow=")
    return path if separator else None


def _items_of(target: Any, params: Mapping[str, Any]) -> list[Any] | None:
    """The items a map runs with ``params`` (None: its signature does not name them)."""
    path = items_path_of(target)
    items = params.get(path) if path is not None else None
    return list(items) if isinstance(items, (list, tuple)) else None


def plan_items(rows: Mapping[int, Checkpoint], target: Any,
               params: Mapping[str, Any]) -> MapItemsPlan:
    """The fate of the items of the map a resume starts at: ``rows`` are its usable item rows,
    ``params`` the params the map runs with (a map after the start: :func:`plan_items_again`)."""
    items = _items_of(target, params)
    reused: list[int] = []
    rerun: list[ItemRerun] = []
    for index in sorted(rows):
        if items is not None and index >= len(items):
            continue  # fewer items now: the row is superseded, nothing runs for it
        checkpoint = rows[index]
        param = item_param_of(checkpoint)
        before = checkpoint.context_snapshot.get("params") or {}
        now = {**before, **params}
        if items is not None:
            same, changed = item_changes(checkpoint, item_hash(items[index]), now, param)
        else:
            same, changed = True, changed_reads(before, checkpoint.metadata.get(PARAMS_READ),
                                                now, param)
        if not same:
            rerun.append(ItemRerun(index, "other items are at their indexes now", changed))
        elif changed:
            rerun.append(ItemRerun(index, f"they read {', '.join(changed)}, which changed since "
                                          f"they ran", changed))
        else:
            reused.append(index)
    return MapItemsPlan(len(items) if items is not None else None, reused, rerun)


def plan_items_again(done: list[int], target: Any, params: Mapping[str, Any],
                     earlier_runs: str) -> MapItemsPlan:
    """The items of a map after the step a resume starts at (``earlier_runs``): every completed
    item (``done``: their indexes) runs again. Their rows are not read: the resume supersedes
    them unread, so a damaged one must not stop it."""
    items = _items_of(target, params)
    total = len(items) if items is not None else None
    reason = f"{earlier_runs!r}, before the map, runs again"
    return MapItemsPlan(total, [], [ItemRerun(i, reason, []) for i in done
                                    if total is None or i < total])


__all__ = ["ITEM_HASH", "ITEM_PARAM", "ItemRerun", "MapItemsPlan", "changed_reads",
           "item_changes", "item_hash", "item_param_of", "items_path_of", "plan_items",
           "plan_items_again"]
