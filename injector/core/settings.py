"""What the operator decides: images, resources and their bounds, allowed
registries, Vault, proxy policy defaults, native-sidecar mode.

``Settings`` is frozen and read once per admission: the webhook asks its
settings provider for the current ``Settings`` and passes it to ``render``.
A ``Profile`` holds every per-profile default; a SidecarProfile custom
resource's ``spec`` and a profile in a ``--config`` file have the same shape
and both go through ``Profile.from_spec`` (camelCase keys, validated, errors
name the field and what is accepted). Pods pick a profile with the ``profile``
annotation; ``Settings.default_profile`` names the one used otherwise.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from contract.units import parse_duration, parse_positive_int, parse_rate
from injector import __version__
from injector.core.quantities import parse_cpu, parse_memory
from injector.core.values import parse_retry_on
from injector.errors import ConfigError

ROLES = ("proxy", "secrets", "config")
NATIVE_MODES = ("auto", "true", "false")
SECRETS_MODES = ("init", "sidecar", "both")
# The registry is named: "allowed registries" derived from a bare name would be all of docker.io.
DEFAULT_IMAGE = "ghcr.io/sidecar-injector/sidecar:" + __version__
SYSTEM_NAMESPACES = frozenset({"kube-system", "kube-public", "kube-node-lease"})
NATIVE_SIDECARS_SINCE = (1, 29)
PULL_POLICIES = ("IfNotPresent", "Always", "Never")


@dataclass(frozen=True)
class Resources:
    """Requests and limits of one injected container (Kubernetes quantities)."""

    cpu_request: str
    cpu_limit: str
    memory_request: str
    memory_limit: str

    def to_k8s(self) -> dict[str, dict[str, str]]:
        return {
            "requests": {"cpu": self.cpu_request, "memory": self.memory_request},
            "limits": {"cpu": self.cpu_limit, "memory": self.memory_limit},
        }


DEFAULT_RESOURCES: Mapping[str, Resources] = MappingProxyType(
    {
        "proxy": Resources("100m", "1", "128Mi", "256Mi"),
        "secrets": Resources("10m", "100m", "32Mi", "64Mi"),
        "config": Resources("10m", "100m", "32Mi", "64Mi"),
    }
)


@dataclass(frozen=True)
class Bounds:
    """What per-pod ``<role>-cpu`` / ``<role>-memory`` overrides may ask for."""

    min_cpu: str = "10m"
    max_cpu: str = "2"
    min_memory: str = "16Mi"
    max_memory: str = "1Gi"


@dataclass(frozen=True)
class Vault:
    address: str | None = None
    auth_path: str = "kubernetes"
    role: str | None = None
    namespace: str | None = None


@dataclass(frozen=True)
class ProxyPolicy:
    """Defaults of the proxy's traffic policy; annotations override per pod.
    ``None`` leaves the agent's own default (docs/runtime.md)."""

    timeout: str | None = None
    retries: int | None = None
    retry_on: str | None = None
    rate_limit: str | None = None
    max_connections: int | None = None
    outlier_5xx: int | None = None
    drain_timeout: str | None = None


@dataclass(frozen=True)
class Profile:
    name: str = "default"
    image: str = DEFAULT_IMAGE
    images: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    image_pull_policy: str = "IfNotPresent"
    resources: Mapping[str, Resources] = field(default_factory=lambda: DEFAULT_RESOURCES)
    bounds: Bounds = field(default_factory=Bounds)
    # Registries (or registry/path prefixes) that `<role>-image` overrides may
    # use. Empty: only the registries of this profile's own images.
    allowed_registries: tuple[str, ...] = ()
    vault: Vault = field(default_factory=Vault)
    proxy: ProxyPolicy = field(default_factory=ProxyPolicy)
    native_sidecars: str = "auto"
    secrets_mode: str = "both"
    config_path: str = "/etc/sidecar/config"
    config_interval: str | None = None

    def image_for(self, role: str) -> str:
        return self.images.get(role, self.image)

    def resources_for(self, role: str) -> Resources:
        return self.resources.get(role, DEFAULT_RESOURCES[role])

    def registries(self) -> tuple[str, ...]:
        if self.allowed_registries:
            return self.allowed_registries
        own = {image_registry(self.image_for(role)) for role in ROLES}
        return tuple(sorted(own))

    @classmethod
    def from_spec(cls, name: str, spec: Mapping[str, Any]) -> Profile:
        """A SidecarProfile ``spec`` (or a ``--config`` profile) -> ``Profile``."""
        return _profile_from_spec(name, spec)


@dataclass(frozen=True)
class Settings:
    profiles: Mapping[str, Profile] = field(
        default_factory=lambda: MappingProxyType({"default": Profile()})
    )
    default_profile: str = "default"
    # (major, minor) of the API server; None: unknown, so `native-sidecars:
    # auto` renders classic sidecars (older API servers drop restartPolicy).
    cluster_version: tuple[int, int] | None = None
    injector_namespace: str = "sidecar-injector"
    excluded_namespaces: frozenset[str] = SYSTEM_NAMESPACES
    version: str = __version__

    def __post_init__(self) -> None:
        if self.default_profile not in self.profiles:
            raise ConfigError(
                f"default profile {self.default_profile!r} is not among the profiles "
                f"({', '.join(sorted(self.profiles)) or 'none'}); define it or pick another"
            )

    def profile(self, name: str | None) -> Profile | None:
        """The named profile (default when None), or None when there is no such profile."""
        return self.profiles.get(self.default_profile if name is None else name)

    @property
    def native_sidecars_supported(self) -> bool:
        return self.cluster_version is not None and self.cluster_version >= NATIVE_SIDECARS_SINCE

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> Settings:
        """A ``--config`` document: ``{clusterVersion, injectorNamespace,
        defaultProfile, profiles: {NAME: PROFILE_SPEC}}``, every key optional."""
        _only(spec, "config", ("clusterVersion", "injectorNamespace", "defaultProfile", "profiles"))
        profiles_spec = spec.get("profiles") or {"default": {}}
        if not isinstance(profiles_spec, Mapping):
            raise ConfigError("config profiles: expected a mapping of profile name -> spec")
        profiles = {
            str(name): Profile.from_spec(str(name), body or {})
            for name, body in profiles_spec.items()
        }
        return cls(
            profiles=MappingProxyType(profiles),
            default_profile=str(spec.get("defaultProfile", "default")),
            cluster_version=parse_version(spec["clusterVersion"])
            if spec.get("clusterVersion") is not None
            else None,
            injector_namespace=str(spec.get("injectorNamespace", "sidecar-injector")),
        )


def parse_version(text: object) -> tuple[int, int]:
    """``"1.29"``, ``"v1.30.2"``, ``"1.31+"`` -> ``(major, minor)``."""
    value = str(text).strip().lstrip("v")
    parts = value.split(".")
    try:
        major = int(parts[0])
        minor = int("".join(c for c in parts[1] if c.isdigit()))
    except (IndexError, ValueError):
        raise ConfigError(
            f"cluster version {text!r} is not a Kubernetes version such as 1.29 or v1.30.2"
        ) from None
    return major, minor


def image_registry(image: str) -> str:
    """The registry host of an image reference (``docker.io`` when none is named)."""
    first, sep, _ = image.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return first
    return "docker.io"


def image_allowed(image: str, allowed: tuple[str, ...]) -> bool:
    """Whether ``image`` is under one of the allowed registries or registry/path prefixes."""
    registry = image_registry(image)
    full = image if image.startswith(registry + "/") else f"{registry}/{image}"
    return any(full.startswith(entry.rstrip("/") + "/") for entry in allowed)


# --- spec parsing -------------------------------------------------------------

_PROFILE_KEYS = (
    "image",
    "images",
    "imagePullPolicy",
    "resources",
    "bounds",
    "allowedRegistries",
    "vault",
    "proxy",
    "nativeSidecars",
    "secretsMode",
    "configPath",
    "configInterval",
)


def _only(spec: Mapping[str, Any], where: str, keys: tuple[str, ...]) -> None:
    if not isinstance(spec, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {type(spec).__name__}")
    unknown = sorted(str(k) for k in spec if k not in keys)
    if unknown:
        raise ConfigError(
            f"{where}: unknown field {', '.join(unknown)}; accepted: {', '.join(keys)}"
        )


def _str(spec: Mapping[str, Any], key: str, where: str, default: str | None) -> str | None:
    value = spec.get(key, default)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}.{key}: expected a non-empty string, got {value!r}")
    return value.strip()


def _checked(value: str | None, parse: Any, where: str) -> str | None:
    if value is None:
        return None
    try:
        parse(value)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    return value


def _int(spec: Mapping[str, Any], key: str, where: str, maximum: int = 2**31 - 1) -> int | None:
    value = spec.get(key)
    if value is None:
        return None
    try:
        return parse_positive_int(str(value), maximum=maximum)
    except ValueError as exc:
        raise ConfigError(f"{where}.{key}: {exc}") from None


def _choice(spec: Mapping[str, Any], key: str, where: str, choices: tuple[str, ...]) -> str:
    value = str(spec.get(key, choices[0])).lower()
    if value not in choices:
        raise ConfigError(f"{where}.{key}: {value!r} is not one of {', '.join(choices)}")
    return value


def _quantity(spec: Mapping[str, Any], key: str, where: str, default: str, parse: Any) -> str:
    value = spec.get(key, default)
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise ConfigError(f"{where}.{key}: expected a quantity, got {value!r}")
    text = str(value).strip()
    try:
        parse(text)
    except ValueError as exc:
        raise ConfigError(f"{where}.{key}: {exc}") from None
    return text


def _resources(spec: Any, where: str, default: Resources) -> Resources:
    _only(spec, where, ("requests", "limits"))
    requests = spec.get("requests") or {}
    limits = spec.get("limits") or {}
    _only(requests, f"{where}.requests", ("cpu", "memory"))
    _only(limits, f"{where}.limits", ("cpu", "memory"))
    rw, lw = f"{where}.requests", f"{where}.limits"
    result = Resources(
        cpu_request=_quantity(requests, "cpu", rw, default.cpu_request, parse_cpu),
        cpu_limit=_quantity(limits, "cpu", lw, default.cpu_limit, parse_cpu),
        memory_request=_quantity(requests, "memory", rw, default.memory_request, parse_memory),
        memory_limit=_quantity(limits, "memory", lw, default.memory_limit, parse_memory),
    )
    if parse_cpu(result.cpu_request) > parse_cpu(result.cpu_limit):
        raise ConfigError(f"{where}: cpu request {result.cpu_request} exceeds the limit")
    if parse_memory(result.memory_request) > parse_memory(result.memory_limit):
        raise ConfigError(f"{where}: memory request {result.memory_request} exceeds the limit")
    return result


def _profile_from_spec(name: str, spec: Mapping[str, Any]) -> Profile:
    where = f"profile {name}"
    _only(spec, where, _PROFILE_KEYS)
    image = _str(spec, "image", where, DEFAULT_IMAGE) or DEFAULT_IMAGE
    images = spec.get("images") or {}
    _only(images, f"{where}.images", ROLES)
    resources_spec = spec.get("resources") or {}
    _only(resources_spec, f"{where}.resources", ROLES)
    resources = {
        role: _resources(
            resources_spec.get(role) or {}, f"{where}.resources.{role}", DEFAULT_RESOURCES[role]
        )
        for role in ROLES
    }
    bounds_spec = spec.get("bounds") or {}
    _only(bounds_spec, f"{where}.bounds", ("minCpu", "maxCpu", "minMemory", "maxMemory"))
    b, bw = Bounds(), f"{where}.bounds"
    bounds = Bounds(
        min_cpu=_quantity(bounds_spec, "minCpu", bw, b.min_cpu, parse_cpu),
        max_cpu=_quantity(bounds_spec, "maxCpu", bw, b.max_cpu, parse_cpu),
        min_memory=_quantity(bounds_spec, "minMemory", bw, b.min_memory, parse_memory),
        max_memory=_quantity(bounds_spec, "maxMemory", bw, b.max_memory, parse_memory),
    )
    registries = spec.get("allowedRegistries") or []
    if not isinstance(registries, list) or not all(isinstance(r, str) and r for r in registries):
        raise ConfigError(f"{where}.allowedRegistries: expected a list of registry hosts")
    vault_spec = spec.get("vault") or {}
    _only(vault_spec, f"{where}.vault", ("address", "authPath", "role", "namespace"))
    address = _str(vault_spec, "address", f"{where}.vault", None)
    if address is not None and not address.startswith(("http://", "https://")):
        raise ConfigError(f"{where}.vault.address: {address!r} is not an http(s):// URL")
    vault = Vault(
        address=address,
        auth_path=_str(vault_spec, "authPath", f"{where}.vault", "kubernetes") or "kubernetes",
        role=_str(vault_spec, "role", f"{where}.vault", None),
        namespace=_str(vault_spec, "namespace", f"{where}.vault", None),
    )
    proxy_spec = spec.get("proxy") or {}
    pw = f"{where}.proxy"
    _only(
        proxy_spec,
        pw,
        (
            "timeout",
            "retries",
            "retryOn",
            "rateLimit",
            "maxConnections",
            "outlier5xx",
            "drainTimeout",
        ),
    )
    proxy = ProxyPolicy(
        timeout=_checked(_str(proxy_spec, "timeout", pw, None), parse_duration, f"{pw}.timeout"),
        retries=_int(proxy_spec, "retries", pw, maximum=10),
        retry_on=_checked(_str(proxy_spec, "retryOn", pw, None), parse_retry_on, f"{pw}.retryOn"),
        rate_limit=_checked(_str(proxy_spec, "rateLimit", pw, None), parse_rate, f"{pw}.rateLimit"),
        max_connections=_int(proxy_spec, "maxConnections", pw),
        outlier_5xx=_int(proxy_spec, "outlier5xx", pw),
        drain_timeout=_checked(
            _str(proxy_spec, "drainTimeout", pw, None), parse_duration, f"{pw}.drainTimeout"
        ),
    )
    config_path = _str(spec, "configPath", where, "/etc/sidecar/config") or "/etc/sidecar/config"
    if not config_path.startswith("/"):
        raise ConfigError(f"{where}.configPath: {config_path!r} is not an absolute path")
    return Profile(
        name=name,
        image=image,
        images=MappingProxyType({str(k): str(v) for k, v in images.items()}),
        image_pull_policy=_pull_policy(spec.get("imagePullPolicy", "IfNotPresent"), where),
        resources=MappingProxyType(resources),
        bounds=bounds,
        allowed_registries=tuple(registries),
        vault=vault,
        proxy=proxy,
        native_sidecars=_choice(spec, "nativeSidecars", where, NATIVE_MODES),
        secrets_mode=_choice(spec, "secretsMode", where, ("both", "init", "sidecar")),
        config_path=config_path,
        config_interval=_checked(
            _str(spec, "configInterval", where, None), parse_duration, f"{where}.configInterval"
        ),
    )


def _pull_policy(value: object, where: str) -> str:
    if value not in PULL_POLICIES:
        raise ConfigError(
            f"{where}.imagePullPolicy: {value!r} is not one of {', '.join(PULL_POLICIES)}"
        )
    return str(value)
