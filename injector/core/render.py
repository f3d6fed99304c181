"""``render(pod, namespace, settings) -> RenderResult``: the injection, pure.

Steps: parse the ``status`` annotation once (``injector.core.status``) and
strip what a previous injection added, decide (``injector.core.plan``),
refuse name and port collisions, add the containers and volumes
(``injector.core.containers``), write ``status``. No I/O; the input is never
mutated; ``render(render(p).pod) == render(p)``.

Order of initContainers: ``sidecar-capture-init`` first when the pod asks for
transparent capture (the rules are in place before anything else runs), then
native ``sidecar-proxy`` (so user init containers can use it),
``sidecar-secrets-init``, ``sidecar-config-init``, the native refreshers and
``sidecar-logs``, then the user's init containers. Classic mode puts
``sidecar-proxy`` first in ``containers`` (its postStart hook waits until it is
ready, which holds the app), the refreshers and ``sidecar-logs`` last.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

from contract import layout, mesh
from contract.layout import PREFIX, STATUS
from contract.spiffe import DEFAULT_TRUST_DOMAIN
from injector.core import containers as c
from injector.core import traffic
from injector.core.decision import decide
from injector.core.mesh import enabled
from injector.core.model import NamespaceInfo, PodRequest
from injector.core.plan import NOT_REQUESTED, Plan, Skip
from injector.core.ports import check_ports
from injector.core.settings import Settings
from injector.core.status import MeshStatus, Status
from injector.core.views import (
    Container,
    EnvVar,
    ObjectMeta,
    Pod,
    PodSpec,
    Volume,
    VolumeMount,
)
from injector.errors import InjectionDenied, NameCollision

DEFAULT_CONTAINER = "kubectl.kubernetes.io/default-container"
Built = dict[str, Any]  # Kubernetes JSON the injector builds (containers, volumes)


@dataclass(frozen=True)
class RenderResult:
    pod: Pod  # the injected pod, or the input unchanged when skipped
    warnings: tuple[str, ...]
    skip: Skip | None = None
    plan: Plan | None = None
    status: Status | None = None
    request: PodRequest | None = None  # what the annotations asked for (None: not read)

    @property
    def injected(self) -> bool:
        return self.skip is None

    @property
    def roles(self) -> tuple[str, ...]:
        return tuple(r.role for r in self.plan.roles) if self.plan else ()


@dataclass
class _Added:
    """The containers an injection adds, by where they go."""

    first_init: list[Built]  # before the user's init containers
    later_init: list[Built]  # native refreshers, after ours
    before: list[Built]  # classic: before the app (the proxy)
    after: list[Built]  # classic: after the app (refreshers)

    @property
    def all(self) -> list[Built]:
        return self.first_init + self.later_init + self.before + self.after


def render(
    pod: Pod,
    namespace: NamespaceInfo,
    settings: Settings,
    *,
    job: bool | None = None,
) -> RenderResult:
    """Inject ``pod`` (checked by ``injector.core.pods.check_pod``); raise
    ``InjectionDenied`` when it cannot be injected as asked."""
    if not isinstance(pod, Mapping) or not isinstance(pod.get("spec"), Mapping):
        raise InjectionDenied("the object is not a pod: it has no spec")
    previous = Status.of(pod.get("metadata", {}).get("annotations") or {})
    stripped = strip(pod, previous)
    decision, request = decide(stripped, namespace, settings, job=job)
    if isinstance(decision, Skip):
        return RenderResult(pod, _skip_warnings(decision, request), skip=decision, request=request)
    carried = _foreign_mounts(pod, previous)
    injected, status = _inject(stripped, decision, settings.version, carried)
    return RenderResult(injected, decision.warnings, plan=decision, status=status, request=request)


def _skip_warnings(skip: Skip, request: PodRequest | None) -> tuple[str, ...]:
    if request is None:
        return ()
    warnings = list(request.warnings)
    if skip.reason == NOT_REQUESTED and request.tuned:
        warnings.append(
            f'sidecar annotations are set but injection is off: add {PREFIX}inject: "true"'
        )
    return tuple(warnings)


def strip(pod: Pod, status: Status | None) -> Pod:
    """The pod without what the injection recorded in ``status`` added."""
    if status is None:
        return pod
    spec = dict(pod["spec"])
    volumes = set(status.volumes)
    for key in ("containers", "initContainers"):
        items = spec.get(key)
        if isinstance(items, list):
            kept = [
                traffic.without_egress_env(_unmount(x, volumes), status.env)
                for x in items
                if x.get("name") not in status.added
            ]
            if kept or key == "containers":
                spec[key] = kept
            else:
                del spec[key]
    user_volumes = spec.get("volumes")
    if isinstance(user_volumes, list):
        kept_volumes = [v for v in user_volumes if v.get("name") not in volumes]
        if kept_volumes:
            spec["volumes"] = kept_volumes
        else:
            del spec["volumes"]
    if status.share_process_namespace:
        spec.pop("shareProcessNamespace", None)
    metadata = ObjectMeta(**pod.get("metadata", ObjectMeta()))
    labels = metadata.get("labels") or {}
    if status.mesh is not None and layout.MTLS_LABEL in labels:
        others = {k: v for k, v in labels.items() if k != layout.MTLS_LABEL}
        if others:
            metadata["labels"] = others
        else:
            metadata.pop("labels", None)
    annotations = {k: v for k, v in (metadata.get("annotations") or {}).items() if k != STATUS}
    if status.default_container:
        annotations.pop(DEFAULT_CONTAINER, None)
    if annotations:
        metadata["annotations"] = annotations
    else:
        metadata.pop("annotations", None)
    return cast("Pod", {**pod, "metadata": metadata, "spec": spec})


def _unmount(container: Container, volumes: set[str]) -> Container:
    mounts = container.get("volumeMounts")
    if not isinstance(mounts, list):
        return container
    kept = [m for m in mounts if m.get("name") not in volumes]
    if len(kept) == len(mounts):
        return container
    result = cast("Container", dict(container))
    if kept:
        result["volumeMounts"] = kept
    else:
        del result["volumeMounts"]
    return result


def _foreign_mounts(pod: Pod, status: Status | None) -> dict[str, list[VolumeMount]]:
    """Mounts that others added to our containers after a previous injection (e.g. the
    ServiceAccount admission plugin's kube-api-access volume, added when the apiserver
    re-runs built-in plugins), keyed by container name: kept on re-injection."""
    if status is None:
        return {}
    found: dict[str, list[VolumeMount]] = {}
    spec = pod["spec"]
    for container in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
        name = container.get("name")
        if name in status.added:
            mounts = container.get("volumeMounts") or []
            extra = [m for m in mounts if m.get("name") not in status.volumes]
            if extra:
                found[str(name)] = extra
    return found


def _sidecars(plan: Plan) -> _Added:
    added = _Added([], [], [], [])
    proxy, secrets, config = plan.role("proxy"), plan.role("secrets"), plan.role("config")
    refreshers = added.later_init if plan.native else added.after
    if plan.capture:
        added.first_init.append(c.capture_container(plan, plan.capture))
    if proxy:
        (added.first_init if plan.native else added.before).append(c.proxy_container(plan, proxy))
    if secrets and plan.secrets_init:
        added.first_init.append(c.secrets_container(plan, secrets, init=True))
    if config:
        added.first_init.append(c.config_container(plan, config, init=True))
    if plan.signaller is not None:  # first: up before anything asks it to signal
        refreshers.append(c.signal_container(plan))
    if secrets and plan.secrets_sidecar:
        refreshers.append(c.secrets_container(plan, secrets, init=False))
    if config and plan.config_sidecar:
        refreshers.append(c.config_container(plan, config, init=False))
    logs = plan.role("logs")
    if logs:  # declared after the proxy: native sidecars stop in reverse order
        refreshers.append(c.logs_container(plan, logs))
    return added


def _inject(
    pod: Pod, plan: Plan, version: str, carried: Mapping[str, list[VolumeMount]]
) -> tuple[Pod, Status]:
    spec: PodSpec = cast("PodSpec", dict(pod["spec"]))
    app_containers = list(spec.get("containers") or [])
    user_inits = list(spec.get("initContainers") or [])
    user_volumes = list(spec.get("volumes") or [])
    added = _sidecars(plan)
    new_volumes = c.volumes(plan)
    for container in added.all:
        paths = {m["mountPath"] for m in container.get("volumeMounts", [])}
        extra = [m for m in carried.get(container["name"], []) if m.get("mountPath") not in paths]
        if extra:
            container["volumeMounts"] = [*container.get("volumeMounts", []), *extra]
    check_ports(spec, plan)  # every container of the user's, every port of ours
    _check_collisions(app_containers + user_inits, user_volumes, added.all, new_volumes, plan)
    mounts = cast("list[VolumeMount]", c.app_mounts(plan))
    egress = plan.traffic.egress and plan.role("proxy")
    env = traffic.egress_env(plan.traffic.cluster_domain) if egress else []
    if mounts or env:
        app_containers = [
            _with(x, mounts, env) if x.get("name") in plan.app_containers else x
            for x in app_containers
        ]
    inits = cast("list[Container]", added.first_init + added.later_init)
    ours = cast("list[Container]", added.before), cast("list[Container]", added.after)
    spec["containers"] = [*ours[0], *app_containers, *ours[1]]
    if inits or user_inits:
        spec["initContainers"] = inits + user_inits
    spec["volumes"] = user_volumes + cast("list[Volume]", new_volumes)
    if plan.share_process_namespace:
        spec["shareProcessNamespace"] = True
    metadata = ObjectMeta(**pod.get("metadata", ObjectMeta()))
    annotations = dict(metadata.get("annotations") or {})
    default_container = bool(added.before) and DEFAULT_CONTAINER not in annotations
    if default_container:
        annotations[DEFAULT_CONTAINER] = str(app_containers[0].get("name"))
    status = Status(
        version=version,
        profile=plan.profile.name,
        roles=tuple(r.role for r in plan.roles),
        mode="native" if plan.native else "classic",
        job=plan.job_strategy,
        init_containers=tuple(x["name"] for x in inits),
        containers=tuple(x["name"] for x in added.before + added.after),
        volumes=tuple(v["name"] for v in new_volumes),
        share_process_namespace=plan.share_process_namespace,
        default_container=default_container,
        env=tuple(str(e["name"]) for e in env),
        mesh=_mesh(plan),
    )
    if status.mesh is not None:
        metadata["labels"] = {**(metadata.get("labels") or {}), layout.MTLS_LABEL: status.mesh.mode}
    annotations[STATUS] = status.to_json()
    metadata["annotations"] = annotations
    return cast("Pod", {**pod, "metadata": metadata, "spec": spec}), status


def _with(container: Container, mounts: list[VolumeMount], env: list[Built]) -> Container:
    """An app container with the shared mounts and the egress variables."""
    result = cast("Container", dict(container))
    if mounts:
        result["volumeMounts"] = [*(container.get("volumeMounts") or []), *mounts]
    if env:
        result["env"] = [*(container.get("env") or []), *cast("list[EnvVar]", env)]
    return result


def _mesh(plan: Plan) -> MeshStatus | None:
    proxy = plan.role("proxy")
    if proxy is None or not enabled(proxy.values):
        return None
    return MeshStatus(
        trust_domain=proxy.values.get(mesh.TRUST_DOMAIN) or DEFAULT_TRUST_DOMAIN,
        mode=str(proxy.values.get(mesh.MTLS)),
        issuance=str(proxy.values.get(mesh.ISSUANCE)),
    )


def _check_collisions(
    existing: list[Container],
    volumes: list[Volume],
    added: list[Built],
    new_volumes: list[Built],
    plan: Plan,
) -> None:
    names = {x.get("name") for x in existing}
    clash = [x["name"] for x in added if x["name"] in names]
    if clash:
        raise NameCollision(
            f"the pod already has a container named {', '.join(clash)}; the injector adds "
            "containers with that name: rename yours (or remove a copied injection, "
            f"including the {PREFIX}status annotation)"
        )
    volume_names = {v.get("name") for v in volumes}
    clash = [v["name"] for v in new_volumes if v["name"] in volume_names]
    if clash:
        raise NameCollision(
            f"the pod already has a volume named {', '.join(clash)}; the injector adds volumes "
            "with that name: rename yours"
        )
    port_names = {p.get("name") for x in existing for p in x.get("ports") or []}
    ours = {p.get("name") for x in added for p in x.get("ports", [])}
    clash = sorted(str(n) for n in ours & port_names)
    if clash:
        raise NameCollision(
            f"the pod already has a port named {', '.join(clash)}; the proxy names its ports "
            "so: rename yours"
        )
    ours_at = [m["mountPath"] for m in c.app_mounts(plan)]
    twice = sorted({p for p in ours_at if ours_at.count(p) > 1})
    if twice:
        raise NameCollision(
            f"two of the injected volumes would be mounted at {', '.join(twice)} in the app: "
            f"give {PREFIX}logs-path and {PREFIX}config-path different directories"
        )
    paths = {m["mountPath"]: m["name"] for m in c.app_mounts(plan)}
    for x in existing:
        if x.get("name") not in plan.app_containers:
            continue
        for m in x.get("volumeMounts") or []:
            if m.get("mountPath") in paths:
                what, key = _MOUNTED[paths[m["mountPath"]]]
                raise NameCollision(
                    f"container {x.get('name')} already mounts something at "
                    f"{m.get('mountPath')}, where the injector mounts {what}: change that mount"
                    + (f", or {PREFIX}{key}" if key else "")
                )


# What each volume mounted in the app holds, and the annotation that moves it.
_MOUNTED = {
    layout.SECRETS_VOLUME: ("secrets", ""),
    layout.CONFIG_VOLUME: ("config", "config-path"),
    layout.LOGS_VOLUME: ("the shared logs directory", "logs-path"),
}
