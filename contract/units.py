"""Parsers for the values users write: durations, rates, ports, booleans.

Shared by the injector (validating annotations) and the agent (reading
``SIDECAR_*`` variables) so both sides accept exactly the same spellings.
Pure functions; each raises ``ValueError`` with a message that says what is
accepted.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

_DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)(ms|s|m|h))+$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_RATE = re.compile(r"^(\d+)/(s|m|h)$")

DURATION_HELP = "a duration such as 500ms, 2s, 1m30s or 1h"
RATE_HELP = "a rate such as 100/s, 600/m or 1000/h"
PORT_HELP = "a port number from 1 to 65535"
BOOL_HELP = '"true" or "false"'
ADDRESS_HELP = "HOST:PORT such as 0.0.0.0:15020, 127.0.0.1:15020 or [::]:15020"


MAX_DURATION = 10 * 365 * 86400.0  # ten years: any longer is a typo (and 1e310 is inf)


def parse_duration(text: str) -> float:
    """``"1m30s"`` -> ``90.0`` seconds. Zero is allowed; negatives are not; at
    most ``MAX_DURATION`` (a 310-digit number is refused, not turned into inf)."""
    value = text.strip()
    if not _DURATION.match(value):
        raise ValueError(f"{text!r} is not {DURATION_HELP}")
    seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(value))
    if not seconds <= MAX_DURATION:  # also catches inf
        raise ValueError(f"{_short(text)} is longer than 87600h; expected {DURATION_HELP}")
    return seconds


def format_duration(seconds: float) -> str:
    """The canonical spelling the injector renders: whole ms or s."""
    millis = round(seconds * 1000)
    if millis % 1000 == 0:
        return f"{millis // 1000}s"
    return f"{millis}ms"


@dataclass(frozen=True)
class Rate:
    """A token-bucket rate: ``requests`` per ``period`` seconds."""

    requests: int
    period: float

    def __str__(self) -> str:
        unit = {1.0: "s", 60.0: "m", 3600.0: "h"}[self.period]
        return f"{self.requests}/{unit}"


def parse_rate(text: str) -> Rate:
    match = _RATE.match(text.strip())
    if not match or not 1 <= int(match.group(1)) <= 2**32 - 1:  # Envoy's token bucket: uint32
        limits = "at least 1 request, at most 4294967295"
        raise ValueError(f"{_short(text)} is not {RATE_HELP} ({limits})")
    return Rate(int(match.group(1)), _UNIT_SECONDS[match.group(2)])


def parse_port(text: str) -> int:
    value = text.strip()
    if not value.isdigit() or not 1 <= int(value) <= 65535:
        raise ValueError(f"{text!r} is not {PORT_HELP}")
    return int(value)


def parse_address(text: str) -> tuple[str, int]:
    """``"0.0.0.0:15020"`` -> ``("0.0.0.0", 15020)``; IPv6 hosts in brackets."""
    value = text.strip()
    host, sep, port = value.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{text!r} is not {ADDRESS_HELP}")
    return host, int(port)


def parse_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("true", "1", "yes", "on"):
        return True
    if value in ("false", "0", "no", "off"):
        return False
    raise ValueError(f"{text!r} is not {BOOL_HELP}")


def parse_positive_int(text: str, *, maximum: int = 2**31 - 1) -> int:
    value = text.strip()
    if not value.isdigit() or len(value) > 19 or not 0 <= int(value) <= maximum:
        raise ValueError(f"{_short(text)} is not a whole number from 0 to {maximum}")
    return int(value)


# Envoy's x-envoy-retry-on and x-envoy-retry-grpc-on values: what the proxy's
# retry_on accepts, checked the same way by the injector and the agent.
RETRY_ON_VALUES = (
    "5xx",
    "gateway-error",
    "reset",
    "reset-before-request",
    "connect-failure",
    "envoy-ratelimited",
    "retriable-4xx",
    "refused-stream",
    "retriable-status-codes",
    "retriable-headers",
    "http3-post-connect-failure",
    "cancelled",
    "deadline-exceeded",
    "internal",
    "resource-exhausted",
    "unavailable",
)
RETRY_ON_HELP = "a comma-separated list of " + ", ".join(RETRY_ON_VALUES)


def parse_retry_on(text: str) -> tuple[str, ...]:
    items = tuple(item.strip() for item in text.split(",") if item.strip())
    unknown = [item for item in items if item not in RETRY_ON_VALUES]
    if not items or unknown:
        detail = f" (unknown: {', '.join(map(repr, unknown))})" if unknown else ""
        raise ValueError(f"{text!r} is not {RETRY_ON_HELP}{detail}")
    return items


UPSTREAM_HELP = "an http:// or https:// URL such as http://payments:8080 or https://api.example.com"


def parse_upstream_url(text: str) -> tuple[str, str, str, int]:
    """``(url, scheme, host, port)`` of a proxy upstream: scheme, host and
    optional port only, as the injector and the agent both require."""
    value = text.strip()
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{text!r} is not {UPSTREAM_HELP}")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"{text!r} has a path or query; give only scheme, host and port")
    if parts.username or parts.password:
        raise ValueError(f"{text!r} has credentials; the proxy does not send them")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"{text!r} has an invalid port; use {UPSTREAM_HELP}") from None
    if port == 0:
        raise ValueError(f"{text!r} has port 0; use a port from 1 to 65535")
    return value, parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80)


# Transparent capture (``proxy-capture-*`` annotations, ``SIDECAR_CAPTURE_*``
# variables): port lists and address ranges, bounded so that a rule set stays
# small whatever the input.
MAX_LIST_ITEMS = 64
PORTS_HELP = "comma-separated ports or ranges, e.g. 5432,8000-8100"
INBOUND_PORTS_HELP = '"*" (every port), "none" or ' + PORTS_HELP
CIDRS_HELP = (
    "comma-separated IPv4/IPv6 addresses or CIDRs, e.g. 10.0.0.0/8,fd00::/8,169.254.169.254"
)


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class PortRange:
    first: int
    last: int

    def __str__(self) -> str:
        return str(self.first) if self.first == self.last else f"{self.first}-{self.last}"

    def __contains__(self, port: object) -> bool:
        return isinstance(port, int) and self.first <= port <= self.last


def _short(item: str) -> str:
    return repr(item if len(item) <= 60 else item[:57] + "...")


def _items(text: str, what: str) -> list[str]:
    items = [item.strip() for item in text.split(",") if item.strip()]
    if len(items) > MAX_LIST_ITEMS:
        raise ValueError(f"{len(items)} {what} given; at most {MAX_LIST_ITEMS} are accepted")
    return items


def parse_port_ranges(text: str) -> tuple[PortRange, ...]:
    """``"8080, 9000-9100"`` -> sorted, merged ranges; ``""`` -> ``()``."""
    ranges: list[PortRange] = []
    for item in _items(text, "ports"):
        first, sep, last = item.partition("-")
        try:
            low = parse_port(first)
            high = parse_port(last) if sep else low
        except ValueError:
            raise ValueError(f"{_short(item)} is not a port or range; {PORTS_HELP}") from None
        if high < low:
            raise ValueError(f"{_short(item)} is a range that ends before it starts")
        ranges.append(PortRange(low, high))
    merged: list[PortRange] = []
    for r in sorted(ranges, key=lambda r: r.first):
        if merged and r.first <= merged[-1].last + 1:
            merged[-1] = PortRange(merged[-1].first, max(merged[-1].last, r.last))
        else:
            merged.append(r)
    return tuple(merged)


def format_port_ranges(ranges: tuple[PortRange, ...]) -> str:
    return ",".join(str(r) for r in ranges)


def parse_inbound_ports(text: str) -> tuple[PortRange, ...] | None:
    """``"*"`` -> ``None`` (every port); ``"none"`` (or nothing) -> ``()``;
    otherwise ``parse_port_ranges``."""
    value = text.strip().lower()
    if value == "*":
        return None
    if value in ("none", ""):
        return ()
    return parse_port_ranges(text)


def format_inbound_ports(ports: tuple[PortRange, ...] | None) -> str:
    if ports is None:
        return "*"
    return format_port_ranges(ports) or "none"


def format_cidrs(networks: tuple[Network, ...]) -> str:
    return ",".join(str(n) for n in networks)


def parse_cidrs(text: str) -> tuple[Network, ...]:
    """``"10.0.0.0/8, 169.254.169.254, fd00::/8"`` -> networks (an address is a /32 or /128)."""
    networks: list[Network] = []
    for item in _items(text, "addresses"):
        try:
            network = ipaddress.ip_network(item, strict=True)
        except ValueError as exc:
            detail = "host bits are set" if "host bits" in str(exc) else "not an address or CIDR"
            raise ValueError(f"{_short(item)}: {detail}; {CIDRS_HELP}") from None
        if network not in networks:
            networks.append(network)
    return tuple(networks)
