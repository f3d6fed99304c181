"""Webhook TLS: a CA, a serving certificate signed by it, and when to renew them.

Pure functions over PEM bytes (``cryptography``); no I/O. The operator keeps
the result in a Secret (``to_secret_data`` / ``from_secret_data``) so every
replica serves the same certificate, and patches ``ca_bundle`` into the
MutatingWebhookConfiguration.

Rotation: a certificate is renewed once less than ``renew_fraction`` (1/3) of
its own lifetime remains, so a 90-day serving certificate is renewed with 30
days left and a 1-year CA with about four months left. A new CA is added to
the bundle next to the old one, which stays trusted until it expires, so a
replica still serving a certificate of the old CA keeps working.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from injector.errors import InjectorError

CA_VALIDITY = dt.timedelta(days=365)
SERVING_VALIDITY = dt.timedelta(days=90)
RENEW_FRACTION = 1 / 3
# Certificates start a little in the past so a peer with a slightly slow clock accepts them
# (5 minutes, or a tenth of a short lifetime); they end ``validity`` after ``now``.
BACKDATE = dt.timedelta(minutes=5)

# Keys of the Secret (type kubernetes.io/tls: tls.crt and tls.key are required, others allowed).
TLS_CRT = "tls.crt"
TLS_KEY = "tls.key"
CA_CRT = "ca.crt"
CA_KEY = "ca.key"
CA_BUNDLE = "ca-bundle.crt"
SECRET_KEYS = (TLS_CRT, TLS_KEY, CA_CRT, CA_KEY, CA_BUNDLE)


class CertificateError(InjectorError):
    """Certificate material is missing, unreadable or inconsistent."""


@dataclass(frozen=True)
class KeyPair:
    """A certificate and its private key, both PEM."""

    cert_pem: bytes
    key_pem: bytes
    certificate: x509.Certificate = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "certificate", load_certificate(self.cert_pem, "certificate"))

    @property
    def not_before(self) -> dt.datetime:
        return self.certificate.not_valid_before_utc

    @property
    def not_after(self) -> dt.datetime:
        return self.certificate.not_valid_after_utc

    def private_key(self) -> ec.EllipticCurvePrivateKey:
        key = serialization.load_pem_private_key(self.key_pem, password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise CertificateError("private key: expected an EC key; regenerate the certificates")
        return key


@dataclass(frozen=True)
class RotationPolicy:
    """How long certificates live and when they are renewed."""

    ca_validity: dt.timedelta = CA_VALIDITY
    serving_validity: dt.timedelta = SERVING_VALIDITY
    renew_fraction: float = RENEW_FRACTION

    def __post_init__(self) -> None:
        if not 0 < self.renew_fraction < 1:
            raise CertificateError(
                f"renew fraction {self.renew_fraction}: expected a number between 0 and 1 "
                "(the share of a certificate's lifetime left when it is renewed), e.g. 0.33"
            )
        for name, value in (("CA", self.ca_validity), ("serving", self.serving_validity)):
            if value < dt.timedelta(minutes=1):
                raise CertificateError(
                    f"{name} certificate validity {value}: expected at least 1 minute"
                )


@dataclass(frozen=True)
class WebhookCerts:
    """What the webhook serves (``serving``, signed by ``ca``) and what clients trust."""

    ca: KeyPair
    serving: KeyPair
    ca_bundle: bytes  # PEM: the current CA, then older CAs that are still valid


@dataclass(frozen=True)
class Decision:
    """The certificates to use and why they differ from the current ones (empty: unchanged)."""

    certs: WebhookCerts
    reasons: tuple[str, ...]

    @property
    def changed(self) -> bool:
        return bool(self.reasons)


def service_dns_names(service: str, namespace: str, domain: str = "cluster.local") -> list[str]:
    """The names a client may use for a Service: svc, svc.ns, svc.ns.svc, svc.ns.svc.DOMAIN."""
    return [
        service,
        f"{service}.{namespace}",
        f"{service}.{namespace}.svc",
        f"{service}.{namespace}.svc.{domain}",
    ]


def _now(now: dt.datetime | None) -> dt.datetime:
    return now if now is not None else dt.datetime.now(dt.UTC)


def _backdated(now: dt.datetime, validity: dt.timedelta) -> dt.datetime:
    return now - min(BACKDATE, validity / 10)


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def generate_ca(
    common_name: str = "sidecar-injector-ca",
    validity: dt.timedelta = CA_VALIDITY,
    now: dt.datetime | None = None,
) -> KeyPair:
    """A self-signed CA that may sign serving certificates (path length 0)."""
    at = _now(now)
    start = _backdated(at, validity)
    key = _new_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(at + validity)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    return KeyPair(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def generate_serving_cert(
    ca: KeyPair,
    dns_names: Sequence[str],
    ips: Sequence[str] = (),
    validity: dt.timedelta = SERVING_VALIDITY,
    now: dt.datetime | None = None,
) -> KeyPair:
    """A server certificate for ``dns_names`` and ``ips`` signed by ``ca``.

    It never outlives the CA: its end is capped at the CA's.
    """
    if not dns_names and not ips:
        raise CertificateError("serving certificate: no DNS name or IP address to certify")
    at = _now(now)
    start = _backdated(at, validity)
    end = min(at + validity, ca.not_after)
    key = _new_key()
    try:
        addresses = [ipaddress.ip_address(ip) for ip in ips]
    except ValueError as exc:
        raise CertificateError(
            f"serving certificate: {exc}; expected IPv4 or IPv6 addresses"
        ) from None
    sans: list[x509.GeneralName] = [x509.DNSName(name) for name in dns_names]
    sans += [x509.IPAddress(address) for address in addresses]
    common_name = dns_names[0] if dns_names else str(addresses[0])
    ca_key = ca.private_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64])]))
        .issuer_name(ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return KeyPair(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def load_certificate(pem: bytes, what: str) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(pem)
    except ValueError as exc:
        raise CertificateError(f"{what}: not a PEM certificate ({exc})") from None


def load_certificates(pem: bytes, what: str) -> list[x509.Certificate]:
    try:
        certs = x509.load_pem_x509_certificates(pem)
    except ValueError as exc:
        raise CertificateError(f"{what}: not a PEM certificate bundle ({exc})") from None
    return certs


def signed_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    """Whether ``ca`` issued ``cert`` (names match and the signature verifies)."""
    if cert.issuer != ca.subject:
        return False
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def san_names(cert: x509.Certificate) -> tuple[set[str], set[str]]:
    """The DNS names and IP addresses a certificate is valid for."""
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set(), set()
    dns = set(ext.get_values_for_type(x509.DNSName))
    ips = {str(ip) for ip in ext.get_values_for_type(x509.IPAddress)}
    return dns, ips


def renewal_due(pair: KeyPair, now: dt.datetime, fraction: float = RENEW_FRACTION) -> bool:
    """True once less than ``fraction`` of the certificate's own lifetime remains."""
    lifetime = pair.not_after - pair.not_before
    return pair.not_after - now < lifetime * fraction


def renew_at(pair: KeyPair, fraction: float = RENEW_FRACTION) -> dt.datetime:
    """When ``renewal_due`` becomes true."""
    return pair.not_after - (pair.not_after - pair.not_before) * fraction


def _key_matches(pair: KeyPair) -> bool:
    try:
        key = pair.private_key()
    except (ValueError, TypeError, CertificateError):
        return False
    public = pair.certificate.public_key()
    return isinstance(public, ec.EllipticCurvePublicKey) and public == key.public_key()


def _bundle(
    current: x509.Certificate, older: Sequence[x509.Certificate], now: dt.datetime
) -> bytes:
    """PEM: ``current`` first, then distinct older CAs still valid at ``now``."""
    kept = [current]
    for cert in older:
        if cert.not_valid_after_utc > now and all(cert != other for other in kept):
            kept.append(cert)
    return b"".join(cert.public_bytes(serialization.Encoding.PEM) for cert in kept)


def ensure(
    current: WebhookCerts | None,
    dns_names: Sequence[str],
    ips: Sequence[str] = (),
    policy: RotationPolicy | None = None,
    now: dt.datetime | None = None,
) -> Decision:
    """The certificates to serve at ``now``: ``current`` if still good, else renewed ones.

    Renews the CA when it is due or unusable (keeping the old CA in the bundle
    while it is valid), and the serving certificate when it is due, lacks a
    name, does not match its key or was not signed by the current CA.
    """
    policy = policy or RotationPolicy()
    at = _now(now)
    reasons: list[str] = []
    if current is None:
        ca = generate_ca(validity=policy.ca_validity, now=at)
        serving = generate_serving_cert(ca, dns_names, ips, policy.serving_validity, at)
        bundle = _bundle(ca.certificate, [], at)
        return Decision(WebhookCerts(ca, serving, bundle), ("no certificates yet",))

    ca = current.ca
    older = load_certificates(current.ca_bundle, "CA bundle") if current.ca_bundle else []
    if ca.not_after <= at:
        reasons.append(f"the CA expired at {ca.not_after:%Y-%m-%d %H:%M}")
    elif renewal_due(ca, at, policy.renew_fraction):
        reasons.append(f"the CA expires at {ca.not_after:%Y-%m-%d %H:%M}, renewing early")
    elif not _key_matches(ca):
        reasons.append("the CA's key does not match its certificate")
    if reasons:
        older = [ca.certificate, *older]
        ca = generate_ca(validity=policy.ca_validity, now=at)

    serving = current.serving
    serving_reasons: list[str] = []
    dns, addresses = san_names(serving.certificate)
    missing = [n for n in dns_names if n not in dns] + [i for i in ips if i not in addresses]
    if reasons:
        serving_reasons.append("the CA was renewed")
    elif not signed_by(serving.certificate, ca.certificate):
        serving_reasons.append("the serving certificate was not signed by the current CA")
    if serving.not_after <= at:
        serving_reasons.append(f"the serving certificate expired at {serving.not_after:%Y-%m-%d}")
    elif renewal_due(serving, at, policy.renew_fraction):
        serving_reasons.append(
            f"the serving certificate expires at {serving.not_after:%Y-%m-%d %H:%M}, renewing early"
        )
    if missing:
        serving_reasons.append(f"the serving certificate lacks {', '.join(missing)}")
    if not _key_matches(serving):
        serving_reasons.append("the serving certificate's key does not match it")
    if serving_reasons:
        serving = generate_serving_cert(ca, dns_names, ips, policy.serving_validity, at)
        reasons += serving_reasons

    bundle = _bundle(ca.certificate, older, at)
    if bundle != current.ca_bundle and not reasons:
        reasons.append("the CA bundle changed (an old CA expired or was missing)")
    return Decision(WebhookCerts(ca, serving, bundle), tuple(reasons))


def next_check(certs: WebhookCerts, policy: RotationPolicy | None = None) -> dt.datetime:
    """The earliest moment ``ensure`` will want to change something."""
    policy = policy or RotationPolicy()
    moments = [
        renew_at(certs.ca, policy.renew_fraction),
        renew_at(certs.serving, policy.renew_fraction),
    ]
    moments += [c.not_valid_after_utc for c in load_certificates(certs.ca_bundle, "CA bundle")[1:]]
    return min(moments)


def to_secret_data(certs: WebhookCerts) -> dict[str, str]:
    """The ``data`` of a Secret (base64 values) holding ``certs``."""
    raw = {
        TLS_CRT: certs.serving.cert_pem,
        TLS_KEY: certs.serving.key_pem,
        CA_CRT: certs.ca.cert_pem,
        CA_KEY: certs.ca.key_pem,
        CA_BUNDLE: certs.ca_bundle,
    }
    return {key: base64.b64encode(value).decode("ascii") for key, value in raw.items()}


def from_secret_data(data: Mapping[str, str] | None, what: str = "secret") -> WebhookCerts:
    """Read back what ``to_secret_data`` wrote; ``CertificateError`` names what is wrong."""
    if not data:
        raise CertificateError(f"{what}: has no data; the operator regenerates it")
    missing = [key for key in SECRET_KEYS if key not in data]
    if missing:
        raise CertificateError(
            f"{what}: missing {', '.join(missing)}; expected keys {', '.join(SECRET_KEYS)}"
        )
    raw: dict[str, bytes] = {}
    for key in SECRET_KEYS:
        try:
            raw[key] = base64.b64decode(data[key], validate=True)
        except (binascii.Error, ValueError):
            raise CertificateError(f"{what}: {key} is not valid base64") from None
    ca = KeyPair(raw[CA_CRT], raw[CA_KEY])
    serving = KeyPair(raw[TLS_CRT], raw[TLS_KEY])
    load_certificates(raw[CA_BUNDLE], f"{what}: {CA_BUNDLE}")
    for pair, name in ((ca, CA_KEY), (serving, TLS_KEY)):
        if not _key_matches(pair):
            raise CertificateError(f"{what}: {name} does not match its certificate")
    return WebhookCerts(ca, serving, raw[CA_BUNDLE])
