"""What is a pod: the one answer the webhook and ``inject``/``explain`` share.

The webhook sees pods only, as the API server sends them (``check_pod``). A
manifest holds pods and pod templates inside workloads, possibly inside
Lists (``find_pods``); each template becomes the pod its controller would
create (``PodSite.pod``: the template's metadata and spec, the namespace, and
an ownerReference to the controller), so ``render`` decides exactly as it
does in the webhook (a Job's pod is recognised by its owner in both).
``with_pod`` writes an injected pod back where its template was.

Handled: Pod, PodTemplate, ReplicationController (core/v1); Deployment,
StatefulSet, DaemonSet, ReplicaSet (apps, and the old extensions/v1beta1,
apps/v1beta1/v1beta2); Job and CronJob (batch); any ``*List`` with ``items``,
nested. Any other object that holds a pod template (an OpenShift
DeploymentConfig, an Argo Rollout, a Knative Service, ...) and any document
that is not a Kubernetes object get a note naming them: never silence.

Pure; linear in the size of the document (each node is visited once; the
search for templates in unknown objects stops at ``MAX_DEPTH``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

from injector.core.views import Pod
from injector.errors import NotAPod

Path = tuple[str | int, ...]
MAX_DEPTH = 12  # how deep a pod template is looked for in an unknown object


@dataclass(frozen=True)
class Workload:
    """Where a built-in kind keeps its pod template, and who owns its pods."""

    template: Path
    owner: str  # "apiVersion kind" of the pods' controller (their ownerReference)


_TEMPLATE = ("spec", "template")
_APPS = ("apps", "extensions")
WORKLOADS: Mapping[tuple[str, str], Workload] = {
    ("", "ReplicationController"): Workload(_TEMPLATE, "v1 ReplicationController"),
    ("", "PodTemplate"): Workload(("template",), ""),
    **{(group, "Deployment"): Workload(_TEMPLATE, "apps/v1 ReplicaSet") for group in _APPS},
    **{(group, "ReplicaSet"): Workload(_TEMPLATE, "apps/v1 ReplicaSet") for group in _APPS},
    **{(group, "DaemonSet"): Workload(_TEMPLATE, "apps/v1 DaemonSet") for group in _APPS},
    ("apps", "StatefulSet"): Workload(_TEMPLATE, "apps/v1 StatefulSet"),
    ("batch", "Job"): Workload(_TEMPLATE, "batch/v1 Job"),
    ("batch", "CronJob"): Workload(("spec", "jobTemplate", "spec", "template"), "batch/v1 Job"),
}
HANDLED = (
    "Pod, PodTemplate, ReplicationController, Deployment, StatefulSet, DaemonSet, "
    "ReplicaSet, Job, CronJob and Lists of them"
)


@dataclass(frozen=True)
class PodSite:
    """A pod, or a pod template, found in a document."""

    kind: str
    name: str
    namespace: str | None
    path: Path  # where the pod (template) sits in the document; () for a Pod
    pod: Mapping[str, Any]  # as the API server would see it: see the module docstring

    @property
    def label(self) -> str:
        return f"{self.kind}/{self.name}"

    @property
    def location(self) -> str:
        """Where the pod template is inside the document: ``spec.template``; "" for a Pod."""
        return _dotted(self.path)


@dataclass(frozen=True)
class Found:
    sites: tuple[PodSite, ...]
    notes: tuple[str, ...]  # objects that hold pods we do not handle, non-objects


def group_of(api_version: Any) -> str:
    text = str(api_version or "")
    return text.partition("/")[0] if "/" in text else ""


def find_pods(document: Any, where: str, default_namespace: str) -> Found:
    """Every pod and pod template in ``document`` (``where``: "document 2" for notes)."""
    sites: list[PodSite] = []
    notes: list[str] = []
    if not isinstance(document, Mapping) or not document.get("kind"):
        notes.append(
            f"{where} is not a Kubernetes object (it has no kind); left unchanged: give "
            "complete objects (apiVersion, kind, metadata), e.g. a Deployment"
        )
        return Found((), tuple(notes))
    stack: list[tuple[Mapping[str, Any], Path]] = [(document, ())]
    while stack:
        obj, path = stack.pop()
        kind = str(obj.get("kind") or "")
        items = obj.get("items")
        if kind.endswith("List") and isinstance(items, list):
            for index in reversed(range(len(items))):
                if isinstance(items[index], Mapping):
                    stack.append((items[index], (*path, "items", index)))
            continue
        site = _site(obj, path, kind, default_namespace)
        if isinstance(site, PodSite):
            sites.append(site)
        else:
            notes += [site] if site else _unhandled(obj, kind, path, where)
    return Found(tuple(sites), tuple(notes))


def _site(obj: Mapping[str, Any], path: Path, kind: str, namespace: str) -> PodSite | str:
    """The pod of a handled object; else a note, or "" for a kind we do not handle."""
    group = group_of(obj.get("apiVersion"))
    metadata = _mapping(obj.get("metadata"))
    name = str(metadata.get("name") or metadata.get("generateName") or "(unnamed)")
    own_namespace = (
        metadata.get("namespace") if isinstance(metadata.get("namespace"), str) else None
    )
    if kind == "Pod" and obj.get("apiVersion") == "v1":
        return PodSite(kind, name, own_namespace, path, obj)
    workload = WORKLOADS.get((group, kind))
    if workload is None:
        return ""
    template = _get(obj, workload.template)
    if not isinstance(template, Mapping):
        return (
            f"{kind}/{name} has no pod template at {_dotted(workload.template)}; left "
            "unchanged: give it one"
        )
    pod_metadata = dict(_mapping(template.get("metadata")))
    pod_metadata["namespace"] = own_namespace or namespace
    if workload.owner:
        api_version, owner_kind = workload.owner.split()
        owner = {"apiVersion": api_version, "kind": owner_kind, "name": name, "controller": True}
        pod_metadata["ownerReferences"] = [owner]
    pod: dict[str, Any] = {"apiVersion": "v1", "kind": "Pod", "metadata": pod_metadata}
    pod["spec"] = template.get("spec")
    return PodSite(kind, name, own_namespace, (*path, *workload.template), pod)


def _unhandled(obj: Mapping[str, Any], kind: str, path: Path, where: str) -> list[str]:
    """A note per pod template inside an object of a kind we do not handle."""
    found: list[Path] = []
    stack: list[tuple[Any, Path]] = [(value, (key,)) for key, value in obj.items()]
    while stack:
        value, at = stack.pop()
        if len(at) > MAX_DEPTH:
            continue
        if isinstance(value, Mapping):
            if isinstance(_mapping(value.get("spec")).get("containers"), list):
                found.append(at)
                continue
            stack += [(v, (*at, k)) for k, v in value.items() if isinstance(k, str)]
        elif isinstance(value, list):
            stack += [(v, (*at, i)) for i, v in enumerate(value)]
    metadata = _mapping(obj.get("metadata"))
    label = f"{kind}/{metadata.get('name') or '(unnamed)'} ({obj.get('apiVersion')})"
    inside = f" ({where}, {_dotted(path)})" if path else f" ({where})"
    if isinstance(_mapping(obj.get("spec")).get("containers"), list):
        return [
            f"{label}{inside} has containers but is not a Pod of apiVersion v1; left "
            "unchanged: write apiVersion: v1, kind: Pod"
        ]
    return [
        f"{label}{inside} holds a pod template at {_dotted(at)} that inject does not change: "
        f"it handles {HANDLED}; the webhook still injects the pods it creates when they ask "
        "for it"
        for at in sorted(found, key=str)
    ]


def with_pod(document: Any, site: PodSite, pod: Mapping[str, Any]) -> Any:
    """``document`` with ``pod`` written where ``site`` was found (a new object; the
    input is not changed). A template keeps its own metadata keys; the namespace and
    ownerReferences that ``find_pods`` added for rendering are left out."""
    if site.kind == "Pod":
        return _set(document, site.path, pod)
    template = _get(document, site.path)
    metadata = dict(_mapping(template.get("metadata") if isinstance(template, Mapping) else None))
    rendered = _mapping(pod.get("metadata"))
    for key in ("annotations", "labels"):
        if key in rendered:
            metadata[key] = rendered[key]
        else:
            metadata.pop(key, None)
    value = {**_mapping(template), "metadata": metadata, "spec": pod.get("spec")}
    if not metadata and "metadata" not in _mapping(template):
        del value["metadata"]
    return _set(document, site.path, value)


def _is_mapping(value: Any) -> bool:
    """``isinstance(value, Mapping)``, with decoded JSON's plain dicts first: the
    ABC check costs ~0.5 us, and a pod has hundreds of items (env, mounts)."""
    return type(value) is dict or isinstance(value, Mapping)


def _all_mappings(items: list[Any]) -> bool:
    """Every item a mapping: decoded JSON's plain dicts in one C-level pass (a
    pod's env lists are long), the ABC check only when another type is there."""
    return set(map(type, items)) <= _DICT or all(map(_is_mapping, items))


_DICT = frozenset((dict,))
_STR = frozenset((str,))
_EMPTY: Mapping[str, Any] = {}


def _all_strings(value: Mapping[Any, Any]) -> bool:
    """Keys and values all strings (plain ``str`` in one C-level pass each)."""
    if set(map(type, value)) <= _STR and set(map(type, value.values())) <= _STR:
        return True
    return all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())


def check_pod(obj: Any, where: str) -> Pod:
    """``obj`` if it has the shape of a pod in every field the injector reads; else
    ``NotAPod`` naming the field (``where``: "request.object", "spec.template", or ""
    for a pod at the top of a manifest)."""
    if not isinstance(obj, Mapping):
        raise NotAPod(f"{where or 'the pod'}: not an object; expected a Pod")
    metadata = obj.get("metadata", {})
    spec = obj.get("spec")
    if not isinstance(metadata, Mapping) or not isinstance(spec, Mapping):
        raise NotAPod(f"{where or 'the pod'}: a Pod needs metadata and spec objects")
    for key in ("annotations", "labels"):
        value = metadata.get(key)
        if value is not None and not (_is_mapping(value) and _all_strings(value)):
            raise NotAPod(f"{_at(where)}metadata.{key}: expected a map of strings")
    if not isinstance(metadata.get("ownerReferences", []), list):
        raise NotAPod(f"{_at(where)}metadata.ownerReferences: expected a list")
    if not isinstance(spec.get("containers"), list) or not spec["containers"]:
        raise NotAPod(f"{_at(where)}spec.containers: expected a non-empty list")
    for key in ("containers", "initContainers", "volumes"):
        _check_items(spec.get(key, []), f"{_at(where)}spec.{key}")
    if not isinstance(spec.get("securityContext", {}), Mapping):
        raise NotAPod(f"{_at(where)}spec.securityContext: expected an object")
    return cast("Pod", obj)  # the view's structure is what was just checked


def _at(where: str) -> str:
    return f"{where}." if where else ""


def _check_items(items: Any, where: str) -> None:
    if items is None:
        return
    if not isinstance(items, list) or not all(
        _is_mapping(i) and isinstance(i.get("name"), str) for i in items
    ):
        raise NotAPod(f"{where}: expected a list of named objects")
    for item in items:
        for sub in ("volumeMounts", "ports", "env"):
            value = item.get(sub, [])
            if not isinstance(value, list) or not _all_mappings(value):
                raise NotAPod(f"{where}[].{sub}: expected a list of objects")
        if not _is_mapping(item.get("securityContext", _EMPTY)):
            raise NotAPod(f"{where}[].securityContext: expected an object")


def _get(obj: Any, path: Path) -> Any:
    for key in path:
        if isinstance(key, int):
            obj = obj[key] if isinstance(obj, list) and key < len(obj) else None
        else:
            obj = obj.get(key) if isinstance(obj, Mapping) else None
    return obj


def _set(obj: Any, path: Path, value: Any) -> Any:
    """A copy of ``obj`` with ``value`` at ``path``: only the containers on the path
    are copied (iterative: a deeply nested List cannot exhaust the stack)."""
    if not path:
        return value
    root = _shallow(obj)
    node = root
    for key in path[:-1]:
        child = _shallow(node[key])
        node[key] = child
        node = child
    node[path[-1]] = value
    return root


def _shallow(obj: Any) -> Any:
    return list(obj) if isinstance(obj, list) else dict(obj)


def _dotted(path: Path) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}
