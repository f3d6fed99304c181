"""Real HTTP servers on 127.0.0.1 for the config-reload measurement: the
config origin (one document with an ETag, 304 on If-None-Match) and the
app's reload endpoint, each recording when things happened."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class ConfigOrigin:
    """Serves one document with an ETag (304 on If-None-Match) and records,
    per content version, when it first served that version."""

    def __init__(self, body: bytes) -> None:
        self.lock = threading.Lock()
        self.body = body
        self.version = 0
        self.changed_at: dict[int, float] = {0: time.monotonic()}
        self.served_at: dict[int, float] = {}

    def set(self, body: bytes) -> int:
        with self.lock:
            self.version += 1
            self.body = body
            self.changed_at[self.version] = time.monotonic()
            return self.version

    def handler(self) -> type[BaseHTTPRequestHandler]:
        origin = self

        class Handler(_Quiet):
            def do_GET(self) -> None:
                with origin.lock:
                    body, version = origin.body, origin.version
                etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
                if self.headers.get("If-None-Match") == etag:
                    self._reply(304, b"", {"ETag": etag})
                    return
                with origin.lock:
                    origin.served_at.setdefault(version, time.monotonic())
                self._reply(200, body, {"ETag": etag, "Content-Type": "text/yaml"})

        return Handler


class ReloadEndpoint:
    """The app's reload URL: records when each reload request arrived."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.times: list[float] = []

    def handler(self) -> type[BaseHTTPRequestHandler]:
        endpoint = self

        class Handler(_Quiet):
            def do_POST(self) -> None:
                now = time.monotonic()
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                with endpoint.lock:
                    endpoint.times.append(now)
                self._reply(200, b"reloaded\n")

            do_GET = do_POST
            do_PUT = do_POST

        return Handler

    def count(self) -> int:
        with self.lock:
            return len(self.times)


class _Quiet(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        return

    def _reply(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@contextmanager
def serving(handler: type[BaseHTTPRequestHandler]) -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
