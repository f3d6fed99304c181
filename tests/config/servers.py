"""Real HTTP servers on 127.0.0.1 for the config tests.

``ConfigServer`` serves one document with an ETag and Last-Modified and
answers conditional GETs with 304, like a static file server.
``FakeApiServer`` speaks the Kubernetes list/watch wire format (a JSON
list, then newline-delimited watch events over a chunked response) from a
script the test controls, including 410 Gone and dropped streams. It follows
the API server's documented behaviour for what the agent uses: ``GET
/api/v1/namespaces/NS/{configmaps|secrets}?fieldSelector=metadata.name=NAME``
answers a List whose ``metadata.resourceVersion`` the watch starts from;
``watch=1`` streams ``{"type", "object"}`` lines (ADDED, MODIFIED, DELETED,
BOOKMARK, ERROR with a Status object) and ends after ``timeoutSeconds``.
"""

from __future__ import annotations

import hashlib
import json
import queue
import ssl
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
def serve(
    handler: type[BaseHTTPRequestHandler], tls: ssl.SSLContext | None = None
) -> Iterator[ThreadingHTTPServer]:
    """Serve on an ephemeral port of 127.0.0.1; over TLS with ``tls``."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


class ConfigServer:
    def __init__(self, body: bytes = b"a: 1\n", etag: bool = True) -> None:
        self.body = body
        self.etag = etag
        self.last_modified = formatdate(usegmt=True)
        self.fail_with: int | None = None
        self.if_modified_since: list[str] = []
        self.requests = 0
        self.not_modified = 0
        self.lock = threading.Lock()

    def set(self, body: bytes, last_modified: str | None = None) -> None:
        with self.lock:
            self.body = body
            self.last_modified = last_modified or formatdate(usegmt=True)

    def handler(self) -> type[BaseHTTPRequestHandler]:
        state = self

        class Handler(_Quiet):
            def do_GET(self) -> None:
                with state.lock:
                    state.requests += 1
                    body, fail, modified = state.body, state.fail_with, state.last_modified
                    since = self.headers.get("If-Modified-Since")
                    if since:
                        state.if_modified_since.append(since)
                if fail:
                    self._reply(fail, b"broken", {"Location": "/elsewhere"})
                    return
                headers = {"Last-Modified": modified}
                etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
                if state.etag:
                    headers["ETag"] = etag
                match = self.headers.get("If-None-Match")
                if (state.etag and match == etag) or (not match and since == modified):
                    with state.lock:
                        state.not_modified += 1
                    self._reply(304, headers=headers)
                    return
                self._reply(200, body, headers)

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
    script from ``self.watches``: a list of events, where the string "drop"
    closes the connection mid-stream without the final chunk and "stall"
    keeps it open, silent, until the test ends; or the string "410", which
    answers the watch request itself with HTTP 410 Gone."""

    def __init__(self, name: str, resource: str = "configmaps") -> None:
        self.name = name
        self.resource = resource
        self.released = threading.Event()
        self.current: dict[str, Any] | None = None
        self.list_version = 1
        self.watches: queue.Queue[list[Any] | str] = queue.Queue()
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
                assert url.path == f"/api/v1/namespaces/ns/{state.resource}", url.path
                assert query["fieldSelector"] == [f"metadata.name={state.name}"]
                if query.get("watch") == ["1"]:
                    state.watch_calls.append(query)
                    self._watch()
                    return
                state.list_calls += 1
                kind = "ConfigMapList" if state.resource == "configmaps" else "SecretList"
                items = [state.current] if state.current else []
                body = {
                    "kind": kind,
                    "items": items,
                    "metadata": {"resourceVersion": str(state.list_version)},
                }
                self._reply(200, json.dumps(body).encode(), {"Content-Type": "application/json"})

            def _watch(self) -> None:
                try:
                    script = state.watches.get(timeout=5)
                except queue.Empty:
                    script = []
                if script == "410":
                    status = {
                        "kind": "Status",
                        "status": "Failure",
                        "reason": "Expired",
                        "code": 410,
                        "message": "too old resource version",
                    }
                    self._reply(410, json.dumps(status).encode())
                    return
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
                    if event == "stall":
                        state.released.wait(30)
                        self.close_connection = True
                        return
                    line = json.dumps(event).encode() + b"\n"
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
                    self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")

        return Handler
