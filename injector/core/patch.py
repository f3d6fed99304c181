"""The JSON Patch of an injection: what ``render`` changed, as RFC 6902 ops, in
time linear in the pod.

``render`` copies only what it changes and keeps every other subtree as the
same object, so the walk skips unchanged parts by identity (``is``) and
compares what is left with one C-level ``==`` before descending. Dicts are
walked key by key; lists of items with unique names (containers, volumes,
mounts, env, ports) are aligned by name through dicts, other lists by their
common head and tail. Nothing scans a list per item (no ``in list``, no
``.index()``): a pod with 20,000 volumes costs one pass over them.

The ops use explicit indices, computed against the list as the earlier ops
leave it, so ``jsonpatch.apply_patch(original, ops) == rendered`` (the tests
check it for every golden pod and for random documents).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jsonpatch

Ops = list[dict[str, Any]]
_MISSING = object()


def escape(token: str) -> str:
    """A key as a JSON Pointer token (RFC 6901)."""
    return token.replace("~", "~0").replace("/", "~1")


def make_patch(original: Mapping[str, Any], rendered: Mapping[str, Any]) -> Ops:
    """JSON Patch operations turning ``original`` into ``rendered``."""
    ops: Ops = []
    _diff(original, rendered, "", ops)
    return ops


def _diff(before: Any, after: Any, pointer: str, ops: Ops) -> None:
    if before is after:
        return
    if isinstance(before, dict) and isinstance(after, dict):
        _diff_dicts(before, after, pointer, ops)
    elif isinstance(before, list) and isinstance(after, list):
        if before != after:
            _diff_lists(before, after, pointer, ops)
    elif type(before) is not type(after) or before != after:
        ops.append({"op": "replace", "path": pointer, "value": after})


def _diff_dicts(before: dict[str, Any], after: dict[str, Any], pointer: str, ops: Ops) -> None:
    if before == after:
        return
    for key in before:
        if key not in after:
            ops.append({"op": "remove", "path": f"{pointer}/{escape(key)}"})
    for key, new in after.items():
        old = before.get(key, _MISSING)
        if old is new:
            continue
        child = f"{pointer}/{escape(key)}"
        if old is _MISSING:
            ops.append({"op": "add", "path": child, "value": new})
        else:
            _diff(old, new, child, ops)


def _diff_lists(before: list[Any], after: list[Any], pointer: str, ops: Ops) -> None:
    """Items appended or prepended (a C-level comparison of the rest, identity
    first); else named items aligned by name; else the common head and tail
    kept and the middle diffed item by item (same length) or replaced."""
    n, m = len(before), len(after)
    if m > n:
        appended = after[:n] == before
        if appended or after[m - n :] == before:
            start, added = (n, after[n:]) if appended else (0, after[: m - n])
            for offset, item in enumerate(added):
                ops.append({"op": "add", "path": f"{pointer}/{start + offset}", "value": item})
            return
    if _by_name(before, after, pointer, ops):
        return
    head = 0
    while head < n and head < m and _same(before[head], after[head]):
        head += 1
    tail = 0
    while tail < n - head and tail < m - head and _same(before[n - 1 - tail], after[m - 1 - tail]):
        tail += 1
    old, new = before[head : n - tail], after[head : m - tail]
    if len(old) == len(new):
        for offset, (left, right) in enumerate(zip(old, new, strict=True)):
            _diff(left, right, f"{pointer}/{head + offset}", ops)
        return
    for index in range(head + len(old) - 1, head - 1, -1):
        ops.append({"op": "remove", "path": f"{pointer}/{index}"})
    for offset, item in enumerate(new):
        ops.append({"op": "add", "path": f"{pointer}/{head + offset}", "value": item})


def _same(left: Any, right: Any) -> bool:
    return left is right or (type(left) is type(right) and left == right)


def _names(items: list[Any]) -> dict[str, int] | None:
    """name -> index when every item is a dict with a unique string name."""
    names: dict[str, int] = {}
    for index, item in enumerate(items):
        name = item.get("name") if isinstance(item, dict) else None
        if not isinstance(name, str) or name in names:
            return None
        names[name] = index
    return names


def _by_name(before: list[Any], after: list[Any], pointer: str, ops: Ops) -> bool:
    """Removed items go (from the last), new items are added where they stand,
    kept items are diffed in place. False when the lists are not both named
    or the kept items changed their relative order."""
    old_names, new_names = _names(before), _names(after)
    if old_names is None or new_names is None:
        return False
    kept_before = [name for name in old_names if name in new_names]
    kept_after = [name for name in new_names if name in old_names]
    if kept_before != kept_after:
        return False
    for name, index in reversed(old_names.items()):
        if name not in new_names:
            ops.append({"op": "remove", "path": f"{pointer}/{index}"})
    for index, item in enumerate(after):
        name = item["name"]
        if name in old_names:
            _diff(before[old_names[name]], item, f"{pointer}/{index}", ops)
        else:
            ops.append({"op": "add", "path": f"{pointer}/{index}", "value": item})
    return True


def apply_patch(document: Mapping[str, Any], ops: Ops) -> Any:
    """Apply ``ops`` to a copy of ``document`` (tests and the CLI use this)."""
    return jsonpatch.apply_patch(document, ops, in_place=False)
