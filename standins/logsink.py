"""Log sinks for tests: the shared HTTP server with its faults, and an NDJSON sink.

``SinkStandIn`` is the base of the Loki- and Elasticsearch-compatible
stand-ins (``standins.loki``, ``standins.elasticsearch``) and, as
``NdjsonStandIn``, the generic sink the logs role POSTs NDJSON to: every
non-empty line of a request body must be a JSON object (else 400, nothing
stored), and 200 acknowledges them all. Request bodies may be gzipped
(``Content-Encoding: gzip``; any other encoding answers 415).

Faults, set from a test (or over HTTP, see below), each for the next ``count``
requests (0: until ``clear()``):

* ``fail(status)``: answer ``status`` without storing anything;
* ``stall(seconds)``: hold each request that long before handling it (a
  client with a shorter timeout gives up; the request is then still handled);
* ``store_then_fail(status)``: store the records, then answer ``status``: the
  client cannot know they arrived (it will send them again: duplicates);
* ``store_then_drop()``: store the records, then close the connection without
  an answer;
* ``down(seconds)``: stop listening (connection refused) and come back on the
  same port after ``seconds`` (or on ``up()``).

``requests`` records every request (path, record count, status, and its
``Authorization``, ``X-Scope-OrgID``, ``Content-Type`` and ``Content-Encoding``
headers); ``records``
what was stored, in arrival order. The same controls are served under
``/_standin/`` for e2e and manual use (``POST fail {"status", "count"}``,
``stall {"seconds", "count"}``, ``store-then-fail {"status", "count"}``,
``store-then-drop {"count"}``, ``down {"seconds"}``, ``clear``, ``reset``;
``GET records``, ``GET requests``); they are not part of any sink's API.

Run: ``python -m standins.logsink --listen 127.0.0.1:8080``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import threading
import time
import zlib
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

Json = dict[str, Any]
MAX_BODY = 64 * 1024 * 1024
RECORDED_HEADERS = ("Authorization", "X-Scope-OrgID", "Content-Type", "Content-Encoding")


class Reply(Exception):
    """An answer to send as is (status, JSON or text body)."""

    def __init__(self, status: int, body: Any = b"", content_type: str = "application/json"):
        super().__init__(status)
        self.status = status
        self.body = body
        self.content_type = content_type


@dataclass
class Logged:
    method: str
    path: str
    records: int
    status: int
    at: float
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def authorization(self) -> str:
        return self.headers.get("Authorization", "")


@dataclass
class Fault:
    kind: str  # fail, stall, store-then-fail, store-then-drop
    status: int = 500
    seconds: float = 0.0
    count: int = 0  # requests left; 0: until cleared


class SinkStandIn:
    """Threaded HTTP server on 127.0.0.1 with faults; subclasses handle POST/GET."""

    name = "sink"

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.lock = threading.RLock()
        self.records: list[Json] = []
        self.requests: list[Logged] = []
        self.faults: list[Fault] = []
        self._address = (host, port)
        self._server: ThreadingHTTPServer | None = None
        self._release = threading.Event()
        self.start()

    # --- lifecycle ---------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._address[1]

    @property
    def url(self) -> str:
        return f"http://{self._address[0]}:{self.port}"

    def start(self) -> None:
        server = _Server(self._address, _handler(self))
        server.daemon_threads = True
        self._address = (self._address[0], int(server.server_address[1]))
        self._server = server
        self._release.clear()
        threading.Thread(target=server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self._release.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def down(self, seconds: float = 0.0) -> None:
        self.stop()
        if seconds:
            timer = threading.Timer(seconds, self.up)
            timer.daemon = True
            timer.start()

    def up(self) -> None:
        if self._server is None:
            self.start()

    # --- faults --------------------------------------------------------------------

    def fail(self, status: int = 503, count: int = 0) -> None:
        self._add(Fault("fail", status=status, count=count))

    def stall(self, seconds: float, count: int = 0) -> None:
        self._add(Fault("stall", seconds=seconds, count=count))

    def store_then_fail(self, status: int = 500, count: int = 1) -> None:
        self._add(Fault("store-then-fail", status=status, count=count))

    def store_then_drop(self, count: int = 1) -> None:
        self._add(Fault("store-then-drop", count=count))

    def clear(self) -> None:
        with self.lock:
            self.faults.clear()
        self._release.set()
        self._release.clear()

    def reset(self) -> None:
        with self.lock:
            self.faults.clear()
            self.records.clear()
            self.requests.clear()

    def _add(self, fault: Fault) -> None:
        with self.lock:
            self.faults.append(fault)

    def _take(self, kind: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.kind == kind:
                    if fault.count:
                        fault.count -= 1
                        if fault.count == 0:
                            self.faults.remove(fault)
                    return fault
        return None

    # --- requests ------------------------------------------------------------------

    def serve(self, method: str, target: str, headers: Any, body: bytes) -> tuple[int, Any, str]:
        """One request -> (status, body, content type); ``None`` body: drop the connection."""
        path = urlsplit(target).path
        if path.startswith("/_standin/"):
            return self._control(method, path[len("/_standin/") :], body)
        stall = self._take("stall")
        if stall is not None:
            self._release.wait(stall.seconds)
        failure = self._take("fail")
        if failure is not None and method == "POST":
            self._log(method, path, 0, failure.status)
            return (
                failure.status,
                {"error": f"stand-in fault: {failure.status}"},
                "application/json",
            )
        try:
            if method == "POST":
                data = _decode(headers, body)
                stored_before = len(self.records)
                status, answer, content_type = self.post(target, headers, data)
                count = len(self.records) - stored_before
                after = self._take("store-then-fail") or self._take("store-then-drop")
                if after is not None:
                    self._log(
                        method, path, count, 0 if after.kind == "store-then-drop" else after.status
                    )
                    if after.kind == "store-then-drop":
                        return 0, None, ""
                    return (
                        after.status,
                        {"error": "stand-in fault after storing"},
                        "application/json",
                    )
                self._log(method, path, count, status, headers)
                return status, answer, content_type
            return self.get(target)
        except Reply as reply:
            self._log(method, path, 0, reply.status)
            return reply.status, reply.body, reply.content_type

    def post(self, target: str, headers: Any, body: bytes) -> tuple[int, Any, str]:
        raise Reply(404, {"error": f"no POST {target}"})

    def get(self, target: str) -> tuple[int, Any, str]:
        raise Reply(404, {"error": f"no GET {target}"})

    def store(self, records: list[Json]) -> None:
        with self.lock:
            self.records.extend(records)

    def _log(self, method: str, path: str, count: int, status: int, headers: Any = None) -> None:
        kept = {
            name: headers[name]
            for name in RECORDED_HEADERS
            if headers is not None and headers.get(name) is not None
        }
        with self.lock:
            self.requests.append(Logged(method, path, count, status, time.monotonic(), kept))

    def _control(self, method: str, action: str, body: bytes) -> tuple[int, Any, str]:
        if method == "GET" and action == "records":
            with self.lock:
                return 200, list(self.records), "application/json"
        if method == "GET" and action == "requests":
            with self.lock:
                return 200, [r.__dict__ for r in self.requests], "application/json"
        args: Json = json.loads(body or b"{}") if method == "POST" else {}
        count = int(args.get("count", 0))
        actions = {
            "fail": lambda: self.fail(int(args.get("status", 503)), count),
            "stall": lambda: self.stall(float(args.get("seconds", 0)), count),
            "store-then-fail": lambda: self.store_then_fail(int(args.get("status", 500)), count),
            "store-then-drop": lambda: self.store_then_drop(count),
            "down": lambda: threading.Thread(
                target=self.down, args=(float(args.get("seconds", 5)),), daemon=True
            ).start(),
            "clear": self.clear,
            "reset": self.reset,
        }
        if method != "POST" or action not in actions:
            return (
                404,
                {"error": f"unknown control {method} /_standin/{action}"},
                "application/json",
            )
        actions[action]()
        return 200, {"ok": True}, "application/json"


class NdjsonStandIn(SinkStandIn):
    """The generic HTTP sink: NDJSON POSTs, every line a JSON object."""

    name = "ndjson"

    def post(self, target: str, headers: Any, body: bytes) -> tuple[int, Any, str]:
        records: list[Json] = []
        for number, line in enumerate(body.split(b"\n"), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                raise Reply(400, {"error": f"line {number} is not JSON"}) from None
            if not isinstance(record, dict):
                raise Reply(400, {"error": f"line {number} is not a JSON object"})
            records.append(record)
        self.store(records)
        return 200, {"accepted": len(records)}, "application/json"


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away (a killed agent) is not an error worth a traceback."""
        import sys  # noqa: PLC0415

        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


def _decode(headers: Any, body: bytes) -> bytes:
    encoding = (headers.get("Content-Encoding") or "identity").strip().lower()
    if encoding == "identity":
        return body
    if encoding != "gzip":
        raise Reply(415, {"error": f"unsupported Content-Encoding {encoding}"})
    try:
        return gzip.decompress(body)
    except (OSError, EOFError, zlib.error):
        raise Reply(400, {"error": "body is not valid gzip"}) from None


def _handler(server: SinkStandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            return

        def _handle(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                self._send(413, {"error": "request entity too large"}, "application/json")
                return
            body = self.rfile.read(length) if length else b""
            status, answer, content_type = server.serve(method, self.path, self.headers, body)
            if answer is None:
                self.close_connection = True
                self.connection.close()
                return
            self._send(status, answer, content_type)

        def _send(self, status: int, answer: Any, content_type: str) -> None:
            if isinstance(answer, bytes):
                data = answer
            elif isinstance(answer, str):
                data = answer.encode()
            else:
                data = json.dumps(answer).encode()
            try:
                self.send_response(status)
                if status != 204:
                    self.send_header("Content-Type", content_type)
                    self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if status != 204:
                    self.wfile.write(data)
            except OSError:  # the client gave up (a timeout shorter than a stall)
                self.close_connection = True

        def do_POST(self) -> None:
            self._handle("POST")

        def do_GET(self) -> None:
            self._handle("GET")

    return Handler


def main(kind: type[SinkStandIn] = NdjsonStandIn) -> None:
    parser = argparse.ArgumentParser(prog=f"python -m standins.{kind.name}")
    parser.add_argument("--listen", default="127.0.0.1:0", help="HOST:PORT")
    args = parser.parse_args()
    host, _, port = args.listen.rpartition(":")
    server = kind(host or "127.0.0.1", int(port))
    print(f"{kind.name} stand-in listening on {server.url}", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
