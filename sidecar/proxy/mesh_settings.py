"""``sidecar proxy`` mesh flags: mutual TLS mode, identity, signer, policy.

Read once with the other proxy flags (``settings.load``); ``mesh_from_args``
returns ``None`` when ``--mtls`` is ``off``. Every bad value names the flag and
its variable (``UsageError``), before anything is written or started.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from contract.spiffe import (
    DEFAULT_TRUST_DOMAIN,
    PeerPattern,
    SpiffeId,
    parse_allow_from,
    parse_allow_from_mode,
    parse_mtls_mode,
    parse_peer,
    parse_trust_domain,
)
from sidecar.errors import UsageError
from sidecar.options import convert, flag

TRUST_DIR = "/var/run/sidecar/mesh-trust"
TOKEN_FILE = "/var/run/sidecar/identity/token"  # noqa: S105 (a path)


@dataclass(frozen=True)
class MeshSettings:
    mode: str  # strict or permissive
    identity: SpiffeId
    pod_name: str
    signer: str | None  # https URL of the CSR endpoint; None: the kubelet's pod certificate
    signer_ca: Path
    token_file: Path
    trust_bundle: Path  # the trust ConfigMap's roots (may be absent until it is published)
    pod_credentials: Path | None  # kubelet-written key + chain (Pod Certificates)
    allow_from: tuple[PeerPattern, ...] | None
    allow_from_mode: str
    upstream_identity: SpiffeId | None
    directory: Path

    @property
    def cert_file(self) -> Path:
        """SDS: the certificate chain and key (``tls_certificate``)."""
        return self.directory / "cert.json"

    @property
    def trust_file(self) -> Path:
        """SDS: the trusted roots (``validation_context``)."""
        return self.directory / "trust.json"

    @property
    def trust_domain_prefix(self) -> str:
        return f"spiffe://{self.identity.trust_domain}/"


def add_mesh_flags(parser: argparse.ArgumentParser, environ: Mapping[str, str]) -> None:
    def add(name: str, env: str, default: str | None, help_text: str) -> None:
        flag(parser, name, env, default=default, help_text=help_text, environ=environ)

    add("--mtls", "SIDECAR_MTLS", "off", "mesh mutual TLS: strict, permissive or off")
    add("--trust-domain", "SIDECAR_TRUST_DOMAIN", DEFAULT_TRUST_DOMAIN, "SPIFFE trust domain")
    add("--pod-name", "SIDECAR_POD_NAME", None, "this pod's name (downward API)")
    add("--pod-namespace", "SIDECAR_POD_NAMESPACE", None, "this pod's namespace (downward API)")
    add("--service-account", "SIDECAR_SERVICE_ACCOUNT", None, "this pod's service account")
    add("--signer", "SIDECAR_SIGNER", None, "https URL of the operator's certificate endpoint")
    add("--signer-ca", "SIDECAR_SIGNER_CA", f"{TRUST_DIR}/signer-ca.pem", "CA of the signer")
    add("--identity-token", "SIDECAR_IDENTITY_TOKEN", TOKEN_FILE, "projected token for the signer")
    add("--trust-bundle", "SIDECAR_TRUST_BUNDLE", f"{TRUST_DIR}/roots.pem", "mesh roots file")
    add("--pod-credentials", "SIDECAR_POD_CREDENTIALS", None, "kubelet pod certificate bundle")
    add("--allow-from", "SIDECAR_ALLOW_FROM", None, "NS/SA patterns allowed to call inbound")
    add("--allow-from-mode", "SIDECAR_ALLOW_FROM_MODE", "enforce", "enforce or dry-run")
    add("--upstream-identity", "SIDECAR_UPSTREAM_IDENTITY", None, "NS/SA of the upstream pod")


def _required(value: str | None, name: str, env: str, what: str) -> str:
    if value is None or not value.strip():
        raise UsageError(f"{name} / {env} is required with --mtls strict or permissive: {what}")
    return value.strip()


def _signer_url(text: str) -> str:
    parts = urlsplit(text)
    if parts.scheme != "https" or not parts.hostname or parts.path not in ("", "/"):
        raise ValueError(
            f"{text!r} is not an https:// URL with a host and an optional port, e.g. "
            "https://sidecar-injector.sidecar-injector.svc:15012"
        )
    return text.rstrip("/")


def mesh_from_args(
    args: argparse.Namespace, work_dir: Path, upstream_tls: bool
) -> MeshSettings | None:
    mode = convert(args.mtls, parse_mtls_mode, "--mtls", "SIDECAR_MTLS")
    if mode == "off":
        for name, value in (
            ("--allow-from / SIDECAR_ALLOW_FROM", args.allow_from),
            ("--upstream-identity / SIDECAR_UPSTREAM_IDENTITY", args.upstream_identity),
        ):
            if value:
                raise UsageError(f"{name} needs mesh mTLS: set --mtls / SIDECAR_MTLS")
        return None
    domain = convert(
        args.trust_domain, parse_trust_domain, "--trust-domain", "SIDECAR_TRUST_DOMAIN"
    )
    pod = _required(args.pod_name, "--pod-name", "SIDECAR_POD_NAME", "the downward API name")
    namespace = _required(
        args.pod_namespace, "--pod-namespace", "SIDECAR_POD_NAMESPACE", "the pod's namespace"
    )
    account = _required(
        args.service_account, "--service-account", "SIDECAR_SERVICE_ACCOUNT", "its account"
    )
    try:
        identity = SpiffeId.of(domain, namespace, account)
    except ValueError as exc:
        raise UsageError(f"--pod-namespace / --service-account: {exc}") from None
    credentials = Path(args.pod_credentials) if args.pod_credentials else None
    signer = None
    if credentials is None:
        signer = convert(
            _required(args.signer, "--signer", "SIDECAR_SIGNER", "the operator's URL"),
            _signer_url,
            "--signer",
            "SIDECAR_SIGNER",
        )
    allow = None
    if args.allow_from:
        allow = convert(args.allow_from, parse_allow_from, "--allow-from", "SIDECAR_ALLOW_FROM")
    upstream = None
    if args.upstream_identity:
        if upstream_tls:
            raise UsageError(
                "--upstream-identity / SIDECAR_UPSTREAM_IDENTITY with an https:// --upstream: "
                "the mesh encrypts the connection itself; give the upstream as http://"
            )
        ns, sa = convert(
            args.upstream_identity, parse_peer, "--upstream-identity", "SIDECAR_UPSTREAM_IDENTITY"
        )
        upstream = SpiffeId(domain, ns, sa)
    return MeshSettings(
        mode=mode,
        identity=identity,
        pod_name=pod,
        signer=signer,
        signer_ca=Path(args.signer_ca),
        token_file=Path(args.identity_token),
        trust_bundle=Path(args.trust_bundle),
        pod_credentials=credentials,
        allow_from=allow,
        allow_from_mode=convert(
            args.allow_from_mode,
            parse_allow_from_mode,
            "--allow-from-mode",
            "SIDECAR_ALLOW_FROM_MODE",
        ),
        upstream_identity=upstream,
        directory=work_dir / "mesh",
    )
