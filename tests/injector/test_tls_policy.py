"""The webhook's TLS over a real socket: TLS 1.3, TLS 1.2 with forward-secret
AEAD suites only; CBC and SHA-1 suites, RSA key exchange and TLS 1.1 refused."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator

import pytest

from injector.admission.tls import new_server_context
from tests.golden_tool import BASE_SETTINGS
from tests.injector.server import InjectorServer


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InjectorServer]:
    srv = InjectorServer(tmp_path_factory.mktemp("tls"), BASE_SETTINGS).start()
    try:
        yield srv
    finally:
        srv.stop()


def handshake(server: InjectorServer, context: ssl.SSLContext) -> tuple[str, str]:
    """(protocol, cipher) the server agreed to."""
    context.load_verify_locations(cafile=str(server.ca))
    with (
        socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        cipher = tls.cipher()
        assert cipher is not None
        return str(tls.version()), cipher[0]


def client(maximum: ssl.TLSVersion, ciphers: str | None = None) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    context.maximum_version = maximum
    if ciphers:
        context.set_ciphers(ciphers + ":@SECLEVEL=0")
    return context


def test_tls13(server: InjectorServer) -> None:
    version, _ = handshake(server, client(ssl.TLSVersion.TLSv1_3))
    assert version == "TLSv1.3"


@pytest.mark.parametrize("suite", ["ECDHE+AESGCM", "ECDHE+CHACHA20"])
def test_tls12_aead(server: InjectorServer, suite: str) -> None:
    version, cipher = handshake(server, client(ssl.TLSVersion.TLSv1_2, suite))
    assert version == "TLSv1.2"
    assert "GCM" in cipher or "CHACHA20" in cipher


@pytest.mark.parametrize(
    "suite",
    [
        "ECDHE+AES+SHA1",  # CBC with SHA-1 MACs
        "ECDHE+AES+SHA256:ECDHE+AES+SHA384",  # CBC with SHA-2 MACs
        "kRSA",  # RSA key exchange, no forward secrecy
        "3DES",
    ],
)
def test_tls12_without_aead_is_refused(server: InjectorServer, suite: str) -> None:
    with pytest.raises(ssl.SSLError):
        handshake(server, client(ssl.TLSVersion.TLSv1_2, suite + ":!AESGCM:!CHACHA20"))


def test_tls11_is_refused(server: InjectorServer) -> None:
    with pytest.raises(ssl.SSLError):
        handshake(server, client(ssl.TLSVersion.TLSv1_1, "ALL"))


def test_the_server_context_offers_only_aead() -> None:
    names = [c["name"] for c in new_server_context().get_ciphers()]
    assert names
    for name in names:
        assert name.startswith("TLS_") or ("ECDHE" in name and ("GCM" in name or "CHACHA" in name))
