"""The proxy's traffic modes besides the explicit listeners: their settings.

* ``--capture iptables`` / ``SIDECAR_CAPTURE``: the pod's TCP is redirected
  to the proxy by the rules ``sidecar capture`` installed; the proxy then runs
  the captured-outbound listener (``127.0.0.1`` and ``::1``,
  ``SIDECAR_CAPTURE_OUTBOUND_PORT``) and the captured-inbound listener
  (``0.0.0.0`` and ``::``, ``SIDECAR_CAPTURE_INBOUND_PORT``); see
  ``sidecar.proxy.capture``.
* ``--egress http-proxy`` / ``SIDECAR_EGRESS``: an HTTP forward proxy on
  ``127.0.0.1:SIDECAR_EGRESS_PORT`` (and ``::1``) for apps that honour
  ``HTTP_PROXY`` / ``HTTPS_PROXY``; see ``sidecar.proxy.egress``.

Parsed once with the other proxy settings (``settings.from_args``); the flags
are rows of ``contract.proxy``.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Any

from contract import proxy as rows
from contract.knobs import Knob, Values
from contract.units import PortRange


@dataclass(frozen=True)
class Capture:
    outbound_port: int
    inbound_port: int
    ipv6: bool  # whether the pod has IPv6 loopback: listen on ::1 / :: too
    tcp_ports: tuple[PortRange, ...] = ()  # outbound: passed through, never inspected


@dataclass(frozen=True)
class Egress:
    port: int
    ipv6: bool


def parse(v: Values) -> tuple[Capture | None, Egress | None]:
    capture_on = v.get(rows.CAPTURE) == "iptables"
    egress_on = v.get(rows.EGRESS) == "http-proxy"
    ipv6 = has_ipv6_loopback() if capture_on or egress_on else False
    capture = egress = None
    if capture_on:
        outbound = v.require(rows.CAPTURE_OUTBOUND_PORT)
        inbound = v.require(rows.CAPTURE_INBOUND_PORT)
        capture = Capture(outbound, inbound, ipv6, v.get(rows.CAPTURE_TCP_PORTS) or ())
    if egress_on:
        egress = Egress(v.require(rows.EGRESS_PORT), ipv6)
    return capture, egress


def ports(capture: Capture | None, egress: Egress | None) -> dict[str, int]:
    """The listener ports of these modes, by the flag and variable that set them."""
    found: dict[str, int] = {}
    if capture is not None:
        found[_name(rows.CAPTURE_OUTBOUND_PORT)] = capture.outbound_port
        found[_name(rows.CAPTURE_INBOUND_PORT)] = capture.inbound_port
    if egress is not None:
        found[_name(rows.EGRESS_PORT)] = egress.port
    return found


def _name(knob: Knob[Any]) -> str:
    return f"{knob.flag} / {knob.env}"


def listener_count(capture: Capture | None, egress: Egress | None) -> int:
    return (2 if capture is not None else 0) + (1 if egress is not None else 0)


def has_ipv6_loopback() -> bool:
    """Whether ``::1`` can be bound here (a pod with IPv6 disabled has none, and
    a listener on it would keep Envoy from starting)."""
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True
