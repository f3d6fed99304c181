"""The capture rule set, as ``iptables-restore --noflush`` input. Pure.

Two chains of our own in the ``nat`` table, each reached by one jump:

``OUTPUT -p tcp -j SIDECAR_OUTPUT`` (what the pod's processes send):

1. the proxy's UID: RETURN (its own connections, including the ones it makes
   for captured traffic, must never come back to it: that would loop);
2. ``-o lo``: RETURN (loopback and the pod's own addresses: the explicit
   listeners on 127.0.0.1, the agents, the admin port, the app itself);
3. TCP to port 53: RETURN (DNS; UDP is never captured at all);
4. excluded CIDRs, then excluded ports: RETURN;
5. everything else: REDIRECT to the proxy's captured-outbound port. The
   kernel keeps the original destination (``SO_ORIGINAL_DST``), which Envoy's
   ``original_dst`` listener filter restores.

``PREROUTING -p tcp -j SIDECAR_INBOUND`` (what arrives from the network):
the sidecars' own ports and excluded ports RETURN, then the included ports
(or every port) REDIRECT to the captured-inbound port.

Idempotent: ``restore_input`` declares both chains (which flushes them),
deletes every jump to them found in the current ``iptables-save`` output and
adds one jump each, in one transaction. Whatever ran before, the table ends
up the same; a rerun (an init container restart) changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from contract.units import PortRange
from sidecar.capture.settings import CaptureSettings

INBOUND_CHAIN = "SIDECAR_INBOUND"
OUTBOUND_CHAIN = "SIDECAR_OUTPUT"
JUMPS = (("PREROUTING", INBOUND_CHAIN), ("OUTPUT", OUTBOUND_CHAIN))
DNS_PORT = 53
MULTIPORT_MAX = 15  # iptables multiport: at most 15 ports, a range counts as two


def outbound_rules(settings: CaptureSettings, version: int) -> list[str]:
    """Rule specs of SIDECAR_OUTPUT (without ``-A CHAIN``)."""
    rules = [
        f"-m owner --uid-owner {settings.capture_proxy_uid} -j RETURN",
        "-o lo -j RETURN",
        f"-p tcp --dport {DNS_PORT} -j RETURN",
    ]
    rules += [f"-d {network} -j RETURN" for network in settings.cidrs(version)]
    rules += [
        f"-p tcp -m multiport --dports {group} -j RETURN"
        for group in _groups(settings.capture_exclude_ports)
    ]
    rules.append(f"-p tcp -j REDIRECT --to-ports {settings.capture_outbound_port}")
    return rules


def inbound_rules(settings: CaptureSettings) -> list[str]:
    """Rule specs of SIDECAR_INBOUND; none when no inbound port is captured."""
    if settings.capture_inbound_ports == ():
        return []
    redirect = f"-j REDIRECT --to-ports {settings.capture_inbound_port}"
    rules = [
        f"-p tcp -m multiport --dports {group} -j RETURN"
        for group in _groups(settings.capture_proxy_ports + settings.capture_exclude_ports)
    ]
    if settings.capture_inbound_ports is None:
        rules.append(f"-p tcp {redirect}")
    else:
        rules += [
            f"-p tcp -m multiport --dports {group} {redirect}"
            for group in _groups(settings.capture_inbound_ports)
        ]
    return rules


def restore_input(settings: CaptureSettings, version: int, saved: str) -> str:
    """``iptables-restore --noflush`` input that leaves exactly our rules in
    place, given the ``iptables-save -t nat`` output ``saved``."""
    lines = ["*nat", f":{INBOUND_CHAIN} - [0:0]", f":{OUTBOUND_CHAIN} - [0:0]"]
    lines += ["-D" + rule[2:] for rule in existing_jumps(saved)]
    lines += [f"-A {parent} -p tcp -j {chain}" for parent, chain in JUMPS]
    lines += [f"-A {INBOUND_CHAIN} {rule}" for rule in inbound_rules(settings)]
    lines += [f"-A {OUTBOUND_CHAIN} {rule}" for rule in outbound_rules(settings, version)]
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


def existing_jumps(saved: str) -> list[str]:
    """``-A PARENT ... -j OURCHAIN`` lines of an ``iptables-save`` output."""
    found = []
    for line in saved.splitlines():
        parts = line.split()
        for parent, chain in JUMPS:
            if parts[:2] == ["-A", parent] and parts[-2:] == ["-j", chain]:
                found.append(line.strip())
    return found


def our_rules(saved: str) -> list[str]:
    """The lines of an ``iptables-save`` output that belong to capture: our
    chains' declarations and rules, and the jumps to them (for tests and logs)."""
    ours = (INBOUND_CHAIN, OUTBOUND_CHAIN)
    return [
        line
        for line in saved.splitlines()
        if any(f":{c} " in line or f"-A {c} " in line or line.endswith(f"-j {c}") for c in ours)
    ]


def _groups(ranges: Sequence[PortRange]) -> Iterator[str]:
    """``--dports`` values of at most 15 ports each (a range counts as two)."""
    group: list[str] = []
    weight = 0
    for r in ranges:
        cost = 1 if r.first == r.last else 2
        if weight + cost > MULTIPORT_MAX:
            yield ",".join(group)
            group, weight = [], 0
        group.append(str(r.first) if r.first == r.last else f"{r.first}:{r.last}")
        weight += cost
    if group:
        yield ",".join(group)
