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

import argparse
import socket
from collections.abc import Callable
from dataclasses import dataclass

from contract.units import parse_port
from sidecar.options import convert

CAPTURE_MODES = ("none", "iptables")
EGRESS_MODES = ("none", "http-proxy")


@dataclass(frozen=True)
class Capture:
    outbound_port: int
    inbound_port: int
    ipv6: bool  # whether the pod has IPv6 loopback: listen on ::1 / :: too


@dataclass(frozen=True)
class Egress:
    port: int
    ipv6: bool


def parse(args: argparse.Namespace) -> tuple[Capture | None, Egress | None]:
    capture_mode = convert(args.capture, _choice(CAPTURE_MODES), "--capture", "SIDECAR_CAPTURE")
    egress_mode = convert(args.egress, _choice(EGRESS_MODES), "--egress", "SIDECAR_EGRESS")
    ipv6 = has_ipv6_loopback() if (capture_mode != "none" or egress_mode != "none") else False
    capture = None
    if capture_mode == "iptables":
        capture = Capture(
            outbound_port=convert(
                args.capture_outbound_port,
                parse_port,
                "--capture-outbound-port",
                "SIDECAR_CAPTURE_OUTBOUND_PORT",
            ),
            inbound_port=convert(
                args.capture_inbound_port,
                parse_port,
                "--capture-inbound-port",
                "SIDECAR_CAPTURE_INBOUND_PORT",
            ),
            ipv6=ipv6,
        )
    egress = None
    if egress_mode == "http-proxy":
        port = convert(args.egress_port, parse_port, "--egress-port", "SIDECAR_EGRESS_PORT")
        egress = Egress(port=port, ipv6=ipv6)
    return capture, egress


def ports(capture: Capture | None, egress: Egress | None) -> dict[str, int]:
    """The listener ports of these modes, by the flag that sets them."""
    found: dict[str, int] = {}
    if capture is not None:
        found["--capture-outbound-port / SIDECAR_CAPTURE_OUTBOUND_PORT"] = capture.outbound_port
        found["--capture-inbound-port / SIDECAR_CAPTURE_INBOUND_PORT"] = capture.inbound_port
    if egress is not None:
        found["--egress-port / SIDECAR_EGRESS_PORT"] = egress.port
    return found


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


def _choice(choices: tuple[str, ...]) -> Callable[[str], str]:
    def parse_choice(text: str) -> str:
        value = text.strip().lower()
        if value not in choices:
            raise ValueError(f"{text!r} is not one of {', '.join(choices)}")
        return value

    return parse_choice
