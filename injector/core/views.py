"""Typed views of the parts of a pod the core reads (as kopf types its payloads).

A pod reaches the core as plain data from JSON or YAML, checked by
``injector.core.pods.check_pod`` (the webhook and the CLI both call it): the
structure is guaranteed (objects, lists of named objects, annotations and
labels as strings). Leaves that nothing checks are typed ``object``, so the
code that reads them must look (``isinstance``) before it trusts them.
Every view is ``total=False``: any key may be absent.
"""

from __future__ import annotations

from typing import TypedDict


class EnvVar(TypedDict, total=False):
    name: str
    value: str
    valueFrom: dict[str, object]


class ContainerPort(TypedDict, total=False):
    name: object
    containerPort: object
    protocol: object


class VolumeMount(TypedDict, total=False):
    name: object
    mountPath: object
    readOnly: object


class SecurityContext(TypedDict, total=False):
    runAsUser: object
    runAsGroup: object
    runAsNonRoot: object


class Container(TypedDict, total=False):
    name: str
    image: object
    command: list[str]
    env: list[EnvVar]
    ports: list[ContainerPort]
    volumeMounts: list[VolumeMount]
    securityContext: SecurityContext
    restartPolicy: object


class Volume(TypedDict, total=False):
    name: str


class PodSecurityContext(TypedDict, total=False):
    runAsUser: object
    runAsGroup: object
    fsGroup: object


class PodSpec(TypedDict, total=False):
    containers: list[Container]
    initContainers: list[Container]
    volumes: list[Volume]
    securityContext: PodSecurityContext
    hostNetwork: object
    shareProcessNamespace: object


class OwnerReference(TypedDict, total=False):
    apiVersion: object
    kind: object
    name: object


class ObjectMeta(TypedDict, total=False):
    name: object
    namespace: object
    annotations: dict[str, str]
    labels: dict[str, str]
    ownerReferences: list[OwnerReference]


class Pod(TypedDict, total=False):
    apiVersion: object
    kind: object
    metadata: ObjectMeta
    spec: PodSpec
