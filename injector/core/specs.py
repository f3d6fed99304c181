"""SidecarProfile ``spec`` and ``--config`` documents -> ``Profile`` / ``Settings``.

A profile spec's keys are the operator's own (image, images,
imagePullPolicy, resources, bounds, allowedRegistries) plus every contract
row with a ``profile`` path (``proxy.timeout``, ``vault.address``,
``nativeSidecars``, ...), parsed by the row's own parser, so a profile's
``1m`` and a pod's ``1m`` are the same 60 seconds. Errors are
``ConfigError`` naming the field and what is accepted.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from contract.catalogue import PROFILE_KNOBS, ROLE_NAMES
from contract.knobs import Knob, Value, Values
from contract.values import CPU, MEMORY, Quantity
from injector.core.settings import (
    DEFAULT_IMAGE,
    DEFAULT_RESOURCES,
    PULL_POLICIES,
    SMALL,
    Bounds,
    NamespacePolicy,
    Profile,
    Resources,
    Settings,
    parse_cluster_domain,
    parse_version,
)
from injector.errors import ConfigError

OWN_KEYS = (
    "image",
    "images",
    "imagePullPolicy",
    "resources",
    "bounds",
    "allowedRegistries",
    "namespaces",
)
SETTINGS_KEYS = (
    "clusterVersion",
    "clusterDomain",
    "injectorNamespace",
    "defaultProfile",
    "profiles",
)


def _sections() -> dict[str, tuple[str, ...]]:
    """Top-level profile keys of the rows, and the sub-keys of nested ones."""
    sections: dict[str, list[str]] = {}
    for knob in PROFILE_KNOBS:
        head, _, sub = (knob.profile or "").partition(".")
        sections.setdefault(head, [])
        if sub:
            sections[head].append(sub)
    return {head: tuple(subs) for head, subs in sections.items()}


SECTIONS = _sections()
PROFILE_KEYS = OWN_KEYS + tuple(SECTIONS)


def only(spec: object, where: str, keys: tuple[str, ...]) -> Mapping[str, Any]:
    if not isinstance(spec, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {type(spec).__name__}")
    unknown = sorted(str(k) for k in spec if k not in keys)
    if unknown:
        raise ConfigError(
            f"{where}: unknown field {', '.join(unknown)}; accepted: {', '.join(keys)}"
        )
    return spec


def settings_from_spec(spec: Mapping[str, Any]) -> Settings:
    """A ``--config`` document: ``{clusterVersion, clusterDomain,
    injectorNamespace, defaultProfile, profiles: {NAME: PROFILE_SPEC}}``,
    every key optional."""
    only(spec, "config", SETTINGS_KEYS)
    profiles_spec = spec.get("profiles") or {"default": {}}
    if not isinstance(profiles_spec, Mapping):
        raise ConfigError("config profiles: expected a mapping of profile name -> spec")
    profiles = {
        str(name): profile_from_spec(str(name), body or {}) for name, body in profiles_spec.items()
    }
    version = spec.get("clusterVersion")
    domain = spec.get("clusterDomain")
    return Settings(
        profiles=MappingProxyType(profiles),
        default_profile=str(spec.get("defaultProfile", "default")),
        cluster_version=parse_version(version) if version is not None else None,
        cluster_domain=parse_cluster_domain(domain) if domain is not None else None,
        injector_namespace=str(spec.get("injectorNamespace", "sidecar-injector")),
    )


def profile_from_spec(name: str, spec: Mapping[str, Any]) -> Profile:
    """A SidecarProfile ``spec`` (or a ``--config`` profile) -> ``Profile``."""
    where = f"profile {name}"
    only(spec, where, PROFILE_KEYS)
    images = only(spec.get("images") or {}, f"{where}.images", ROLE_NAMES)
    registries = spec.get("allowedRegistries") or []
    if not isinstance(registries, list) or not all(isinstance(r, str) and r for r in registries):
        raise ConfigError(f"{where}.allowedRegistries: expected a list of registry hosts")
    return Profile(
        name=name,
        image=_image(spec, where),
        images=MappingProxyType({str(k): str(v) for k, v in images.items()}),
        image_pull_policy=_pull_policy(spec.get("imagePullPolicy", "IfNotPresent"), where),
        resources=MappingProxyType(_all_resources(spec.get("resources") or {}, where)),
        bounds=_bounds(spec.get("bounds") or {}, f"{where}.bounds"),
        allowed_registries=tuple(registries),
        values=_rows(spec, where),
        namespaces=_namespaces(spec.get("namespaces") or {}, f"{where}.namespaces"),
    )


def _namespaces(spec: object, where: str) -> NamespacePolicy:
    """``{names: [NAME, ...], matchLabels: {KEY: VALUE, ...}}``, both optional."""
    found = only(spec, where, ("names", "matchLabels"))
    names = found.get("names") or []
    if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
        raise ConfigError(f"{where}.names: expected a list of namespace names")
    labels = found.get("matchLabels") or {}
    if not isinstance(labels, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in labels.items()
    ):
        raise ConfigError(f"{where}.matchLabels: expected a map of label keys to values")
    return NamespacePolicy(frozenset(names), MappingProxyType(dict(labels)))


def _rows(spec: Mapping[str, Any], where: str) -> Values:
    """Every contract row the spec sets, parsed."""
    for head, subs in SECTIONS.items():
        if subs and head in spec:
            only(spec.get(head) or {}, f"{where}.{head}", subs)
    found: dict[Knob[Any], object] = {}
    for knob in PROFILE_KNOBS:
        head, _, sub = (knob.profile or "").partition(".")
        raw = (spec.get(head) or {}).get(sub) if sub else spec.get(head)
        if raw is not None:
            found[knob] = _scalar(raw, f"{where}.{knob.profile}", knob.value)
    return Values(found)


def _scalar(raw: object, where: str, value: Value[Any]) -> Any:
    if isinstance(raw, Mapping | list):
        raise ConfigError(f"{where}: expected {value.accepted}, got {type(raw).__name__}")
    try:
        return value.check(str(raw))
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _image(spec: Mapping[str, Any], where: str) -> str:
    value = spec.get("image", DEFAULT_IMAGE)
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}.image: expected a non-empty string, got {value!r}")
    return value.strip()


def _quantity(spec: Mapping[str, Any], key: str, where: str, default: Quantity) -> Quantity:
    raw = spec.get(key)
    if raw is None:
        return default
    if not isinstance(raw, str | int | float) or isinstance(raw, bool):
        raise ConfigError(f"{where}.{key}: expected a quantity, got {raw!r}")
    parse = CPU if key.lower().endswith("cpu") else MEMORY
    try:
        return parse.parse(str(raw))
    except ValueError as exc:
        raise ConfigError(f"{where}.{key}: {exc}") from None


def _all_resources(spec: object, where: str) -> dict[str, Resources]:
    checked = only(spec, f"{where}.resources", ROLE_NAMES)
    return {
        role: _resources(
            checked.get(role) or {},
            f"{where}.resources.{role}",
            DEFAULT_RESOURCES.get(role, SMALL),
        )
        for role in ROLE_NAMES
    }


def _resources(spec: object, where: str, default: Resources) -> Resources:
    checked = only(spec, where, ("requests", "limits"))
    requests = only(checked.get("requests") or {}, f"{where}.requests", ("cpu", "memory"))
    limits = only(checked.get("limits") or {}, f"{where}.limits", ("cpu", "memory"))
    rw, lw = f"{where}.requests", f"{where}.limits"
    result = Resources(
        cpu_request=_quantity(requests, "cpu", rw, default.cpu_request),
        cpu_limit=_quantity(limits, "cpu", lw, default.cpu_limit),
        memory_request=_quantity(requests, "memory", rw, default.memory_request),
        memory_limit=_quantity(limits, "memory", lw, default.memory_limit),
    )
    if result.cpu_request.amount > result.cpu_limit.amount:
        raise ConfigError(f"{where}: cpu request {result.cpu_request} exceeds the limit")
    if result.memory_request.amount > result.memory_limit.amount:
        raise ConfigError(f"{where}: memory request {result.memory_request} exceeds the limit")
    return result


def _bounds(spec: object, where: str) -> Bounds:
    checked = only(spec, where, ("minCpu", "maxCpu", "minMemory", "maxMemory"))
    b = Bounds()
    return Bounds(
        min_cpu=_quantity(checked, "minCpu", where, b.min_cpu),
        max_cpu=_quantity(checked, "maxCpu", where, b.max_cpu),
        min_memory=_quantity(checked, "minMemory", where, b.min_memory),
        max_memory=_quantity(checked, "maxMemory", where, b.max_memory),
    )


def _pull_policy(value: object, where: str) -> str:
    if value not in PULL_POLICIES:
        raise ConfigError(
            f"{where}.imagePullPolicy: {value!r} is not one of {', '.join(PULL_POLICIES)}"
        )
    return str(value)
