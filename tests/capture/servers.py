"""Servers for the capture tests, run as a process in a test namespace:

    python -m tests.capture.servers http=10.251.0.1:8081 echo=10.251.0.1:9000 \\
        tls=10.251.0.1:8443:/path/cert.pem:/path/key.pem ...

``http`` is ``tests.proxy.harness.Upstream`` (``/echo``, ``/status/N``,
``/flaky/KEY?fail=N``, ``/hold/KEY``); ``tls`` the same over TLS with that
certificate; ``echo`` a TCP server that sends back what it receives. Prints
``ready`` once every socket listens, then serves until killed.
"""

from __future__ import annotations

import socket
import ssl
import sys
import threading

from tests.proxy.harness import Upstream


def parse_address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


def echo_server(address: tuple[str, int]) -> None:
    family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(address)
    sock.listen(64)

    def serve(conn: socket.socket) -> None:
        with conn:
            while data := conn.recv(65536):
                conn.sendall(data)

    def accept() -> None:
        while True:
            conn, _ = sock.accept()
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()


def main(specs: list[str]) -> None:
    for spec in specs:
        kind, _, rest = spec.partition("=")
        if kind == "http":
            Upstream(address=parse_address(rest)).start()
        elif kind == "echo":
            echo_server(parse_address(rest))
        elif kind == "tls":
            where, cert, key = rest.rsplit(":", 2)
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(cert, key)
            Upstream(tls=context, address=parse_address(where)).start()
        else:
            raise SystemExit(f"unknown server kind {kind!r}")
    print("ready", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main(sys.argv[1:])
