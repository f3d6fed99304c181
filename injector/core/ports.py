"""The ports the injected roles listen on, checked against every container of the pod.

All containers of a pod share one network namespace. A container of the user's
(an app container, one left out by ``sidecar.example.io/containers``, an init
container, a native sidecar of the user's own) that declares one of our TCP
ports would leave one of two processes unable to bind at run time; a probe or
a lifecycle hook aimed at one of our ports checks our sidecar instead of the
app (a pod copied from an Istio-injected one probes 15020/15021, where Istio's
agent rewrites probes and ours does not). Both deny the pod, every clash named
in one message with the container, the port and the fix.

Only the roles that are on count: an app on 15021 is fine without the secrets
role. Pure; linear in the pod.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TypeGuard

from contract import layout
from contract.catalogue import role as contract_role
from injector.core.plan import Plan
from injector.core.views import PodSpec
from injector.errors import NameCollision

PROBES = ("livenessProbe", "readinessProbe", "startupProbe")
HOOKS = ("postStart", "preStop")
HANDLERS = ("httpGet", "tcpSocket", "grpc")


def reserved(plan: Plan) -> dict[int, str]:
    """Port -> what listens there, for the roles of ``plan``."""
    ports: dict[int, str] = {}
    for spec in plan.roles:
        if spec.role == "proxy":
            ports[layout.ADMIN_PORT] = "the proxy's Envoy admin"
            ports[layout.OUTBOUND_PORT] = "the proxy's outbound listener"
            ports[layout.INBOUND_PORT] = "the proxy's inbound listener"
            ports |= plan.traffic.ports()  # capture and egress listeners
        ports[contract_role(spec.role).agent_port] = f"the {spec.role} agent"
    return ports


def check_ports(spec: PodSpec, plan: Plan) -> None:
    """Raise ``NameCollision`` naming every clash of the user's containers in ``spec``
    (without ours: it is stripped of a previous injection) with our ports."""
    ports = reserved(plan)
    clashes: list[str] = []
    for what, container in _containers(spec):
        clashes += _declared(what, container, ports)
        clashes += _aimed(what, container, ports)
    if clashes:
        numbers = [str(port) for port in sorted(ports)]
        listed = ", ".join(numbers[:-1]) + " and " + numbers[-1] if len(numbers) > 1 else numbers[0]
        raise NameCollision("; ".join(clashes) + f" (the sidecars of this pod use {listed})")


def _containers(spec: PodSpec) -> Iterator[tuple[str, Mapping[str, object]]]:
    for key in ("initContainers", "containers"):
        for container in _items(spec.get(key)):
            name = container.get("name")
            if key == "containers":
                yield f"container {name}", container
            elif container.get("restartPolicy") == "Always":
                yield f"native sidecar (init container) {name}", container
            else:
                yield f"init container {name}", container


def _declared(what: str, container: Mapping[str, object], ports: Mapping[int, str]) -> list[str]:
    clashes = []
    for entry in _items(container.get("ports")):
        number = entry.get("containerPort")
        if isinstance(number, int) and number in ports and entry.get("protocol", "TCP") == "TCP":
            clashes.append(
                f"{what} declares port {number}, where {ports[number]} listens: move it "
                "to another port"
            )
    return clashes


def _aimed(what: str, container: Mapping[str, object], ports: Mapping[int, str]) -> list[str]:
    named = {
        entry.get("name"): entry.get("containerPort") for entry in _items(container.get("ports"))
    }
    lifecycle = container.get("lifecycle")
    targets = [(probe, container.get(probe)) for probe in PROBES]
    if isinstance(lifecycle, Mapping):
        targets += [(f"lifecycle.{hook}", lifecycle.get(hook)) for hook in HOOKS]
    clashes = []
    for where, handler_set in targets:
        if handler_set is None or not _is_mapping(handler_set):
            continue
        for handler in HANDLERS:
            action = handler_set.get(handler)
            if action is None or not _is_mapping(action):
                continue
            port = action.get("port")
            number = named.get(port) if isinstance(port, str) else port
            if isinstance(number, int) and number in ports:
                clashes.append(
                    f"{what}: {where}.{handler} targets port {number}, where {ports[number]} "
                    "answers, not the app: point it at the app's own port (probes copied from "
                    "an Istio-injected pod go with the rest of Istio's injection)"
                )
    return clashes


def _is_mapping(value: object) -> TypeGuard[Mapping[str, object]]:
    """Decoded JSON's plain dicts without the Mapping ABC's check (~0.4 us each)."""
    return type(value) is dict or isinstance(value, Mapping)


def _items(value: object) -> list[Mapping[str, object]]:
    if not isinstance(value, list):
        return []
    # Decoded JSON holds plain dicts: the Mapping ABC check only for anything else.
    return [x for x in value if type(x) is dict or isinstance(x, Mapping)]
