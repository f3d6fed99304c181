"""The signer core: mesh roots, CSR checks and leaf certificates. Pure, no I/O.

Every front door (the agents' CSR endpoint, PodCertificateRequests) calls
``issue`` with a key it has checked (``check_csr`` or ``check_public_key``) and
an identity it has verified; this module never decides *who* is asking.

Leaf certificates (SPIFFE X.509-SVIDs):

* one URI SAN, the identity, in a critical extension (the subject is empty);
  ``digitalSignature``, serverAuth + clientAuth, not a CA;
* ECDSA P-256 keys only (``UnsupportedKeyType`` otherwise: P-384 needs TLS
  settings not every client has, Ed25519 has no common signature algorithm);
* ``notBefore`` is ``now`` minus the backdate (at most 3 minutes, a tenth of a
  short lifetime) so a peer whose clock runs a little behind accepts it, and
  stays within the 5 minutes Kubernetes allows around its own clock even when
  the operator's clock is up to 2 minutes behind the API server's;
* the lifetime *includes* the backdate (Kubernetes compares ``notAfter -
  notBefore`` with ``maxExpirationSeconds``) and never outlives the root;
* ``refresh_at``: half the lifetime, jittered by ±5% of it so a fleet started
  together does not renew together, and at least 10 minutes inside either end
  when the lifetime allows it (Kubernetes' ``beginRefreshAt`` rule).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import random
import secrets
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from contract.spiffe import SpiffeId
from injector.errors import InjectorError

LEAF_LIFETIME = dt.timedelta(hours=24)
ROOT_LIFETIME = dt.timedelta(days=365)
MAX_BACKDATE = dt.timedelta(minutes=3)
REFRESH_FRACTION = 0.5
REFRESH_JITTER = 0.05
REFRESH_MARGIN = dt.timedelta(minutes=10)  # Kubernetes: beginRefreshAt in [nb+10m, na-10m]
MIN_LEAF_LIFETIME = dt.timedelta(minutes=1)
MAX_CSR_BYTES = 8192
ROOT_ORGANIZATION = "sidecar-injector mesh"


class MeshError(InjectorError):
    """Mesh state or configuration is unusable; the message names it and the fix."""


class RequestDenied(MeshError):
    """A certificate request is refused. ``reason`` is a CamelCase word for
    metrics and the agent; ``status`` the HTTP status the CSR endpoint answers."""

    def __init__(self, reason: str, message: str, status: int = 403) -> None:
        self.reason = reason
        self.status = status
        super().__init__(message)


@dataclass(frozen=True)
class IssuancePolicy:
    lifetime: dt.timedelta = LEAF_LIFETIME
    max_backdate: dt.timedelta = MAX_BACKDATE
    refresh_fraction: float = REFRESH_FRACTION
    refresh_jitter: float = REFRESH_JITTER

    def __post_init__(self) -> None:
        if self.lifetime < MIN_LEAF_LIFETIME:
            raise MeshError(
                f"certificate lifetime {self.lifetime}: expected at least {MIN_LEAF_LIFETIME}"
            )
        if not 0.1 <= self.refresh_fraction <= 0.9 or not 0 <= self.refresh_jitter <= 0.2:
            raise MeshError(
                f"refresh at {self.refresh_fraction} ± {self.refresh_jitter} of the lifetime: "
                "expected a fraction from 0.1 to 0.9 and a jitter from 0 to 0.2"
            )

    @property
    def backdate(self) -> dt.timedelta:
        return min(self.max_backdate, self.lifetime / 10)


@dataclass(frozen=True)
class Authority:
    """A mesh root (certificate and key) that signs leaf certificates."""

    cert_pem: bytes
    key_pem: bytes
    certificate: x509.Certificate = field(init=False, repr=False, compare=False)
    key: ec.EllipticCurvePrivateKey = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        try:
            cert = x509.load_pem_x509_certificate(self.cert_pem)
            key = serialization.load_pem_private_key(self.key_pem, password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            raise MeshError(f"mesh root: unreadable certificate or key ({exc})") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey) or key.public_key() != (
            cert.public_key()
        ):
            raise MeshError("mesh root: the key does not match the certificate")
        object.__setattr__(self, "certificate", cert)
        object.__setattr__(self, "key", key)

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.certificate)

    @property
    def not_after(self) -> dt.datetime:
        return self.certificate.not_valid_after_utc

    @property
    def not_before(self) -> dt.datetime:
        return self.certificate.not_valid_before_utc


@dataclass(frozen=True)
class Issued:
    """A signed leaf: the chain to send (leaf PEM) and its timestamps."""

    chain_pem: bytes
    identity: SpiffeId
    serial: int
    not_before: dt.datetime
    not_after: dt.datetime
    refresh_at: dt.datetime
    root_fingerprint: str

    @property
    def serial_hex(self) -> str:
        return f"{self.serial:x}"


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 of the DER certificate, hex: how agents report the roots they trust."""
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def _utc_seconds(moment: dt.datetime) -> dt.datetime:
    """X.509 keeps whole seconds: round down so what we report equals the certificate."""
    return moment.astimezone(dt.UTC).replace(microsecond=0)


def new_root(
    trust_domain: str, lifetime: dt.timedelta = ROOT_LIFETIME, now: dt.datetime | None = None
) -> Authority:
    """A self-signed root for ``trust_domain`` that signs leaves only (path length 0)."""
    at = _utc_seconds(now or dt.datetime.now(dt.UTC))
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ROOT_ORGANIZATION),
            # Unique per root: leaves name their issuer, and two roots made within one
            # second must not share a subject (path building would try the wrong one).
            x509.NameAttribute(
                NameOID.COMMON_NAME, f"{trust_domain} root {at:%Y%m%d} {secrets.token_hex(6)}"[:64]
            ),
        ]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(at - min(MAX_BACKDATE, lifetime / 10))
        .not_valid_after(at + lifetime)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(ca=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Authority(
        cert.public_bytes(serialization.Encoding.PEM),
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def parse_csr(data: bytes) -> x509.CertificateSigningRequest:
    """A PEM (or DER) PKCS#10 request whose self-signature verifies."""
    if len(data) > MAX_CSR_BYTES:
        raise RequestDenied(
            "BadRequest", f"the CSR is {len(data)} bytes; at most {MAX_CSR_BYTES} accepted", 400
        )
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            csr = x509.load_pem_x509_csr(data)
        else:
            csr = x509.load_der_x509_csr(data)
        valid = csr.is_signature_valid
    except (ValueError, TypeError, UnsupportedAlgorithm, InvalidSignature) as exc:
        raise RequestDenied(
            "BadRequest", f"the CSR is not a PKCS#10 request ({str(exc)[:200]})", 400
        ) from None
    if not valid:
        raise RequestDenied(
            "BadRequest", "the CSR's signature does not verify with its own public key", 400
        )
    return csr


def check_public_key(key: object) -> ec.EllipticCurvePublicKey:
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        kind = getattr(getattr(key, "curve", None), "name", None) or type(key).__name__
        raise RequestDenied(
            "UnsupportedKeyType",
            f"the key is {kind}; the mesh signs ECDSA P-256 (secp256r1) keys only",
            400,
        )
    return key


def check_csr(csr: x509.CertificateSigningRequest, identity: SpiffeId) -> ec.EllipticCurvePublicKey:
    """The CSR's P-256 key, once its requested URIs (if any) are exactly ``identity``."""
    try:
        public = csr.public_key()
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise RequestDenied("BadRequest", f"the CSR's key is unreadable ({exc})", 400) from None
    key = check_public_key(public)
    try:
        sans = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return key
    except ValueError as exc:
        raise RequestDenied(
            "BadRequest", f"the CSR's extensions are unreadable ({exc})", 400
        ) from None
    asked = set(sans.get_values_for_type(x509.UniformResourceIdentifier))
    others = [name for name in sans if not isinstance(name, x509.UniformResourceIdentifier)]
    if others or (asked and asked != {identity.uri}):
        raise RequestDenied(
            "IdentityMismatch",
            f"the CSR asks for {sorted(asked) or [str(n.value) for n in others]}; "
            f"this caller may only have {identity.uri}",
        )
    return key


def refresh_moment(
    not_before: dt.datetime, not_after: dt.datetime, policy: IssuancePolicy, rng: random.Random
) -> dt.datetime:
    """When the holder should start renewing (see the module docstring)."""
    lifetime = not_after - not_before
    jitter = rng.uniform(-policy.refresh_jitter, policy.refresh_jitter)
    moment = not_before + lifetime * (policy.refresh_fraction + jitter)
    if lifetime >= 4 * REFRESH_MARGIN:
        moment = min(max(moment, not_before + REFRESH_MARGIN), not_after - REFRESH_MARGIN)
    return _utc_seconds(moment)


def issue(
    authority: Authority,
    public_key: ec.EllipticCurvePublicKey,
    identity: SpiffeId,
    policy: IssuancePolicy | None = None,
    now: dt.datetime | None = None,
    rng: random.Random | None = None,
) -> Issued:
    """Sign ``public_key`` for ``identity`` with ``authority``."""
    policy = policy or IssuancePolicy()
    at = _utc_seconds(now or dt.datetime.now(dt.UTC))
    not_before = at - policy.backdate
    not_after = min(not_before + policy.lifetime, _utc_seconds(authority.not_after))
    if not_after - not_before < MIN_LEAF_LIFETIME or not_after <= at:
        raise MeshError(
            f"mesh root {authority.fingerprint[:16]} expires at "
            f"{authority.not_after:%Y-%m-%d %H:%M}: too soon to sign anything; the operator "
            "must rotate it (see its log)"
        )
    serial = x509.random_serial_number()
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([]))
        .issuer_name(authority.certificate.subject)
        .public_key(public_key)
        .serial_number(serial)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(ca=False), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(identity.uri)]),
            critical=True,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(authority.key.public_key()),
            critical=False,
        )
        .sign(authority.key, hashes.SHA256())
    )
    return Issued(
        chain_pem=cert.public_bytes(serialization.Encoding.PEM),
        identity=identity,
        serial=serial,
        not_before=not_before,
        not_after=not_after,
        refresh_at=refresh_moment(not_before, not_after, policy, rng or random.SystemRandom()),
        root_fingerprint=authority.fingerprint,
    )


def bundle_pem(roots: list[Authority] | tuple[Authority, ...]) -> bytes:
    """The PEM trust bundle of these roots, in order."""
    return b"".join(root.cert_pem for root in roots)
