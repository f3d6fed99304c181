"""Pod annotations -> a typed, frozen ``PodRequest``.

The only code that reads our pod annotations. Every row of the contract
(``contract.catalogue.ANNOTATIONS``) is parsed by the row's own parser into
its type, once; every invalid value is reported (all of them, in one
``InjectionDenied`` naming each annotation, its value and what is accepted);
unknown keys under the prefix become warnings with the nearest known key.
Defaults that depend on the profile or the pod are resolved later, in
``injector.core.plan``.
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, TypeVar

from contract import pod, secrets
from contract.catalogue import ANNOTATIONS, FIXED_KEYS, ROLE_NAMES, ROLES
from contract.common import RELOAD
from contract.knobs import Knob, Role, Values
from contract.layout import NAMESPACE_LABEL, PREFIX
from contract.reload import ReloadTarget, SignalTarget
from contract.values import Quantity
from contract.vault import SECRET_NAME, SecretSpec
from injector.errors import InjectionDenied

T = TypeVar("T")
_FAMILIES = ("NAME", "<role>")


@dataclass(frozen=True)
class Overrides:
    """Per-pod ``<role>-image`` / ``-cpu`` / ``-memory``, checked against bounds in plan."""

    image: str | None = None
    cpu: Quantity | None = None
    memory: Quantity | None = None


@dataclass(frozen=True)
class PodRequest:
    """What the pod's annotations ask for, parsed.

    ``values``: every row the pod set (``values.get(proxy.TIMEOUT)`` is
    seconds); ``roles``: the roles asked for, in catalogue order; ``secrets``:
    the ``secret-NAME`` family; ``overrides``: ``<role>-image/-cpu/-memory``.
    """

    values: Values = field(default_factory=Values)
    roles: tuple[str, ...] = ()
    secrets: tuple[SecretSpec, ...] = ()
    overrides: Mapping[str, Overrides] = field(default_factory=lambda: MappingProxyType({}))
    warnings: tuple[str, ...] = ()
    # What is derived from this request and a profile (``rolespecs.role_values``):
    # a memoized request meets the same profile for every replica.
    derived: dict[tuple[str, int], tuple[object, Values]] = field(
        default_factory=dict, compare=False, repr=False
    )

    @property
    def inject(self) -> bool | None:
        return self.values.get(pod.INJECT)

    @property
    def profile(self) -> str | None:
        return self.values.get(pod.PROFILE)

    @property
    def reload(self) -> ReloadTarget | None:
        return self.values.get(RELOAD)

    @property
    def signal_reload(self) -> bool:
        return isinstance(self.reload, SignalTarget)

    def wants(self, role: str) -> bool:
        return role in self.roles

    @property
    def tuned(self) -> bool:
        """Any role's own row set: the pod means to be injected."""
        return bool(self.secrets) or any(k in self.values for r in ROLES for k in _own(r))


@dataclass(frozen=True)
class NamespaceInfo:
    """What the injector knows of the pod's namespace: its name and labels."""

    name: str
    labels: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    def injection_default(self) -> tuple[bool | None, str | None]:
        """(default from the namespace label, warning about a bad label value)."""
        value = self.labels.get(NAMESPACE_LABEL)
        if value is None:
            return None, None
        if value == "enabled":
            return True, None
        if value == "disabled":
            return False, None
        return None, (
            f"namespace {self.name} label {NAMESPACE_LABEL}={value!r} ignored; "
            "use enabled or disabled"
        )


def has_ours(annotations: Mapping[str, Any]) -> bool:
    """Cheap check for the webhook's fast path."""
    return any(key.startswith(PREFIX) for key in annotations)


def opted_out(annotations: Mapping[str, Any]) -> bool:
    """Whether the pod says ``inject: "false"`` (the webhook's fast path, before
    the pod is decoded: such a pod is never denied, whatever else it says)."""
    raw = annotations.get((pod.INJECT.annotation and PREFIX + pod.INJECT.annotation) or "")
    try:
        return isinstance(raw, str) and pod.INJECT.value.parse(raw) is False
    except ValueError:
        return False


class _Parser:
    def __init__(self, ours: tuple[tuple[str, Any], ...]) -> None:
        self.raw: dict[str, Any] = {k[len(PREFIX) :]: v for k, v in ours}
        self.errors: list[str] = []
        self.warnings: list[str] = []
        self.used: set[str] = set()

    def get(self, key: str, knob: Knob[T]) -> T | None:
        if key not in self.raw:
            return None
        self.used.add(key)
        raw = self.raw[key]
        if not isinstance(raw, str):
            self.errors.append(
                f"annotation {PREFIX}{key}: {raw!r} is not a string; {knob.describes}"
            )
            return None
        try:
            return knob.value.parse(raw)
        except ValueError:
            self.errors.append(
                f"annotation {PREFIX}{key}: {raw!r} is not valid; expected {knob.describes}"
            )
            return None

    def set_keys(self, knobs: tuple[Knob[Any], ...]) -> list[str]:
        keys = (k.annotation for k in knobs if k.annotation and not _family(k))
        return [key for key in keys if key in self.raw]


def _family(knob: Knob[Any]) -> bool:
    return knob in _FAMILY_KNOBS


_FAMILY_KNOBS = frozenset(
    k for k in ANNOTATIONS if any(mark in (k.annotation or "") for mark in _FAMILIES)
)
# Each plain annotation key -> its row (families and status are parsed on their own).
_BY_KEY: Mapping[str, Knob[Any]] = MappingProxyType(
    {
        k.annotation: k
        for k in ANNOTATIONS
        if k.annotation and k not in _FAMILY_KNOBS and k is not pod.STATUS
    }
)


# A Deployment's replicas carry the same annotations: each set of ours is parsed
# once (a pure function of them). Bounded: at most MEMO_ENTRIES sets, each of at
# most MEMO_BYTES; larger sets and sets that are denied are parsed every time.
MEMO_ENTRIES = 256
MEMO_BYTES = 8 * 1024


def parse_annotations(annotations: Mapping[str, Any]) -> PodRequest:
    """Parse our annotations; raise ``InjectionDenied`` naming every invalid value
    (unless the pod says ``inject: "false"``: it opted out, so nothing is denied)."""
    ours = tuple((k, v) for k, v in annotations.items() if k.startswith(PREFIX))
    size = 0
    for key, value in ours:
        if type(value) is not str:
            return _parse(ours)
        size += len(key) + len(value)
    return _memo(ours) if size <= MEMO_BYTES else _parse(ours)


@functools.lru_cache(maxsize=MEMO_ENTRIES)
def _memo(ours: tuple[tuple[str, str], ...]) -> PodRequest:
    return _parse(ours)


def _parse(ours: tuple[tuple[str, Any], ...]) -> PodRequest:
    p = _Parser(ours)
    found: dict[Knob[Any], object] = {}
    for key, knob in _BY_KEY.items():  # in the catalogue's order (errors, warnings)
        if key in p.raw:
            found[knob] = p.get(key, knob)
    p.used.add(pod.STATUS.annotation or "status")
    values = Values({k: v for k, v in found.items() if v is not None})
    specs = _secrets(p)
    roles = tuple(r.name for r in ROLES if _asked(p, r, values, specs))
    overrides = _overrides(p)
    if values.get(RELOAD) is not None and not {"secrets", "config"} & set(roles):
        p.warnings.append(
            f"{PREFIX}reload is set but neither secrets nor config is injected; it has no effect"
        )
    for key in sorted(set(p.raw) - p.used):
        p.warnings.append(_unknown(key))
    if p.errors and values.get(pod.INJECT) is not False:  # opted out: nothing to deny
        denied = InjectionDenied("; ".join(p.errors))
        denied.warnings = tuple(p.warnings)
        raise denied
    return PodRequest(values, roles, specs, MappingProxyType(overrides), tuple(p.warnings))


def _asked(p: _Parser, role: Role, values: Values, specs: tuple[SecretSpec, ...]) -> bool:
    """Whether the pod asks for ``role`` (see ``contract.knobs.Role``); warns about
    rows set for a role the pod does not get."""
    tuned = p.set_keys(_own(role))
    if role.switch is not None and values.get(role.switch) is False:
        if tuned:
            p.warnings.append(
                f'{PREFIX}{role.switch.annotation} is "false": '
                f"{', '.join(PREFIX + k for k in tuned)} ignored"
            )
        return False
    if role.trigger is not None:
        present, asked = _triggered(p, role.trigger, values, specs)
        if not present and tuned:
            article = "any " if _family(role.trigger) else ""
            p.warnings.append(
                f"{', '.join(PREFIX + k for k in tuned)} set without {article}"
                f"{PREFIX}{role.trigger.annotation}; no {role.name} role is injected"
            )
        return asked
    if role.switch is not None and values.get(role.switch):
        return True
    if not role.default:
        return False
    others = (r.trigger for r in ROLES if r is not role and r.trigger is not None)
    return bool(tuned) or not any(_triggered(p, t, values, specs)[1] for t in others)


def _own(role: Role) -> tuple[Knob[Any], ...]:
    """The rows that tune ``role`` (not its switch, not rows roles share)."""
    return _OWN[role.name]


_OWN: Mapping[str, tuple[Knob[Any], ...]] = MappingProxyType(
    {r.name: tuple(k for k in r.annotated if k is not r.switch and k is not RELOAD) for r in ROLES}
)


def _triggered(
    p: _Parser, trigger: Knob[Any], values: Values, specs: tuple[SecretSpec, ...]
) -> tuple[bool, bool]:
    """(the trigger's annotation is there, it asks for the role)."""
    if _family(trigger):
        return bool(specs), bool(specs)
    return (trigger.annotation or "") in p.raw, trigger in values


def _secrets(p: _Parser) -> tuple[SecretSpec, ...]:
    templates: dict[str, str] = {}
    paths: dict[str, str] = {}
    for key in sorted(p.raw):
        template = key.startswith("secret-template-")
        name = key[len("secret-template-") :] if template else key[len("secret-") :]
        if not key.startswith("secret-"):
            continue
        value = p.get(key, secrets.TEMPLATE if template else secrets.SECRET)
        if not _valid_name(name):
            p.errors.append(
                f"annotation {PREFIX}{key}: secret name {name!r} is not {SECRET_NAME.accepted}"
            )
        elif value is not None:
            (templates if template else paths)[name] = value
    for name in sorted(set(templates) - set(paths)):
        if f"secret-{name}" not in p.raw:
            p.errors.append(
                f"annotation {PREFIX}secret-template-{name}: there is no {PREFIX}secret-{name}; "
                "add the secret or remove its template"
            )
    return tuple(SecretSpec(name, path, templates.get(name)) for name, path in paths.items())


def _overrides(p: _Parser) -> dict[str, Overrides]:
    result: dict[str, Overrides] = {}
    for role in ROLE_NAMES:
        image = p.get(f"{role}-image", pod.IMAGE)
        cpu = p.get(f"{role}-cpu", pod.CPU)
        memory = p.get(f"{role}-memory", pod.MEMORY)
        if image or cpu or memory:
            result[role] = Overrides(image, cpu, memory)
    return result


def _unknown(key: str) -> str:
    candidates = list(FIXED_KEYS)
    if key.startswith("secrets-"):
        candidates.append("secret-" + key[len("secrets-") :])
    match = difflib.get_close_matches(key, candidates, n=1, cutoff=0.6)
    hint = f"; did you mean {PREFIX}{match[0]}?" if match else "; see the annotation reference"
    return f"unknown annotation {PREFIX}{key} ignored{hint}"


def _valid_name(name: str) -> bool:
    try:
        SECRET_NAME.parse(name)
    except ValueError:
        return False
    return True


__all__ = ["NamespaceInfo", "Overrides", "PodRequest", "has_ours", "parse_annotations"]
