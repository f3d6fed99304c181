"""Webhook TLS: a CA and a serving certificate signed by it, made and checked.

Pure functions over PEM bytes (``cryptography``); no I/O. ``serve`` makes a
self-signed pair without the operator; the operator decides when they are
renewed and keeps them in a Secret (``injector.operator.rotation``).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from injector.errors import InjectorError

CA_VALIDITY = dt.timedelta(days=365)
SERVING_VALIDITY = dt.timedelta(days=90)
# Certificates start a little in the past so a peer with a slightly slow clock accepts them
# (5 minutes, or a tenth of a short lifetime); they end ``validity`` after ``now``.
BACKDATE = dt.timedelta(minutes=5)


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


def key_matches(pair: KeyPair) -> bool:
    try:
        key = pair.private_key()
    except (ValueError, TypeError, CertificateError):
        return False
    public = pair.certificate.public_key()
    return isinstance(public, ec.EllipticCurvePublicKey) and public == key.public_key()
