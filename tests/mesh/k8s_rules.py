"""Kubernetes' own rules for an issued PodCertificateRequest, as a test oracle.

A line-by-line port of ``ValidatePodCertificateRequestStatusUpdate`` (the
transition to ``Issued``) from ``k8s.io/kubernetes@v1.36.4``
``pkg/apis/certificates/validation/validation.go`` lines 862-1016: what the
API server checks before it stores the status our signer writes. Returns the
list of violations, each with the Go code's own wording; empty means accepted.
"""

from __future__ import annotations

import datetime as dt
import re
from email.utils import parseaddr

from cryptography import x509

MAX_CERTIFICATE_CHAIN_SIZE = 100 * 1024  # pkg/apis/certificates/types.go:527
_PEM = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n(.*?)-----END \1-----", re.S)


def _blocks(chain: bytes) -> list[tuple[str, bytes]]:
    return [(m.group(1).decode(), m.group(0)) for m in _PEM.finditer(chain)]


def _near(a: dt.datetime, b: dt.datetime, skew: dt.timedelta) -> bool:
    """Go's timeNear: strictly inside (b - skew, b + skew)."""
    return b - skew < a < b + skew


def issued_status_problems(
    chain: bytes,
    not_before: dt.datetime | None,
    not_after: dt.datetime | None,
    begin_refresh_at: dt.datetime | None,
    requested_key: object,
    max_expiration_seconds: int,
    apiserver_now: dt.datetime,
) -> list[str]:
    if len(chain) > MAX_CERTIFICATE_CHAIN_SIZE:
        return ["status.certificateChain: Too long"]
    blocks = _blocks(chain)
    if not blocks:
        return ["issued certificate chain must contain at least one certificate"]
    kind, leaf_pem = blocks[0]
    if kind != "CERTIFICATE":
        return ["issued certificate chain must consist entirely of CERTIFICATE PEM blocks"]
    try:
        leaf = x509.load_pem_x509_certificate(leaf_pem)
    except ValueError:
        return ["leaf certificate does not parse as valid X.509"]
    problems: list[str] = []
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns_names = san.get_values_for_type(x509.DNSName)
        emails = san.get_values_for_type(x509.RFC822Name)
    except x509.ExtensionNotFound:
        dns_names, emails = [], []
    for name in dns_names:
        if name == "":
            problems.append("leaf certificate should not contain empty DNSName")
        if ".." in name:
            problems.append("leaf certificate's DNSName should not contain '..'")
        if name.startswith(".") or name.endswith("."):
            problems.append("leaf certificate's DNSName should not start or end with '.'")
    for email in emails:
        if "@" not in parseaddr(email)[1]:
            problems.append("leaf certificate should not contain invalid EmailAddress")
    if leaf.public_key() != requested_key:
        return [*problems, "leaf certificate was not issued to the requested public key"]
    missing = [
        f"status.{name}: Required value"
        for name, value in (
            ("notBefore", not_before),
            ("notAfter", not_after),
            ("beginRefreshAt", begin_refresh_at),
        )
        if value is None
    ]
    if missing:
        return problems + missing
    assert not_before is not None
    assert not_after is not None
    assert begin_refresh_at is not None
    if not_before != leaf.not_valid_before_utc:
        return [*problems, "must be set to the NotBefore time encoded in the leaf certificate"]
    if not _near(not_before, apiserver_now, dt.timedelta(minutes=5)):
        return [*problems, "must be set to within 5 minutes of kube-apiserver's current time"]
    if not_after != leaf.not_valid_after_utc:
        return [*problems, "must be set to the NotAfter time encoded in the leaf certificate"]
    lifetime = leaf.not_valid_after_utc - leaf.not_valid_before_utc
    if lifetime < dt.timedelta(hours=1):
        return [*problems, "leaf certificate lifetime must be >= 1 hour"]
    if lifetime > dt.timedelta(seconds=max_expiration_seconds):
        return [
            *problems,
            f"leaf certificate lifetime must be <= spec.maxExpirationSeconds "
            f"({max_expiration_seconds})",
        ]
    if begin_refresh_at < not_before + dt.timedelta(minutes=10):
        return [*problems, "must be at least 10 minutes after status.notBefore"]
    if begin_refresh_at > not_after - dt.timedelta(minutes=10):
        return [*problems, "must be at least 10 minutes before status.notAfter"]
    for kind, pem in blocks[1:]:
        if kind != "CERTIFICATE":
            return [
                *problems,
                "issued certificate chain must consist entirely of CERTFICATE PEM blocks",
            ]
        try:
            x509.load_pem_x509_certificate(pem)
        except ValueError:
            return [*problems, "intermediate certificate does not parse as valid X.509"]
    return problems
