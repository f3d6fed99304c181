"""Real HTTP servers on 127.0.0.1 for the config tests.

``ConfigServer`` serves one document with an ETag and Last-Modified and
answers conditional GETs with 304, like a static file server.
``FakeApiServer`` speaks the Kubernetes list/watch wire format (a JSON
list, then newline-delimited watch events over a chunked response) from a
script the test controls, including 410 Gone and dropped streams.
"""

from __future__ import annotations

import hashlib
import json
import queue
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


class _Quiet(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        return

    def _reply(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@contextmanager
def serve(handler: type[BaseHTTPRequestHandler]) -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


class ConfigServer:
    def __init__(self, body: bytes = b"a: 1\n") -> None:
        self.body = body
        self.fail_with: int | None = None
        self.requests = 0
        self.not_modified = 0
        self.lock = threading.Lock()

    def set(self, body: bytes) -> None:
        with self.lock:
            self.body = body

    def handler(self) -> type[BaseHTTPRequestHandler]:
        state = self

        class Handler(_Quiet):
            def do_GET(self) -> None:
                with state.lock:
                    state.requests += 1
                    body, fail = state.body, state.fail_with
                if fail:
                    self._reply(fail, b"broken")
                    return
                etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
                if self.headers.get("If-None-Match") == etag:
                    with state.lock:
                        state.not_modified += 1
                    self._reply(304, headers={"ETag": etag})
                    return
                self._reply(200, body, {"ETag": etag, "Last-Modified": formatdate(usegmt=True)})

        return Handler


def configmap(name: str, version: int, data: dict[str, str]) -> dict[str, Any]:
    return {
        "kind": "ConfigMap",
        "apiVersion": "v1",
        "metadata": {"name": name, "namespace": "ns", "resourceVersion": str(version)},
        "data": data,
    }


class FakeApiServer:
    """Lists answer with ``self.current``; each watch request takes the next
    script from ``self.watches`` (a queue of lists of events; the string
    "drop" closes the connection mid-stream without the final chunk)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.current: dict[str, Any] | None = None
        self.list_version = 1
        self.watches: queue.Queue[list[Any]] = queue.Queue()
        self.list_calls = 0
        self.watch_calls: list[dict[str, list[str]]] = []
        self.tokens: list[str] = []
        self.gone_on_list = 0

    def handler(self) -> type[BaseHTTPRequestHandler]:
        state = self

        class Handler(_Quiet):
            def do_GET(self) -> None:
                url = urlsplit(self.path)
                query = parse_qs(url.query)
                state.tokens.append(self.headers.get("Authorization", ""))
                assert url.path == "/api/v1/namespaces/ns/configmaps", url.path
                assert query["fieldSelector"] == [f"metadata.name={state.name}"]
                if query.get("watch") == ["1"]:
                    state.watch_calls.append(query)
                    self._watch()
                    return
                state.list_calls += 1
                items = [state.current] if state.current else []
                body = {
                    "kind": "ConfigMapList",
                    "items": items,
                    "metadata": {"resourceVersion": str(state.list_version)},
                }
                self._reply(200, json.dumps(body).encode(), {"Content-Type": "application/json"})

            def _watch(self) -> None:
                try:
                    script = state.watches.get(timeout=5)
                except queue.Empty:
                    script = []
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for event in script:
                    if event == "drop":
                        self.wfile.flush()
                        self.close_connection = True
                        self.connection.shutdown(2)
                        return
                    line = json.dumps(event).encode() + b"\n"
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
                    self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")

        return Handler
