"""``sidecar-injector serve``: the webhook over TLS on every core, and the hook
the operator's control loops plug into.

``run(ctx, sock, ...)`` forks the serving workers (``injector.admission.workers``)
and then runs the supervisor's event loop, which awaits ``operator(ctx)`` (an
``OperatorHook`` handed in by the CLI; this module never imports the
operator) as a task. Through ``ServeContext`` the operator may swap
``ctx.settings`` (profiles), load a new certificate into ``ctx.tls`` (served
from the next handshake), add readiness checks to ``ctx.readiness`` and feed
namespace labels into ``ctx.namespaces``; every change reaches every worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import ipaddress
import logging
import signal
import socket
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, MappingProxyType
from typing import Any

from injector.admission.certs import KeyPair, generate_ca, generate_serving_cert
from injector.admission.http import JSON, Limits, Response, Server, error_body
from injector.admission.metrics import CONTENT_TYPE, Metrics
from injector.admission.review import FailurePolicy
from injector.admission.tls import ServingTLS
from injector.admission.webhook import OFFLOAD_ABOVE, Webhook
from injector.admission.workers import (
    Channel,
    Supervisor,
    Upstream,
    fork,
    own_socket,
    worker_sockets,
)
from injector.core.model import NamespaceInfo
from injector.core.settings import Settings
from injector.errors import ConfigError

log = logging.getLogger("injector.admission.serve")
Listener = Callable[[Any], None]


class SettingsHolder:
    """The current ``Settings``; ``get`` is the webhook's settings provider."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self.listeners: list[Listener] = []

    def get(self) -> Settings:
        return self._settings

    def set(self, settings: Settings) -> None:
        self._settings = settings
        for listener in self.listeners:
            listener(("settings", settings))


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
        self.listeners: list[Listener] = []

    def update(self, name: str, labels: dict[str, str]) -> None:
        with self._lock:
            self._labels[name] = MappingProxyType(dict(labels))
        for listener in self.listeners:
            listener(("namespace", name, dict(labels)))

    def remove(self, name: str) -> None:
        with self._lock:
            self._labels.pop(name, None)
        for listener in self.listeners:
            listener(("namespace", name, None))

    def snapshot(self) -> dict[str, dict[str, str]]:
        with self._lock:
            return {name: dict(labels) for name, labels in self._labels.items()}

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
    webhook: Webhook
    host: str
    port: int
    failure_policy: FailurePolicy = "Fail"
    limits: Limits = field(default_factory=Limits)
    offload_above: int = OFFLOAD_ABOVE


OperatorHook = Callable[[ServeContext], Awaitable[None]]


def build_context(
    settings: Settings,
    host: str,
    port: int,
    *,
    failure_policy: FailurePolicy = "Fail",
    processes: int = 1,
    limits: Limits | None = None,
) -> ServeContext:
    """The supervisor's state; ``processes``: how many workers will count metrics."""
    holder = SettingsHolder(settings)
    readiness = ReadinessGate()
    namespaces = NamespaceCache()
    metrics = Metrics(processes)
    tls = ServingTLS()
    webhook = Webhook(
        holder.get,
        metrics=metrics,
        namespaces=namespaces.lookup,
        readiness=readiness,
        failure_policy=failure_policy,
    )
    readiness.add("tls", lambda: (tls.current is not None, "no serving certificate loaded yet"))
    return ServeContext(
        holder,
        tls,
        readiness,
        namespaces,
        metrics,
        webhook,
        host,
        port,
        failure_policy,
        limits or Limits(),
    )


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
        if hasattr(socket, "SO_REUSEPORT"):  # each worker listens on its own socket
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"--listen {host}:{port}: cannot bind: {exc.strerror or exc}") from None
    sock.set_inheritable(True)
    return sock


def url(host: str, port: int) -> str:
    return f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"


def run(
    ctx: ServeContext,
    sock: socket.socket,
    *,
    workers: int,
    operator: OperatorHook | None = None,
    metrics_sock: socket.socket | None = None,
    grace: float = 10.0,
) -> int:
    """Fork ``workers`` serving processes on ``sock``, then supervise them until
    SIGTERM/SIGINT (0) or until a worker or the operator fails (1)."""
    if ctx.metrics.rows < workers:
        raise ConfigError(f"metrics were made for {ctx.metrics.rows} workers, not {workers}")
    # Every object made so far goes to the permanent generation before the fork:
    # a worker's collections then never write to the pages it shares with the
    # supervisor (a collection writes each object's GC header, copying the page).
    listeners = worker_sockets(sock, workers)
    gc.collect()
    gc.freeze()
    children = fork(
        workers,
        lambda number, channel: _worker(ctx, number, own_socket(listeners, number), channel, grace),
    )
    for listener in {id(s): s for s in listeners}.values():
        listener.close()
    return _new_runner().run(_supervise(ctx, children, operator, metrics_sock, grace))


def _new_runner() -> asyncio.Runner:
    try:
        import uvloop  # noqa: PLC0415 (optional: a faster event loop and TLS)
    except ImportError:
        return asyncio.Runner()
    return asyncio.Runner(loop_factory=uvloop.new_event_loop)


def _state(ctx: ServeContext) -> list[Any]:
    """Everything a worker must know, as messages (sent first on every channel)."""
    messages: list[Any] = [("settings", ctx.settings.get())]
    messages += [("namespace", n, labels) for n, labels in ctx.namespaces.snapshot().items()]
    if ctx.tls.current is not None:
        messages.append(("tls", ctx.tls.current.cert_pem, ctx.tls.current.key_pem))
    return messages


async def _supervise(
    ctx: ServeContext,
    children: list[Any],
    operator: OperatorHook | None,
    metrics_sock: socket.socket | None,
    grace: float,
) -> int:
    supervisor = Supervisor(children, ctx.webhook.review_elsewhere, ctx.readiness)
    await supervisor.start()
    for message in _state(ctx):
        supervisor.broadcast(message)
    for source in (ctx.settings, ctx.namespaces, ctx.tls):
        source.listeners.append(supervisor.broadcast)
    _stop_on_signals(supervisor.stop)
    metrics_server = None
    if metrics_sock is not None:
        metrics_server = await Server(_metrics_routes(ctx.metrics)).start(metrics_sock, None)
    gc.collect()
    gc.freeze()
    task = asyncio.ensure_future(operator(ctx)) if operator is not None else None
    if task is not None:
        task.add_done_callback(lambda _: supervisor.stop.set())
    try:
        await supervisor.run()
    finally:
        supervisor.signal_workers(signal.SIGTERM)
        await supervisor.reap(grace + 5)
        if metrics_server is not None:
            metrics_server.close()
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
    operator_failed = task is not None and task.done() and not task.cancelled()
    return 1 if supervisor.failed or operator_failed else 0


def _stop_on_signals(stop: asyncio.Event) -> None:
    """Plain handlers (not the loop's): the operator hands them back after kopf
    replaces them."""
    loop = asyncio.get_running_loop()

    def handler(signum: int, frame: FrameType | None) -> None:
        loop.call_soon_threadsafe(stop.set)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, handler)


def _metrics_routes(metrics: Metrics) -> Callable[[str, str, bytes], Response]:
    def route(method: str, path: str, body: bytes) -> Response:
        if method != "GET":
            return 405, JSON, error_body(f"{path} takes GET")
        if path == "/metrics":
            return 200, CONTENT_TYPE, metrics.render()
        if path == "/healthz":
            return 200, JSON, b'{"status":"ok"}'
        return 404, JSON, error_body("this port serves /metrics")

    return route


def _worker(
    ctx: ServeContext, number: int, sock: socket.socket, channel: socket.socket, grace: float
) -> int:
    ctx.metrics.use_row(number)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_DFL)
    return _new_runner().run(_serve_worker(ctx, sock, channel, grace))


async def _serve_worker(
    ctx: ServeContext, sock: socket.socket, channel_sock: socket.socket, grace: float
) -> int:
    settings = SettingsHolder(ctx.settings.get())
    namespaces = NamespaceCache()
    tls = ServingTLS()
    if ctx.tls.current is not None:
        tls.load(ctx.tls.current)
    remote: list[tuple[bool, str]] = [(False, "waiting for the supervisor")]

    def apply(message: Any) -> None:
        kind = message[0]
        if kind == "settings":
            settings.set(message[1])
        elif kind == "namespace" and message[2] is None:
            namespaces.remove(message[1])
        elif kind == "namespace":
            namespaces.update(message[1], message[2])
        elif kind == "tls":
            tls.load(KeyPair(message[1], message[2]))
        elif kind == "ready":
            remote[0] = message[1]

    def readiness() -> tuple[bool, str]:
        if tls.current is None:
            return False, "tls: no serving certificate loaded yet"
        return remote[0]

    upstream = Upstream(await Channel.open(channel_sock), apply)
    webhook = Webhook(
        settings.get,
        metrics=ctx.metrics,
        namespaces=namespaces.lookup,
        readiness=readiness,
        failure_policy=ctx.failure_policy,
        offload=upstream.offload,
        offload_above=ctx.offload_above,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    listening = asyncio.ensure_future(upstream.run(stop))
    http = Server(webhook, ctx.limits)
    server = await http.start(sock, tls.context)
    gc.freeze()  # no collect first: it would walk (and copy) the pages shared with the supervisor
    # A review allocates thousands of short-lived objects (the decoded pod) that
    # reference counting frees; at the default threshold (700) the collector
    # ran several times per review, scanning the live pod each time.
    gc.set_threshold(50_000, 50, 100)
    await stop.wait()
    server.close()
    await http.drain(grace)
    listening.cancel()
    return 0


def write_ca(path: Path, ca: KeyPair) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(ca.cert_pem)
    tmp.replace(path)
