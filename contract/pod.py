"""Rows of the pod as a whole: whether and how to inject, and the per-role
image and resources (``<role>-image`` is ``proxy-image``, ``secrets-image``, ...).
None of them reaches an agent: the injector reads them."""

from __future__ import annotations

from contract import layout, values
from contract.knobs import Knob
from contract.values import NativeMode, Quantity

INJECT: Knob[bool] = Knob(
    "inject",
    values.BOOL,
    "opt the pod in or out of injection",
    annotation="inject",
    doc_default=f'the namespace label `{layout.NAMESPACE_LABEL}: enabled` makes it "true"',
)
PROFILE: Knob[str] = Knob(
    "profile",
    values.NAME,
    "take defaults from this SidecarProfile",
    annotation="profile",
    accepted="a profile name",
    doc_default="default",
)
STATUS: Knob[str] = Knob(
    "status",
    values.TEXT,
    "written by the injector: roles, version, containers and volumes it added",
    annotation="status",
    accepted="(do not set)",
    doc_default="",
)
CONTAINERS: Knob[tuple[str, ...]] = Knob(
    "containers",
    values.NAMES,
    "app containers that get the shared mounts",
    annotation="containers",
    doc_default="all app containers",
)
NATIVE_SIDECARS: Knob[NativeMode] = Knob(
    "native_sidecars",
    values.NATIVE_MODE,
    "sidecars as initContainers with restartPolicy: Always",
    annotation="native-sidecars",
    profile="nativeSidecars",
    default="auto",
    doc_default="the profile's, else auto (native on Kubernetes 1.29+)",
)
IMAGE: Knob[str] = Knob(
    "image",
    values.IMAGE,
    "image of that role's containers",
    annotation="<role>-image",
    accepted="an image under a registry the profile allows",
    doc_default="the profile's image",
)
CPU: Knob[Quantity] = Knob(
    "cpu",
    values.CPU,
    "CPU limit of that role's containers (request: the smaller of the profile's and this)",
    annotation="<role>-cpu",
    accepted="a CPU quantity within the profile's bounds, e.g. 500m",
    doc_default="the profile's",
)
MEMORY: Knob[Quantity] = Knob(
    "memory",
    values.MEMORY,
    "memory limit of that role's containers (request: the smaller of the profile's and this)",
    annotation="<role>-memory",
    accepted="a memory quantity within the profile's bounds, e.g. 128Mi",
    doc_default="the profile's",
)

FIRST = (INJECT, PROFILE, STATUS)
LAST = (CONTAINERS, NATIVE_SIDECARS)
RESOURCES = (IMAGE, CPU, MEMORY)
