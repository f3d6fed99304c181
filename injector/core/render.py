"""``render(pod, namespace, settings) -> RenderResult``: the injection, pure.

Steps: strip what a previous injection added (listed in the ``status``
annotation), decide (``injector.core.plan``), refuse name collisions, add the
containers and volumes (``injector.core.containers``), write ``status``. No I/O;
the input is never mutated; ``render(render(p).pod) == render(p)``.

Order of initContainers: native ``sidecar-proxy`` first (so user init
containers can use it), then ``sidecar-secrets-init``, ``sidecar-config-init``,
the native refreshers, then the user's init containers. Classic mode puts
``sidecar-proxy`` first in ``containers`` (its postStart hook waits until it is
ready, which holds the app) and the refreshers last.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from contract import layout
from contract.layout import PREFIX, STATUS
from injector.core import containers as c
from injector.core.model import NamespaceInfo, PodRequest
from injector.core.plan import NOT_REQUESTED, Plan, Skip, decide
from injector.core.ports import check_ports
from injector.core.settings import Settings
from injector.errors import InjectionDenied, NameCollision

DEFAULT_CONTAINER = "kubectl.kubernetes.io/default-container"
# What a status annotation may list: only names the injector itself adds, so a
# forged or copied status can never make re-injection strip the user's own.
OUR_CONTAINERS = frozenset(
    {
        layout.PROXY_CONTAINER,
        layout.SECRETS_INIT_CONTAINER,
        layout.SECRETS_CONTAINER,
        layout.CONFIG_INIT_CONTAINER,
        layout.CONFIG_CONTAINER,
    }
)
OUR_VOLUMES = frozenset(
    {
        layout.PROXY_VOLUME,
        layout.SECRETS_VOLUME,
        layout.STATE_VOLUME,
        layout.TOKEN_VOLUME,
        layout.CONFIG_VOLUME,
    }
)


@dataclass(frozen=True)
class RenderResult:
    pod: Mapping[str, Any]  # the injected pod, or the input unchanged when skipped
    warnings: tuple[str, ...]
    skip: Skip | None = None
    plan: Plan | None = None
    status: Mapping[str, Any] | None = None
    request: PodRequest | None = None  # what the annotations asked for (None: not read)

    @property
    def injected(self) -> bool:
        return self.skip is None

    @property
    def roles(self) -> tuple[str, ...]:
        return tuple(r.role for r in self.plan.roles) if self.plan else ()


def render(
    pod: Mapping[str, Any],
    namespace: NamespaceInfo,
    settings: Settings,
    *,
    job: bool | None = None,
) -> RenderResult:
    """Inject ``pod``; raise ``InjectionDenied`` when it cannot be injected as asked."""
    if not isinstance(pod, Mapping) or not isinstance(pod.get("spec"), Mapping):
        raise InjectionDenied("the object is not a pod: it has no spec")
    stripped = strip(pod)
    decision, request = decide(stripped, namespace, settings, job=job)
    if isinstance(decision, Skip):
        return RenderResult(pod, _skip_warnings(decision, request), skip=decision, request=request)
    plan = decision
    injected, status = _inject(stripped, plan, settings.version, _foreign_mounts(pod))
    return RenderResult(injected, plan.warnings, plan=plan, status=status, request=request)


def _skip_warnings(skip: Skip, request: PodRequest | None) -> tuple[str, ...]:
    if request is None:
        return ()
    warnings = list(request.warnings)
    if skip.reason == NOT_REQUESTED and request.tuned:
        warnings.append(
            "sidecar annotations are set but injection is off: "
            'add sidecar.example.io/inject: "true"'
        )
    return tuple(warnings)


def strip(pod: Mapping[str, Any]) -> Mapping[str, Any]:
    """The pod without what the injection recorded in ``status`` added."""
    metadata = pod.get("metadata")
    annotations = metadata.get("annotations") if isinstance(metadata, Mapping) else None
    if not isinstance(annotations, Mapping) or STATUS not in annotations:
        return pod
    assert isinstance(metadata, Mapping)
    status = _load_status(annotations[STATUS])
    spec = dict(pod["spec"])
    ours = set(status["containers"]) | set(status["initContainers"])
    volumes = set(status["volumes"])
    for key in ("containers", "initContainers"):
        if isinstance(spec.get(key), list):
            kept = [_unmount(x, volumes) for x in spec[key] if _name(x) not in ours]
            if kept or key == "containers":
                spec[key] = kept
            else:
                del spec[key]
    if isinstance(spec.get("volumes"), list):
        kept_volumes = [v for v in spec["volumes"] if _name(v) not in volumes]
        if kept_volumes:
            spec["volumes"] = kept_volumes
        else:
            del spec["volumes"]
    if status.get("shareProcessNamespace"):
        spec.pop("shareProcessNamespace", None)
    new_annotations = {k: v for k, v in annotations.items() if k != STATUS}
    if status.get("defaultContainer"):
        new_annotations.pop(DEFAULT_CONTAINER, None)
    new_metadata = dict(metadata)
    if new_annotations:
        new_metadata["annotations"] = new_annotations
    else:
        del new_metadata["annotations"]
    return {**pod, "metadata": new_metadata, "spec": spec}


def _load_status(text: Any) -> dict[str, Any]:
    try:
        status = json.loads(text) if isinstance(text, str) else None
    except ValueError:
        status = None
    if not isinstance(status, dict) or not all(
        isinstance(status.get(k), list) and all(isinstance(n, str) for n in status[k])
        for k in ("containers", "initContainers", "volumes")
    ):
        raise InjectionDenied(
            f"annotation {STATUS} is not what the injector writes (JSON with containers, "
            "initContainers and volumes); remove it, the injector sets it"
        )
    foreign = sorted(
        {n for k in ("containers", "initContainers") for n in status[k]} - OUR_CONTAINERS
        | set(status["volumes"]) - OUR_VOLUMES
    )
    if foreign:
        raise InjectionDenied(
            f"annotation {STATUS} lists {', '.join(foreign)}, which the injector never adds "
            f"(it adds containers {', '.join(sorted(OUR_CONTAINERS))} and volumes "
            f"{', '.join(sorted(OUR_VOLUMES))}); remove the annotation, the injector sets it"
        )
    return status


def _name(item: Any) -> Any:
    return item.get("name") if isinstance(item, Mapping) else None


def _unmount(container: Any, volumes: set[str]) -> Any:
    if not isinstance(container, Mapping) or not isinstance(container.get("volumeMounts"), list):
        return container
    mounts = container["volumeMounts"]
    kept = [m for m in mounts if _name(m) not in volumes]
    if len(kept) == len(mounts):
        return container
    result = dict(container)
    if kept:
        result["volumeMounts"] = kept
    else:
        del result["volumeMounts"]
    return result


def _foreign_mounts(pod: Mapping[str, Any]) -> dict[str, list[Any]]:
    """Mounts that others added to our containers after a previous injection (e.g. the
    ServiceAccount admission plugin's kube-api-access volume, added when the apiserver
    re-runs built-in plugins), keyed by container name: kept on re-injection."""
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    if STATUS not in annotations:
        return {}
    status = _load_status(annotations[STATUS])
    ours, volumes = (
        set(status["containers"]) | set(status["initContainers"]),
        set(status["volumes"]),
    )
    spec = pod["spec"]
    found: dict[str, list[Any]] = {}
    for key in ("initContainers", "containers"):
        for container in spec.get(key) or []:
            if _name(container) in ours:
                extra = [m for m in _items(container, "volumeMounts") if _name(m) not in volumes]
                if extra:
                    found[str(_name(container))] = extra
    return found


def _inject(
    pod: Mapping[str, Any], plan: Plan, version: str, carried: Mapping[str, list[Any]]
) -> tuple[dict[str, Any], dict[str, Any]]:
    spec = dict(pod["spec"])
    app_containers = list(spec.get("containers") or [])
    user_inits = list(spec.get("initContainers") or [])
    user_volumes = list(spec.get("volumes") or [])
    first_init: list[dict[str, Any]] = []
    later_init: list[dict[str, Any]] = []
    before: list[dict[str, Any]] = []
    after: list[dict[str, Any]] = []
    proxy, secrets, config = plan.role("proxy"), plan.role("secrets"), plan.role("config")
    if proxy:
        (first_init if plan.native else before).append(c.proxy_container(plan, proxy))
    if secrets and plan.secrets_init:
        first_init.append(c.secrets_container(plan, secrets, init=True))
    if config:
        first_init.append(c.config_container(plan, config, init=True))
    if secrets and plan.secrets_sidecar:
        (later_init if plan.native else after).append(
            c.secrets_container(plan, secrets, init=False)
        )
    if config and plan.config_sidecar:
        (later_init if plan.native else after).append(c.config_container(plan, config, init=False))
    new_volumes = c.volumes(plan)
    added = first_init + later_init + before + after
    for container in added:
        paths = {m["mountPath"] for m in container.get("volumeMounts", [])}
        extra = [m for m in carried.get(container["name"], []) if m.get("mountPath") not in paths]
        if extra:
            container["volumeMounts"] = [*container.get("volumeMounts", []), *extra]
    check_ports(spec, plan)  # every container of the user's, every port of ours
    _check_collisions(app_containers + user_inits, user_volumes, added, new_volumes, plan)
    mounts = c.app_mounts(plan)
    if mounts:
        app_containers = [
            {**x, "volumeMounts": [*(x.get("volumeMounts") or []), *mounts]}
            if _name(x) in plan.app_containers
            else x
            for x in app_containers
        ]
    inits = first_init + later_init
    spec["containers"] = before + app_containers + after
    if inits or user_inits:
        spec["initContainers"] = inits + user_inits
    spec["volumes"] = user_volumes + new_volumes
    status: dict[str, Any] = {
        "version": version,
        "profile": plan.profile.name,
        "roles": [r.role for r in plan.roles],
        "mode": "native" if plan.native else "classic",
    }
    if plan.job_strategy:
        status["job"] = plan.job_strategy
    status["initContainers"] = [x["name"] for x in inits]
    status["containers"] = [x["name"] for x in before + after]
    status["volumes"] = [v["name"] for v in new_volumes]
    if plan.share_process_namespace:
        spec["shareProcessNamespace"] = True
        status["shareProcessNamespace"] = True
    metadata = dict(pod.get("metadata") or {})
    annotations = dict(metadata.get("annotations") or {})
    if before and DEFAULT_CONTAINER not in annotations:
        annotations[DEFAULT_CONTAINER] = str(_name(app_containers[0]))
        status["defaultContainer"] = True
    annotations[STATUS] = json.dumps(status, separators=(",", ":"))
    metadata["annotations"] = annotations
    return {**pod, "metadata": metadata, "spec": spec}, status


def _check_collisions(
    existing: list[Any],
    volumes: list[Any],
    added: list[dict[str, Any]],
    new_volumes: list[dict[str, Any]],
    plan: Plan,
) -> None:
    names = {_name(x) for x in existing}
    clash = [x["name"] for x in added if x["name"] in names]
    if clash:
        raise NameCollision(
            f"the pod already has a container named {', '.join(clash)}; the injector adds "
            "containers with that name: rename yours (or remove a copied injection, "
            f"including the {PREFIX}status annotation)"
        )
    volume_names = {_name(v) for v in volumes}
    clash = [v["name"] for v in new_volumes if v["name"] in volume_names]
    if clash:
        raise NameCollision(
            f"the pod already has a volume named {', '.join(clash)}; the injector adds volumes "
            "with that name: rename yours"
        )
    port_names = {_name(p) for x in existing for p in _items(x, "ports")}
    ours = {_name(p) for x in added for p in x.get("ports", [])}
    clash = sorted(str(n) for n in ours & port_names)
    if clash:
        raise NameCollision(
            f"the pod already has a port named {', '.join(clash)}; the proxy names its ports "
            "so: rename yours"
        )
    paths = {m["mountPath"] for m in c.app_mounts(plan)}
    for x in existing:
        if not isinstance(x, Mapping) or _name(x) not in plan.app_containers:
            continue
        for m in _items(x, "volumeMounts"):
            if isinstance(m, Mapping) and m.get("mountPath") in paths:
                raise NameCollision(
                    f"container {_name(x)} already mounts something at {m.get('mountPath')}, "
                    "where the injector mounts secrets/config: change that mount, or "
                    f"{PREFIX}config-path"
                )


def _items(container: Any, key: str) -> list[Any]:
    value = container.get(key) if isinstance(container, Mapping) else None
    return value if isinstance(value, list) else []
