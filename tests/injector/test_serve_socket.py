"""The listening socket: asyncio turns TCP_NODELAY on for accepted connections
only when the listener is created with proto IPPROTO_TCP. Without it every
answer uvicorn writes in two parts waits ~40 ms for Nagle and a delayed ACK
(make bench showed /healthz at 360/s instead of 10,000/s)."""

from __future__ import annotations

import os
import socket
import ssl
from pathlib import Path

from injector.admission.serve import bind
from tests.golden_tool import BASE_SETTINGS
from tests.injector.server import InjectorServer


def test_listener_is_tcp_so_accepted_connections_get_nodelay() -> None:
    sock = bind("127.0.0.1", 0)
    try:
        assert sock.proto == socket.IPPROTO_TCP
        assert sock.getsockname()[1] != 0
    finally:
        sock.close()


def _sockets(pid: int) -> int:
    fds = Path(f"/proc/{pid}/fd")
    return sum(1 for fd in fds.iterdir() if os.readlink(fd).startswith("socket:"))


def test_connections_waiting_together_reach_every_worker(tmp_path: Path) -> None:
    """16 connections made at once (an API server's keep-alive pool) land on
    both workers: each has its own listening socket (SO_REUSEPORT). On one
    shared socket the first worker awake accepted them all."""
    server = InjectorServer(tmp_path, BASE_SETTINGS, "--workers", "2").start()
    try:
        tasks = Path(f"/proc/{server.proc.pid}/task").glob("*/children")
        workers = [int(pid) for task in tasks for pid in task.read_text().split()]
        assert len(workers) == 2, workers
        before = {w: _sockets(w) for w in workers}
        raw = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(16)]
        context = ssl.create_default_context(cafile=server.ca)
        conns = [context.wrap_socket(s, server_hostname="127.0.0.1") for s in raw]
        try:
            for conn in conns:
                conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                assert conn.recv(4096).startswith(b"HTTP/1.1 200")
            gained = {w: _sockets(w) - before[w] for w in workers}
            assert sum(gained.values()) == 16, gained
            assert all(n > 0 for n in gained.values()), gained
        finally:
            for conn in conns:
                conn.close()
    finally:
        server.stop()
