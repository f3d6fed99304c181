"""The mesh in the proxy agent: its identity keeper, readiness, and metrics named
for what went wrong (from Envoy's own counters, read at each scrape).

``sidecar_mesh_inbound_requests_total{tls}``: ``mtls`` or ``plaintext`` (permissive
mode lets plaintext in: this is where it shows); ``..._inbound_refused_total
{reason}``: plaintext in strict mode, TLS that is not ours in strict mode;
``..._tls_failures_total{direction,reason}``: handshakes that failed (no client
certificate, identity (SAN) mismatch, untrusted chain, other); and
``..._rbac_denied_total{mode}``: requests ``allow-from`` refused (``enforce``)
or would refuse (``dry-run``).
"""

from __future__ import annotations

from collections.abc import Callable

from sidecar.identity.rotation import IdentityKeeper
from sidecar.log import Logger
from sidecar.metrics import Registry
from sidecar.proxy.admin import AdminError, EnvoyAdmin
from sidecar.proxy.mesh_tls import PASSTHROUGH_PREFIX, PLAINTEXT_PREFIX, REFUSED_PREFIX
from sidecar.proxy.settings import ProxySettings
from sidecar.proxy.supervisor import Envoy

SSL_REASONS = {
    "fail_verify_no_cert": "no_certificate",
    "fail_verify_san": "identity_mismatch",
    "fail_verify_error": "untrusted",
    "connection_error": "handshake",
}
STATS = (
    r"^(http\.(inbound|inbound_plaintext|inbound_refused)\.(downstream_rq_total|rbac\..*)"
    r"|tcp\.inbound_passthrough\.downstream_cx_total|inbound_passthrough\.rbac\.denied"
    r"|listener\.inbound\.(no_filter_chain_match|ssl\.(fail_verify_\w+|connection_error))"
    r"|cluster\.outbound\.ssl\.(fail_verify_\w+|connection_error))$"
)


def _samples(stats: dict[str, int]) -> dict[str, list[tuple[dict[str, str], int]]]:
    get = stats.get
    out: dict[str, list[tuple[dict[str, str], int]]] = {
        "inbound_requests_total": [
            ({"tls": "mtls"}, get("http.inbound.downstream_rq_total", 0)),
            ({"tls": "plaintext"}, get(f"http.{PLAINTEXT_PREFIX}.downstream_rq_total", 0)),
        ],
        "inbound_passthrough_connections_total": [
            ({}, get(f"tcp.{PASSTHROUGH_PREFIX}.downstream_cx_total", 0))
        ],
        "inbound_refused_total": [
            (
                {"reason": "plaintext_in_strict"},
                get(f"http.{REFUSED_PREFIX}.downstream_rq_total", 0),
            ),
            ({"reason": "not_mesh_tls"}, get("listener.inbound.no_filter_chain_match", 0)),
        ],
        "tls_failures_total": [],
        "rbac_denied_total": [
            (
                {"mode": "enforce"},
                get("http.inbound.rbac.denied", 0)
                + get(f"http.{PLAINTEXT_PREFIX}.rbac.denied", 0)
                + get(f"{PASSTHROUGH_PREFIX}.rbac.denied", 0),
            ),
            (
                {"mode": "dry-run"},
                get("http.inbound.rbac.shadow_denied", 0)
                + get(f"http.{PLAINTEXT_PREFIX}.rbac.shadow_denied", 0),
            ),
        ],
    }
    for direction, prefix in (
        ("inbound", "listener.inbound.ssl."),
        ("outbound", "cluster.outbound.ssl."),
    ):
        for stat, reason in SSL_REASONS.items():
            labels = {"direction": direction, "reason": reason}
            out["tls_failures_total"].append((labels, get(prefix + stat, 0)))
    return out


def render(stats: dict[str, int]) -> str:
    help_text = {
        "inbound_requests_total": "Inbound requests by transport (plaintext: permissive mode)",
        "inbound_passthrough_connections_total": "Inbound TLS connections passed to the app as is",
        "inbound_refused_total": "Inbound traffic refused for not being mesh mTLS, by reason",
        "tls_failures_total": "Mesh TLS handshakes that failed, by direction and reason",
        "rbac_denied_total": "Requests allow-from denied (enforce) or would deny (dry-run)",
    }
    lines = []
    for name, samples in _samples(stats).items():
        full = f"sidecar_mesh_{name}"
        lines += [f"# HELP {full} {help_text[name]}", f"# TYPE {full} counter"]
        for labels, value in samples:
            pairs = ",".join(f'{k}="{v}"' for k, v in labels.items())
            lines.append(f"{full}{{{pairs}}} {value}" if pairs else f"{full} {value}")
    return "\n".join(lines) + "\n"


def mesh_identity(
    settings: ProxySettings, log: Logger, registry: Registry, envoy: Envoy
) -> IdentityKeeper | None:
    """The identity keeper and the mesh metrics, when mesh mTLS is on."""
    if settings.mesh is None:
        return None
    admin = EnvoyAdmin(settings.admin_port)

    def collect() -> str:
        if not envoy.up.value():
            return ""
        try:
            return render(admin.stats(STATS))
        except AdminError:
            return ""

    registry.add_collector(collect)
    uses = settings.inbound_port is not None or settings.mesh.upstream_identity is not None
    return IdentityKeeper(settings.mesh, log, registry, admin, served_by_envoy=uses)


def readiness(envoy: Envoy, identity: IdentityKeeper | None) -> Callable[[], tuple[bool, str]]:
    if identity is None:
        return envoy.readiness

    def check() -> tuple[bool, str]:
        if identity.current is None:
            return identity.readiness()
        ready, reason = envoy.readiness()
        if not ready:
            return ready, reason
        return identity.readiness()

    return check
