"""The HTTP forward proxy for the app (``--egress http-proxy``). Pure.

Listener ``egress`` on ``127.0.0.1`` (and ``::1``): apps that honour
``HTTP_PROXY`` / ``HTTPS_PROXY`` send it

* absolute-form HTTP (``GET http://payments:8080/x``): proxied with the
  pod's policy (route timeout, retries, circuit breaking per destination,
  outlier detection, access log, request ids);
* ``CONNECT host:443`` (what clients do for ``https://`` URLs): a TCP tunnel
  to that host and port; the TLS inside stays between the app and the server.

Envoy's dynamic forward proxy resolves the names, with the resolver the app
would use (``getaddrinfo``: the pod's ``/etc/hosts`` and ``resolv.conf``,
search domains included), so the app itself needs no DNS for them. Metric
``envoy_egress_requests{destination="HOST:PORT",method,code}`` (CONNECT
tunnels count once each, with the status the proxy answered).
"""

from __future__ import annotations

from typing import Any

from sidecar.proxy.bootstrap import (
    CONNECT_TIMEOUT,
    duration,
    http_manager,
    outlier_detection,
    retry_policy,
    socket_address,
)
from sidecar.proxy.destinations import (
    getaddrinfo_resolver,
    per_destination_breakers,
    stats_logger,
    towards_any_destination,
)
from sidecar.proxy.settings import ProxySettings

_T = "type.googleapis.com/envoy."
DFP_FILTER = _T + "extensions.filters.http.dynamic_forward_proxy.v3.FilterConfig"
DFP_CLUSTER = _T + "extensions.clusters.dynamic_forward_proxy.v3.ClusterConfig"

NAME = "egress"
TUNNEL_IDLE_TIMEOUT = 3600.0


def dns_cache() -> dict[str, Any]:
    return {
        "name": NAME,
        "dns_lookup_family": "V4_PREFERRED",
        "typed_dns_resolver_config": getaddrinfo_resolver(),
    }


def listeners(settings: ProxySettings) -> list[dict[str, Any]]:
    egress = settings.egress
    if egress is None:
        return []
    manager = towards_any_destination(http_manager(settings, NAME, _http_route(settings), False))
    config = manager["typed_config"]
    routes = config["route_config"]["virtual_hosts"][0]["routes"]
    routes.insert(0, _connect_route())
    config["upgrade_configs"] = [{"upgrade_type": "CONNECT"}]
    # Python's http.client (urllib, requests) sends CONNECT as HTTP/1.0.
    config["http_protocol_options"] = {"accept_http_10": True}
    config["http_filters"].insert(
        len(config["http_filters"]) - 1,  # before the router
        {
            "name": "envoy.filters.http.dynamic_forward_proxy",
            "typed_config": {"@type": DFP_FILTER, "dns_cache_config": dns_cache()},
        },
    )
    config["access_log"].append(
        stats_logger(
            NAME,
            "requests",
            {
                "destination": "%REQ(:AUTHORITY)%",
                "method": "%REQ(:METHOD)%",
                "code": "%RESPONSE_CODE%",
            },
        )
    )
    listener: dict[str, Any] = {
        "name": NAME,
        "stat_prefix": NAME,
        "address": socket_address("127.0.0.1", egress.port),
        "traffic_direction": "OUTBOUND",
        "drain_type": "MODIFY_ONLY",
        "filter_chains": [{"filters": [manager]}],
    }
    if egress.ipv6:
        listener["additional_addresses"] = [{"address": socket_address("::1", egress.port)}]
    return [listener]


def clusters(settings: ProxySettings) -> list[dict[str, Any]]:
    if settings.egress is None:
        return []
    http = _cluster(f"{NAME}_http", settings, retry_budget=True)
    if settings.outlier_5xx is not None:
        http["outlier_detection"] = outlier_detection(settings.outlier_5xx)
    return [http, _cluster(f"{NAME}_connect", settings, retry_budget=False)]


def _http_route(settings: ProxySettings) -> dict[str, Any]:
    route: dict[str, Any] = {"cluster": f"{NAME}_http", "timeout": duration(settings.timeout)}
    if settings.retries > 0 and settings.retry_on:
        route["retry_policy"] = retry_policy(settings)
    return route


def _connect_route() -> dict[str, Any]:
    return {
        "match": {"connect_matcher": {}},
        "route": {
            "cluster": f"{NAME}_connect",
            "timeout": "0s",  # a tunnel lasts as long as the app keeps it
            "idle_timeout": duration(TUNNEL_IDLE_TIMEOUT),
            "upgrade_configs": [{"upgrade_type": "CONNECT", "connect_config": {}}],
        },
    }


def _cluster(name: str, settings: ProxySettings, *, retry_budget: bool) -> dict[str, Any]:
    return {
        "name": name,
        "lb_policy": "CLUSTER_PROVIDED",
        "connect_timeout": duration(CONNECT_TIMEOUT),
        "circuit_breakers": per_destination_breakers(settings, retry_budget=retry_budget),
        "cluster_type": {
            "name": "envoy.clusters.dynamic_forward_proxy",
            "typed_config": {"@type": DFP_CLUSTER, "dns_cache_config": dns_cache()},
        },
    }
