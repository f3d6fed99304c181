"""A real uvicorn server over TLS on 127.0.0.1 (ephemeral port) in a thread, for tests."""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from collections.abc import Awaitable, Callable, MutableMapping
from concurrent.futures import Future
from typing import Any

import uvicorn

from injector.admission.tls import ServingTLS
from tests.support import wait_for

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class GatedApp:
    """ASGI app: ``/fast`` answers at once, ``/slow`` only once ``release`` is set."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.slow_started = threading.Event()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["path"] == "/slow":
            self.slow_started.set()
            await asyncio.to_thread(self.release.wait, 30)
        body = scope["path"].encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})


class TLSServer:
    """uvicorn serving ``app`` with ``tls.context``; ``call`` runs code in its event loop."""

    def __init__(self, app: Any, tls: ServingTLS, sock: socket.socket | None = None) -> None:
        self.tls = tls
        if sock is None:
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
        self.sock = sock
        self.port = int(self.sock.getsockname()[1])
        config = uvicorn.Config(
            app,
            ssl_context_factory=tls.uvicorn_factory(),
            log_level="warning",
            lifespan="on",
        )
        self.server = uvicorn.Server(config)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.loop.run_until_complete(self.server.serve(sockets=[self.sock]))

    def start(self) -> TLSServer:
        self.thread.start()
        wait_for(lambda: self.server.started, what="uvicorn to start")
        return self

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` in the server's event loop thread and return its result."""
        assert self.loop is not None
        done: Future[Any] = Future()

        def run() -> None:
            try:
                done.set_result(fn())
            except BaseException as exc:
                done.set_exception(exc)

        self.loop.call_soon_threadsafe(run)
        return done.result(timeout=10)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)
        self.sock.close()


def client_context(ca_pem: bytes) -> ssl.SSLContext:
    return ssl.create_default_context(cadata=ca_pem.decode())
