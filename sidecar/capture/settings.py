"""``sidecar capture`` settings: flags and ``SIDECAR_CAPTURE_*`` variables, read once.

``load(argv, environ)`` parses everything before any rule is touched; a bad
value raises ``UsageError`` naming the flag, the variable, the value and what
is accepted. The ports here are the proxy's (``sidecar proxy`` reads the same
``SIDECAR_CAPTURE_OUTBOUND_PORT`` / ``SIDECAR_CAPTURE_INBOUND_PORT``).
"""

from __future__ import annotations

import argparse
import ipaddress
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from contract.units import (
    PortRange,
    format_port_ranges,
    parse_cidrs,
    parse_inbound_ports,
    parse_port,
    parse_port_ranges,
    parse_positive_int,
)
from sidecar.errors import UsageError
from sidecar.options import ArgumentParser, convert, flag

LOG_LEVELS = ("debug", "info", "warning", "error")
DEFAULT_OUTBOUND_PORT = 15002
DEFAULT_INBOUND_PORT = 15003
# Ports of the injected sidecars (admin, listeners, agents): inbound traffic to
# them is never redirected (kubelet probes reach the agents directly).
DEFAULT_PROXY_PORTS = "15000-15006,15020-15022"
DEFAULT_PROXY_UID = 1337

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class CaptureSettings:
    proxy_uid: int
    outbound_port: int  # where captured outbound TCP is redirected (127.0.0.1 / ::1)
    inbound_port: int  # where captured inbound TCP is redirected
    inbound_ports: tuple[PortRange, ...] | None  # None: every port; (): none
    exclude_ports: tuple[PortRange, ...]  # never captured, either direction
    exclude_cidrs: tuple[Network, ...]  # outbound destinations never captured
    proxy_ports: tuple[PortRange, ...]  # inbound: never redirected
    log_level: str
    dry_run: bool

    def cidrs(self, version: int) -> tuple[Network, ...]:
        return tuple(n for n in self.exclude_cidrs if n.version == version)

    def describe(self) -> dict[str, object]:
        """The settings as logged at start (no secrets here)."""
        inbound = "*" if self.inbound_ports is None else format_port_ranges(self.inbound_ports)
        return {
            "proxy_uid": self.proxy_uid,
            "outbound_port": self.outbound_port,
            "inbound_port": self.inbound_port,
            "inbound_ports": inbound or "none",
            "exclude_ports": format_port_ranges(self.exclude_ports),
            "exclude_cidrs": ",".join(str(n) for n in self.exclude_cidrs),
        }


def build_parser(environ: Mapping[str, str]) -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="sidecar capture",
        description="Install the transparent-capture iptables rules (IPv4 and IPv6) in this "
        "network namespace and exit. Needs NET_ADMIN and NET_RAW; idempotent.",
    )

    def add(name: str, env: str, default: str | None, help_text: str) -> None:
        flag(parser, name, env, default=default, help_text=help_text, environ=environ)

    add("--log-level", "SIDECAR_LOG_LEVEL", "info", "debug, info, warning or error")
    add("--proxy-uid", "SIDECAR_CAPTURE_PROXY_UID", str(DEFAULT_PROXY_UID), "the proxy's UID")
    add(
        "--outbound-port",
        "SIDECAR_CAPTURE_OUTBOUND_PORT",
        str(DEFAULT_OUTBOUND_PORT),
        "the proxy's captured-outbound listener",
    )
    add(
        "--inbound-port",
        "SIDECAR_CAPTURE_INBOUND_PORT",
        str(DEFAULT_INBOUND_PORT),
        "the proxy's captured-inbound listener",
    )
    add(
        "--include-inbound-ports",
        "SIDECAR_CAPTURE_INBOUND_PORTS",
        "*",
        'inbound ports to capture: "*", "" or a list',
    )
    add("--exclude-ports", "SIDECAR_CAPTURE_EXCLUDE_PORTS", "", "ports never captured")
    add("--exclude-cidrs", "SIDECAR_CAPTURE_EXCLUDE_CIDRS", "", "destinations never captured")
    add("--proxy-ports", "SIDECAR_CAPTURE_PROXY_PORTS", DEFAULT_PROXY_PORTS, "sidecar ports")
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print the iptables-restore input for IPv4 and IPv6 and change nothing",
    )
    return parser


def load(argv: Sequence[str], environ: Mapping[str, str] | None = None) -> CaptureSettings:
    env = os.environ if environ is None else environ
    args = build_parser(env).parse_args(list(argv))
    level = args.log_level.strip().lower()
    if level not in LOG_LEVELS:
        raise UsageError(
            f"--log-level / SIDECAR_LOG_LEVEL: {args.log_level!r} is not one of "
            f"{', '.join(LOG_LEVELS)}"
        )
    settings = CaptureSettings(
        proxy_uid=convert(args.proxy_uid, _uid, "--proxy-uid", "SIDECAR_CAPTURE_PROXY_UID"),
        outbound_port=convert(
            args.outbound_port, parse_port, "--outbound-port", "SIDECAR_CAPTURE_OUTBOUND_PORT"
        ),
        inbound_port=convert(
            args.inbound_port, parse_port, "--inbound-port", "SIDECAR_CAPTURE_INBOUND_PORT"
        ),
        inbound_ports=convert(
            args.include_inbound_ports,
            parse_inbound_ports,
            "--include-inbound-ports",
            "SIDECAR_CAPTURE_INBOUND_PORTS",
        ),
        exclude_ports=convert(
            args.exclude_ports,
            parse_port_ranges,
            "--exclude-ports",
            "SIDECAR_CAPTURE_EXCLUDE_PORTS",
        ),
        exclude_cidrs=convert(
            args.exclude_cidrs, parse_cidrs, "--exclude-cidrs", "SIDECAR_CAPTURE_EXCLUDE_CIDRS"
        ),
        proxy_ports=convert(
            args.proxy_ports, parse_port_ranges, "--proxy-ports", "SIDECAR_CAPTURE_PROXY_PORTS"
        ),
        log_level=level,
        dry_run=bool(args.dry_run),
    )
    _check_ports(settings)
    return settings


def _uid(text: str) -> int:
    uid = parse_positive_int(text)
    if uid == 0:
        raise ValueError(
            f"{text!r} is root: the proxy must run as its own non-root user, "
            "or its traffic cannot be told apart from the app's"
        )
    return uid


def _check_ports(settings: CaptureSettings) -> None:
    if settings.outbound_port == settings.inbound_port:
        raise UsageError(
            f"--outbound-port / SIDECAR_CAPTURE_OUTBOUND_PORT and --inbound-port / "
            f"SIDECAR_CAPTURE_INBOUND_PORT are both {settings.outbound_port}; "
            "give each listener its own port"
        )
    for port, name in (
        (settings.outbound_port, "--outbound-port / SIDECAR_CAPTURE_OUTBOUND_PORT"),
        (settings.inbound_port, "--inbound-port / SIDECAR_CAPTURE_INBOUND_PORT"),
    ):
        if any(port in r for r in settings.exclude_ports):
            raise UsageError(
                f"{name} {port} is in --exclude-ports / SIDECAR_CAPTURE_EXCLUDE_PORTS; "
                "the proxy's own listener cannot be excluded"
            )
