"""Envoy listeners and clusters for captured traffic (``--capture iptables``). Pure.

The rules of ``sidecar capture`` redirect the pod's TCP to two listeners; the
``original_dst`` listener filter restores each connection's original
destination, and ``ORIGINAL_DST`` clusters connect to exactly that address.

``capture_outbound`` (``127.0.0.1`` and ``::1``): what the app sends out.

* HTTP (``http_inspector``: HTTP/1.x or h2c in clear text) goes through an
  HTTP connection manager with the pod's policy: route timeout, retries
  (jittered back-off, retry budget), access log, request ids, and per
  destination a cluster of its own (``destinations.subcluster_parent``) with
  the circuit breakers and outlier detection. IPv6 destinations share one
  original-destination cluster instead (connections limited per destination,
  ejections counted but not enforced). The Host header is left as the app
  wrote it. Metric ``envoy_capture_outbound_requests{destination="IP:PORT",code}``.
* TLS from the app (``tls_inspector``) is passed through untouched;
  ``envoy_capture_outbound_connections{destination,protocol="tls",sni}``
  and byte counters per destination.
* Anything else is passed through as TCP with the same connection and byte
  counters (``protocol="tcp"``). A client that sends nothing for
  ``DETECT_TIMEOUT`` after connecting (server-first protocols) is passed
  through as TCP too. Connections to ``--capture-tcp-ports`` skip the
  inspectors and are passed through as TCP at once: no wait for a
  server-first protocol, and a client that half-closes right after sending
  is not closed by the inspectors (Envoy closes a connection whose peer
  half-closes while listener filters still read it).
* A connection made to the listener's own port (not redirected) would be
  proxied to itself: it is closed instead.

``capture_inbound`` (``0.0.0.0`` and ``::``): connections to the app's ports
from outside the pod. HTTP gets the inbound policy (timeout, rate limit,
access log, request ids); other TCP is passed through. The proxy connects to
the original destination (the pod's address and the app's port); its own UID
is excluded from capture, so that connection reaches the app directly.

The per-destination counters come from Envoy's stats access logger
(``destinations.stats_logger``).
"""

from __future__ import annotations

from typing import Any

from contract.units import PortRange
from sidecar.proxy.bootstrap import (
    CONNECT_TIMEOUT,
    STDOUT_LOG,
    duration,
    http_manager,
    retry_policy,
    socket_address,
)
from sidecar.proxy.destinations import (
    original_dst_cluster,
    stats_logger,
    subcluster_filters,
    subcluster_parent,
    towards_any_destination,
)
from sidecar.proxy.modes import Capture
from sidecar.proxy.settings import ProxySettings

_T = "type.googleapis.com/envoy."
TCP_PROXY = _T + "extensions.filters.network.tcp_proxy.v3.TcpProxy"
LISTENER_FILTERS = {
    "original_dst": _T + "extensions.filters.listener.original_dst.v3.OriginalDst",
    "tls_inspector": _T + "extensions.filters.listener.tls_inspector.v3.TlsInspector",
    "http_inspector": _T + "extensions.filters.listener.http_inspector.v3.HttpInspector",
}

OUTBOUND = "capture_outbound"
INBOUND = "capture_inbound"
BLACKHOLE = "capture_blackhole"
DETECT_TIMEOUT = 0.5  # how long the inspectors wait for the client's first bytes
HTTP_PROTOCOLS = ["http/1.1", "h2c"]
ANY_V4 = {"address_prefix": "0.0.0.0", "prefix_len": 0}
ANY_V6 = {"address_prefix": "::", "prefix_len": 0}

TCP_LOG_FORMAT: dict[str, str] = {
    "time": "%START_TIME%",
    "flags": "%RESPONSE_FLAGS%",
    "duration_ms": "%DURATION%",
    "bytes_received": "%BYTES_RECEIVED%",
    "bytes_sent": "%BYTES_SENT%",
    "destination": "%DOWNSTREAM_LOCAL_ADDRESS%",
    "upstream": "%UPSTREAM_HOST%",
    "sni": "%REQUESTED_SERVER_NAME%",
    "client": "%DOWNSTREAM_REMOTE_ADDRESS%",
}


def listeners(settings: ProxySettings) -> list[dict[str, Any]]:
    capture = settings.capture
    if capture is None:
        return []
    return [_outbound_listener(settings, capture), _inbound_listener(settings, capture)]


def clusters(settings: ProxySettings) -> list[dict[str, Any]]:
    if settings.capture is None:
        return []
    return [
        subcluster_parent(f"{OUTBOUND}_http", settings),
        original_dst_cluster(f"{OUTBOUND}_http6", settings, upstream_http=True),
        original_dst_cluster(f"{OUTBOUND}_tcp", settings),
        original_dst_cluster(f"{INBOUND}_http", settings, upstream_http=True),
        original_dst_cluster(f"{INBOUND}_tcp", settings),
        {
            "name": BLACKHOLE,
            "type": "STATIC",
            "connect_timeout": duration(CONNECT_TIMEOUT),
            "load_assignment": {"cluster_name": BLACKHOLE, "endpoints": []},
        },
    ]


def _addresses(host: str, host6: str, port: int, ipv6: bool) -> dict[str, Any]:
    spec: dict[str, Any] = {"address": socket_address(host, port)}
    if ipv6:
        spec["additional_addresses"] = [{"address": socket_address(host6, port)}]
    return spec


def _listener(
    name: str, filters: tuple[str, ...], tcp_ports: tuple[PortRange, ...] = ()
) -> dict[str, Any]:
    """``filters`` after ``original_dst``; the inspectors do not run for
    connections to ``tcp_ports`` (their original destination port)."""
    chain = []
    for f in filters:
        spec: dict[str, Any] = {
            "name": f"envoy.filters.listener.{f}",
            "typed_config": {"@type": LISTENER_FILTERS[f]},
        }
        if f != "original_dst" and tcp_ports:
            spec["filter_disabled"] = _to_ports(tcp_ports)
        chain.append(spec)
    return {
        "name": name,
        "stat_prefix": name,
        "listener_filters": chain,
        "listener_filters_timeout": duration(DETECT_TIMEOUT),
        "continue_on_listener_filters_timeout": True,
    }


def _to_ports(ports: tuple[PortRange, ...]) -> dict[str, Any]:
    """A listener-filter predicate: the connection's (original) destination
    port is in ``ports``."""
    rules = [{"destination_port_range": {"start": r.first, "end": r.last + 1}} for r in ports]
    return rules[0] if len(rules) == 1 else {"or_match": {"rules": rules}}


def _outbound_listener(settings: ProxySettings, capture: Capture) -> dict[str, Any]:
    both = [ANY_V4, ANY_V6]
    inspectors = ("original_dst", "tls_inspector", "http_inspector")
    return {
        **_listener(OUTBOUND, inspectors, capture.tcp_ports),
        **_addresses("127.0.0.1", "::1", capture.outbound_port, capture.ipv6),
        "traffic_direction": "OUTBOUND",
        "drain_type": "MODIFY_ONLY",
        "filter_chains": [
            _self_chain(capture.outbound_port),
            _http_chain("http", [ANY_V4], _outbound_http(settings, f"{OUTBOUND}_http", True)),
            _http_chain("http6", [ANY_V6], _outbound_http(settings, f"{OUTBOUND}_http6", False)),
            {
                "name": "tls",
                "filter_chain_match": {"prefix_ranges": both, "transport_protocol": "tls"},
                "filters": [_passthrough(f"{OUTBOUND}_tls", "tls")],
            },
        ],
        "default_filter_chain": {
            "name": "tcp",
            "filters": [_passthrough(f"{OUTBOUND}_tcp", "tcp")],
        },
    }


def _http_chain(
    name: str, prefixes: list[dict[str, Any]], manager: dict[str, Any]
) -> dict[str, Any]:
    match = {
        "prefix_ranges": prefixes,
        "transport_protocol": "raw_buffer",
        "application_protocols": HTTP_PROTOCOLS,
    }
    return {"name": name, "filter_chain_match": match, "filters": [manager]}


def _outbound_http(settings: ProxySettings, cluster: str, per_destination: bool) -> dict[str, Any]:
    route: dict[str, Any] = {"cluster": cluster, "timeout": duration(settings.timeout)}
    if settings.retries > 0 and settings.retry_on:
        policy = retry_policy(settings)
        # One address per destination: there is no other host to try.
        policy.pop("retry_host_predicate", None)
        policy.pop("host_selection_retry_max_attempts", None)
        route["retry_policy"] = policy
    manager = towards_any_destination(http_manager(settings, OUTBOUND, route, False))
    config = manager["typed_config"]
    if per_destination:
        config["http_filters"][-1:-1] = subcluster_filters()  # before the router
    tags = {"destination": "%DOWNSTREAM_LOCAL_ADDRESS%", "code": "%RESPONSE_CODE%"}
    config["access_log"].append(stats_logger(OUTBOUND, "requests", tags))
    return manager


def _inbound_listener(settings: ProxySettings, capture: Capture) -> dict[str, Any]:
    route = {"cluster": f"{INBOUND}_http", "timeout": duration(settings.timeout)}
    return {
        **_listener(INBOUND, ("original_dst", "http_inspector")),
        **_addresses("0.0.0.0", "::", capture.inbound_port, capture.ipv6),
        "traffic_direction": "INBOUND",
        "filter_chains": [
            _self_chain(capture.inbound_port),
            {
                "name": "http",
                "filter_chain_match": {"application_protocols": HTTP_PROTOCOLS},
                "filters": [http_manager(settings, INBOUND, route, True)],
            },
        ],
        "default_filter_chain": {
            "name": "tcp",
            "filters": [_tcp_proxy(f"{INBOUND}_tcp", f"{INBOUND}_tcp", [])],
        },
    }


def _self_chain(port: int) -> dict[str, Any]:
    """Connections made straight to the listener's port (not redirected): their
    original destination is the listener itself. Closed, never proxied."""
    return {
        "name": "self",
        "filter_chain_match": {"destination_port": port},
        "filters": [_tcp_proxy(BLACKHOLE, BLACKHOLE, [])],
    }


def _passthrough(stat_prefix: str, protocol: str) -> dict[str, Any]:
    destination = {"destination": "%DOWNSTREAM_LOCAL_ADDRESS%"}
    connection_tags = {**destination, "protocol": protocol}
    if protocol == "tls":
        connection_tags["sni"] = "%REQUESTED_SERVER_NAME%"
    log_format = {"direction": OUTBOUND, "protocol": protocol, **TCP_LOG_FORMAT}
    logs = [
        {
            "name": "envoy.access_loggers.stdout",
            "typed_config": {"@type": STDOUT_LOG, "log_format": {"json_format": log_format}},
        },
        stats_logger(OUTBOUND, "connections", connection_tags),
        # From the app's side: what it sent, what it got back.
        stats_logger(OUTBOUND, "bytes_sent", destination, value="%BYTES_RECEIVED%"),
        stats_logger(OUTBOUND, "bytes_received", destination, value="%BYTES_SENT%"),
    ]
    return _tcp_proxy(stat_prefix, f"{OUTBOUND}_tcp", logs)


def _tcp_proxy(stat_prefix: str, cluster: str, logs: list[dict[str, Any]]) -> dict[str, Any]:
    config: dict[str, Any] = {"@type": TCP_PROXY, "stat_prefix": stat_prefix, "cluster": cluster}
    if logs:
        config["access_log"] = logs
    return {"name": "envoy.filters.network.tcp_proxy", "typed_config": config}
