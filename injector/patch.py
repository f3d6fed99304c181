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
    if (
        isinstance(before, list)
        and isinstance(after, list)
        and len(before) == len(after)
        and all(
            old == new or (isinstance(old, dict | list) and type(old) is type(new))
            for old, new in zip(before, after, strict=True)
        )
    ):
        for index, (old, new) in enumerate(zip(before, after, strict=True)):
            if old != new:
                _diff(old, new, f"{pointer}/{index}", ops)
        return
    _extend(ops, jsonpatch.make_patch(before, after).patch, pointer)


def _extend(ops: list[dict[str, Any]], patch: list[dict[str, Any]], pointer: str) -> None:
    for op in patch:
        ops.append({**op, "path": pointer + op["path"]} | _from(op, pointer))


def _from(op: Mapping[str, Any], pointer: str) -> dict[str, Any]:
    return {"from": pointer + op["from"]} if "from" in op else {}


def apply_patch(document: Mapping[str, Any], ops: list[dict[str, Any]]) -> Any:
    """Apply ``ops`` to a copy of ``document`` (tests and the CLI use this)."""
    return jsonpatch.apply_patch(document, ops, in_place=False)
