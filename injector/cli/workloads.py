"""Pod templates inside workload manifests, for ``inject`` and ``explain``.

Pods are injected as they are; Deployment, StatefulSet, DaemonSet,
ReplicaSet, Job and CronJob have their pod template injected (Job and CronJob
templates as Job pods); every other kind passes through untouched.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import yaml

TEMPLATE_PATHS: dict[str, tuple[str, ...]] = {
    "Deployment": ("spec", "template"),
    "StatefulSet": ("spec", "template"),
    "DaemonSet": ("spec", "template"),
    "ReplicaSet": ("spec", "template"),
    "Job": ("spec", "template"),
    "CronJob": ("spec", "jobTemplate", "spec", "template"),
}
JOB_KINDS = ("Job", "CronJob")


@dataclass(frozen=True)
class PodSite:
    """Where a pod (or pod template) sits in a document."""

    kind: str
    name: str
    namespace: str | None
    pod: Mapping[str, Any]
    job: bool | None  # None: let ownerReferences decide (plain pods)

    @property
    def label(self) -> str:
        return f"{self.kind}/{self.name}"


def find_pod(document: Any) -> PodSite | None:
    if not isinstance(document, Mapping):
        return None
    kind = document.get("kind")
    raw = document.get("metadata")
    metadata: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
    name = str(metadata.get("name") or metadata.get("generateName") or "(unnamed)")
    namespace = metadata.get("namespace")
    if kind == "Pod" and document.get("apiVersion") == "v1":
        return PodSite("Pod", name, namespace, document, None)
    path = TEMPLATE_PATHS.get(str(kind))
    if path is None:
        return None
    template: Any = document
    for key in path:
        template = template.get(key) if isinstance(template, Mapping) else None
    if not isinstance(template, Mapping):
        return None
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": template.get("metadata") or {},
        "spec": template.get("spec") or {},
    }
    return PodSite(str(kind), name, namespace, pod, kind in JOB_KINDS)


def replace_pod(document: Mapping[str, Any], site: PodSite, pod: Mapping[str, Any]) -> Any:
    """``document`` with the pod at ``site`` replaced by ``pod`` (a new object)."""
    if site.kind == "Pod":
        return dict(pod)
    path = TEMPLATE_PATHS[site.kind]
    template = {"metadata": pod.get("metadata", {}), "spec": pod["spec"]}
    return _set(document, path, template)


def _set(document: Mapping[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    result = dict(document)
    if len(path) == 1:
        result[path[0]] = {**result.get(path[0], {}), **value}
    else:
        result[path[0]] = _set(result.get(path[0]) or {}, path[1:], value)
    return result


def namespaces_in(documents: list[Any]) -> Iterator[tuple[str, Mapping[str, str]]]:
    for document in documents:
        if isinstance(document, Mapping) and document.get("kind") == "Namespace":
            metadata = document.get("metadata") or {}
            yield str(metadata.get("name")), dict(metadata.get("labels") or {})


class _Dumper(yaml.SafeDumper):
    """Plain YAML: no &anchors/*aliases for objects that happen to be shared."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def dump_yaml(documents: list[Any], stream: Any = None) -> Any:
    return yaml.dump_all(documents, stream, Dumper=_Dumper, sort_keys=False)
