"""Every role and every annotation, in one place.

``ROLES`` lists the roles in the order their containers are added;
``PARTS`` adds the parts of a role that are not roles of their own (the
proxy's capture init container); ``ANNOTATIONS`` every row a pod may set, in
the order the reference shows them: the pod's own, each role's and part's,
the rows several share, then the per-role image and resources. A new role
appends its ``Role`` here.
"""

from __future__ import annotations

from typing import Any

from contract import capture, config, logs, pod, proxy, secrets
from contract.knobs import Knob, Role
from contract.layout import PREFIX

ROLES: tuple[Role, ...] = (proxy.ROLE, secrets.ROLE, config.ROLE, logs.ROLE)
ROLE_NAMES: tuple[str, ...] = tuple(r.name for r in ROLES)
PARTS: tuple[Role, ...] = tuple(
    part for r in ROLES for part in ((r, capture.ROLE) if r is proxy.ROLE else (r,))
)


def role(name: str) -> Role:
    """A role, or a part of one (``capture``), by name."""
    for candidate in PARTS:
        if candidate.name == name:
            return candidate
    raise KeyError(f"no role {name!r}; roles: {', '.join(ROLE_NAMES)}")


def _annotations() -> tuple[Knob[Any], ...]:
    owners: dict[Knob[Any], int] = {}
    for r in PARTS:
        for knob in r.annotated:
            owners[knob] = owners.get(knob, 0) + 1
    own = [k for r in PARTS for k in r.annotated if owners[k] == 1]
    shared = list(dict.fromkeys(k for r in PARTS for k in r.annotated if owners[k] > 1))
    return (*pod.FIRST, *own, *shared, *pod.LAST, *pod.RESOURCES)


ANNOTATIONS: tuple[Knob[Any], ...] = _annotations()
PROFILE_KNOBS: tuple[Knob[Any], ...] = tuple(
    dict.fromkeys(k for k in (*ANNOTATIONS, *(k for r in PARTS for k in r.knobs)) if k.profile)
)


def _fixed_keys() -> tuple[str, ...]:
    keys: list[str] = []
    for knob in ANNOTATIONS:
        key = knob.annotation or ""
        if key.startswith("<role>-"):
            keys += [key.replace("<role>", name) for name in ROLE_NAMES]
        elif "NAME" not in key:
            keys.append(key)
    return tuple(keys)


# Every key without a NAME in it, spelled out (for "did you mean").
FIXED_KEYS: tuple[str, ...] = _fixed_keys()


def full_key(knob: Knob[Any]) -> str:
    return PREFIX + (knob.annotation or "")
