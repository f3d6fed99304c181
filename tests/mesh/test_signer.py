"""The signer core against Kubernetes' own validity rules (``k8s_rules``), and
the checks it makes of every request."""

from __future__ import annotations

import datetime as dt
import random

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import PolicyBuilder, Store
from hypothesis import given, settings
from hypothesis import strategies as st

from contract.spiffe import SpiffeId
from injector.mesh import signer
from injector.mesh.signer import IssuancePolicy, MeshError, RequestDenied
from tests.mesh.k8s_rules import issued_status_problems

NOW = dt.datetime(2026, 11, 29, 12, 0, 0, tzinfo=dt.UTC)
ID = SpiffeId("cluster.local", "shop", "checkout")


@pytest.fixture(scope="module")
def root() -> signer.Authority:
    return signer.new_root("cluster.local", now=NOW - dt.timedelta(days=30))


def _csr(key: object, uris: list[str] | None = None) -> bytes:
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
    if uris is not None:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(u) for u in uris]),
            critical=False,
        )
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(key, algorithm).public_bytes(serialization.Encoding.PEM)  # type: ignore[arg-type]


def _issue(root: signer.Authority, policy: IssuancePolicy, now: dt.datetime = NOW) -> signer.Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    return signer.issue(root, key.public_key(), ID, policy, now, random.Random(7))


@pytest.mark.parametrize("hours", [1, 2, 12, 24])
@pytest.mark.parametrize("skew_s", [-300, 0, 110])
def test_issued_leaf_meets_kubernetes_rules(
    root: signer.Authority, hours: int, skew_s: int
) -> None:
    """Lifetime = maxExpirationSeconds; the API server's clock up to 110 s ahead of the
    operator's or 5 minutes behind it."""
    policy = IssuancePolicy(lifetime=dt.timedelta(hours=hours))
    key = ec.generate_private_key(ec.SECP256R1())
    issued = signer.issue(root, key.public_key(), ID, policy, NOW)
    problems = issued_status_problems(
        issued.chain_pem,
        issued.not_before,
        issued.not_after,
        issued.refresh_at,
        key.public_key(),
        max_expiration_seconds=hours * 3600,
        apiserver_now=NOW + dt.timedelta(seconds=skew_s),
    )
    assert problems == []


def test_oracle_catches_a_lifetime_that_ignores_the_backdate(root: signer.Authority) -> None:
    """The planted fault: notAfter = now + 24 h with a backdated notBefore is 24 h 3 m."""
    key = ec.generate_private_key(ec.SECP256R1())
    issued = signer.issue(root, key.public_key(), ID, IssuancePolicy(), NOW)
    cert = x509.load_pem_x509_certificate(issued.chain_pem)
    too_long = (
        x509.CertificateBuilder()
        .subject_name(cert.subject)
        .issuer_name(cert.issuer)
        .public_key(key.public_key())
        .serial_number(cert.serial_number)
        .not_valid_before(issued.not_before)
        .not_valid_after(NOW + dt.timedelta(hours=24))
        .sign(root.key, hashes.SHA256())
    )
    problems = issued_status_problems(
        too_long.public_bytes(serialization.Encoding.PEM),
        issued.not_before,
        too_long.not_valid_after_utc,
        issued.refresh_at,
        key.public_key(),
        86400,
        NOW,
    )
    assert problems == ["leaf certificate lifetime must be <= spec.maxExpirationSeconds (86400)"]


def test_oracle_catches_a_backdate_beyond_five_minutes(root: signer.Authority) -> None:
    policy = IssuancePolicy(max_backdate=dt.timedelta(minutes=6))
    issued = _issue(root, policy)
    key = x509.load_pem_x509_certificate(issued.chain_pem).public_key()
    problems = issued_status_problems(
        issued.chain_pem, issued.not_before, issued.not_after, issued.refresh_at, key, 86400, NOW
    )
    assert problems == ["must be set to within 5 minutes of kube-apiserver's current time"]


def test_refresh_is_half_life_with_jitter_and_margins(root: signer.Authority) -> None:
    policy = IssuancePolicy()
    rng = random.Random(1)
    fractions = []
    for _ in range(200):
        key = ec.generate_private_key(ec.SECP256R1()).public_key()
        issued = signer.issue(root, key, ID, policy, NOW, rng)
        lifetime = issued.not_after - issued.not_before
        fractions.append((issued.refresh_at - issued.not_before) / lifetime)
    assert 0.45 <= min(fractions) < 0.48
    assert 0.52 < max(fractions) <= 0.55 + 1e-4
    short = IssuancePolicy(lifetime=dt.timedelta(minutes=2))
    issued = signer.issue(
        root, ec.generate_private_key(ec.SECP256R1()).public_key(), ID, short, NOW
    )
    assert issued.not_before == NOW - dt.timedelta(seconds=12)  # a tenth of the lifetime
    assert issued.not_before < issued.refresh_at < issued.not_after


def test_leaf_is_a_spiffe_svid_that_chains_to_the_root(root: signer.Authority) -> None:
    issued = _issue(root, IssuancePolicy())
    leaf = x509.load_pem_x509_certificate(issued.chain_pem)
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.critical
    assert san.value.get_values_for_type(x509.UniformResourceIdentifier) == [ID.uri]
    assert len(list(san.value)) == 1
    assert leaf.subject == x509.Name([])
    assert leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    verifier = PolicyBuilder().store(Store([root.certificate])).time(NOW).build_client_verifier()
    verified = verifier.verify(leaf, [])
    assert verified.chain[-1] == root.certificate
    assert issued.root_fingerprint == root.fingerprint == signer.fingerprint(root.certificate)


def test_leaf_never_outlives_its_root() -> None:
    root = signer.new_root("cluster.local", lifetime=dt.timedelta(hours=30), now=NOW)
    issued = _issue(root, IssuancePolicy(), NOW + dt.timedelta(hours=20))
    assert issued.not_after == root.not_after
    with pytest.raises(MeshError, match="too soon to sign anything"):
        _issue(root, IssuancePolicy(), NOW + dt.timedelta(hours=30))


@pytest.mark.parametrize(
    ("key", "named"),
    [
        (lambda: ec.generate_private_key(ec.SECP384R1()), "secp384r1"),
        (lambda: ed25519.Ed25519PrivateKey.generate(), "Ed25519PublicKey"),
        (lambda: rsa.generate_private_key(65537, 2048), "RSAPublicKey"),
    ],
)
def test_only_p256_keys_are_signed(key: object, named: str) -> None:
    csr = signer.parse_csr(_csr(key()))  # type: ignore[operator]
    with pytest.raises(RequestDenied, match=named) as caught:
        signer.check_csr(csr, ID)
    assert caught.value.reason == "UnsupportedKeyType"
    assert caught.value.status == 400


def test_csr_asking_for_another_identity_is_refused() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    assert signer.check_csr(signer.parse_csr(_csr(key, [ID.uri])), ID) == key.public_key()
    assert signer.check_csr(signer.parse_csr(_csr(key)), ID) == key.public_key()
    other = "spiffe://cluster.local/ns/kube-system/sa/admin"
    with pytest.raises(RequestDenied, match="may only have") as caught:
        signer.check_csr(signer.parse_csr(_csr(key, [other])), ID)
    assert caught.value.reason == "IdentityMismatch"


def test_tampered_csr_is_refused() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    der = bytearray(x509.load_pem_x509_csr(_csr(key)).public_bytes(serialization.Encoding.DER))
    der[-3] ^= 0x01  # inside the signature
    with pytest.raises(RequestDenied) as caught:
        signer.parse_csr(bytes(der))
    assert caught.value.reason == "BadRequest"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000) | st.text(max_size=2000).map(str.encode))
def test_any_bytes_are_a_csr_or_a_clear_refusal(data: bytes) -> None:
    for candidate in (b"-----BEGIN CERTIFICATE REQUEST-----\n" + data, data):
        outcome: object
        try:
            outcome = signer.parse_csr(candidate)
        except RequestDenied as exc:
            outcome = (exc.status, bool(str(exc)))
        assert outcome == (400, True) or isinstance(outcome, x509.CertificateSigningRequest)


def test_oversized_csr_is_refused_before_parsing() -> None:
    with pytest.raises(RequestDenied, match="at most 8192"):
        signer.parse_csr(b"x" * 9000)


def test_policy_bounds() -> None:
    with pytest.raises(MeshError, match="at least"):
        IssuancePolicy(lifetime=dt.timedelta(seconds=30))
    with pytest.raises(MeshError, match="fraction"):
        IssuancePolicy(refresh_fraction=0.95)
