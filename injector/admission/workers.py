"""Serving on every core: worker processes, each on its own listening socket.

Python runs one thread at a time, so one process answers on one core. The
supervisor (the process the CLI starts) binds the socket, then forks the
workers before any event loop or thread exists; each worker runs its own
event loop and HTTP server (``injector.admission.http``) on its own socket,
bound to the same address with SO_REUSEPORT, so the kernel spreads new
connections over them by address (sharing one socket, the first worker awake
accepted every connection waiting). The supervisor never serves
reviews: it keeps the state (settings, namespace labels, certificate,
readiness; the operator feeds them there) and sends every change to each
worker over its own socketpair as length-prefixed pickles, reviews the pods
too large to review on a worker's event loop (``offload``), serves the
metrics port, and stops everything on SIGTERM. A worker that dies stops the
injector (exit 1) so the kubelet restarts the pod whole.

Counters live in shared memory (``Metrics``), one row per worker, so every
process answers ``/metrics`` with the totals.
"""

from __future__ import annotations

import asyncio
import contextlib
import copyreg
import itertools
import logging
import math
import os
import pickle
import signal
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from injector.admission.webhook import Answer

log = logging.getLogger("injector.admission.workers")
_HEADER = struct.Struct("!I")


def mapping_proxy(items: dict[Any, Any]) -> MappingProxyType[Any, Any]:
    return MappingProxyType(items)


def _reduce_proxy(proxy: MappingProxyType[Any, Any]) -> tuple[Any, ...]:
    return mapping_proxy, (dict(proxy),)


copyreg.pickle(MappingProxyType, _reduce_proxy)  # Settings and labels hold them


def available_cores() -> int:
    """The cores this process may use: its CPU affinity, capped by a cgroup v2
    CPU quota (``cpu.max``, the pod's CPU limit), at least 1."""
    cores = len(os.sched_getaffinity(0))
    try:
        with open("/sys/fs/cgroup/cpu.max") as handle:
            quota, period = handle.read().split()[:2]
        if quota != "max":
            cores = min(cores, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError):
        pass
    return max(1, cores)


class Channel:
    """Length-prefixed pickles over one end of a socketpair (asyncio streams:
    sending never blocks the event loop)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, sock: socket.socket) -> Channel:
        reader, writer = await asyncio.open_unix_connection(sock=sock, limit=2**20)
        return cls(reader, writer)

    async def recv(self) -> Any:
        (size,) = _HEADER.unpack(await self.reader.readexactly(_HEADER.size))
        return pickle.loads(await self.reader.readexactly(size))  # noqa: S301 (our own processes)

    def send(self, message: Any) -> None:
        if self.writer.is_closing():
            return
        data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        self.writer.write(_HEADER.pack(len(data)) + data)


@dataclass
class Worker:
    number: int
    pid: int
    sock: socket.socket
    channel: Channel | None = None


WorkerMain = Callable[[int, socket.socket], int]


def fork(count: int, main: WorkerMain) -> list[Worker]:
    """Start ``count`` workers; each runs ``main(number, channel_socket)`` and
    exits with its result. Call before any event loop or thread starts."""
    workers: list[Worker] = []
    for number in range(count):
        parent_end, child_end = socket.socketpair()
        pid = os.fork()
        if pid == 0:  # the worker
            parent_end.close()
            for other in workers:
                other.sock.close()
            code = 1
            try:
                code = main(number, child_end)
            except BaseException:
                log.exception("worker %d failed", number)
            finally:
                logging.shutdown()
                os._exit(code)
        child_end.close()
        workers.append(Worker(number, pid, parent_end))
    return workers


@dataclass
class Supervisor:
    """The supervisor's side: state out to the workers, offloaded reviews in."""

    workers: list[Worker]
    review: Callable[[bytes], Answer]  # the supervisor's own webhook, for offloads
    readiness: Callable[[], tuple[bool, str]]
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    failed: bool = False
    _last_readiness: tuple[bool, str] | None = None

    async def start(self) -> None:
        for worker in self.workers:
            worker.channel = await Channel.open(worker.sock)

    def broadcast(self, message: Any) -> None:
        for worker in self.workers:
            if worker.channel is not None:
                worker.channel.send(message)

    async def run(self) -> None:
        """Until ``stop`` or a worker exits: answer offloads, push readiness."""
        tasks = [asyncio.ensure_future(self._listen(w)) for w in self.workers]
        tasks.append(asyncio.ensure_future(self._push_readiness()))
        try:
            await self.stop.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _listen(self, worker: Worker) -> None:
        assert worker.channel is not None
        while True:
            try:
                kind, job, body = await worker.channel.recv()
            except (asyncio.IncompleteReadError, ConnectionError):
                if not self.stop.is_set():
                    log.error("worker %d (pid %d) exited; stopping", worker.number, worker.pid)
                    self.failed = True
                    self.stop.set()
                return
            if kind == "offload":
                worker.channel.send(("answer", job, self.review(body)))

    async def _push_readiness(self) -> None:
        while True:
            try:
                state = self.readiness()
            except Exception as exc:
                state = (False, f"readiness check failed: {exc}")
            if state != self._last_readiness:
                self._last_readiness = state
                self.broadcast(("ready", state))
            await asyncio.sleep(0.5)

    def signal_workers(self, sig: int) -> None:
        for worker in self.workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker.pid, sig)

    async def reap(self, grace: float) -> None:
        """Wait for the workers to exit; SIGKILL what is left after ``grace``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        pending = {w.pid for w in self.workers}
        while pending and loop.time() < deadline:
            for pid in list(pending):
                done, _ = os.waitpid(pid, os.WNOHANG)
                if done:
                    pending.discard(pid)
            await asyncio.sleep(0.05)
        for pid in pending:
            log.warning("worker pid %d did not stop within %.0fs; killing it", pid, grace)
            with contextlib.suppress(ProcessLookupError, ChildProcessError):
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)


class Upstream:
    """A worker's side of its channel: state from the supervisor, offloads to it."""

    def __init__(self, channel: Channel, apply: Callable[[Any], None]) -> None:
        self.channel = channel
        self.apply = apply
        self.jobs = itertools.count()
        self.waiting: dict[int, asyncio.Future[Answer]] = {}

    async def offload(self, body: bytes) -> Answer:
        job = next(self.jobs)
        future: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self.waiting[job] = future
        try:
            self.channel.send(("offload", job, body))
            return await future
        finally:
            self.waiting.pop(job, None)

    async def run(self, lost: asyncio.Event) -> None:
        while True:
            try:
                message = await self.channel.recv()
            except (asyncio.IncompleteReadError, ConnectionError):
                lost.set()  # the supervisor is gone: stop serving
                return
            if message[0] == "answer":
                future = self.waiting.get(message[1])
                if future is not None and not future.done():
                    future.set_result(message[2])
            else:
                self.apply(message)


def worker_sockets(sock: socket.socket, workers: int) -> list[socket.socket]:
    """A listening socket per worker, bound with SO_REUSEPORT to ``sock``'s
    address, so the kernel spreads new connections over the workers by their
    addresses. Sharing one socket, the first worker awake accepted every
    connection waiting (an API server's keep-alive pool could all land on
    one worker). Without SO_REUSEPORT on ``sock``: the one socket for all."""
    reuse = getattr(socket, "SO_REUSEPORT", None)
    if workers == 1 or reuse is None or not sock.getsockopt(socket.SOL_SOCKET, reuse):
        return [sock] * workers
    found = [sock]
    for _ in range(workers - 1):
        extra = socket.socket(sock.family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        extra.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        extra.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        extra.bind(sock.getsockname())
        found.append(extra)
    return found


def own_socket(listeners: list[socket.socket], number: int) -> socket.socket:
    """In worker ``number``: its socket; the others' closed (the supervisor's copy too)."""
    mine = listeners[number]
    for other in listeners:
        if other is not mine:
            other.close()
    return mine
