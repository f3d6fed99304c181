"""What the mesh says when it refuses something: warning lines on stderr (the
agent's log stream: JSON with the peer, our identity and the fix) and the
bodies of Envoy's local replies (403 and 503 that say why). Pure builders of
Envoy access-log and local-reply configuration for ``mesh_tls``.
"""

from __future__ import annotations

from typing import Any

from contract.spiffe import SpiffeId
from sidecar.proxy.mesh_settings import MeshSettings

_T = "type.googleapis.com/envoy."
STDERR_LOG = _T + "extensions.access_loggers.stream.v3.StderrAccessLog"
CEL_FILTER = _T + "extensions.access_loggers.filters.cel.v3.ExpressionFilter"
ALLOW_FROM_KEY = "sidecar.example.io/allow-from"


def warning_log(message: str, fields: dict[str, str], log_filter: dict[str, Any]) -> dict[str, Any]:
    line = {
        "time": "%START_TIME%",
        "level": "warning",
        "role": "envoy",
        "logger": "mesh",
        "msg": message,
        **fields,
    }
    return {
        "name": "envoy.access_loggers.stderr",
        "filter": log_filter,
        "typed_config": {"@type": STDERR_LOG, "log_format": {"json_format": line}},
    }


def allow_text(mesh: MeshSettings) -> str:
    return ",".join(str(p) for p in mesh.allow_from or ())


def rbac_logs(mesh: MeshSettings) -> list[dict[str, Any]]:
    fields = {
        "peer": "%DOWNSTREAM_PEER_URI_SAN%",
        "client": "%DOWNSTREAM_REMOTE_ADDRESS%",
        "identity": mesh.identity.uri,
        "allow_from": allow_text(mesh),
        "path": "%REQ(:PATH)%",
    }
    fix = (
        f"add the caller's NAMESPACE/SERVICEACCOUNT to {ALLOW_FROM_KEY} of this pod; a caller "
        "with no peer identity is not a mesh client (plaintext or its own TLS)"
    )
    if mesh.allow_from_mode == "dry-run":
        message = "mesh: allow-from (dry-run) would deny this request"
        return [warning_log(message, {**fields, "fix": fix}, rbac_result("shadow"))]
    message = "mesh: request denied by allow-from"
    return [warning_log(message, {**fields, "fix": fix}, rbac_result("enforced"))]


def rbac_result(engine: str) -> dict[str, Any]:
    """An access log filter: the HTTP RBAC filter's ``engine`` denied the request."""
    return {
        "metadata_filter": {
            "matcher": {
                "filter": "envoy.filters.http.rbac",
                "path": [{"key": f"{engine}_engine_result"}],
                "value": {"string_match": {"exact": "denied"}},
            },
            "match_if_key_not_found": False,
        }
    }


def local_replies(mesh: MeshSettings) -> dict[str, Any]:
    body = (
        f"sidecar mesh: {mesh.identity.uri} refused the caller '%DOWNSTREAM_PEER_URI_SAN%' "
        f"(empty: no mesh identity): it is not in {ALLOW_FROM_KEY} ({allow_text(mesh)})\n"
    )
    # Only the RBAC filter answers 403 itself on this chain (a local reply; the
    # app's own 403s are not local replies). The RBAC metadata is not set yet
    # when mappers run, so they match on the status.
    denied = {
        "status_code_filter": {
            "comparison": {
                "op": "EQ",
                "value": {"default_value": 403, "runtime_key": "mesh_rbac_status"},
            }
        }
    }
    return {"mappers": [reply(denied, body)]}


def reply(log_filter: dict[str, Any], text: str) -> dict[str, Any]:
    """A local reply mapper whose body is ``text`` with Envoy's %OPERATORS% filled in."""
    return {"filter": log_filter, "body_format_override": {"text_format": text.replace("%%", "%")}}


def handshake_log(mesh: MeshSettings) -> dict[str, Any]:
    fields = {
        "client": "%DOWNSTREAM_REMOTE_ADDRESS%",
        "sni": "%REQUESTED_SERVER_NAME%",
        "chain": "%FILTER_CHAIN_NAME%",
        "reason": "%DOWNSTREAM_TRANSPORT_FAILURE_REASON%",
        "identity": mesh.identity.uri,
        "fix": "a caller without a mesh certificate from this cluster's roots, or with a stale "
        "trust bundle: check the caller's proxy log (sidecar_mesh_* metrics) and that both "
        "pods trust the same roots",
    }
    # Listener logs fire for other connections too (tls_inspector notes plain HTTP
    # as a "failure"): only the mesh chain's failed handshakes here.
    failed: dict[str, Any] = {
        "extension_filter": {
            "name": "envoy.access_loggers.extension_filters.cel",
            "typed_config": {
                "@type": CEL_FILTER,
                "expression": "xds.filter_chain_name == 'mesh' && "
                "connection.transport_failure_reason != ''",
            },
        }
    }
    return warning_log("mesh: inbound TLS handshake failed", fields, failed)


def outbound_fix(peer: SpiffeId) -> str:
    return (
        f"CERTIFICATE_VERIFY_FAILED means the server is not {peer.uri} (check "
        "sidecar.example.io/upstream-identity) or not from this mesh; a reset means it is "
        "not an injected pod with mtls on"
    )
