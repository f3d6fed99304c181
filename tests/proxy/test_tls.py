"""TLS origination: the app speaks plain HTTP to 127.0.0.1, the proxy speaks
https to the upstream with SNI, verifying its certificate against a CA bundle."""

from __future__ import annotations

import datetime
import ssl
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.proxy.harness import Proxy, Upstream, request

ProxyFactory = Callable[..., Proxy]


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _issue(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None,
    sans: list[x509.GeneralName] | None = None,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    issuer_name, issuer_key = issuer or (_name(subject), key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("pki")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _issue("test CA", ca_key, None)
    other_key = ec.generate_private_key(ec.SECP256R1())
    other_ca = _issue("another CA", other_key, None)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _issue("localhost", key, (ca.subject, ca_key), [x509.DNSName("localhost")])
    paths = {name: root / f"{name}.pem" for name in ("ca", "other_ca", "cert", "key")}
    paths["ca"].write_bytes(_pem(ca))
    paths["other_ca"].write_bytes(_pem(other_ca))
    paths["cert"].write_bytes(_pem(cert))
    paths["key"].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


@pytest.fixture
def tls_upstream(pki: dict[str, Path]) -> Iterator[Upstream]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki["cert"], pki["key"])
    server = Upstream(tls=context).start()
    yield server
    server.close()


def test_https_upstream_with_sni_and_verified_certificate(
    tls_upstream: Upstream, pki: dict[str, Path], proxy: ProxyFactory
) -> None:
    p = (
        proxy(
            upstream=f"https://localhost:{tls_upstream.port}", args=[f"--upstream-ca={pki['ca']}"]
        )
        .start()
        .ready()
    )
    response = request(p.outbound_port, "/echo", {"Host": "whatever"})
    assert response.status == 200
    assert response.json()["headers"]["host"] == f"localhost:{tls_upstream.port}"
    assert tls_upstream.sni[-1] == "localhost"


def test_untrusted_certificate_is_refused(
    tls_upstream: Upstream, pki: dict[str, Path], proxy: ProxyFactory
) -> None:
    p = (
        proxy(
            upstream=f"https://localhost:{tls_upstream.port}",
            args=[f"--upstream-ca={pki['other_ca']}", "--retries=0"],
        )
        .start()
        .ready()
    )
    response = request(p.outbound_port, "/echo")
    assert response.status == 503
    assert tls_upstream.hits["/echo"] == 0


def test_certificate_for_another_name_is_refused(
    tls_upstream: Upstream, pki: dict[str, Path], proxy: ProxyFactory
) -> None:
    # Same trusted CA, but the certificate names localhost, not 127.0.0.1.
    p = (
        proxy(
            upstream=f"https://127.0.0.1:{tls_upstream.port}",
            args=[f"--upstream-ca={pki['ca']}", "--retries=0"],
        )
        .start()
        .ready()
    )
    response = request(p.outbound_port, "/echo")
    assert response.status == 503
    assert tls_upstream.hits["/echo"] == 0
