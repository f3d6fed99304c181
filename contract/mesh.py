"""The mesh rows of the proxy role: mutual TLS mode, identity, policy, signer.

``mtls`` (pod or profile ``mesh.mode``) turns mesh mTLS on for the proxy;
``trustDomain`` names the identity ``spiffe://TD/ns/NS/sa/SA``;
``allow-from`` / ``allow-from-mode`` restrict who may call the pod;
``upstream-identity`` is who the pod's upstream must be. The signer and the
pod's own name, namespace and service account are written by the injector
(the latter through the downward API), never by users. docs/mesh.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from contract import common, layout, values
from contract.knobs import Knob, Value
from contract.spiffe import (
    ALLOW_FROM_HELP,
    DEFAULT_TRUST_DOMAIN,
    MTLS_HELP,
    PEER_HELP,
    TRUST_DOMAIN_HELP,
    PeerPattern,
    parse_allow_from,
    parse_peer,
    parse_trust_domain,
)

MtlsMode = Literal["strict", "permissive", "off"]
Issuance = Literal["csr", "podCertificate"]


def _signer(text: str) -> str:
    parts = urlsplit(text.strip())
    if parts.scheme != "https" or not parts.hostname or parts.path not in ("", "/"):
        raise ValueError(
            f"{text!r} is not an https:// URL with a host and an optional port, e.g. "
            f"https://sidecar-injector.sidecar-injector.svc:{layout.MESH_PORT}"
        )
    return text.strip().rstrip("/")


def _issuance(text: str) -> Issuance:
    for candidate in ("csr", "podCertificate"):
        if text.strip().lower() == candidate.lower():
            return candidate
    raise ValueError(f"{text!r} is not csr or podCertificate")


MTLS_MODE: Value[MtlsMode] = values.choice("strict", "permissive", "off")
PATTERNS = Value(ALLOW_FROM_HELP, parse_allow_from, lambda ps: ",".join(str(p) for p in ps))
PEER = Value(PEER_HELP, parse_peer, lambda peer: f"{peer[0]}/{peer[1]}")

MTLS: Knob[MtlsMode] = Knob(
    "mtls",
    MTLS_MODE,
    "mesh mutual TLS: strict takes mesh mTLS only, permissive also plaintext (counted) and "
    "the app's own TLS, off none",
    env="SIDECAR_MTLS",
    flag="--mtls",
    default="off",
    annotation="mtls",
    profile="mesh.mode",
    accepted=MTLS_HELP,
    pod_default="the profile's mesh.mode, else permissive (off where the operator runs no mesh)",
    example="strict",
)
TRUST_DOMAIN: Knob[str] = Knob(
    "trust_domain",
    Value(TRUST_DOMAIN_HELP, parse_trust_domain),
    "SPIFFE trust domain of the pod's identity spiffe://TD/ns/NAMESPACE/sa/SERVICEACCOUNT",
    env="SIDECAR_TRUST_DOMAIN",
    flag="--trust-domain",
    default=DEFAULT_TRUST_DOMAIN,
    profile="mesh.trustDomain",
    example="example.org",
)
ALLOW_FROM: Knob[tuple[PeerPattern, ...]] = Knob(
    "allow_from",
    PATTERNS,
    "inbound: only these mesh identities may call the pod (Envoy RBAC by principal)",
    env="SIDECAR_ALLOW_FROM",
    flag="--allow-from",
    annotation="allow-from",
    pod_default="none: any caller the mtls mode admits",
    example="shop/web,ops/*",
)
ALLOW_FROM_MODE: Knob[str] = Knob(
    "allow_from_mode",
    values.choice("enforce", "dry-run"),
    "enforce allow-from, or dry-run: refuse nothing, log and count what would be refused",
    env="SIDECAR_ALLOW_FROM_MODE",
    flag="--allow-from-mode",
    default="enforce",
    annotation="allow-from-mode",
    profile="mesh.allowFromMode",
    example="dry-run",
)
UPSTREAM_IDENTITY: Knob[tuple[str, str]] = Knob(
    "upstream_identity",
    PEER,
    "outbound: the upstream is a meshed pod with this identity (mTLS, SNI, exact SAN); "
    "proxy-upstream must be http://",
    env="SIDECAR_UPSTREAM_IDENTITY",
    flag="--upstream-identity",
    annotation="upstream-identity",
    pod_default="none: plain or the upstream URL's own TLS",
    example="shop/api",
)
ISSUANCE: Knob[Issuance] = Knob(
    "issuance",
    Value("csr or podCertificate", _issuance),
    "how pods get certificates: csr (the operator's endpoint, any cluster) or podCertificate "
    "(Kubernetes Pod Certificates, where the API server serves them)",
    profile="mesh.issuance",
    doc_default="csr",
    example="podCertificate",
)
SIGNER: Knob[str] = Knob(
    "signer",
    Value("an https:// URL", _signer),
    "the operator's certificate endpoint (written by the injector)",
    env="SIDECAR_SIGNER",
    flag="--signer",
    doc_default=f"https://sidecar-injector.<injector namespace>.svc:{layout.MESH_PORT}",
)
SIGNER_CA: Knob[Path] = Knob(
    "signer_ca",
    values.FILE,
    "CA of the certificate endpoint's TLS (from ConfigMap sidecar-mesh-trust)",
    env="SIDECAR_SIGNER_CA",
    flag="--signer-ca",
    default=f"{layout.MESH_TRUST_DIR}/signer-ca.pem",
)
TRUST_BUNDLE: Knob[Path] = Knob(
    "trust_bundle",
    values.FILE,
    "the mesh roots (from ConfigMap sidecar-mesh-trust; a generation file next to it)",
    env="SIDECAR_TRUST_BUNDLE",
    flag="--trust-bundle",
    default=f"{layout.MESH_TRUST_DIR}/roots.pem",
)
IDENTITY_TOKEN: Knob[Path] = Knob(
    "identity_token",
    values.FILE,
    f"projected service-account token for the endpoint (audience {layout.MESH_AUDIENCE})",
    env="SIDECAR_IDENTITY_TOKEN",
    flag="--identity-token",
    default=f"{layout.IDENTITY_TOKEN_DIR}/token",
)
POD_CREDENTIALS: Knob[Path] = Knob(
    "pod_credentials",
    values.FILE,
    "issuance podCertificate: the kubelet's key + chain file (no endpoint is called)",
    env="SIDECAR_POD_CREDENTIALS",
    flag="--pod-credentials",
)
POD_NAME = common.POD_NAME  # shared with the logs role (contract.common)
POD_NAMESPACE = common.POD_NAMESPACE  # shared with config and logs (contract.common)
SERVICE_ACCOUNT: Knob[str] = Knob(
    "service_account",
    values.TEXT,
    "the pod's service account (downward API spec.serviceAccountName)",
    env="SIDECAR_SERVICE_ACCOUNT",
    flag="--service-account",
)

ROWS = (
    MTLS,
    TRUST_DOMAIN,
    ALLOW_FROM,
    ALLOW_FROM_MODE,
    UPSTREAM_IDENTITY,
    ISSUANCE,
    SIGNER,
    SIGNER_CA,
    TRUST_BUNDLE,
    IDENTITY_TOKEN,
    POD_CREDENTIALS,
    POD_NAME,
    POD_NAMESPACE,
    SERVICE_ACCOUNT,
)
# The downward-API rows: the injector writes them as fieldRefs, not values.
DOWNWARD = {
    POD_NAME: "metadata.name",
    POD_NAMESPACE: "metadata.namespace",
    SERVICE_ACCOUNT: "spec.serviceAccountName",
}
