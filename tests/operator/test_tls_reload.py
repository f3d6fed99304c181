"""Live certificate reload on a real uvicorn TLS server over 127.0.0.1."""

from __future__ import annotations

import contextlib
import http.client
import os
import ssl
from collections.abc import Iterator

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from injector.admission import certs
from injector.admission.tls import ServingTLS
from tests.operator.tlsserver import GatedApp, TLSServer, client_context

NAMES = ["localhost"]
IPS = ["127.0.0.1"]


def _der(pair: certs.KeyPair) -> bytes:
    return pair.certificate.public_bytes(serialization.Encoding.DER)


def _peer(conn: http.client.HTTPSConnection) -> bytes:
    assert conn.sock is not None
    der = conn.sock.getpeercert(binary_form=True)
    assert der is not None
    return bytes(der)


def _get(conn: http.client.HTTPSConnection, path: str) -> tuple[int, bytes]:
    conn.request("GET", path)
    response = conn.getresponse()
    return response.status, response.read()


@pytest.fixture
def ca1() -> certs.KeyPair:
    return certs.generate_ca("test-ca-1")


@pytest.fixture
def ca2() -> certs.KeyPair:
    return certs.generate_ca("test-ca-2")


@pytest.fixture
def app() -> GatedApp:
    return GatedApp()


@pytest.fixture
def server(ca1: certs.KeyPair, app: GatedApp) -> Iterator[TLSServer]:
    tls = ServingTLS()
    tls.load(certs.generate_serving_cert(ca1, NAMES, IPS))
    running = TLSServer(app, tls).start()
    yield running
    app.release.set()
    running.stop()


def _connect(server: TLSServer, *cas: certs.KeyPair) -> http.client.HTTPSConnection:
    bundle = b"".join(ca.cert_pem for ca in cas)
    return http.client.HTTPSConnection("127.0.0.1", server.port, context=client_context(bundle))


def test_new_handshakes_get_the_new_certificate_open_connections_keep_working(
    server: TLSServer, ca1: certs.KeyPair, ca2: certs.KeyPair
) -> None:
    first = server.tls.current
    assert first is not None
    old = _connect(server, ca1)
    assert _get(old, "/fast") == (200, b"/fast")
    assert _peer(old) == _der(first)
    old_socket = old.sock

    renewed = certs.generate_serving_cert(ca2, NAMES, IPS)
    assert server.call(lambda: server.tls.load(renewed)) is True

    # The open keep-alive connection still works, on the same socket, with the old certificate.
    assert _get(old, "/fast") == (200, b"/fast")
    assert old.sock is old_socket
    assert _peer(old) == _der(first)

    # A new connection gets the new certificate ...
    new = _connect(server, ca1, ca2)
    assert _get(new, "/fast") == (200, b"/fast")
    assert _peer(new) == _der(renewed)
    # ... so a client trusting only the old CA now fails the handshake.
    stale = _connect(server, ca1)
    with pytest.raises(ssl.SSLCertVerificationError):
        stale.request("GET", "/fast")
    for conn in (old, new, stale):
        conn.close()


def test_a_request_in_flight_during_the_reload_completes(
    server: TLSServer, app: GatedApp, ca1: certs.KeyPair, ca2: certs.KeyPair
) -> None:
    conn = _connect(server, ca1)
    conn.request("GET", "/slow")
    assert app.slow_started.wait(10)
    server.call(lambda: server.tls.load(certs.generate_serving_cert(ca2, NAMES, IPS)))
    app.release.set()
    response = conn.getresponse()
    assert (response.status, response.read()) == (200, b"/slow")
    conn.close()


def test_a_certificate_that_does_not_match_its_key_is_refused_and_the_old_one_stays(
    server: TLSServer, ca1: certs.KeyPair
) -> None:
    served = server.tls.current
    assert served is not None
    a = certs.generate_serving_cert(ca1, NAMES, IPS)
    b = certs.generate_serving_cert(ca1, NAMES, IPS)
    mismatched = certs.KeyPair(a.cert_pem, b.key_pem)
    with pytest.raises(ssl.SSLError):
        server.call(lambda: server.tls.load(mismatched))
    assert server.tls.current is served
    conn = _connect(server, ca1)
    assert _get(conn, "/fast")[0] == 200
    assert _peer(conn) == _der(served)
    conn.close()


def test_loading_the_served_certificate_again_is_a_no_op(ca1: certs.KeyPair) -> None:
    tls = ServingTLS()
    pair = certs.generate_serving_cert(ca1, NAMES, IPS)
    assert tls.load(pair) is True
    assert tls.load(certs.KeyPair(pair.cert_pem, pair.key_pem)) is False
    assert tls.fingerprint is not None


def test_without_memfd_a_private_temporary_file_is_used_and_removed(
    monkeypatch: pytest.MonkeyPatch, ca1: certs.KeyPair, tmp_path: os.PathLike[str]
) -> None:
    monkeypatch.delattr(os, "memfd_create", raising=False)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    tls = ServingTLS()
    pair = certs.generate_serving_cert(ca1, NAMES, IPS)
    assert tls.load(pair) is True
    assert os.listdir(tmp_path) == []
    # The context really holds the certificate: a handshake in memory presents it.
    client = client_context(ca1.cert_pem)
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    client_side = client.wrap_bio(c_in, c_out, server_hostname="localhost")
    server_side = tls.context.wrap_bio(s_in, s_out, server_side=True)
    for _ in range(10):
        for side in (client_side, server_side):
            with contextlib.suppress(ssl.SSLWantReadError):
                side.do_handshake()
        s_in.write(c_out.read())
        c_in.write(s_out.read())
    der = client_side.getpeercert(binary_form=True)
    assert der is not None
    assert x509.load_der_x509_certificate(der) == pair.certificate
