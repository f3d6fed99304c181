"""The capture init container's rows (``sidecar capture``): the iptables rules
of ``proxy-capture: iptables``.

Not a role a pod asks for by itself: the proxy's ``proxy-capture`` row turns
it on, and its container (``layout.CAPTURE_INIT_CONTAINER``, first of the
pod) runs the proxy's image. Its annotated rows (the exclusions) are pod and
profile rows like any other (``catalogue.PARTS``); the listener ports are
the proxy's own rows, read by both agents.
"""

from __future__ import annotations

from contract import layout, values
from contract.common import LOG_LEVEL
from contract.knobs import Knob, Role
from contract.proxy import CAPTURE_INBOUND_PORT, CAPTURE_OUTBOUND_PORT
from contract.units import Network, PortRange

# Every port an injected container listens on: inbound connections to them are
# never redirected (kubelet probes reach the agents directly).
SIDECAR_PORTS = (
    PortRange(layout.ADMIN_PORT, layout.INBOUND_PORT),
    PortRange(layout.PROXY_AGENT_PORT, layout.LOGS_AGENT_PORT),
)

PROXY_UID: Knob[int] = Knob(
    "capture_proxy_uid",
    values.NON_ROOT_UID,
    "the proxy's user: its connections are never captured (that would loop)",
    env="SIDECAR_CAPTURE_PROXY_UID",
    flag="--proxy-uid",
    default=str(layout.AGENT_UID),
)
INBOUND_PORTS: Knob[tuple[PortRange, ...] | None] = Knob(
    "capture_inbound_ports",
    values.INBOUND_PORTS,
    "inbound ports whose connections go through the proxy",
    env="SIDECAR_CAPTURE_INBOUND_PORTS",
    flag="--include-inbound-ports",
    annotation="proxy-capture-include-inbound-ports",
    profile="proxy.captureIncludeInboundPorts",
    default="*",
    example="8080,9090",
    doc_default="`*` (every port but the sidecars' and the excluded ones)",
)
EXCLUDE_PORTS: Knob[tuple[PortRange, ...]] = Knob(
    "capture_exclude_ports",
    values.PORT_RANGES,
    "ports never captured, outbound (destination port) or inbound",
    env="SIDECAR_CAPTURE_EXCLUDE_PORTS",
    flag="--exclude-ports",
    annotation="proxy-capture-exclude-ports",
    profile="proxy.captureExcludePorts",
    example="5432,6379",
)
EXCLUDE_CIDRS: Knob[tuple[Network, ...]] = Knob(
    "capture_exclude_cidrs",
    values.CIDRS,
    "outbound destinations never captured (IPv4 and IPv6)",
    env="SIDECAR_CAPTURE_EXCLUDE_CIDRS",
    flag="--exclude-cidrs",
    annotation="proxy-capture-exclude-cidrs",
    profile="proxy.captureExcludeCidrs",
    example="169.254.169.254/32,10.0.0.0/8",
)
PROXY_PORTS: Knob[tuple[PortRange, ...]] = Knob(
    "capture_proxy_ports",
    values.PORT_RANGES,
    "the sidecars' ports, never redirected inbound",
    env="SIDECAR_CAPTURE_PROXY_PORTS",
    flag="--proxy-ports",
    default=",".join(str(r) for r in SIDECAR_PORTS),
)

ROLE = Role(
    "capture",
    "installs the transparent-capture rules (IPv4 and IPv6), then exits",
    0,  # no agent server: it runs once, as an init container
    (
        LOG_LEVEL,
        PROXY_UID,
        CAPTURE_OUTBOUND_PORT,
        CAPTURE_INBOUND_PORT,
        INBOUND_PORTS,
        EXCLUDE_PORTS,
        EXCLUDE_CIDRS,
        PROXY_PORTS,
    ),
)
# The capture annotations a pod may set (only with proxy-capture: iptables).
EXCLUSIONS = (INBOUND_PORTS, EXCLUDE_PORTS, EXCLUDE_CIDRS)
