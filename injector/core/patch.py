"""The JSON Patch of an injection: ``jsonpatch.make_patch`` over only what
injection changes.

Diffing the whole pod costs about a millisecond per review (REFERENCE.md);
injection touches a handful of subtrees, so each is compared (cheap ``==``
first) and only those that differ are diffed, with paths prefixed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jsonpatch

# (parent path, key) of everything render may change.
SUBTREES: tuple[tuple[tuple[str, ...], str], ...] = (
    (("metadata",), "annotations"),
    (("spec",), "initContainers"),
    (("spec",), "containers"),
    (("spec",), "volumes"),
    (("spec",), "shareProcessNamespace"),
)
_MISSING = object()


def _escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def _get(document: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(document, Mapping) or key not in document:
            return _MISSING
        document = document[key]
    return document


def make_patch(original: Mapping[str, Any], rendered: Mapping[str, Any]) -> list[dict[str, Any]]:
    """JSON Patch operations turning ``original`` into ``rendered``, given that
    they differ only in ``SUBTREES`` (which ``render`` guarantees)."""
    ops: list[dict[str, Any]] = []
    for parent, key in SUBTREES:
        before_parent = _get(original, parent)
        after_parent = _get(rendered, parent)
        before = (
            before_parent.get(key, _MISSING) if isinstance(before_parent, Mapping) else _MISSING
        )
        after = after_parent.get(key, _MISSING) if isinstance(after_parent, Mapping) else _MISSING
        if before is after or before == after:
            continue
        pointer = "/" + "/".join(_escape(p) for p in (*parent, key))
        if before_parent is _MISSING:
            # e.g. a pod without metadata: add the parent with just this key.
            ops.append({"op": "add", "path": "/" + "/".join(parent), "value": {key: after}})
        elif after is _MISSING:
            ops.append({"op": "remove", "path": pointer})
        elif (
            before is _MISSING
            or type(before) is not type(after)
            or not isinstance(before, dict | list)
        ):
            ops.append({"op": "add", "path": pointer, "value": after})
        else:
            _diff(before, after, pointer, ops)
    return ops


def _diff(before: Any, after: Any, pointer: str, ops: list[dict[str, Any]]) -> None:
    """Descend while the shapes agree (dicts key by key, lists of one length
    index by index), skipping equal parts with a C-level ``==``; hand what
    differs to jsonpatch. An app container with sixty env vars and one new
    volumeMount is then one small diff, not a walk through every env var."""
    if before == after:
        return
    if isinstance(before, dict) and isinstance(after, dict):
        for key in (*after.keys(), *(k for k in before if k not in after)):
            old, new = before.get(key, _MISSING), after.get(key, _MISSING)
            if old is new or old == new:
                continue
            child = f"{pointer}/{_escape(key)}"
            if isinstance(old, dict | list) and type(old) is type(new):
                _diff(old, new, child, ops)
            else:
                left = {} if old is _MISSING else {key: old}
                right = {} if new is _MISSING else {key: new}
                _extend(ops, jsonpatch.make_patch(left, right).patch, pointer)
        return
    if isinstance(before, list) and isinstance(after, list):
        _diff_lists(before, after, pointer, ops)
        return
    _extend(ops, jsonpatch.make_patch(before, after).patch, pointer)


def _comparable(old: Any, new: Any) -> bool:
    return bool(old == new or (isinstance(old, dict | list) and type(old) is type(new)))


def _diff_lists(
    before: list[Any], after: list[Any], pointer: str, ops: list[dict[str, Any]]
) -> None:
    """Items appended (classic sidecars after the app) or prepended (native
    sidecars before the user's init containers) become adds; the items both
    lists share are diffed in place."""
    if _by_name(before, after, pointer, ops):
        return
    n, m = len(before), len(after)
    if m >= n and all(_comparable(b, a) for b, a in zip(before, after, strict=False)):
        for index, (old, new) in enumerate(zip(before, after, strict=False)):
            if old != new:
                _diff(old, new, f"{pointer}/{index}", ops)
        _extend(ops, _reindexed(jsonpatch.make_patch([], after[n:]).patch, n), pointer)
        return
    if m > n and after[m - n :] == before:
        _extend(ops, jsonpatch.make_patch([], after[: m - n]).patch, pointer)
        return
    _extend(ops, jsonpatch.make_patch(before, after).patch, pointer)


def _names(items: list[Any]) -> list[str] | None:
    names = [i.get("name") if isinstance(i, dict) else None for i in items]
    if all(isinstance(n, str) for n in names) and len(set(names)) == len(names):
        return names  # type: ignore[return-value]
    return None


def _by_name(before: list[Any], after: list[Any], pointer: str, ops: list[dict[str, Any]]) -> bool:
    """Lists of named items (containers, volumes, env, mounts, ports) aligned by
    name: removed items go, kept items (in the same relative order) are diffed
    in place, new items are added where they stand. False when that does not fit."""
    old_names, new_names = _names(before), _names(after)
    if old_names is None or new_names is None:
        return False
    kept = [n for n in new_names if n in old_names]
    if kept != [n for n in old_names if n in new_names]:
        return False
    for index in reversed(range(len(before))):
        if old_names[index] not in new_names:
            _extend(
                ops, _reindexed(jsonpatch.make_patch([before[index]], []).patch, index), pointer
            )
    current = {name: before[old_names.index(name)] for name in kept}
    for index, (name, item) in enumerate(zip(new_names, after, strict=True)):
        if name in current:
            _diff(current[name], item, f"{pointer}/{index}", ops)
        else:
            _extend(ops, _reindexed(jsonpatch.make_patch([], [item]).patch, index), pointer)
    return True


def _reindexed(patch: list[dict[str, Any]], offset: int) -> list[dict[str, Any]]:
    """Adds computed against an empty list, moved to start at ``offset``."""
    moved = []
    for op in patch:
        index, _, rest = op["path"][1:].partition("/")
        moved.append({**op, "path": f"/{int(index) + offset}" + (f"/{rest}" if rest else "")})
    return moved


def _extend(ops: list[dict[str, Any]], patch: list[dict[str, Any]], pointer: str) -> None:
    for op in patch:
        ops.append({**op, "path": pointer + op["path"]} | _from(op, pointer))


def _from(op: Mapping[str, Any], pointer: str) -> dict[str, Any]:
    return {"from": pointer + op["from"]} if "from" in op else {}


def apply_patch(document: Mapping[str, Any], ops: list[dict[str, Any]]) -> Any:
    """Apply ``ops`` to a copy of ``document`` (tests and the CLI use this)."""
    return jsonpatch.apply_patch(document, ops, in_place=False)
