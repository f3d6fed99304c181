"""The HTTP server's limits over real sockets: 431, 413, 408, idle close, the
connection cap, pipelining, malformed requests and the TLS handshake deadline.

Short limits (1 s deadlines, a 1 KiB header block, a 64 KiB body) make each
case quick; the server checks deadlines once a second, so every wait below is
a blocking read with a generous socket timeout, never a sleep.
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Iterator

import pytest

from injector.admission.certs import generate_ca, generate_serving_cert
from injector.admission.http import JSON, Limits, Response
from injector.admission.tls import ServingTLS
from tests.injector.served import Served

LIMITS = Limits(
    max_header_bytes=1024,
    max_body=64 * 1024,
    header_timeout=1.0,
    body_timeout=1.0,
    idle_timeout=2.0,
    handshake_timeout=1.0,
    max_connections=4,
    max_pipelined=4,
)


def echo(method: str, path: str, body: bytes) -> Response:
    return 200, JSON, b'{"bytes":%d}' % len(body)


@pytest.fixture
def served() -> Iterator[Served]:
    with Served(echo, limits=LIMITS) as s:
        yield s


def connect(served: Served) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", served.port), timeout=10)
    sock.settimeout(10)
    return sock


def read_all(sock: socket.socket) -> bytes:
    """Everything until the server closes the connection."""
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk


def status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def test_a_request_is_answered_and_kept_alive(served: Served) -> None:
    with connect(served) as sock:
        for _ in range(3):
            sock.sendall(b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello")
            answer = sock.recv(65536)
            assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
            assert answer.endswith(b'{"bytes":5}')


def test_a_huge_header_is_refused_before_it_is_read(served: Served) -> None:
    """431 after about the limit; the rest of a 32 MiB header is never read."""
    with connect(served) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nX-Big: ")
        sent = 0
        try:
            while sent < 32 * 1024 * 1024:
                sock.sendall(b"a" * 65536)
                sent += 65536
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = read_all(sock)
    assert status(answer) == 431
    assert b"headers exceed 1024 bytes" in answer
    assert sent < 32 * 1024 * 1024  # the server closed the connection long before


def test_a_long_request_target_is_431(served: Served) -> None:
    with connect(served) as sock:
        sock.sendall(b"GET /" + b"a" * 4096 + b" HTTP/1.1\r\n\r\n")
        assert status(read_all(sock)) == 431


def test_a_declared_large_body_is_413_before_it_is_sent(served: Served) -> None:
    with connect(served) as sock:
        sock.sendall(b"POST /x HTTP/1.1\r\nContent-Length: 1048576\r\n\r\n")
        answer = read_all(sock)
    assert status(answer) == 413
    assert b"at most 65536 are accepted" in answer


def test_a_chunked_body_is_counted_as_it_comes(served: Served) -> None:
    chunk = b"%x\r\n%s\r\n" % (16384, b"z" * 16384)
    with connect(served) as sock:
        sock.sendall(b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n")
        try:
            for _ in range(16):
                sock.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        assert status(read_all(sock)) == 413
    with connect(served) as sock:
        sock.sendall(
            b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk + b"0\r\n\r\n"
        )
        assert sock.recv(65536).endswith(b'{"bytes":16384}')


def test_headers_too_slow_is_408(served: Served) -> None:
    with connect(served) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n")  # never finished
        started = time.monotonic()
        answer = read_all(sock)
    assert status(answer) == 408
    assert b"headers not received within 1.0s" in answer
    assert time.monotonic() - started < 8


def test_a_body_too_slow_is_408(served: Served) -> None:
    with connect(served) as sock:
        sock.sendall(b"POST /x HTTP/1.1\r\nContent-Length: 100\r\n\r\n0123456789")
        answer = read_all(sock)
    assert status(answer) == 408
    assert b"body not received within 1.0s" in answer


def test_an_idle_keep_alive_connection_is_closed(served: Served) -> None:
    with connect(served) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        assert read_all(sock) == b""  # closed by the server, no answer


def test_connections_over_the_limit_get_503(served: Served) -> None:
    held = [connect(served) for _ in range(LIMITS.max_connections)]
    try:
        for sock in held:  # each is accepted and counted
            sock.sendall(b"GET / HTTP/1.1\r\n\r\n")
            assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        with connect(served) as extra:
            answer = read_all(extra)
        assert status(answer) == 503
        assert b"too many connections" in answer
    finally:
        for sock in held:
            sock.close()


def test_pipelined_requests_are_answered_in_order_up_to_the_limit(served: Served) -> None:
    with connect(served) as sock:
        sock.sendall(
            b"".join(
                b"POST /x HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % n + b"a" * n
                for n in range(1, 4)
            )
        )
        answers = b""
        while answers.count(b"HTTP/1.1 200") < 3:
            answers += sock.recv(65536)
        assert [a.endswith(b"}") for a in answers.split(b"HTTP/1.1 ")[1:]] == [True] * 3
        assert answers.index(b'{"bytes":1}') < answers.index(b'{"bytes":3}')
    with connect(served) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\n\r\n" * 20)
        answer = read_all(sock)
    assert b"HTTP/1.1 400" in answer
    assert b"pipelined" in answer


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"NOT HTTP AT ALL\r\n\r\n",
        b"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        b"GET / HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
        b"GET / HTTP/1.1\r\nBad Header\r\n\r\n",
    ],
)
def test_malformed_requests_are_400(served: Served, request_bytes: bytes) -> None:
    with connect(served) as sock:
        sock.sendall(request_bytes)
        assert status(read_all(sock)) == 400


def test_a_silent_tls_client_is_dropped_after_the_handshake_deadline() -> None:
    ca = generate_ca()
    tls = ServingTLS()
    tls.load(generate_serving_cert(ca, ["localhost"], ["127.0.0.1"]))
    with Served(echo, limits=LIMITS, tls=tls.context) as served, connect(served) as sock:
        assert read_all(sock) == b""  # never sent a ClientHello: closed
        client = ssl.create_default_context(cadata=ca.cert_pem.decode())
        with (
            socket.create_connection(("127.0.0.1", served.port), timeout=10) as raw,
            client.wrap_socket(raw, server_hostname="127.0.0.1") as secure,
        ):
            secure.sendall(b"GET / HTTP/1.1\r\n\r\n")
            assert secure.recv(65536).startswith(b"HTTP/1.1 200")
