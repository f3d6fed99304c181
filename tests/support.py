"""Test helpers: polling with a deadline, free ports, waiting for HTTP."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TypeVar

T = TypeVar("T")


class Timeout(AssertionError):
    pass


def wait_for(
    check: Callable[[], T | bool | None],
    timeout: float = 10.0,
    interval: float = 0.02,
    what: str = "condition",
) -> T:
    """Poll ``check`` until it returns something truthy; return that value."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            value = check()
            if value:
                return value  # type: ignore[return-value]
        except Exception as exc:
            last_error = exc
        if time.monotonic() >= deadline:
            raise Timeout(
                f"timed out after {timeout}s waiting for {what}; last error: {last_error!r}"
            )
        time.sleep(interval)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_status(url: str, timeout: float = 2.0) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def wait_http_ok(url: str, timeout: float = 15.0) -> None:
    wait_for(lambda: http_status(url) == 200, timeout=timeout, what=f"200 from {url}")


class ReloadApp:
    """An app's reload endpoint on 127.0.0.1: counts POSTs, answers 500 to the
    first ``failures`` of them and 200 after. A context manager."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.calls = 0
        app = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                return

            def do_POST(self) -> None:
                app.calls += 1
                self.send_response(500 if app.calls <= app.failures else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/-/reload"

    def __enter__(self) -> ReloadApp:
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


class Processes:
    """Processes a test starts in their own sessions (``start_new_session``), each
    killed with its whole group by ``stop``; a pytest fixture yields one."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def add(self, proc: subprocess.Popen[bytes]) -> subprocess.Popen[bytes]:
        self.procs.append(proc)
        return proc

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
