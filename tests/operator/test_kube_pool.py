"""The operator's API client keeps connections alive and survives the server
closing an idle one (a plain HTTP server on 127.0.0.1 answering JSON)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from injector.operator.kube import Kube, KubeAccess


class Api(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        self.connections = 0
        self.open: list[object] = []
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _handler())

    def handle_error(self, request: object, client_address: object) -> None:
        """The test drops connections on purpose: no traceback on stderr."""


def _handler() -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            server = self.server
            assert isinstance(server, Api)
            with server.lock:
                server.connections += 1
                server.open.append(self.connection)

        def log_message(self, *args: object) -> None:
            return

        def do_GET(self) -> None:
            body = b'{"kind": "Status"}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler


@pytest.fixture
def api() -> Iterator[Api]:
    server = Api()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_requests_share_a_kept_alive_connection_and_survive_its_close(api: Api) -> None:
    kube = Kube(KubeAccess(server=f"http://127.0.0.1:{api.server_address[1]}"))
    for _ in range(5):
        assert kube.request_sync("GET", "/version") == {"kind": "Status"}
    assert api.connections == 1
    for connection in list(api.open):  # the server drops its idle connections
        connection.shutdown(2)  # type: ignore[attr-defined]
    assert kube.request_sync("GET", "/version") == {"kind": "Status"}
    assert api.connections == 2
    kube.close()
