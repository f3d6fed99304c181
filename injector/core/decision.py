"""Decide what to inject: the pod's request, its profile and the pod itself ->
a ``Plan`` or a ``Skip`` (``injector.core.plan``).

Pure. Raises ``InjectionDenied`` when the pod asks for something that cannot
be given (unknown profile, value outside the bounds, image from a registry the
profile does not allow, Vault address missing, a signal reload to processes
the pod does not say how to reach, ...).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from contract import config, layout, pod, secrets
from contract.catalogue import role as contract_role
from contract.common import RELOAD
from contract.reload import SignalTarget
from injector.core import traffic as traffic_plan
from injector.core.logs import job_warning as logs_job_warning
from injector.core.logs import logs_values
from injector.core.model import NamespaceInfo, PodRequest, parse_annotations
from injector.core.plan import (
    HOST_NETWORK,
    INJECT_FALSE,
    INJECTOR_LABEL,
    INJECTOR_POD,
    NAMESPACE_DISABLED,
    NOT_REQUESTED,
    SYSTEM_NAMESPACE,
    JobStrategy,
    Plan,
    RoleSpec,
    Skip,
)
from injector.core.rolespecs import plan_proxy, plan_role, plan_secrets, role_values
from injector.core.settings import Profile, Settings
from injector.core.signalling import Signaller, rerouted, signaller
from injector.core.views import Container, Pod, PodSecurityContext, PodSpec
from injector.errors import InjectionDenied, UnknownProfile


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
    sender: Signaller | None = None
    target = request.values.get(RELOAD)
    reloading = any(RELOAD in contract_role(r).knobs for r in request.roles)
    if isinstance(target, SignalTarget) and reloading:
        sender = signaller(target, app, security, profile, request.roles)
    roles = _role_specs(request, profile, app, spec, selected, settings, warnings)
    if is_job and not native:
        strategy = _classic_job(request, warnings) or strategy
    traffic, capture_spec = _traffic(request, profile, roles, app, spec, native, warnings)
    if traffic.cluster_domain != settings.domain:
        traffic = dataclasses.replace(traffic, cluster_domain=settings.domain)
    secrets_mode = _secrets_mode(request, profile, is_job and not native, warnings)
    config_values = role_values("config", request, profile)
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


def _role_specs(
    request: PodRequest,
    profile: Profile,
    app: list[Container],
    spec: PodSpec,
    selected: tuple[str, ...],
    settings: Settings,
    warnings: list[str],
) -> list[RoleSpec]:
    """Each role's spec; every agent runs as the agent's user (a signal reload goes
    through ``sidecar-signal``, see ``injector.core.signalling``)."""
    uid, gid = layout.AGENT_UID, layout.AGENT_GID
    security = spec.get("securityContext") or PodSecurityContext()
    roles: list[RoleSpec] = []
    for name in request.roles:
        if name == "proxy":
            roles.append(plan_proxy(request, profile, app, settings, warnings))
        elif name == "secrets":
            roles.append(plan_secrets(request, profile, security, uid, uid))
        elif name == "logs":  # reads the app's files through their mode
            values = logs_values(request, profile, spec, selected)
            roles.append(plan_role(name, request, profile, uid, gid, values))
        else:  # a role whose values are its rows alone
            values = role_values(name, request, profile)
            roles.append(plan_role(name, request, profile, uid, uid, values))
    return roles


def _classic_job(request: PodRequest, warnings: list[str]) -> JobStrategy | None:
    """A Job's pod with classic sidecars: who must be told to quit, and how."""
    proxy, logs = request.wants("proxy"), request.wants("logs")
    if proxy:
        warnings.append(
            "the pod belongs to a Job and runs classic sidecars: the app must call "
            f"POST http://127.0.0.1:{layout.PROXY_AGENT_PORT}/quitquitquit when done "
            "or the Job never completes"
        )
    if logs:
        warnings.append(logs_job_warning())
    if proxy and logs:
        return "init-only secrets/config; proxy and logs exit on POST /quitquitquit"
    if proxy:
        return "init-only secrets/config; proxy exits on POST /quitquitquit"
    if logs:
        return "init-only secrets/config; logs exits on POST /quitquitquit"
    return None


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
    capture_values = role_values("capture", request, profile)
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


def _owned_by_job(pod_object: Pod) -> bool:
    owners = pod_object.get("metadata", {}).get("ownerReferences") or []
    return any(isinstance(o, Mapping) and o.get("kind") == "Job" for o in owners)
