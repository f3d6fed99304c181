"""The Envoy v3 bootstrap for ``sidecar proxy``, rendered from ``ProxySettings``.

Pure: ``render(settings)`` returns a dict (JSON-serialisable); ``to_json``
gives the file Envoy reads. What it builds:

* ``outbound`` listener ``127.0.0.1:<outbound-port>`` (``traffic_direction:
  OUTBOUND``, ``drain_type: MODIFY_ONLY`` so that failing the health check does
  not start closing the app's own outbound connections) -> cluster
  ``outbound`` = the upstream URL's host and port, with TLS origination (SNI
  and certificate name = the host, CAs from ``upstream_ca``) for https, and
  the Host header rewritten to the upstream's authority. Client-side policy
  lives here: retries (``retry_on``, count, per-try timeout, jittered
  back-off, a retry budget) and outlier detection.
* ``inbound`` listener ``0.0.0.0:<inbound-listen-port>`` (``traffic_direction:
  INBOUND``, which is what ``drain_listeners?inboundonly`` drains) -> cluster
  ``inbound`` = ``127.0.0.1:<inbound-port>``.
* Both: route timeout, circuit breakers, local rate limit (a token bucket per
  listener answering 429 with ``x-sidecar-rate-limited: true``), JSON access
  logs on stdout, request ids (``x-request-id`` generated when absent, kept
  when present, echoed in the response).
* Admin on ``127.0.0.1:<admin-port>`` only (stats, readiness, drain).
"""

from __future__ import annotations

import ipaddress
import json
from typing import Any

from contract.values import Upstream
from sidecar.proxy import mesh_tls
from sidecar.proxy.settings import ProxySettings

RATE_LIMITED_HEADER = "x-sidecar-rate-limited"
CONNECT_TIMEOUT = 5.0
RETRY_BACK_OFF = (0.025, 0.25)  # base, max: Envoy jitters each wait in [0, base * 2^n)
RETRY_BUDGET_PERCENT = 20.0
RETRY_MIN_CONCURRENCY = 3
OUTLIER_INTERVAL = 5.0
OUTLIER_EJECTION = 30.0
OUTLIER_MAX_PERCENT = 100  # one host is often all there is (a Service VIP)
MAX_DOWNSTREAM_CONNECTIONS = 65536
RETRIABLE_STATUS_CODES = (503,)

_T = "type.googleapis.com/envoy."
HCM = _T + "extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
ROUTER = _T + "extensions.filters.http.router.v3.Router"
LOCAL_RATELIMIT = _T + "extensions.filters.http.local_ratelimit.v3.LocalRateLimit"
STDOUT_LOG = _T + "extensions.access_loggers.stream.v3.StdoutAccessLog"
UPSTREAM_TLS = _T + "extensions.transport_sockets.tls.v3.UpstreamTlsContext"
PREVIOUS_HOSTS = _T + "extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate"
DOWNSTREAM_CONNECTIONS = (
    _T + "extensions.resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig"
)

ACCESS_LOG_FORMAT: dict[str, str] = {
    "time": "%START_TIME%",
    "method": "%REQ(:METHOD)%",
    "path": "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%",
    "protocol": "%PROTOCOL%",
    "status": "%RESPONSE_CODE%",
    "flags": "%RESPONSE_FLAGS%",
    "details": "%RESPONSE_CODE_DETAILS%",
    "attempts": "%UPSTREAM_REQUEST_ATTEMPT_COUNT%",
    "duration_ms": "%DURATION%",
    "upstream_ms": "%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%",
    "bytes_received": "%BYTES_RECEIVED%",
    "bytes_sent": "%BYTES_SENT%",
    "upstream": "%UPSTREAM_HOST%",
    "authority": "%REQ(:AUTHORITY)%",
    "client": "%DOWNSTREAM_REMOTE_ADDRESS%",
    "user_agent": "%REQ(USER-AGENT)%",
    "request_id": "%REQ(X-REQUEST-ID)%",
}


def duration(seconds: float) -> str:
    """Protobuf JSON Duration: ``"1.500s"``."""
    return f"{seconds:.3f}s"


def socket_address(host: str, port: int) -> dict[str, Any]:
    return {"socket_address": {"address": host, "port_value": port}}


def _percent(value: int = 100) -> dict[str, Any]:
    return {"default_value": {"numerator": value, "denominator": "HUNDRED"}}


def render(settings: ProxySettings) -> dict[str, Any]:
    listeners: list[dict[str, Any]] = []
    clusters: list[dict[str, Any]] = []
    if settings.upstream is not None:
        listeners.append(_outbound_listener(settings, settings.upstream))
        clusters.append(_outbound_cluster(settings, settings.upstream))
    if settings.inbound_port is not None:
        listeners.append(_inbound_listener(settings))
        clusters.append(_inbound_cluster(settings, settings.inbound_port))
    config = {
        "node": {"id": settings.node_id, "cluster": "sidecar-proxy"},
        "admin": {"address": socket_address("127.0.0.1", settings.admin_port)},
        "static_resources": {"listeners": listeners, "clusters": clusters},
        "overload_manager": {
            "resource_monitors": [
                {
                    "name": "envoy.resource_monitors.global_downstream_max_connections",
                    "typed_config": {
                        "@type": DOWNSTREAM_CONNECTIONS,
                        "max_active_downstream_connections": MAX_DOWNSTREAM_CONNECTIONS,
                    },
                }
            ]
        },
    }
    if settings.mesh is not None:
        mesh_tls.secure(config, settings.mesh)
    return config


def to_json(config: dict[str, Any]) -> bytes:
    return (json.dumps(config, indent=1, sort_keys=True) + "\n").encode()


def _outbound_listener(settings: ProxySettings, upstream: Upstream) -> dict[str, Any]:
    route: dict[str, Any] = {
        "cluster": "outbound",
        "timeout": duration(settings.timeout),
        "host_rewrite_literal": upstream.authority,
    }
    if settings.retries > 0 and settings.retry_on:
        route["retry_policy"] = retry_policy(settings)
    return {
        "name": "outbound",
        "stat_prefix": "outbound",
        "address": socket_address("127.0.0.1", settings.outbound_port),
        "traffic_direction": "OUTBOUND",
        "drain_type": "MODIFY_ONLY",
        "filter_chains": [{"filters": [http_manager(settings, "outbound", route, False)]}],
    }


def _inbound_listener(settings: ProxySettings) -> dict[str, Any]:
    route = {"cluster": "inbound", "timeout": duration(settings.timeout)}
    return {
        "name": "inbound",
        "stat_prefix": "inbound",
        "address": socket_address("0.0.0.0", settings.inbound_listen_port),
        "traffic_direction": "INBOUND",
        "filter_chains": [{"filters": [http_manager(settings, "inbound", route, True)]}],
    }


def retry_policy(settings: ProxySettings) -> dict[str, Any]:
    base, maximum = RETRY_BACK_OFF
    policy: dict[str, Any] = {
        "retry_on": ",".join(settings.retry_on),
        "num_retries": settings.retries,
        "retry_back_off": {"base_interval": duration(base), "max_interval": duration(maximum)},
        "retry_host_predicate": [
            {
                "name": "envoy.retry_host_predicates.previous_hosts",
                "typed_config": {"@type": PREVIOUS_HOSTS},
            }
        ],
        "host_selection_retry_max_attempts": 3,
    }
    if "retriable-status-codes" in settings.retry_on:
        policy["retriable_status_codes"] = list(RETRIABLE_STATUS_CODES)
    if settings.per_try_timeout is not None:
        policy["per_try_timeout"] = duration(settings.per_try_timeout)
    return policy


def http_manager(
    settings: ProxySettings, direction: str, route: dict[str, Any], edge: bool
) -> dict[str, Any]:
    filters: list[dict[str, Any]] = []
    if settings.rate_limit is not None:
        filters.append(_rate_limit_filter(settings, direction))
    filters.append({"name": "envoy.filters.http.router", "typed_config": {"@type": ROUTER}})
    log_format = {"direction": direction, **ACCESS_LOG_FORMAT}
    return {
        "name": "envoy.filters.network.http_connection_manager",
        "typed_config": {
            "@type": HCM,
            "stat_prefix": direction,
            "codec_type": "AUTO",
            "use_remote_address": edge,
            "generate_request_id": True,
            "preserve_external_request_id": True,
            "always_set_request_id_in_response": True,
            "access_log": [
                {
                    "name": "envoy.access_loggers.stdout",
                    "typed_config": {
                        "@type": STDOUT_LOG,
                        "log_format": {"json_format": log_format},
                    },
                }
            ],
            "route_config": {
                "name": direction,
                "virtual_hosts": [
                    {
                        "name": direction,
                        "domains": ["*"],
                        "routes": [{"match": {"prefix": "/"}, "route": route}],
                    }
                ],
            },
            "http_filters": filters,
        },
    }


def _rate_limit_filter(settings: ProxySettings, direction: str) -> dict[str, Any]:
    rate = settings.rate_limit
    assert rate is not None
    return {
        "name": "envoy.filters.http.local_ratelimit",
        "typed_config": {
            "@type": LOCAL_RATELIMIT,
            "stat_prefix": direction,
            "token_bucket": {
                "max_tokens": rate.requests,
                "tokens_per_fill": rate.requests,
                "fill_interval": duration(rate.period),
            },
            "filter_enabled": {"runtime_key": "local_rate_limit_enabled", **_percent()},
            "filter_enforced": {"runtime_key": "local_rate_limit_enforced", **_percent()},
            "response_headers_to_add": [
                {
                    "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
                    "header": {"key": RATE_LIMITED_HEADER, "value": "true"},
                }
            ],
        },
    }


def circuit_breakers(settings: ProxySettings, retry_budget: bool) -> dict[str, Any]:
    limit = settings.max_connections
    threshold: dict[str, Any] = {
        "priority": "DEFAULT",
        "max_connections": limit,
        "max_pending_requests": limit,
        "max_requests": limit,
        "track_remaining": True,
    }
    if retry_budget:
        threshold["retry_budget"] = {
            "budget_percent": {"value": RETRY_BUDGET_PERCENT},
            "min_retry_concurrency": RETRY_MIN_CONCURRENCY,
        }
    return {"thresholds": [threshold]}


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _outbound_cluster(settings: ProxySettings, upstream: Upstream) -> dict[str, Any]:
    cluster = _cluster("outbound", upstream.host, upstream.port, settings, retry_budget=True)
    if not _is_ip(upstream.host):
        cluster["type"] = "STRICT_DNS"
        cluster["dns_lookup_family"] = "V4_PREFERRED"
    if settings.outlier_5xx is not None:
        cluster["outlier_detection"] = outlier_detection(settings.outlier_5xx)
    if upstream.tls:
        cluster["transport_socket"] = _tls(settings, upstream)
    return cluster


def outlier_detection(consecutive_5xx: int) -> dict[str, Any]:
    return {
        "consecutive_5xx": consecutive_5xx,
        "enforcing_consecutive_5xx": 100,
        "enforcing_consecutive_gateway_failure": 0,
        "enforcing_success_rate": 0,
        "interval": duration(OUTLIER_INTERVAL),
        "base_ejection_time": duration(OUTLIER_EJECTION),
        "max_ejection_percent": OUTLIER_MAX_PERCENT,
    }


def _inbound_cluster(settings: ProxySettings, port: int) -> dict[str, Any]:
    return _cluster("inbound", "127.0.0.1", port, settings, retry_budget=False)


def _cluster(
    name: str, host: str, port: int, settings: ProxySettings, *, retry_budget: bool
) -> dict[str, Any]:
    return {
        "name": name,
        "type": "STATIC",
        "connect_timeout": duration(CONNECT_TIMEOUT),
        "lb_policy": "ROUND_ROBIN",
        "circuit_breakers": circuit_breakers(settings, retry_budget),
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [
                {"lb_endpoints": [{"endpoint": {"address": socket_address(host, port)}}]}
            ],
        },
    }


def _tls(settings: ProxySettings, upstream: Upstream) -> dict[str, Any]:
    san_type = "IP_ADDRESS" if _is_ip(upstream.host) else "DNS"
    context: dict[str, Any] = {
        "@type": UPSTREAM_TLS,
        "common_tls_context": {
            "validation_context": {
                "trusted_ca": {"filename": str(settings.upstream_ca)},
                "match_typed_subject_alt_names": [
                    {"san_type": san_type, "matcher": {"exact": upstream.host}}
                ],
            },
        },
    }
    if san_type == "DNS":
        context["sni"] = upstream.host
    return {"name": "envoy.transport_sockets.tls", "typed_config": context}
