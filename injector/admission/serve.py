"""``sidecar-injector serve``: the webhook app on uvicorn over TLS, and the
hook the operator's control loops plug into.

``serve(ctx, operator, sock)`` awaits ``operator(ctx)`` (an ``OperatorHook``,
handed in by the CLI; this module never imports the operator) as a task in
the server's event loop. Through ``ServeContext`` the operator may swap
``ctx.settings`` (profiles), load a new certificate into ``ctx.tls`` (served
from the next handshake), add readiness checks to ``ctx.readiness`` and feed
namespace labels into ``ctx.namespaces``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import ipaddress
import logging
import socket
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import uvicorn
from fastapi import FastAPI

from injector.admission.certs import KeyPair, generate_ca, generate_serving_cert
from injector.admission.metrics import Metrics
from injector.admission.review import FailurePolicy
from injector.admission.tls import ServingTLS
from injector.admission.webhook import create_app
from injector.core.model import NamespaceInfo
from injector.core.settings import Settings
from injector.errors import ConfigError

log = logging.getLogger("injector.admission.serve")


class SettingsHolder:
    """The current ``Settings``; ``get`` is the webhook's settings provider."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    def get(self) -> Settings:
        return self._settings

    def set(self, settings: Settings) -> None:
        self._settings = settings


class ReadinessGate:
    """Named readiness checks; ready when all pass. Callable as the app's readiness."""

    def __init__(self) -> None:
        self._checks: dict[str, Callable[[], tuple[bool, str]]] = {}

    def add(self, name: str, check: Callable[[], tuple[bool, str]]) -> None:
        self._checks[name] = check

    def __call__(self) -> tuple[bool, str]:
        waiting = []
        for name, check in list(self._checks.items()):
            ok, reason = check()
            if not ok:
                waiting.append(f"{name}: {reason}")
        return (not waiting, "; ".join(waiting) or "ready")


class NamespaceCache:
    """Namespace labels, fed by a watch (the operator); unknown namespaces have none."""

    def __init__(self) -> None:
        self._labels: dict[str, MappingProxyType[str, str]] = {}
        self._lock = threading.Lock()

    def update(self, name: str, labels: dict[str, str]) -> None:
        with self._lock:
            self._labels[name] = MappingProxyType(dict(labels))

    def remove(self, name: str) -> None:
        with self._lock:
            self._labels.pop(name, None)

    def lookup(self, name: str) -> NamespaceInfo:
        labels = self._labels.get(name)
        return NamespaceInfo(name, labels) if labels is not None else NamespaceInfo(name)


@dataclass
class ServeContext:
    settings: SettingsHolder
    tls: ServingTLS
    readiness: ReadinessGate
    namespaces: NamespaceCache
    metrics: Metrics
    app: FastAPI
    host: str
    port: int


OperatorHook = Callable[[ServeContext], Awaitable[None]]


def build_context(
    settings: Settings,
    host: str,
    port: int,
    *,
    failure_policy: FailurePolicy = "Fail",
) -> ServeContext:
    holder = SettingsHolder(settings)
    readiness = ReadinessGate()
    namespaces = NamespaceCache()
    metrics = Metrics()
    tls = ServingTLS()
    app = create_app(
        holder.get,
        metrics=metrics,
        namespaces=namespaces.lookup,
        readiness=readiness,
        failure_policy=failure_policy,
    )
    readiness.add("tls", lambda: (tls.current is not None, "no serving certificate loaded yet"))
    return ServeContext(holder, tls, readiness, namespaces, metrics, app, host, port)


def self_signed(host: str, extra_names: list[str]) -> tuple[KeyPair, KeyPair]:
    """A CA and a serving certificate for ``host`` (plus localhost, 127.0.0.1)."""
    dns = ["localhost", *extra_names]
    ips = ["127.0.0.1"]
    try:
        address = ipaddress.ip_address(host)
        if not address.is_unspecified and str(address) not in ips:
            ips.append(str(address))
    except ValueError:
        if host not in dns:
            dns.insert(0, host)
    ca = generate_ca()
    return ca, generate_serving_cert(ca, dns, ips)


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound before uvicorn starts, so port 0 gives an
    ephemeral port that can be printed (and handed to the operator via ``ctx.port``)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY on accepted connections
    # only when the listening socket says TCP, and without it Nagle + delayed
    # ACK add ~40 ms to every answer uvicorn writes in two parts.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"--listen {host}:{port}: cannot bind: {exc.strerror or exc}") from None
    sock.set_inheritable(True)
    return sock


def url(host: str, port: int) -> str:
    return f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"


async def serve(
    ctx: ServeContext, operator: OperatorHook | None = None, sock: socket.socket | None = None
) -> None:
    config = uvicorn.Config(
        ctx.app,
        host=ctx.host,
        port=ctx.port,
        ssl_context_factory=ctx.tls.uvicorn_factory(),
        log_level="warning",
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=10,
    )
    server = uvicorn.Server(config)
    # Everything loaded so far (FastAPI, pydantic, the settings) lives as long
    # as the process: keep it out of the collector's full passes, which
    # otherwise pause the event loop for tens of ms (p99 at 200 reviews/s).
    gc.collect()
    gc.freeze()
    task: asyncio.Task[None] | None = None
    if operator is not None:
        task = asyncio.ensure_future(operator(ctx))
    try:
        await server.serve(sockets=[sock] if sock is not None else None)
    finally:
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


def write_ca(path: Path, ca: KeyPair) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(ca.cert_pem)
    tmp.replace(path)
