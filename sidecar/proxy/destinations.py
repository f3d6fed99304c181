"""Clusters and counters per destination, for captured traffic and the forward
proxy (``capture`` and ``egress``). Pure.

* ``subcluster_parent``: Envoy's dynamic forward proxy in sub-cluster mode.
  Each destination ``IP:PORT`` becomes a cluster of its own
  (``DFPCluster:IP:PORT``), created on first use and dropped after
  ``SUBCLUSTER_TTL`` unused, with the pod's circuit breakers (connections,
  pending and active requests, retry budget) and outlier detection. Panic
  routing is off: an ejected destination is answered 503 at once until its
  ejection ends, instead of being sent traffic anyway. The HTTP filters
  ``subcluster_filters`` pick the destination from the connection's original
  address (filter state), so the Host header stays as the app wrote it.
* ``original_dst_cluster``: one cluster whose hosts are the connections'
  original destinations; at most ``max-connections`` connections to each
  (``per_destination_breakers``). For passed-through TCP and TLS, inbound
  traffic and IPv6 destinations (Envoy 1.40's sub-clusters do not take IPv6
  literals).
* ``stats_logger``: an access logger that counts per label set (destination,
  status, SNI, ...), capped at ``MAX_SERIES`` label sets per family.
"""

from __future__ import annotations

from typing import Any

from sidecar.proxy.bootstrap import (
    CONNECT_TIMEOUT,
    circuit_breakers,
    duration,
    outlier_detection,
)
from sidecar.proxy.settings import ProxySettings

_T = "type.googleapis.com/envoy."
STATS_LOG = _T + "extensions.access_loggers.stats.v3.Config"
HTTP_OPTIONS = _T + "extensions.upstreams.http.v3.HttpProtocolOptions"
DFP_FILTER = _T + "extensions.filters.http.dynamic_forward_proxy.v3.FilterConfig"
DFP_CLUSTER = _T + "extensions.clusters.dynamic_forward_proxy.v3.ClusterConfig"
SET_FILTER_STATE = _T + "extensions.filters.http.set_filter_state.v3.Config"
GETADDRINFO = _T + "extensions.network.dns_resolver.getaddrinfo.v3.GetAddrInfoDnsResolverConfig"

MAX_SERIES = 2000  # label sets per stats-logger family
MAX_CLUSTER_CONNECTIONS = 65536
MAX_SUBCLUSTERS = 1024
SUBCLUSTER_TTL = 300.0


def getaddrinfo_resolver() -> dict[str, Any]:
    """The resolver the app itself would use: /etc/hosts, resolv.conf, search domains."""
    return {
        "name": "envoy.network.dns_resolver.getaddrinfo",
        "typed_config": {"@type": GETADDRINFO},
    }


def http_protocol_options() -> dict[str, Any]:
    """Speak to the destination what the app spoke: h2c stays h2c, HTTP/1.1 stays HTTP/1.1."""
    return {
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
            "@type": HTTP_OPTIONS,
            "use_downstream_protocol_config": {
                "http_protocol_options": {},
                "http2_protocol_options": {},
            },
        }
    }


def subcluster_parent(name: str, settings: ProxySettings) -> dict[str, Any]:
    cluster: dict[str, Any] = {
        "name": name,
        "connect_timeout": duration(CONNECT_TIMEOUT),
        "lb_policy": "CLUSTER_PROVIDED",
        "dns_lookup_family": "V4_ONLY",
        "typed_dns_resolver_config": getaddrinfo_resolver(),
        "circuit_breakers": circuit_breakers(settings, True),
        "common_lb_config": {"healthy_panic_threshold": {"value": 0}},
        "typed_extension_protocol_options": http_protocol_options(),
        "cluster_type": {
            "name": "envoy.clusters.dynamic_forward_proxy",
            "typed_config": {
                "@type": DFP_CLUSTER,
                # Plain-text destinations only (TLS from the app is passed through):
                # the TLS-only auto_sni / auto_san_validation do not apply.
                "allow_insecure_cluster_options": True,
                "sub_clusters_config": {
                    "lb_policy": "ROUND_ROBIN",
                    "max_sub_clusters": MAX_SUBCLUSTERS,
                    "sub_cluster_ttl": duration(SUBCLUSTER_TTL),
                },
            },
        },
    }
    if settings.outlier_5xx is not None:
        cluster["outlier_detection"] = outlier_detection(settings.outlier_5xx)
    return cluster


def subcluster_filters() -> list[dict[str, Any]]:
    """HTTP filters (before the router) that send each request to the
    sub-cluster of its connection's original destination."""

    def state(key: str, command: str) -> dict[str, Any]:
        source = {"text_format_source": {"inline_string": command}}
        return {"object_key": key, "format_string": source}

    return [
        {
            "name": "envoy.filters.http.set_filter_state",
            "typed_config": {
                "@type": SET_FILTER_STATE,
                "on_request_headers": [
                    state("envoy.upstream.dynamic_host", "%DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT%"),
                    state("envoy.upstream.dynamic_port", "%DOWNSTREAM_LOCAL_PORT%"),
                ],
            },
        },
        {
            "name": "envoy.filters.http.dynamic_forward_proxy",
            "typed_config": {
                "@type": DFP_FILTER,
                "sub_cluster_config": {"cluster_init_timeout": duration(CONNECT_TIMEOUT)},
                "allow_dynamic_host_from_filter_state": True,
            },
        },
    ]


def original_dst_cluster(
    name: str, settings: ProxySettings, *, upstream_http: bool = False
) -> dict[str, Any]:
    cluster: dict[str, Any] = {
        "name": name,
        "type": "ORIGINAL_DST",
        "lb_policy": "CLUSTER_PROVIDED",
        "connect_timeout": duration(CONNECT_TIMEOUT),
        "circuit_breakers": per_destination_breakers(settings, retry_budget=upstream_http),
    }
    if upstream_http:
        cluster["typed_extension_protocol_options"] = http_protocol_options()
        if settings.outlier_5xx is not None:
            cluster["outlier_detection"] = outlier_detection(settings.outlier_5xx)
    return cluster


def per_destination_breakers(settings: ProxySettings, *, retry_budget: bool) -> dict[str, Any]:
    """At most ``max-connections`` connections to each destination of a
    cluster; as many pending requests over all of them."""
    breakers = circuit_breakers(settings, retry_budget)
    threshold = breakers["thresholds"][0]
    threshold["max_connections"] = MAX_CLUSTER_CONNECTIONS
    threshold["max_requests"] = MAX_CLUSTER_CONNECTIONS
    breakers["per_host_thresholds"] = [{"max_connections": settings.max_connections}]
    return breakers


def towards_any_destination(manager: dict[str, Any]) -> dict[str, Any]:
    """Keep the router's ``x-envoy-*`` headers (expected timeout, attempt count,
    upstream service time) from requests to, and answers from, destinations
    outside the pod's control: they only tell a third party about the proxy."""
    router = manager["typed_config"]["http_filters"][-1]["typed_config"]
    router["suppress_envoy_headers"] = True
    return manager


def stats_logger(
    scope: str, name: str, tags: dict[str, str], value: str | None = None
) -> dict[str, Any]:
    """An access logger that counts ``name`` per label set (``tags``: label ->
    access-log command), e.g. requests per destination and status."""
    counter: dict[str, Any] = {
        "stat": {"name": name, "tags": [{"name": k, "value_format": v} for k, v in tags.items()]}
    }
    if value is None:
        counter["value_fixed"] = 1
    else:
        counter["value_format"] = value
    return {
        "name": "envoy.access_loggers.stats",
        "typed_config": {
            "@type": STATS_LOG,
            "stats_scope": {"prefix": scope, "max_counters": MAX_SERIES},
            "counters": [counter],
        },
    }
