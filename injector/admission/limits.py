"""What one review may hold, and how much of an answer is shown.

A pod that may be injected is capped before rendering (``LIMITS``): past a
cap it is denied with a message naming the list, its length and the cap, so
every step stays linear and bounded whatever the pod holds. Answers carry at
most ``MAX_WARNINGS`` warnings of ``MAX_WARNING_CHARS`` and a denial message
of ``MAX_MESSAGE_CHARS`` (the API server keeps 4 KiB of warnings in all).
"""

from __future__ import annotations

import operator
from collections.abc import Mapping
from typing import Any

from contract.layout import PREFIX
from injector.errors import InjectionDenied

# What one review may hold before it is denied: far above real pods, low
# enough that every step stays in the milliseconds.
LIMITS: Mapping[str, int] = {
    "annotations": 1024,
    "our annotations": 128,
    "annotation bytes": 256 * 1024,  # the API server's own total
    "containers": 256,
    "initContainers": 256,
    "volumes": 1024,
    "volumeMounts": 1024,
    "ports": 256,
    "ownerReferences": 64,
}
MAX_WARNINGS = 16
MAX_WARNING_CHARS = 256
MAX_MESSAGE_CHARS = 2048  # a denial quoting a 256 KiB annotation stays readable


def capped_warnings(warnings: tuple[str, ...]) -> list[str]:
    """At most ``MAX_WARNINGS`` warnings of at most ``MAX_WARNING_CHARS`` each
    (the API server keeps 4 KiB of warnings in all)."""
    shown = [
        w if len(w) <= MAX_WARNING_CHARS else w[: MAX_WARNING_CHARS - 3] + "..."
        for w in warnings[:MAX_WARNINGS]
    ]
    if len(warnings) > MAX_WARNINGS:
        shown[-1] = f"{len(warnings) - MAX_WARNINGS + 1} more warnings not shown"
    return shown


def capped_message(message: str) -> str:
    if len(message) <= MAX_MESSAGE_CHARS:
        return message
    rest = len(message) - MAX_MESSAGE_CHARS
    return f"{message[:MAX_MESSAGE_CHARS]}... ({rest} more characters)"


def check_limits(pod: Any, annotations: Mapping[str, str]) -> None:
    """Deny a pod past ``LIMITS``, naming each list, its length and the cap.
    Only lengths are read here (a list of the wrong type counts as empty; the
    type check comes next), so this is cheap whatever the pod holds."""
    counts = {
        "annotations": len(annotations),
        "our annotations": sum(map(_OURS, annotations)),
        "annotation bytes": sum(map(len, annotations)) + sum(map(len, annotations.values())),
    }
    pod = _mapping(pod)
    spec, metadata = _mapping(pod.get("spec")), _mapping(pod.get("metadata"))
    counts["ownerReferences"] = len(_list(metadata.get("ownerReferences")))
    containers: list[Any] = []
    for key in ("containers", "initContainers", "volumes"):
        items = _list(spec.get(key))
        counts[key] = len(items)
        if key != "volumes":
            containers += items[: LIMITS[key]]
    for sub in ("volumeMounts", "ports"):
        counts[sub] = max((len(_list(_mapping(c).get(sub))) for c in containers), default=0)
    over = [f"{count} {what}" for what, count in counts.items() if count > LIMITS[what]]
    if over:
        limits = ", ".join(f"{what} {LIMITS[what]}" for what in LIMITS)
        raise InjectionDenied(
            f"the pod has {', '.join(over)} (per container for mounts and ports): more than "
            f'the injector handles ({limits}); trim them, or set {PREFIX}inject: "false"'
        )


_OURS = operator.methodcaller("startswith", PREFIX)


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []
