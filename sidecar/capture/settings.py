"""``sidecar capture`` settings: the rows of ``contract.capture`` (flags and
``SIDECAR_CAPTURE_*`` variables), read once.

``load(argv, environ)`` parses everything before any rule is touched; a bad
value raises ``UsageError`` naming the flag, the variable, the value and what
is accepted. The listener ports are the proxy's own rows
(``SIDECAR_CAPTURE_OUTBOUND_PORT`` / ``SIDECAR_CAPTURE_INBOUND_PORT``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from contract import capture as rows
from contract.common import LOG_LEVEL
from contract.proxy import CAPTURE_INBOUND_PORT, CAPTURE_OUTBOUND_PORT
from contract.units import Network, PortRange, format_inbound_ports, format_port_ranges
from contract.values import LogLevel
from sidecar.errors import UsageError
from sidecar.options import read_knobs, role_parser


@dataclass(frozen=True)
class CaptureSettings:
    capture_proxy_uid: int
    capture_outbound_port: int  # where captured outbound TCP is redirected (127.0.0.1 / ::1)
    capture_inbound_port: int  # where captured inbound TCP is redirected
    capture_inbound_ports: tuple[PortRange, ...] | None  # None: every port; (): none
    capture_exclude_ports: tuple[PortRange, ...]  # never captured, either direction
    capture_exclude_cidrs: tuple[Network, ...]  # outbound destinations never captured
    capture_proxy_ports: tuple[PortRange, ...]  # inbound: never redirected
    log_level: LogLevel
    dry_run: bool

    def cidrs(self, version: int) -> tuple[Network, ...]:
        return tuple(n for n in self.capture_exclude_cidrs if n.version == version)

    def describe(self) -> dict[str, object]:
        """The settings as logged at start (no secrets here)."""
        return {
            "proxy_uid": self.capture_proxy_uid,
            "outbound_port": self.capture_outbound_port,
            "inbound_port": self.capture_inbound_port,
            "inbound_ports": format_inbound_ports(self.capture_inbound_ports),
            "exclude_ports": format_port_ranges(self.capture_exclude_ports),
            "exclude_cidrs": ",".join(str(n) for n in self.capture_exclude_cidrs),
        }


def load(argv: Sequence[str], environ: Mapping[str, str] | None = None) -> CaptureSettings:
    env = os.environ if environ is None else environ
    parser = role_parser(
        rows.ROLE,
        env,
        "Install the transparent-capture iptables rules (IPv4 and IPv6) in this network "
        "namespace and exit. Needs NET_ADMIN and NET_RAW; idempotent.",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print the iptables-restore input for IPv4 and IPv6 and change nothing",
    )
    args = parser.parse_args(list(argv))
    v = read_knobs(args, rows.ROLE.knobs)
    settings = CaptureSettings(
        capture_proxy_uid=v.require(rows.PROXY_UID),
        capture_outbound_port=v.require(CAPTURE_OUTBOUND_PORT),
        capture_inbound_port=v.require(CAPTURE_INBOUND_PORT),
        capture_inbound_ports=v.get(rows.INBOUND_PORTS),
        capture_exclude_ports=v.get(rows.EXCLUDE_PORTS) or (),
        capture_exclude_cidrs=v.get(rows.EXCLUDE_CIDRS) or (),
        capture_proxy_ports=v.require(rows.PROXY_PORTS),
        log_level=v.require(LOG_LEVEL),
        dry_run=bool(args.dry_run),
    )
    _check_ports(settings)
    return settings


def _check_ports(settings: CaptureSettings) -> None:
    outbound, inbound = settings.capture_outbound_port, settings.capture_inbound_port
    out_name = f"{CAPTURE_OUTBOUND_PORT.flag} / {CAPTURE_OUTBOUND_PORT.env}"
    in_name = f"{CAPTURE_INBOUND_PORT.flag} / {CAPTURE_INBOUND_PORT.env}"
    if outbound == inbound:
        raise UsageError(
            f"{out_name} and {in_name} are both {outbound}; give each listener its own port"
        )
    for port, name in ((outbound, out_name), (inbound, in_name)):
        if any(port in r for r in settings.capture_exclude_ports):
            raise UsageError(
                f"{name} {port} is in --exclude-ports / SIDECAR_CAPTURE_EXCLUDE_PORTS; "
                "the proxy's own listener cannot be excluded"
            )
