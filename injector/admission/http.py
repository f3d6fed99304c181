"""A small HTTP/1.1 server for the webhook: httptools parses, asyncio (uvloop
when installed) carries TLS, and every limit is ours.

Each limit is answered as RFC 9110 says, then the connection is closed:

* request line and headers over ``max_header_bytes``: 431 (the parser is fed
  at most that much before the headers must be complete, so a 32 MiB header
  is never buffered);
* a body over ``max_body``: 413, from Content-Length before any of it is read,
  or as chunks arrive;
* headers not complete ``header_timeout`` after a request's first byte, or the
  body not complete ``body_timeout`` after its headers: 408;
* malformed requests, upgrades: 400; more than ``max_pipelined`` requests
  sent ahead of their answers: the connection is closed;
* more than ``max_connections`` open connections: 503 to the newcomer;
* a keep-alive connection idle for ``idle_timeout``: closed (longer than Go's
  90 s idle pool, so the API server closes first and never sends on a
  connection we are closing); a TLS handshake must finish within
  ``handshake_timeout``.

Deadlines are checked by one sweep per second over the open connections, not
a timer per request. A handler gets the method, path and body and returns
``(status, content_type, body)``, or an awaitable of it for work done off
the event loop; while one is pending the connection reads nothing more.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import ssl
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, cast

import httptools

log = logging.getLogger("injector.admission.http")
Response = tuple[int, str, bytes]
Handler = Callable[[str, str, bytes], Response | Awaitable[Response]]
REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    413: "Content Too Large",
    429: "Too Many Requests",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}
JSON = "application/json"


@dataclass(frozen=True)
class Limits:
    max_header_bytes: int = 16 * 1024
    max_body: int = 3 * 1024 * 1024
    header_timeout: float = 10.0
    body_timeout: float = 10.0
    idle_timeout: float = 95.0
    handshake_timeout: float = 10.0
    max_connections: int = 1024
    max_pipelined: int = 8


def error_body(message: str) -> bytes:
    escaped = message.replace("\\", "\\\\").replace('"', '\\"')
    return f'{{"message":"{escaped}"}}'.encode()


def encode_response(status: int, content_type: str, body: bytes, close: bool) -> bytes:
    head = (
        f"HTTP/1.1 {status} {REASONS.get(status, 'Unknown')}\r\n"
        f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
    )
    if close:
        head += "Connection: close\r\n"
    return head.encode("latin-1") + b"\r\n" + body


class _Refused(Exception):
    """Raised inside a parser callback to stop parsing with an HTTP answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Server:
    """The connections of one listening socket and their deadlines."""

    def __init__(self, handler: Handler, limits: Limits | None = None) -> None:
        self.handler = handler
        self.limits = limits or Limits()
        self.connections: set[Connection] = set()
        self._sweeper: asyncio.TimerHandle | None = None
        self.refused = 0  # connections refused for the connection limit

    def protocol(self) -> Connection:
        return Connection(self)

    async def start(self, sock: Any, context: ssl.SSLContext | None) -> asyncio.AbstractServer:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            self.protocol,
            sock=sock,
            ssl=context,
            ssl_handshake_timeout=self.limits.handshake_timeout if context else None,
            backlog=1024,
        )
        self._sweeper = loop.call_later(1.0, self._sweep)
        return server

    def _sweep(self) -> None:
        now = time.monotonic()
        for connection in list(self.connections):
            connection.check_deadline(now)
        self._sweeper = asyncio.get_running_loop().call_later(1.0, self._sweep)

    async def drain(self, grace: float) -> None:
        """After the listener closed: let answers in progress finish (at most
        ``grace`` seconds), then close every connection."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while loop.time() < deadline and any(c.busy or c.queue for c in self.connections):
            await asyncio.sleep(0.02)
        self.close_all()

    def close_all(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        for connection in list(self.connections):
            connection.close()


class Connection(asyncio.Protocol):
    """One client connection: parse, answer in order, enforce the limits."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.limits = server.limits
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.url = bytearray()
        self.body = bytearray()
        self.header_bytes = 0  # of the current header block, fed to the parser
        self.seen_bytes = 0  # of it, as the url/header callbacks saw them
        self.began = False  # a request began in the piece being fed
        self.body_left: int | None = None  # from Content-Length
        self.in_headers = False
        self.in_body = False
        self.deadline = 0.0
        self.phase = "idle"
        self.queue: deque[tuple[str, str, bytes, bool]] = deque()
        self.busy = False  # an answer is being computed off the loop
        self.closing = False

    # --- asyncio ------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are no subclasses
        if len(self.server.connections) >= self.limits.max_connections:
            self.server.refused += 1
            message = "too many connections; retry"
            self._send(503, JSON, error_body(message), close=True)
            return
        self.server.connections.add(self)
        self._set_phase("idle", self.limits.idle_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        self.closing = True

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        try:
            self._feed(data)
        except _Refused as refused:
            self._refuse(refused.status, str(refused))
            return
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            if isinstance(cause, _Refused):
                self._refuse(cause.status, str(cause))
            else:
                self._refuse(400, "malformed request")
            return
        except (httptools.HttpParserError, httptools.HttpParserUpgrade):
            self._refuse(400, "malformed HTTP/1.1 request")
            return
        self._drain()

    def _feed(self, data: bytes) -> None:
        """Feed the parser so that an incomplete header block never holds more
        than ``max_header_bytes`` (+ one piece): httptools keeps a header's
        value until its end, so a piece is never larger than what may still
        be header. A known body is fed whole."""
        view = memoryview(data)
        limit = self.limits.max_header_bytes
        while view:
            allowance = limit + 1 - (self.header_bytes if self.in_headers else 0)
            if self.in_body and self.body_left is not None:
                allowance = self.body_left + limit + 1
            piece, view = view[:allowance], view[allowance:]
            continuing = self.in_headers
            self.began = False
            self.parser.feed_data(piece)
            if self.in_headers:  # a header block is still incomplete
                if continuing and not self.began:
                    self.header_bytes += len(piece)
                else:  # it began inside this piece: what the callbacks saw of it
                    self.header_bytes = self.seen_bytes
                if self.header_bytes > limit:
                    raise _Refused(431, f"request line and headers exceed {limit} bytes")

    # --- parser callbacks -------------------------------------------------------
    def on_message_begin(self) -> None:
        if len(self.queue) >= self.limits.max_pipelined:
            raise _Refused(400, f"more than {self.limits.max_pipelined} requests pipelined")
        self.url.clear()
        self.body.clear()
        self.in_headers, self.in_body, self.header_bytes = True, False, 0
        self.began, self.seen_bytes, self.body_left = True, 0, None
        self._set_phase("headers", self.limits.header_timeout)

    def on_url(self, url: bytes) -> None:
        self.url += url
        self.seen_bytes += len(url)
        if len(self.url) > self.limits.max_header_bytes:
            raise _Refused(431, f"request target exceeds {self.limits.max_header_bytes} bytes")

    def on_header(self, name: bytes, value: bytes) -> None:
        self.seen_bytes += len(name) + len(value) + 4
        if name.lower() == b"content-length":
            if not value.strip().isdigit():
                raise _Refused(400, "Content-Length is not a number")
            self.body_left = int(value)
            if int(value) > self.limits.max_body:
                raise _Refused(
                    413,
                    f"request body is {int(value)} bytes; at most {self.limits.max_body} "
                    "are accepted",
                )

    def on_headers_complete(self) -> None:
        self.in_headers, self.in_body = False, True
        self._set_phase("body", self.limits.body_timeout)

    def on_body(self, chunk: bytes) -> None:
        if len(self.body) + len(chunk) > self.limits.max_body:
            raise _Refused(413, f"request body exceeds {self.limits.max_body} bytes")
        self.body += chunk
        if self.body_left is not None:
            self.body_left -= len(chunk)

    def on_message_complete(self) -> None:
        self.in_body = False
        method = self.parser.get_method().decode("latin-1")
        path = self.url.decode("latin-1").partition("?")[0]
        keep = self.parser.should_keep_alive()
        self.queue.append((method, path, bytes(self.body), keep))
        self.body.clear()
        self._set_phase("answer", 0.0)

    # --- answering -------------------------------------------------------------
    def _drain(self) -> None:
        while self.queue and not self.busy and not self.closing:
            method, path, body, keep = self.queue.popleft()
            try:
                result = self.server.handler(method, path, body)
            except Exception:  # a handler bug; handlers catch their own
                log.exception("%s %s: the handler failed", method, path)
                result = (500, JSON, error_body("internal error; see the injector's logs"))
            if isinstance(result, tuple):
                self._answer(result, keep)
            else:
                self.busy = True
                if self.transport is not None:
                    self.transport.pause_reading()
                task = asyncio.ensure_future(result)
                task.add_done_callback(functools.partial(self._answered, keep=keep))
        quiet = not (self.queue or self.busy or self.closing or self.in_headers or self.in_body)
        if quiet:
            self._set_phase("idle", self.limits.idle_timeout)

    def _answered(self, task: asyncio.Future[Response], *, keep: bool) -> None:
        self.busy = False
        try:
            result = task.result()
        except Exception:
            log.exception("an answer computed off the event loop failed")
            result = (500, JSON, error_body("internal error; see the injector's logs"))
        if self.closing:
            return
        self._answer(result, keep)
        if self.transport is not None and not self.closing:
            self.transport.resume_reading()
        self._drain()

    def _answer(self, result: Response, keep: bool) -> None:
        status, content_type, body = result
        self._send(status, content_type, body, close=not keep)

    def _send(self, status: int, content_type: str, body: bytes, close: bool) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        self.transport.write(encode_response(status, content_type, body, close))
        if close:
            self.close()

    def _refuse(self, status: int, message: str) -> None:
        self.queue.clear()
        self._send(status, JSON, error_body(message), close=True)

    # --- deadlines ---------------------------------------------------------------
    def _set_phase(self, phase: str, timeout: float) -> None:
        self.phase = phase
        self.deadline = time.monotonic() + timeout if timeout else 0.0

    def check_deadline(self, now: float) -> None:
        if not self.deadline or now < self.deadline or self.closing:
            return
        if self.phase == "idle":
            self.close()
        elif self.phase == "headers":
            self._refuse(408, f"request headers not received within {self.limits.header_timeout}s")
        elif self.phase == "body":
            self._refuse(408, f"request body not received within {self.limits.body_timeout}s")

    def close(self) -> None:
        self.closing = True
        self.server.connections.discard(self)
        if self.transport is not None:
            with contextlib.suppress(Exception):
                self.transport.close()
