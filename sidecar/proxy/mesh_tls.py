"""Mesh mutual TLS in the Envoy bootstrap. Pure: ``secure(config, settings)``
rewrites what ``bootstrap.render`` built; ``sds_*`` render the files the
agent swaps in.

Certificates come from two SDS files the agent replaces atomically (rename):
``cert.json`` (``tls_certificate``: chain and key) and ``trust.json``
(``validation_context``: the mesh roots). Envoy watches them and applies a
new version to new handshakes; connections keep the one they started with.

Inbound (one port, ``tls_inspector`` picks the filter chain):

* ``mesh``: TLS whose SNI ends in ``.mesh.internal``; TLS 1.3 only, a client
  certificate required and its URI SAN in our trust domain; the caller's
  identity goes to the app in ``x-forwarded-client-cert``; ``allow-from``
  becomes an HTTP RBAC filter by principal (``shadow_rules`` in dry-run);
* ``passthrough`` (permissive): any other TLS goes to the app as is (its own
  TLS), through a network RBAC filter when ``allow-from`` is set (no mesh
  identity: refused);
* ``plaintext`` (permissive): HTTP, counted apart (``http.inbound_plaintext``);
  with ``allow-from`` every request is refused (no identity);
* ``plaintext-refused`` (strict): plain HTTP gets 403 naming the fix.

Outbound with an upstream identity: TLS 1.3 with our certificate, SNI of the
peer's identity and an exact URI SAN match.

Every refusal is a 403 or 503 whose body names the cause and the fix, plus a
warning line on stderr (the agent's log stream) naming the peer and our
identity; handshake failures are logged by the listener with Envoy's reason.
"""

from __future__ import annotations

import json
import re
from typing import Any

from contract.spiffe import SNI_SUFFIX, PeerPattern
from sidecar.proxy import mesh_logs
from sidecar.proxy.mesh_settings import MeshSettings

_T = "type.googleapis.com/envoy."
SECRET = _T + "extensions.transport_sockets.tls.v3.Secret"
DOWNSTREAM_TLS = _T + "extensions.transport_sockets.tls.v3.DownstreamTlsContext"
UPSTREAM_TLS = _T + "extensions.transport_sockets.tls.v3.UpstreamTlsContext"
TLS_INSPECTOR = _T + "extensions.filters.listener.tls_inspector.v3.TlsInspector"
TCP_PROXY = _T + "extensions.filters.network.tcp_proxy.v3.TcpProxy"
HTTP_RBAC = _T + "extensions.filters.http.rbac.v3.RBAC"
NETWORK_RBAC = _T + "extensions.filters.network.rbac.v3.RBAC"
CERT_SECRET = "mesh-certificate"  # noqa: S105 (an SDS resource name)
TRUST_SECRET = "mesh-trust"  # noqa: S105
TLS13 = {"tls_minimum_protocol_version": "TLSv1_3", "tls_maximum_protocol_version": "TLSv1_3"}
PLAINTEXT_PREFIX = "inbound_plaintext"
REFUSED_PREFIX = "inbound_refused"
PASSTHROUGH_PREFIX = "inbound_passthrough"


def sds_certificate(chain_pem: bytes, key_pem: bytes) -> bytes:
    secret = {
        "@type": SECRET,
        "name": CERT_SECRET,
        "tls_certificate": {
            "certificate_chain": {"inline_string": chain_pem.decode()},
            "private_key": {"inline_string": key_pem.decode()},
        },
    }
    return (json.dumps({"resources": [secret]}) + "\n").encode()


def sds_trust(bundle_pem: bytes) -> bytes:
    secret = {
        "@type": SECRET,
        "name": TRUST_SECRET,
        "validation_context": {"trusted_ca": {"inline_string": bundle_pem.decode()}},
    }
    return (json.dumps({"resources": [secret]}) + "\n").encode()


def _sds(name: str, path: str) -> dict[str, Any]:
    return {
        "name": name,
        "sds_config": {"path_config_source": {"path": path}, "resource_api_version": "V3"},
    }


def _common(mesh: MeshSettings, san: dict[str, Any]) -> dict[str, Any]:
    return {
        "tls_params": TLS13,
        "tls_certificate_sds_secret_configs": [_sds(CERT_SECRET, str(mesh.cert_file))],
        "combined_validation_context": {
            "default_validation_context": {
                "match_typed_subject_alt_names": [{"san_type": "URI", "matcher": san}]
            },
            "validation_context_sds_secret_config": _sds(TRUST_SECRET, str(mesh.trust_file)),
        },
    }


def principal_matcher(pattern: PeerPattern, trust_domain: str) -> dict[str, Any]:
    """An Envoy StringMatcher on the caller's URI SAN for one ``allow-from`` entry."""
    base = f"spiffe://{trust_domain}/ns/"
    ns, sa = pattern.namespace, pattern.service_account
    if "*" not in ns:
        if "*" not in sa:
            return {"exact": f"{base}{ns}/sa/{sa}"}
        return {"prefix": f"{base}{ns}/sa/{sa[:-1]}"}
    if ns == "*" and sa == "*":
        return {"prefix": base}
    ns_re = "[^/]+" if ns == "*" else re.escape(ns[:-1]) + "[^/]*"
    sa_re = "[^/]+" if sa == "*" else (re.escape(sa[:-1]) + "[^/]*" if "*" in sa else re.escape(sa))
    return {"safe_regex": {"regex": f"^{re.escape(base)}{ns_re}/sa/{sa_re}$"}}


def _rbac_rules(mesh: MeshSettings) -> dict[str, Any]:
    assert mesh.allow_from is not None
    principals = [
        {"authenticated": {"principal_name": principal_matcher(p, mesh.identity.trust_domain)}}
        for p in mesh.allow_from
    ]
    return {
        "action": "ALLOW",
        "policies": {"allow-from": {"permissions": [{"any": True}], "principals": principals}},
    }


def _http_rbac(mesh: MeshSettings) -> dict[str, Any]:
    config: dict[str, Any] = {"@type": HTTP_RBAC}
    if mesh.allow_from_mode == "dry-run":
        config["shadow_rules"] = _rbac_rules(mesh)
    else:
        config["rules"] = _rbac_rules(mesh)
    return {"name": "envoy.filters.http.rbac", "typed_config": config}


def _customise(
    hcm: dict[str, Any], mesh: MeshSettings, prefix: str, tls: str, enforce: bool
) -> dict[str, Any]:
    config = hcm["typed_config"]
    config["stat_prefix"] = prefix
    for log in config["access_log"]:
        log["typed_config"]["log_format"]["json_format"].update(
            {"tls": tls, "peer": "%DOWNSTREAM_PEER_URI_SAN%"}
        )
    if tls == "mtls":
        config["forward_client_cert_details"] = "SANITIZE_SET"
        config["set_current_client_cert_details"] = {"uri": True}
    if enforce and mesh.allow_from is not None:
        config["http_filters"].insert(0, _http_rbac(mesh))
        config["access_log"] += mesh_logs.rbac_logs(mesh)
        config["local_reply_config"] = mesh_logs.local_replies(mesh)
    return hcm


def _refusing_hcm(hcm: dict[str, Any], mesh: MeshSettings) -> dict[str, Any]:
    config = hcm["typed_config"]
    config["stat_prefix"] = REFUSED_PREFIX
    body = (
        f"sidecar mesh: {mesh.identity.uri} accepts mesh mTLS only (sidecar.example.io/mtls: "
        "strict); call it from an injected pod whose mtls is not off, or set this pod's mtls "
        "to permissive\n"
    )
    route = {
        "match": {"prefix": "/"},
        "direct_response": {"status": 403, "body": {"inline_string": body}},
    }
    config["route_config"]["virtual_hosts"][0]["routes"] = [route]
    fields = {
        "client": "%DOWNSTREAM_REMOTE_ADDRESS%",
        "identity": mesh.identity.uri,
        "path": "%REQ(:PATH)%",
        "fix": "the caller must be an injected pod with mtls enabled, or set this pod's "
        "sidecar.example.io/mtls to permissive",
    }
    config["access_log"] = [
        mesh_logs.warning_log(
            "mesh: plaintext request refused (mtls: strict)",
            fields,
            {"not_health_check_filter": {}},
        )
    ]
    return hcm


def _passthrough(mesh: MeshSettings, cluster: str) -> dict[str, Any]:
    filters: list[dict[str, Any]] = []
    if mesh.allow_from is not None and mesh.allow_from_mode == "enforce":
        filters.append(
            {
                "name": "envoy.filters.network.rbac",
                "typed_config": {
                    "@type": NETWORK_RBAC,
                    "stat_prefix": PASSTHROUGH_PREFIX,
                    "rules": _rbac_rules(mesh),
                },
            }
        )
    filters.append(
        {
            "name": "envoy.filters.network.tcp_proxy",
            "typed_config": {
                "@type": TCP_PROXY,
                "stat_prefix": PASSTHROUGH_PREFIX,
                "cluster": cluster,
            },
        }
    )
    return {
        "name": "passthrough",
        "filter_chain_match": {"transport_protocol": "tls"},
        "filters": filters,
    }


def secure_inbound(listener: dict[str, Any], mesh: MeshSettings) -> None:
    """Replace the inbound listener's single chain with the mesh chains."""
    template = listener["filter_chains"][0]["filters"][0]
    cluster = template["typed_config"]["route_config"]["virtual_hosts"][0]["routes"][0]["route"]
    chains: list[dict[str, Any]] = [
        {
            "name": "mesh",
            "filter_chain_match": {
                "transport_protocol": "tls",
                "server_names": [f"*.{SNI_SUFFIX}"],
            },
            "transport_socket": {
                "name": "envoy.transport_sockets.tls",
                "typed_config": {
                    "@type": DOWNSTREAM_TLS,
                    "require_client_certificate": True,
                    "common_tls_context": _common(mesh, {"prefix": mesh.trust_domain_prefix}),
                },
            },
            "filters": [_customise(_copy(template), mesh, "inbound", "mtls", True)],
        }
    ]
    if mesh.mode == "permissive":
        chains.append(_passthrough(mesh, cluster["cluster"]))
        chains.append(
            {
                "name": "plaintext",
                "filter_chain_match": {"transport_protocol": "raw_buffer"},
                "filters": [_customise(_copy(template), mesh, PLAINTEXT_PREFIX, "none", True)],
            }
        )
    else:
        chains.append(
            {
                "name": "plaintext-refused",
                "filter_chain_match": {"transport_protocol": "raw_buffer"},
                "filters": [_refusing_hcm(_copy(template), mesh)],
            }
        )
    listener["listener_filters"] = [
        {"name": "envoy.filters.listener.tls_inspector", "typed_config": {"@type": TLS_INSPECTOR}}
    ]
    listener["filter_chains"] = chains
    listener["access_log"] = [mesh_logs.handshake_log(mesh)]


def secure_outbound(cluster: dict[str, Any], listener: dict[str, Any], mesh: MeshSettings) -> None:
    """mTLS to the upstream pod: our certificate, its SNI, its exact identity."""
    peer = mesh.upstream_identity
    assert peer is not None
    cluster["transport_socket"] = {
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": UPSTREAM_TLS,
            "sni": peer.sni,
            "common_tls_context": _common(mesh, {"exact": peer.uri}),
        },
    }
    config = listener["filter_chains"][0]["filters"][0]["typed_config"]
    fields = {
        "upstream": "%UPSTREAM_HOST%",
        "expected": peer.uri,
        "identity": mesh.identity.uri,
        "reason": "%UPSTREAM_TRANSPORT_FAILURE_REASON%",
        "fix": mesh_logs.outbound_fix(peer),
    }
    failed: dict[str, Any] = {"response_flag_filter": {"flags": ["UF"]}}
    config["access_log"].append(
        mesh_logs.warning_log("mesh: upstream connection failed", fields, failed)
    )
    body = (
        f"sidecar mesh: cannot reach {peer.uri} at %UPSTREAM_HOST% over mTLS "
        f"(%UPSTREAM_TRANSPORT_FAILURE_REASON%); {mesh_logs.outbound_fix(peer)}\n"
    )
    config["local_reply_config"] = {"mappers": [mesh_logs.reply(failed, body)]}


def _copy(value: Any) -> Any:
    return json.loads(json.dumps(value))


def secure(config: dict[str, Any], mesh: MeshSettings) -> dict[str, Any]:
    """Apply mesh mTLS to a rendered bootstrap (in place; also returned)."""
    resources = config["static_resources"]
    listeners = {item["name"]: item for item in resources["listeners"]}
    clusters = {item["name"]: item for item in resources["clusters"]}
    if "inbound" in listeners:
        secure_inbound(listeners["inbound"], mesh)
    if mesh.upstream_identity is not None and "outbound" in clusters:
        secure_outbound(clusters["outbound"], listeners["outbound"], mesh)
    return config
