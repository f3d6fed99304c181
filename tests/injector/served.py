"""The webhook's real HTTP server (``injector.admission.http``) in this process:
its own event loop in a thread, a socket on 127.0.0.1, plain HTTP or TLS,
and an httpx client. For tests that need a handler's state (metrics, a
monkeypatched function) next to real HTTP; ``tests.injector.server`` runs
``sidecar-injector serve`` as a process instead."""

from __future__ import annotations

import asyncio
import ssl
import threading
from typing import Any

import httpx

from injector.admission.http import Handler, Limits, Server
from injector.admission.serve import bind


class Served:
    def __init__(
        self,
        handler: Handler,
        *,
        limits: Limits | None = None,
        tls: ssl.SSLContext | None = None,
        client_tls: ssl.SSLContext | None = None,
    ) -> None:
        self.server = Server(handler, limits)
        self.tls = tls
        self.sock = bind("127.0.0.1", 0)
        self.port = int(self.sock.getsockname()[1])
        scheme = "https" if tls else "http"
        self.url = f"{scheme}://127.0.0.1:{self.port}"
        self.client_tls = client_tls
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.client: httpx.Client | None = None

    def __enter__(self) -> Served:
        self.thread.start()
        started = asyncio.run_coroutine_threadsafe(
            self.server.start(self.sock, self.tls), self.loop
        )
        self.listening = started.result(timeout=10)
        self.client = httpx.Client(base_url=self.url, verify=self.client_tls or False, timeout=30)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.client is not None:
            self.client.close()

        async def stop() -> None:
            self.listening.close()
            self.server.close_all()

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()

    def call(self, function: Any) -> Any:
        """Run ``function()`` in the server's loop and return its result."""

        async def run() -> Any:
            return function()

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout=10)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        assert self.client is not None
        return self.client.post(path, **kwargs)

    def get(self, path: str) -> httpx.Response:
        assert self.client is not None
        return self.client.get(path)
