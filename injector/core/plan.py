"""Decide what to inject: the pod's request, its profile and the pod itself ->
a ``Plan`` (every effective value, what ``explain`` shows) or a ``Skip``.

Each role's values are the pod's rows over the profile's (``Values.over``),
plus what the pod itself decides (the inbound port, the secrets, the file
group); ``contract.knobs.environment`` turns them into the role's
``SIDECAR_*`` variables, so nothing here spells a variable.

Pure. Raises ``InjectionDenied`` when the pod asks for something that cannot
be given (unknown profile, value outside the bounds, image from a registry the
profile does not allow, Vault address missing, signal reload without a known
non-root app user, ...).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from contract import config, layout, pod, proxy, secrets
from contract.catalogue import role as contract_role
from contract.common import RELOAD
from contract.knobs import Knob, Values, environment
from contract.reload import ReloadTarget, SignalTarget
from contract.values import Quantity
from injector.core import traffic as traffic_plan
from injector.core.logs import job_warning as logs_job_warning
from injector.core.logs import logs_values
from injector.core.model import NamespaceInfo, PodRequest, parse_annotations
from injector.core.settings import Profile, Resources, Settings, image_allowed
from injector.core.signalling import Signaller, rerouted, signaller
from injector.core.views import Container, Pod, PodSecurityContext, PodSpec
from injector.errors import InjectionDenied, UnknownProfile

T = TypeVar("T")
INJECTOR_LABEL = ("app.kubernetes.io/name", "sidecar-injector")
PROXY_PORTS = (layout.ADMIN_PORT, layout.OUTBOUND_PORT, layout.INBOUND_PORT)
AGENT_PORTS = (
    layout.PROXY_AGENT_PORT,
    layout.SECRETS_AGENT_PORT,
    layout.CONFIG_AGENT_PORT,
    layout.LOGS_AGENT_PORT,
)

# Skip reasons (stable codes: metrics labels, explain output, status).
SkipReason = Literal[
    "not-requested",
    "inject-false",
    "namespace-disabled",
    "host-network",
    "system-namespace",
    "injector-pod",
]
NOT_REQUESTED: SkipReason = "not-requested"
INJECT_FALSE: SkipReason = "inject-false"
NAMESPACE_DISABLED: SkipReason = "namespace-disabled"
HOST_NETWORK: SkipReason = "host-network"
SYSTEM_NAMESPACE: SkipReason = "system-namespace"
INJECTOR_POD: SkipReason = "injector-pod"
JobStrategy = Literal[
    "native sidecars: they stop when the app exits",
    "init-only",
    "init-only secrets/config; proxy exits on POST /quitquitquit",
    "init-only secrets/config; logs exits on POST /quitquitquit",
    "init-only secrets/config; proxy and logs exit on POST /quitquitquit",
]


@dataclass(frozen=True)
class Skip:
    reason: SkipReason
    message: str


@dataclass(frozen=True)
class RoleSpec:
    """Image, resources and user of one role's containers, and its values."""

    role: str
    image: str
    resources: Resources
    user: int
    group: int
    values: Values  # what the role's agent gets (``env``), and injector-only rows

    @property
    def env(self) -> tuple[tuple[str, str], ...]:
        """The role's ``SIDECAR_*`` variables with plain values (refresher containers)."""
        return tuple(environment(contract_role(self.role), self.values))

    def get(self, knob: Knob[T]) -> T | None:
        return self.values.get(knob)


@dataclass(frozen=True)
class Plan:
    roles: tuple[RoleSpec, ...]
    profile: Profile
    native: bool
    job_strategy: JobStrategy | None
    app_containers: tuple[str, ...]
    secrets_init: bool
    secrets_sidecar: bool
    config_sidecar: bool
    config_path: str
    share_process_namespace: bool
    warnings: tuple[str, ...]
    pull_policy: str
    signaller: Signaller | None = None  # sidecar-signal, for reload: signal:...
    traffic: traffic_plan.Traffic = field(default_factory=traffic_plan.Traffic)
    capture: RoleSpec | None = None  # the capture init container (proxy-capture: iptables)

    def role(self, name: str) -> RoleSpec | None:
        return next((r for r in self.roles if r.role == name), None)

    @property
    def reload(self) -> ReloadTarget | None:
        """What the pod asked for (a signal goes through ``sidecar-signal``)."""
        if self.signaller is not None:
            return self.signaller.target
        found = (r.values.get(RELOAD) for r in self.roles)
        return next((target for target in found if target is not None), None)

    def describe(self) -> dict[str, Any]:
        """Plain data for ``explain``."""
        has_secrets, has_config = self.role("secrets"), self.role("config")
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
                if has_secrets
                else None
            ),
            "config": {"path": self.config_path, "sidecar": self.config_sidecar}
            if has_config
            else None,
            "reload": str(self.reload) if self.reload else None,
            "signalledBy": (
                f"{layout.SIGNAL_CONTAINER} as {self.signaller.user}:{self.signaller.group}"
                if self.signaller
                else None
            ),
            "shareProcessNamespace": self.share_process_namespace,
            "traffic": traffic_plan.describe(self.traffic) if self.role("proxy") else None,
        }


def decide(
    pod_object: Pod,
    namespace: NamespaceInfo,
    settings: Settings,
    *,
    job: bool | None = None,
) -> tuple[Plan | Skip, PodRequest | None]:
    """What to do with ``pod_object`` (already stripped of a previous injection).

    ``job``: whether the pod belongs to a Job; None looks at ownerReferences.
    """
    metadata = pod_object.get("metadata", {})
    spec = pod_object.get("spec", {})
    labels = metadata.get("labels") or {}
    if namespace.name in settings.excluded_namespaces:
        return Skip(SYSTEM_NAMESPACE, f"namespace {namespace.name} is never injected"), None
    if labels.get(INJECTOR_LABEL[0]) == INJECTOR_LABEL[1] or (
        namespace.name == settings.injector_namespace
    ):
        return Skip(INJECTOR_POD, "the injector never injects its own pods"), None
    request = parse_annotations(metadata.get("annotations") or {})
    skip = _skip(request, namespace, spec)
    if skip is not None:
        return skip, request
    try:
        profile = settings.profile(request.profile)
        if profile is None:
            known = ", ".join(sorted(settings.profiles))
            raise UnknownProfile(
                f"annotation {layout.PREFIX}profile: {request.profile!r} is not a known "
                f"SidecarProfile; known: {known}"
            )
        if not settings.usable(profile, namespace.name, namespace.labels):
            raise UnknownProfile(
                f"annotation {layout.PREFIX}profile: SidecarProfile {profile.name} may not be "
                f"used in namespace {namespace.name} (it allows "
                f"{profile.namespaces.describe()}); use the default profile "
                f"({settings.default_profile}), or ask for {namespace.name} to be added to "
                f"{profile.name}'s spec.namespaces"
            )
        label_warning = namespace.injection_default()[1]
        warnings = [*request.warnings, *([label_warning] if label_warning else [])]
        return _plan(pod_object, spec, request, profile, settings, warnings, job), request
    except InjectionDenied as denied:
        denied.warnings = denied.warnings or tuple(request.warnings)
        raise


def _skip(request: PodRequest, namespace: NamespaceInfo, spec: PodSpec) -> Skip | None:
    default = namespace.injection_default()[0]
    if request.inject is False:
        return Skip(INJECT_FALSE, f'the pod says {layout.PREFIX}inject: "false"')
    if request.inject is None and default is False:
        return Skip(NAMESPACE_DISABLED, f"namespace {namespace.name} has injection disabled")
    if request.inject is None and default is None:
        why = f'no {layout.PREFIX}inject: "true" and no namespace label injection: enabled'
        return Skip(NOT_REQUESTED, why)
    if spec.get("hostNetwork") is True:
        return Skip(HOST_NETWORK, "hostNetwork pods share the node's ports; not injected")
    return None


def _plan(
    pod_object: Pod,
    spec: PodSpec,
    request: PodRequest,
    profile: Profile,
    settings: Settings,
    warnings: list[str],
    job: bool | None,
) -> Plan:
    app, selected = _app_containers(spec, request)
    native = _native(request, profile, settings, warnings)
    is_job = _owned_by_job(pod_object) if job is None else job
    strategy: JobStrategy | None = None
    if is_job:
        strategy = "native sidecars: they stop when the app exits" if native else "init-only"
    security = spec.get("securityContext") or PodSecurityContext()
    user = group = layout.AGENT_UID
    sender: Signaller | None = None
    target = request.values.get(RELOAD)
    reloading = any(RELOAD in contract_role(r).knobs for r in request.roles)
    if isinstance(target, SignalTarget) and reloading:
        sender = signaller(target, app, security, profile, request.roles)
    roles: list[RoleSpec] = []
    for name in request.roles:
        if name == "proxy":
            roles.append(_proxy(request, profile, app, warnings))
            if is_job and not native:
                strategy = "init-only secrets/config; proxy exits on POST /quitquitquit"
                warnings.append(
                    "the pod belongs to a Job and runs classic sidecars: the app must call "
                    f"POST http://127.0.0.1:{layout.PROXY_AGENT_PORT}/quitquitquit when done "
                    "or the Job never completes"
                )
        elif name == "secrets":
            roles.append(_secrets(request, profile, security, user, group))
        elif name == "logs":  # reads the app's files through their mode
            values = logs_values(request, profile, spec, selected)
            roles.append(_role(name, request, profile, layout.AGENT_UID, layout.AGENT_GID, values))
            if is_job and not native:
                warnings.append(logs_job_warning())
                strategy = (
                    "init-only secrets/config; proxy and logs exit on POST /quitquitquit"
                    if request.wants("proxy")
                    else "init-only secrets/config; logs exits on POST /quitquitquit"
                )
        else:  # a role whose values are its rows alone
            roles.append(
                _role(name, request, profile, user, group, _values(name, request, profile))
            )
    traffic, capture_spec = _traffic(request, profile, roles, app, spec, native, warnings)
    secrets_mode = _secrets_mode(request, profile, is_job and not native, warnings)
    config_values = _values("config", request, profile)
    secrets_sidecar = request.wants("secrets") and secrets_mode in ("sidecar", "both")
    config_sidecar = request.wants("config") and not (is_job and not native)
    if not (secrets_sidecar or config_sidecar):
        sender = None  # init-only: nothing reloads the app
    if sender is not None:
        roles = [rerouted(r) if RELOAD in r.values else r for r in roles]
    return Plan(
        roles=tuple(roles),
        profile=profile,
        native=native,
        job_strategy=strategy,
        app_containers=selected,
        secrets_init=request.wants("secrets") and secrets_mode in ("init", "both"),
        secrets_sidecar=secrets_sidecar,
        config_sidecar=config_sidecar,
        config_path=config_values.get(config.PATH) or profile.config_path,
        share_process_namespace=sender is not None
        and spec.get("shareProcessNamespace") is not True,
        warnings=tuple(warnings),
        pull_policy=profile.image_pull_policy,
        signaller=sender,
        traffic=traffic,
        capture=capture_spec,
    )


def _traffic(
    request: PodRequest,
    profile: Profile,
    roles: list[RoleSpec],
    app: list[Container],
    spec: PodSpec,
    native: bool,
    warnings: list[str],
) -> tuple[traffic_plan.Traffic, RoleSpec | None]:
    """Capture and egress (``injector.core.traffic``), and the capture init
    container's spec: the proxy's image, user 0, the capture rows' values."""
    proxy_spec = next((r for r in roles if r.role == "proxy"), None)
    capture_values = _values("capture", request, profile)
    found, more = traffic_plan.plan(
        request.values,
        proxy_spec.values if proxy_spec else None,
        capture_values,
        app=app,
        pod_security=spec.get("securityContext") or PodSecurityContext(),
        native=native,
        user_inits=[str(c.get("name")) for c in spec.get("initContainers") or []],
    )
    warnings += more
    if proxy_spec is None or not found.capture:
        return found, None
    resources = traffic_plan.CAPTURE_RESOURCES
    return found, RoleSpec("capture", proxy_spec.image, resources, 0, 0, capture_values)


def _app_containers(spec: PodSpec, request: PodRequest) -> tuple[list[Container], tuple[str, ...]]:
    containers = spec.get("containers") or []
    names = [str(c.get("name")) for c in containers]
    if not names:
        raise InjectionDenied("the pod has no containers; nothing to inject into")
    selected = request.values.get(pod.CONTAINERS) or tuple(names)
    present, chosen = set(names), set(selected)  # sets: both lists may be long
    missing = [n for n in selected if n not in present]
    if missing:
        raise InjectionDenied(
            f"annotation {layout.PREFIX}containers: {', '.join(missing[:20])} "
            f"not among the pod's containers ({', '.join(names[:20])})"
        )
    return [c for c in containers if c.get("name") in chosen], selected


def _native(request: PodRequest, profile: Profile, settings: Settings, warnings: list[str]) -> bool:
    mode = request.values.get(pod.NATIVE_SIDECARS) or profile.native_sidecars
    if mode == "true" and settings.cluster_version and not settings.native_sidecars_supported:
        warnings.append(
            f"native-sidecars: true on Kubernetes {settings.cluster_version[0]}."
            f"{settings.cluster_version[1]}; native sidecars need 1.29 or later"
        )
    return mode == "true" or (mode == "auto" and settings.native_sidecars_supported)


def _secrets_mode(
    request: PodRequest, profile: Profile, init_only: bool, warnings: list[str]
) -> str:
    asked = request.values.get(secrets.MODE)
    mode = asked or profile.secrets_mode
    if request.wants("secrets") and init_only and mode != "init":
        if asked == "sidecar":
            warnings.append("secrets-mode: sidecar in a Job without native sidecars: init only")
        mode = "init"
    return mode


def _values(role: str, request: PodRequest, profile: Profile) -> Values:
    """The role's rows: the pod's over the profile's."""
    knobs = contract_role(role).knobs
    return request.values.only(knobs).over(profile.values.only(knobs))


def _proxy(
    request: PodRequest, profile: Profile, app: list[Container], warnings: list[str]
) -> RoleSpec:
    values = _values("proxy", request, profile)
    upstream, inbound = values.get(proxy.UPSTREAM), values.get(proxy.INBOUND_PORT)
    modes = values.get(proxy.CAPTURE) == "iptables" or values.get(proxy.EGRESS) == "http-proxy"
    if upstream is None and inbound is None and not modes:
        inbound = _first_port(app)
        if inbound is None:
            raise InjectionDenied(
                f"the proxy has nothing to do: set {layout.PREFIX}proxy-upstream (outbound), "
                f"{layout.PREFIX}proxy-inbound-port (inbound) or give the app container a "
                f'containerPort; or set {layout.PREFIX}proxy: "false"'
            )
        warnings.append(
            f"proxy inbound port not set: using the app's first containerPort {inbound} "
            f"(set {layout.PREFIX}proxy-inbound-port to choose)"
        )
    if inbound in set(PROXY_PORTS) | set(AGENT_PORTS):
        raise InjectionDenied(
            f"annotation {layout.PREFIX}proxy-inbound-port: {inbound} is a port of the "
            "proxy itself; give the app's own port"
        )
    values = values.with_values({proxy.INBOUND_PORT: inbound})
    uid = layout.AGENT_UID
    return _role("proxy", request, profile, uid, uid, values)


def _secrets(
    request: PodRequest, profile: Profile, security: PodSecurityContext, user: int, group: int
) -> RoleSpec:
    values = _values("secrets", request, profile)
    if values.get(secrets.VAULT_ADDR) is None:
        raise InjectionDenied(
            f"secrets need a Vault address: set {layout.PREFIX}secrets-vault-addr or the "
            f"profile {profile.name}'s vault.address"
        )
    if values.get(secrets.ROLE_NAME) is None:
        raise InjectionDenied(
            f"secrets need a Vault kubernetes auth role: set {layout.PREFIX}secrets-role or "
            f"the profile {profile.name}'s vault.role"
        )
    fs_group = security.get("fsGroup")
    group_id = fs_group if isinstance(fs_group, int) and not isinstance(fs_group, bool) else None
    values = values.with_values({secrets.SECRETS: request.secrets, secrets.FILE_GROUP: group_id})
    return _role("secrets", request, profile, user, group, values)


def _role(
    role: str, request: PodRequest, profile: Profile, user: int, group: int, values: Values
) -> RoleSpec:
    overrides = request.overrides.get(role)
    image = profile.image_for(role)
    resources = profile.resources_for(role)
    if overrides is not None:
        if overrides.image:
            allowed = profile.registries()
            if not image_allowed(overrides.image, allowed):
                raise InjectionDenied(
                    f"annotation {layout.PREFIX}{role}-image: {overrides.image!r} is not "
                    f"from an allowed registry ({', '.join(allowed)}); ask the operator to allow "
                    f"it in profile {profile.name}"
                )
            image = overrides.image
        resources = _bounded(role, resources, overrides.cpu, overrides.memory, profile)
    return RoleSpec(role, image, resources, user, group, values)


def _bounded(
    role: str,
    base: Resources,
    cpu: Quantity | None,
    memory: Quantity | None,
    profile: Profile,
) -> Resources:
    b = profile.bounds
    checks = (("cpu", cpu, b.min_cpu, b.max_cpu), ("memory", memory, b.min_memory, b.max_memory))
    for what, value, low, high in checks:
        if value is not None and not low.amount <= value.amount <= high.amount:
            raise InjectionDenied(
                f"annotation {layout.PREFIX}{role}-{what}: {value.text!r} is outside the "
                f"bounds of profile {profile.name}: from {low} to {high}"
            )
    cpu_request, memory_request = base.cpu_request, base.memory_request
    if cpu is not None and cpu.amount < cpu_request.amount:
        cpu_request = cpu
    if memory is not None and memory.amount < memory_request.amount:
        memory_request = memory
    return Resources(
        cpu_request=cpu_request,
        cpu_limit=cpu or base.cpu_limit,
        memory_request=memory_request,
        memory_limit=memory or base.memory_limit,
    )


def _first_port(app: list[Container]) -> int | None:
    for container in app:
        for port in container.get("ports") or []:
            number = port.get("containerPort")
            if isinstance(number, int) and port.get("protocol", "TCP") == "TCP":
                return number
    return None


def _owned_by_job(pod_object: Pod) -> bool:
    owners = pod_object.get("metadata", {}).get("ownerReferences") or []
    return any(isinstance(o, Mapping) and o.get("kind") == "Job" for o in owners)
