"""Decide what to inject: the pod's request, its profile and the pod itself ->
a ``Plan`` (every effective value, what ``explain`` shows) or a ``Skip``.

Pure. Raises ``InjectionDenied`` when the pod asks for something that cannot
be given (unknown profile, value outside the bounds, image from a registry the
profile does not allow, Vault address missing, signal reload without a known
non-root app user, ...).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from contract.reload import ReloadTarget
from injector.core.model import NamespaceInfo, PodRequest, parse_annotations
from injector.core.quantities import parse_cpu, parse_memory
from injector.core.settings import Profile, Resources, Settings, image_allowed
from injector.errors import InjectionDenied, UnknownProfile

AGENT_UID = 1337
INJECTOR_LABEL = ("app.kubernetes.io/name", "sidecar-injector")
PROXY_PORTS = {"outbound": 15001, "inbound": 15006, "admin": 15000, "agent": 15020}
AGENT_PORTS = {"proxy": 15020, "secrets": 15021, "config": 15022}

# Skip reasons (stable codes: metrics labels, explain output, status).
NOT_REQUESTED = "not-requested"
INJECT_FALSE = "inject-false"
NAMESPACE_DISABLED = "namespace-disabled"
HOST_NETWORK = "host-network"
SYSTEM_NAMESPACE = "system-namespace"
INJECTOR_POD = "injector-pod"


@dataclass(frozen=True)
class Skip:
    reason: str
    message: str


@dataclass(frozen=True)
class RoleSpec:
    """Image, resources and user of one role's containers, and its env."""

    role: str
    image: str
    resources: Resources
    user: int
    group: int
    env: tuple[tuple[str, str], ...]  # role-specific SIDECAR_* variables with plain values


@dataclass(frozen=True)
class Plan:
    roles: tuple[RoleSpec, ...]
    profile: Profile
    native: bool
    job: bool
    job_strategy: str | None
    app_containers: tuple[str, ...]
    secrets_init: bool
    secrets_sidecar: bool
    config_sidecar: bool
    config_path: str
    reload: ReloadTarget | None
    share_process_namespace: bool
    proxy_upstream: bool
    proxy_inbound: bool
    warnings: tuple[str, ...]
    pull_policy: str

    def role(self, name: str) -> RoleSpec | None:
        return next((r for r in self.roles if r.role == name), None)

    def describe(self) -> dict[str, Any]:
        """Plain data for ``explain``."""
        return {
            "profile": self.profile.name,
            "mode": "native sidecars" if self.native else "classic sidecars",
            "job": self.job_strategy,
            "appContainers": list(self.app_containers),
            "roles": {
                r.role: {
                    "image": r.image,
                    "resources": r.resources.to_k8s(),
                    "runAs": f"{r.user}:{r.group}",
                    "env": dict(r.env),
                }
                for r in self.roles
            },
            "secrets": (
                {"init": self.secrets_init, "sidecar": self.secrets_sidecar}
                if self.role("secrets")
                else None
            ),
            "config": {"path": self.config_path, "sidecar": self.config_sidecar}
            if self.role("config")
            else None,
            "reload": str(self.reload) if self.reload else None,
            "shareProcessNamespace": self.share_process_namespace,
        }


def decide(
    pod: Mapping[str, Any],
    namespace: NamespaceInfo,
    settings: Settings,
    *,
    job: bool | None = None,
) -> tuple[Plan | Skip, PodRequest | None]:
    """What to do with ``pod`` (already stripped of a previous injection).

    ``job``: whether the pod belongs to a Job; None looks at ownerReferences.
    """
    metadata = _mapping(pod.get("metadata"))
    spec = _mapping(pod.get("spec"))
    labels = _mapping(metadata.get("labels"))
    if namespace.name in settings.excluded_namespaces:
        return Skip(SYSTEM_NAMESPACE, f"namespace {namespace.name} is never injected"), None
    if labels.get(INJECTOR_LABEL[0]) == INJECTOR_LABEL[1] or (
        namespace.name == settings.injector_namespace
    ):
        return Skip(INJECTOR_POD, "the injector never injects its own pods"), None
    annotations = _mapping(metadata.get("annotations"))
    try:
        request = parse_annotations(annotations)
    except InjectionDenied:
        if str(annotations.get("sidecar.example.io/inject", "")).strip().lower() == "false":
            return Skip(INJECT_FALSE, 'the pod says sidecar.example.io/inject: "false"'), None
        raise
    default, label_warning = namespace.injection_default()
    warnings = list(request.warnings) + ([label_warning] if label_warning else [])
    if request.inject is False:
        return Skip(INJECT_FALSE, 'the pod says sidecar.example.io/inject: "false"'), request
    if request.inject is None and default is False:
        return Skip(
            NAMESPACE_DISABLED, f"namespace {namespace.name} has injection disabled"
        ), request
    if request.inject is None and default is None:
        why = 'no sidecar.example.io/inject: "true" and no namespace label injection: enabled'
        return Skip(NOT_REQUESTED, why), request
    if spec.get("hostNetwork") is True:
        return Skip(HOST_NETWORK, "hostNetwork pods share the node's ports; not injected"), request
    try:
        profile = settings.profile(request.profile)
        if profile is None:
            known = ", ".join(sorted(settings.profiles))
            raise UnknownProfile(
                f"annotation sidecar.example.io/profile: {request.profile!r} is not a known "
                f"SidecarProfile; known: {known}"
            )
        return _plan(pod, spec, request, profile, settings, warnings, job), request
    except InjectionDenied as denied:
        denied.warnings = denied.warnings or tuple(request.warnings)
        raise


def _plan(
    pod: Mapping[str, Any],
    spec: Mapping[str, Any],
    request: PodRequest,
    profile: Profile,
    settings: Settings,
    warnings: list[str],
    job: bool | None,
) -> Plan:
    containers = [c for c in _list(spec.get("containers")) if isinstance(c, Mapping)]
    names = [str(c.get("name")) for c in containers]
    if not names:
        raise InjectionDenied("the pod has no containers; nothing to inject into")
    selected = request.containers or tuple(names)
    missing = [n for n in selected if n not in names]
    if missing:
        raise InjectionDenied(
            f"annotation sidecar.example.io/containers: {', '.join(missing)} "
            f"not among the pod's containers ({', '.join(names)})"
        )
    app = [c for c in containers if c.get("name") in selected]
    mode = request.native_sidecars or profile.native_sidecars
    native = mode == "true" or (mode == "auto" and settings.native_sidecars_supported)
    if mode == "true" and settings.cluster_version and not settings.native_sidecars_supported:
        warnings.append(
            f"native-sidecars: true on Kubernetes {settings.cluster_version[0]}."
            f"{settings.cluster_version[1]}; native sidecars need 1.29 or later"
        )
    is_job = _owned_by_job(pod) if job is None else job
    strategy: str | None = None
    if is_job:
        strategy = "native sidecars: they stop when the app exits" if native else "init-only"
    security = _mapping(spec.get("securityContext"))
    roles: list[RoleSpec] = []
    user = group = AGENT_UID
    if request.signal_reload and (request.secrets or request.config):
        user, group = _app_user(app, security)
    secrets_init = secrets_sidecar = config_sidecar = False
    if request.proxy is not None:
        roles.append(_proxy(request, profile, app, warnings))
        if is_job and not native:
            strategy = "init-only secrets/config; proxy exits on POST /quitquitquit"
            warnings.append(
                "the pod belongs to a Job and runs classic sidecars: the app must call "
                "POST http://127.0.0.1:15020/quitquitquit when done or the Job never completes"
            )
    if request.secrets is not None:
        secrets_mode = request.secrets.mode or profile.secrets_mode
        if is_job and not native and secrets_mode != "init":
            if request.secrets.mode == "sidecar":
                warnings.append("secrets-mode: sidecar in a Job without native sidecars: init only")
            secrets_mode = "init"
        secrets_init = secrets_mode in ("init", "both")
        secrets_sidecar = secrets_mode in ("sidecar", "both")
        roles.append(_secrets(request, profile, security, user, group))
    config_path = profile.config_path
    if request.config is not None:
        config_sidecar = not (is_job and not native)
        config_path = request.config.path or profile.config_path
        env = [("SIDECAR_CONFIG_SOURCE", request.config.source)]
        interval = request.config.interval or profile.config_interval
        if interval:
            env.append(("SIDECAR_CONFIG_INTERVAL", interval))
        roles.append(_role("config", request, profile, user, group, env))
    proxy = request.proxy
    return Plan(
        roles=tuple(roles),
        profile=profile,
        native=native,
        job=is_job,
        job_strategy=strategy,
        app_containers=tuple(selected),
        secrets_init=secrets_init,
        secrets_sidecar=secrets_sidecar,
        config_sidecar=config_sidecar,
        config_path=config_path,
        reload=request.reload if (request.secrets or request.config) else None,
        share_process_namespace=user != AGENT_UID and spec.get("shareProcessNamespace") is not True,
        proxy_upstream=proxy is not None and proxy.upstream is not None,
        proxy_inbound=any(k == "SIDECAR_INBOUND_PORT" for r in roles for k, _ in r.env),
        warnings=tuple(warnings),
        pull_policy=profile.image_pull_policy,
    )


def _proxy(
    request: PodRequest, profile: Profile, app: list[Mapping[str, Any]], warnings: list[str]
) -> RoleSpec:
    proxy = request.proxy
    assert proxy is not None
    policy = profile.proxy
    inbound = proxy.inbound_port
    if proxy.upstream is None and inbound is None:
        inbound = _first_port(app)
        if inbound is None:
            raise InjectionDenied(
                "the proxy has nothing to do: set sidecar.example.io/proxy-upstream (outbound), "
                "sidecar.example.io/proxy-inbound-port (inbound) or give the app container a "
                'containerPort; or set sidecar.example.io/proxy: "false"'
            )
    ours = set(PROXY_PORTS.values()) | set(AGENT_PORTS.values())
    if inbound in ours:
        raise InjectionDenied(
            f"annotation sidecar.example.io/proxy-inbound-port: {inbound} is a port of the "
            "proxy itself; give the app's own port"
        )
    values: list[tuple[str, str | int | None]] = [
        ("SIDECAR_UPSTREAM", proxy.upstream),
        ("SIDECAR_INBOUND_PORT", inbound),
        ("SIDECAR_TIMEOUT", proxy.timeout or policy.timeout),
        ("SIDECAR_RETRIES", _first(proxy.retries, policy.retries)),
        ("SIDECAR_RETRY_ON", proxy.retry_on or policy.retry_on),
        ("SIDECAR_RATE_LIMIT", proxy.rate_limit or policy.rate_limit),
        ("SIDECAR_MAX_CONNECTIONS", _first(proxy.max_connections, policy.max_connections)),
        ("SIDECAR_OUTLIER_5XX", _first(proxy.outlier_5xx, policy.outlier_5xx)),
        ("SIDECAR_DRAIN_TIMEOUT", policy.drain_timeout),
    ]
    env = [(k, str(v)) for k, v in values if v is not None]
    if proxy.upstream is None and proxy.inbound_port is None:
        warnings.append(
            f"proxy inbound port not set: using the app's first containerPort {inbound} "
            "(set sidecar.example.io/proxy-inbound-port to choose)"
        )
    return _role("proxy", request, profile, AGENT_UID, AGENT_UID, env)


def _secrets(
    request: PodRequest, profile: Profile, security: Mapping[str, Any], user: int, group: int
) -> RoleSpec:
    secrets = request.secrets
    assert secrets is not None
    vault = profile.vault
    address = secrets.vault_addr or vault.address
    role = secrets.role or vault.role
    if address is None:
        raise InjectionDenied(
            "secrets need a Vault address: set sidecar.example.io/secrets-vault-addr or the "
            f"profile {profile.name}'s vault.address"
        )
    if role is None:
        raise InjectionDenied(
            "secrets need a Vault kubernetes auth role: set sidecar.example.io/secrets-role or "
            f"the profile {profile.name}'s vault.role"
        )
    items = [
        {"name": s.name, "path": s.path} | ({"template": s.template} if s.template else {})
        for s in secrets.secrets
    ]
    env = [
        ("SIDECAR_VAULT_ADDR", address),
        ("SIDECAR_VAULT_ROLE", role),
        ("SIDECAR_VAULT_AUTH_PATH", secrets.auth_path or vault.auth_path),
    ]
    if vault.namespace:
        env.append(("SIDECAR_VAULT_NAMESPACE", vault.namespace))
    env.append(("SIDECAR_SECRETS", json.dumps(items, separators=(",", ":"))))
    fs_group = security.get("fsGroup")
    if isinstance(fs_group, int) and not isinstance(fs_group, bool):
        env.append(("SIDECAR_FILE_GROUP", str(fs_group)))
    return _role("secrets", request, profile, user, group, env)


def _role(
    role: str,
    request: PodRequest,
    profile: Profile,
    user: int,
    group: int,
    env: list[tuple[str, str]],
) -> RoleSpec:
    overrides = request.overrides.get(role)
    image = profile.image_for(role)
    resources = profile.resources_for(role)
    if overrides is not None:
        if overrides.image:
            allowed = profile.registries()
            if not image_allowed(overrides.image, allowed):
                raise InjectionDenied(
                    f"annotation sidecar.example.io/{role}-image: {overrides.image!r} is not "
                    f"from an allowed registry ({', '.join(allowed)}); ask the operator to allow "
                    f"it in profile {profile.name}"
                )
            image = overrides.image
        resources = _bounded(role, resources, overrides.cpu, overrides.memory, profile)
    return RoleSpec(role, image, resources, user, group, tuple(env))


def _bounded(
    role: str, base: Resources, cpu: str | None, memory: str | None, profile: Profile
) -> Resources:
    b = profile.bounds
    checks = (
        ("cpu", cpu, parse_cpu, b.min_cpu, b.max_cpu),
        ("memory", memory, parse_memory, b.min_memory, b.max_memory),
    )
    for what, value, parse, low, high in checks:
        if value is not None and not parse(low) <= parse(value) <= parse(high):
            raise InjectionDenied(
                f"annotation sidecar.example.io/{role}-{what}: {value!r} is outside the "
                f"bounds of profile {profile.name}: from {low} to {high}"
            )
    cpu_request, memory_request = base.cpu_request, base.memory_request
    if cpu is not None and parse_cpu(cpu) < parse_cpu(cpu_request):
        cpu_request = cpu
    if memory is not None and parse_memory(memory) < parse_memory(memory_request):
        memory_request = memory
    return Resources(
        cpu_request=cpu_request,
        cpu_limit=cpu or base.cpu_limit,
        memory_request=memory_request,
        memory_limit=memory or base.memory_limit,
    )


def _app_user(app: list[Mapping[str, Any]], pod_security: Mapping[str, Any]) -> tuple[int, int]:
    users: set[tuple[int, int]] = set()
    for container in app:
        sc = _mapping(container.get("securityContext"))
        uid = sc.get("runAsUser", pod_security.get("runAsUser"))
        gid = sc.get("runAsGroup", pod_security.get("runAsGroup", uid))
        if not isinstance(uid, int) or isinstance(uid, bool):
            raise InjectionDenied(
                "annotation sidecar.example.io/reload: a signal can only be sent by the app's "
                f"own user, and container {container.get('name')} has no runAsUser; set "
                "securityContext.runAsUser on the pod or the container, or reload by URL"
            )
        if uid == 0:
            raise InjectionDenied(
                "annotation sidecar.example.io/reload: a signal needs the agent to run as the "
                f"app's user, and container {container.get('name')} runs as root; run the app "
                "as a non-root user or reload by URL"
            )
        users.add((uid, gid if isinstance(gid, int) and not isinstance(gid, bool) else uid))
    if len(users) > 1:
        raise InjectionDenied(
            "annotation sidecar.example.io/reload: the app containers run as different users "
            f"({sorted(users)}); a signal reaches one user only: pick the containers with "
            "sidecar.example.io/containers, or reload by URL"
        )
    return users.pop()


def _first_port(app: list[Mapping[str, Any]]) -> int | None:
    for container in app:
        for port in _list(container.get("ports")):
            entry = _mapping(port)
            number = entry.get("containerPort")
            if isinstance(number, int) and entry.get("protocol", "TCP") == "TCP":
                return number
    return None


def _owned_by_job(pod: Mapping[str, Any]) -> bool:
    owners = _list(_mapping(pod.get("metadata")).get("ownerReferences"))
    return any(_mapping(o).get("kind") == "Job" for o in owners)


def _first(*values: int | None) -> int | None:
    return next((v for v in values if v is not None), None)


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []
