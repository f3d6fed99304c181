"""What the operator decides: images, resources and their bounds, allowed
registries, and the contract rows a profile sets (Vault, proxy policy,
native-sidecar mode, ...).

``Settings`` is frozen and read once per admission: the webhook asks its
settings provider for the current ``Settings`` and passes it to ``render``.
A ``Profile`` holds every per-profile default; a SidecarProfile's ``spec``
and a profile in a ``--config`` file have the same shape and both go through
``injector.core.specs.profile_from_spec``. Pods pick a profile with the
``profile`` annotation; ``Settings.default_profile`` names the one used
otherwise.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, TypeVar

from contract import config, layout, pod, secrets
from contract.catalogue import ROLE_NAMES
from contract.knobs import Knob, Values
from contract.values import CPU, MEMORY, NativeMode, Quantity, SecretsMode
from injector import __version__
from injector.errors import ConfigError

T = TypeVar("T")
# The registry is named: "allowed registries" derived from a bare name would be all of docker.io.
DEFAULT_IMAGE = "ghcr.io/sidecar-injector/sidecar:" + __version__
SYSTEM_NAMESPACES = frozenset({"kube-system", "kube-public", "kube-node-lease"})
NATIVE_SIDECARS_SINCE = (1, 29)
PULL_POLICIES = ("IfNotPresent", "Always", "Never")
DEFAULT_CLUSTER_DOMAIN = "cluster.local"
_DNS_LABEL = r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"
CLUSTER_DOMAIN = re.compile(rf"{_DNS_LABEL}(\.{_DNS_LABEL})*")
DEFAULT_MESH_SIGNER = f"https://sidecar-injector.sidecar-injector.svc:{layout.MESH_PORT}"


def cpu(text: str) -> Quantity:
    return CPU.parse(text)


def memory(text: str) -> Quantity:
    return MEMORY.parse(text)


@dataclass(frozen=True)
class Resources:
    """Requests and limits of one injected container (Kubernetes quantities)."""

    cpu_request: Quantity
    cpu_limit: Quantity
    memory_request: Quantity
    memory_limit: Quantity

    def to_k8s(self) -> dict[str, dict[str, str]]:
        return {
            "requests": {"cpu": self.cpu_request.text, "memory": self.memory_request.text},
            "limits": {"cpu": self.cpu_limit.text, "memory": self.memory_limit.text},
        }


# Roles without an entry here (new roles) get SMALL.
SMALL = Resources(cpu("10m"), cpu("100m"), memory("32Mi"), memory("64Mi"))
DEFAULT_RESOURCES: Mapping[str, Resources] = MappingProxyType(
    {
        "proxy": Resources(cpu("100m"), cpu("1"), memory("128Mi"), memory("256Mi")),
        # ~25 MiB RSS while shipping; 500m ships ~100,000 lines/s (bench logs)
        "logs": Resources(cpu("20m"), cpu("500m"), memory("40Mi"), memory("64Mi")),
    }
)


MIN_CPU, MAX_CPU, MIN_MEMORY, MAX_MEMORY = cpu("10m"), cpu("2"), memory("16Mi"), memory("1Gi")


@dataclass(frozen=True)
class Bounds:
    """What per-pod ``<role>-cpu`` / ``<role>-memory`` overrides may ask for."""

    min_cpu: Quantity = MIN_CPU
    max_cpu: Quantity = MAX_CPU
    min_memory: Quantity = MIN_MEMORY
    max_memory: Quantity = MAX_MEMORY


@dataclass(frozen=True)
class NamespacePolicy:
    """Which namespaces may use a profile: those ``names``, and those whose
    labels include every one of ``labels`` (a SidecarProfile's ``namespaces:
    {names: [...], matchLabels: {...}}``; empty: none)."""

    names: frozenset[str] = frozenset()
    labels: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    def allows(self, name: str, labels: Mapping[str, str]) -> bool:
        if name in self.names:
            return True
        return bool(self.labels) and all(labels.get(k) == v for k, v in self.labels.items())

    def describe(self) -> str:
        parts = []
        if self.names:
            parts.append("namespaces " + ", ".join(sorted(self.names)))
        if self.labels:
            parts.append(
                "namespaces labelled " + ", ".join(f"{k}={v}" for k, v in self.labels.items())
            )
        return " or ".join(parts) or "no namespace"


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
    # The contract rows this profile sets (``Knob.profile``: vault.address,
    # proxy.timeout, nativeSidecars, ...), parsed by the rows' own parsers.
    values: Values = field(default_factory=Values)
    # Who may name this profile (the default profile: every namespace).
    namespaces: NamespacePolicy = field(default_factory=NamespacePolicy)

    def image_for(self, role: str) -> str:
        return self.images.get(role, self.image)

    def resources_for(self, role: str) -> Resources:
        return self.resources.get(role, DEFAULT_RESOURCES.get(role, SMALL))

    def registries(self) -> tuple[str, ...]:
        if self.allowed_registries:
            return self.allowed_registries
        own = {image_registry(self.image_for(role)) for role in ROLE_NAMES}
        return tuple(sorted(own))

    def value(self, knob: Knob[T]) -> T | None:
        """The profile's value of ``knob``, else the row's default (None: none)."""
        found = self.values.get(knob)
        return found if found is not None else knob.parsed_default()

    @property
    def native_sidecars(self) -> NativeMode:
        return self.value(pod.NATIVE_SIDECARS) or "auto"

    @property
    def secrets_mode(self) -> SecretsMode:
        return self.value(secrets.MODE) or "both"

    @property
    def config_path(self) -> str:
        return self.value(config.PATH) or "/"


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
    # The cluster's DNS domain (kubelet --cluster-domain): NO_PROXY's in-cluster
    # suffixes for proxy-egress. None: not known, cluster.local is assumed.
    cluster_domain: str | None = None
    excluded_namespaces: frozenset[str] = SYSTEM_NAMESPACES
    version: str = __version__
    # The operator's certificate endpoint agents call (mesh mTLS); None: this
    # injector runs no mesh (``serve`` without ``--operator``, ``--mesh-port 0``).
    mesh_signer: str | None = DEFAULT_MESH_SIGNER
    # Whether the API server serves PodCertificateRequests (the operator looks).
    pod_certificates: bool = False

    def __post_init__(self) -> None:
        if self.default_profile not in self.profiles:
            raise ConfigError(
                f"default profile {self.default_profile!r} is not among the profiles "
                f"({', '.join(sorted(self.profiles)) or 'none'}); define it or pick another"
            )

    def profile(self, name: str | None) -> Profile | None:
        """The named profile (default when None), or None when there is no such profile."""
        return self.profiles.get(self.default_profile if name is None else name)

    def usable(self, profile: Profile, namespace: str, labels: Mapping[str, str]) -> bool:
        """The default profile serves every namespace; any other only the namespaces
        its ``namespaces`` allows (a pod could otherwise pick the most permissive
        profile's registries and bounds)."""
        return profile.name == self.default_profile or profile.namespaces.allows(namespace, labels)

    @property
    def native_sidecars_supported(self) -> bool:
        return self.cluster_version is not None and self.cluster_version >= NATIVE_SIDECARS_SINCE

    @property
    def domain(self) -> str:
        """The cluster's DNS domain, cluster.local when not known."""
        return self.cluster_domain or DEFAULT_CLUSTER_DOMAIN

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


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


def parse_cluster_domain(text: object) -> str:
    """``"cluster.local"``, ``"corp.example"`` (a trailing dot is dropped)."""
    value = str(text).strip().rstrip(".").lower()
    if len(value) > 253 or not CLUSTER_DOMAIN.fullmatch(value):
        raise ConfigError(
            f"cluster domain {str(text)[:80]!r} is not a DNS domain such as cluster.local "
            "(lowercase letters, digits, '-' and '.'; the kubelet's --cluster-domain)"
        )
    return value


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
