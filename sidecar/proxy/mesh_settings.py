"""``sidecar proxy`` mesh settings: mutual TLS mode, identity, signer, policy.

The rows are ``contract.mesh``'s (read with the other proxy rows by
``settings.load``); ``mesh_from_values`` checks them together and returns
``None`` when ``--mtls`` is ``off``. Every bad value names the flag and its
variable (``UsageError``), before anything is written or started.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from contract import mesh as rows
from contract.knobs import Knob, Values
from contract.spiffe import PeerPattern, SpiffeId
from sidecar.errors import UsageError


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

    def row(self, name: str) -> object:
        """A ``contract.mesh`` row's value, by the row's field name."""
        peer = self.upstream_identity
        renamed = {
            "mtls": self.mode,
            "trust_domain": self.identity.trust_domain,
            "namespace": self.identity.namespace,
            "service_account": self.identity.service_account,
            "identity_token": self.token_file,
            "upstream_identity": (peer.namespace, peer.service_account) if peer else None,
        }
        return renamed[name] if name in renamed else getattr(self, name)


# Rows the agent reads into MeshSettings (ProxySettings answers them by name).
FIELDS = frozenset(k.field for k in rows.ROWS if k.env)


def _need(values: Values, knob: Knob[str], what: str) -> str:
    value = values.get(knob)
    if value is None or not str(value).strip():
        raise UsageError(
            f"{knob.flag} / {knob.env} is required with --mtls strict or permissive: {what}"
        )
    return str(value).strip()


def mesh_from_values(values: Values, work_dir: Path, upstream_tls: bool) -> MeshSettings | None:
    """The proxy's mesh rows (``contract.mesh``), checked together; None when off."""
    mode = values.get(rows.MTLS) or "off"
    allow, upstream = values.get(rows.ALLOW_FROM), values.get(rows.UPSTREAM_IDENTITY)
    if mode == "off":
        for knob, value in ((rows.ALLOW_FROM, allow), (rows.UPSTREAM_IDENTITY, upstream)):
            if value:
                raise UsageError(
                    f"{knob.flag} / {knob.env} needs mesh mTLS: set --mtls / SIDECAR_MTLS"
                )
        return None
    domain = values.require(rows.TRUST_DOMAIN)
    pod = _need(values, rows.POD_NAME, "the pod's name (downward API metadata.name)")
    namespace = _need(values, rows.POD_NAMESPACE, "the pod's namespace (downward API)")
    account = _need(values, rows.SERVICE_ACCOUNT, "the pod's service account")
    try:
        identity = SpiffeId.of(domain, namespace, account)
    except ValueError as exc:
        raise UsageError(f"--namespace / --service-account: {exc}") from None
    credentials = values.get(rows.POD_CREDENTIALS)
    signer = values.get(rows.SIGNER)
    if credentials is None and signer is None:
        _need(values, rows.SIGNER, "the operator's certificate endpoint (or --pod-credentials)")
    if upstream is not None and upstream_tls:
        raise UsageError(
            "--upstream-identity / SIDECAR_UPSTREAM_IDENTITY with an https:// --upstream: "
            "the mesh encrypts the connection itself; give the upstream as http://"
        )
    return MeshSettings(
        mode=mode,
        identity=identity,
        pod_name=pod,
        signer=None if credentials is not None else signer,
        signer_ca=values.require(rows.SIGNER_CA),
        token_file=values.require(rows.IDENTITY_TOKEN),
        trust_bundle=values.require(rows.TRUST_BUNDLE),
        pod_credentials=credentials,
        allow_from=allow,
        allow_from_mode=values.require(rows.ALLOW_FROM_MODE),
        upstream_identity=SpiffeId(domain, *upstream) if upstream is not None else None,
        directory=work_dir / "mesh",
    )
