"""When the webhook's certificates are renewed, and the Secret that holds them.

The operator keeps one CA and one serving certificate in a Secret shared by
every replica (``to_secret_data`` / ``from_secret_data``) and calls
``ensure`` each round: a certificate is renewed once less than
``renew_fraction`` (1/3) of its own lifetime remains, so a 90-day serving
certificate is renewed with 30 days left and a 1-year CA with about four
months left. A new CA is added to the bundle next to the old one, which stays
trusted until it expires, so a replica still serving a certificate of the old
CA keeps working. Pure (``cryptography``); no I/O.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from injector.admission.certs import (
    CA_VALIDITY,
    SERVING_VALIDITY,
    CertificateError,
    KeyPair,
    generate_ca,
    generate_serving_cert,
    key_matches,
    load_certificates,
    san_names,
    signed_by,
)

RENEW_FRACTION = 1 / 3
# Keys of the Secret (type kubernetes.io/tls: tls.crt and tls.key are required, others allowed).
TLS_CRT = "tls.crt"
TLS_KEY = "tls.key"
CA_CRT = "ca.crt"
CA_KEY = "ca.key"
CA_BUNDLE = "ca-bundle.crt"
SECRET_KEYS = (TLS_CRT, TLS_KEY, CA_CRT, CA_KEY, CA_BUNDLE)


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


def renewal_due(pair: KeyPair, now: dt.datetime, fraction: float = RENEW_FRACTION) -> bool:
    """True once less than ``fraction`` of the certificate's own lifetime remains."""
    lifetime = pair.not_after - pair.not_before
    return pair.not_after - now < lifetime * fraction


def renew_at(pair: KeyPair, fraction: float = RENEW_FRACTION) -> dt.datetime:
    """When ``renewal_due`` becomes true."""
    return pair.not_after - (pair.not_after - pair.not_before) * fraction


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
    at = now if now is not None else dt.datetime.now(dt.UTC)
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
    elif not key_matches(ca):
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
    if not key_matches(serving):
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
        if not key_matches(pair):
            raise CertificateError(f"{what}: {name} does not match its certificate")
    return WebhookCerts(ca, serving, raw[CA_BUNDLE])
