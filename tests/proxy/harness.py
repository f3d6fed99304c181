"""Real pieces for the proxy tests: upstream HTTP(S) servers on 127.0.0.1, a
``sidecar proxy`` process with ephemeral ports, and a tiny HTTP client.

``Upstream`` answers by path:

* ``/echo`` - 200 with the request's method, path, client address and headers
  as JSON;
* ``/status/CODE`` - that status;
* ``/flaky/KEY?fail=N`` - 503 for the first N requests with that KEY, then 200;
* ``/hold/KEY`` - waits until the test calls ``release()`` or ``GET /release``
  (or 30 s), then 200.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.support import http_status, wait_for

HOLD_LIMIT = 30.0


class _ServerV6(ThreadingHTTPServer):
    address_family = socket.AF_INET6


class Upstream:
    def __init__(
        self, tls: ssl.SSLContext | None = None, address: tuple[str, int] = ("127.0.0.1", 0)
    ) -> None:
        self.hits: Counter[str] = Counter()
        self.held = 0
        self.sni: list[str | None] = []
        self._release = threading.Event()
        self._lock = threading.Lock()
        server = _ServerV6 if ":" in address[0] else ThreadingHTTPServer
        self.httpd = server(address, _handler(self))
        self.httpd.daemon_threads = True
        if tls is not None:
            tls.sni_callback = self._record_sni
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def _record_sni(self, sock: Any, name: str | None, ctx: Any) -> None:
        self.sni.append(name)

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    def start(self) -> Upstream:
        self.thread.start()
        return self

    def release(self) -> None:
        self._release.set()

    def close(self) -> None:
        self.release()
        self.httpd.shutdown()
        self.httpd.server_close()

    def _hold(self) -> None:
        with self._lock:
            self.held += 1
        self._release.wait(HOLD_LIMIT)


def _handler(up: Upstream) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            return

        def _reply(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            parts = url.path.strip("/").split("/")
            with up._lock:
                up.hits[url.path] += 1
                count = up.hits[url.path]
            if parts[0] == "status":
                self._reply(int(parts[1]), b"{}")
            elif parts[0] == "flaky":
                fail = int(parse_qs(url.query).get("fail", ["1"])[0])
                self._reply(503 if count <= fail else 200, json.dumps({"try": count}).encode())
            elif parts[0] == "hold":
                up._hold()
                self._reply(200, b'{"held": true}')
            elif parts[0] == "release":
                up.release()
                self._reply(200, b'{"released": true}')
            else:
                echo = {
                    "method": self.command,
                    "path": self.path,
                    "client": self.client_address[0],
                    "headers": {k.lower(): v for k, v in self.headers.items()},
                }
                self._reply(200, json.dumps(echo).encode())

    return Handler


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def request(
    port: int, path: str, headers: Mapping[str, str] | None = None, timeout: float = 10.0
) -> Response:
    """One GET on a fresh connection to 127.0.0.1:PORT."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers=dict(headers or {}))
        response = conn.getresponse()
        body = response.read()
        return Response(response.status, {k.lower(): v for k, v in response.getheaders()}, body)
    finally:
        conn.close()


def get_text(url: str, method: str = "GET") -> tuple[int, str]:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=5)
    try:
        conn.request(method, parts.path + (f"?{parts.query}" if parts.query else ""))
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


@dataclass
class Proxy:
    """A ``sidecar proxy`` process on ephemeral ports; ``stop()`` cleans up."""

    tmp: Path
    upstream: str | None = None
    inbound_port: int | None = None
    env: dict[str, str] = field(default_factory=dict)
    args: Sequence[str] = ()
    agent_port: int = 0
    admin_port: int = 0
    outbound_port: int = 0
    inbound_listen_port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        ports = iter(free_ports(4))
        for name in ("agent_port", "admin_port", "outbound_port", "inbound_listen_port"):
            if not getattr(self, name):
                setattr(self, name, next(ports))

    @property
    def work_dir(self) -> Path:
        return self.tmp / "work"

    @property
    def stdout_path(self) -> Path:
        return self.tmp / "proxy.stdout"

    @property
    def stderr_path(self) -> Path:
        return self.tmp / "proxy.stderr"

    @property
    def agent(self) -> str:
        return f"http://127.0.0.1:{self.agent_port}"

    def argv(self) -> list[str]:
        flags = {
            "--agent-addr": f"127.0.0.1:{self.agent_port}",
            "--admin-port": str(self.admin_port),
            "--outbound-port": str(self.outbound_port),
            "--inbound-listen-port": str(self.inbound_listen_port),
            "--work-dir": str(self.work_dir),
            "--concurrency": "1",
            "--upstream": self.upstream,
            "--inbound-port": str(self.inbound_port) if self.inbound_port else None,
        }
        argv = [sys.executable, "-m", "sidecar", "proxy"]
        for name, value in flags.items():
            # A variable the test sets must not be overridden by a flag (flags win).
            if value is not None and _variable(name) not in self.env:
                argv.append(f"{name}={value}")
        return argv + list(self.args)

    def environ(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SIDECAR_")}
        env.update(self.env)
        return env

    def start(self) -> Proxy:
        with self.stdout_path.open("wb") as out, self.stderr_path.open("wb") as err:
            self.proc = subprocess.Popen(
                self.argv(), stdout=out, stderr=err, env=self.environ(), start_new_session=True
            )
        return self

    def ready(self, timeout: float = 20.0) -> Proxy:
        def check() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"proxy exited {self.proc.returncode}: {self.stderr()}")
            return http_status(self.agent + "/ready") == 200

        wait_for(check, timeout=timeout, what="proxy /ready")
        return self

    def run(self, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        """Run to completion (for configurations that must fail)."""
        return subprocess.run(
            self.argv(),
            capture_output=True,
            text=True,
            env=self.environ(),
            timeout=timeout,
            check=False,
        )

    def stderr(self) -> str:
        return self.stderr_path.read_text() if self.stderr_path.exists() else ""

    def stdout(self) -> str:
        return self.stdout_path.read_text() if self.stdout_path.exists() else ""

    def logs(self) -> list[dict[str, Any]]:
        records = []
        for line in self.stderr().splitlines():
            try:
                records.append(json.loads(line))
            except ValueError:
                continue
        return records

    def access_log(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stdout().splitlines() if line.startswith("{")]

    def envoy_pid(self) -> int:
        for record in self.logs():
            if record.get("msg") == "envoy started":
                return int(record["pid"])
        raise AssertionError(f"no 'envoy started' in the log: {self.stderr()}")

    def metrics(self) -> str:
        status, body = get_text(self.agent + "/metrics")
        assert status == 200
        return body

    def signal(self, signum: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def wait(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self) -> None:
        """Kill whatever is left: the agent, and Envoy if it outlived it."""
        envoy = None
        with contextlib.suppress(AssertionError):
            envoy = self.envoy_pid()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        if envoy is not None and _is_envoy(envoy):
            with contextlib.suppress(ProcessLookupError):
                os.kill(envoy, signal.SIGKILL)


def free_ports(count: int) -> list[int]:
    """``count`` distinct ephemeral ports (held open together while picked)."""
    socks = [socket.socket() for _ in range(count)]
    try:
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def _variable(flag: str) -> str:
    return "SIDECAR_" + flag.removeprefix("--").upper().replace("-", "_")


def _is_envoy(pid: int) -> bool:
    try:
        return b"envoy" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one Prometheus sample (0 when absent)."""
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        head, _, value = line.rpartition(" ")
        sample, _, label_text = head.partition("{")
        if sample != name:
            continue
        found = dict(
            item.split("=", 1) for item in label_text.rstrip("}").split(",") if "=" in item
        )
        if all(found.get(k, "").strip('"') == v for k, v in labels.items()):
            return float(value)
    return 0.0


def admin_stat(proxy: Proxy, name: str) -> int:
    """One counter or gauge straight from Envoy's admin /stats."""
    status, body = get_text(f"http://127.0.0.1:{proxy.admin_port}/stats?filter=^{name}$")
    assert status == 200
    for line in body.splitlines():
        key, _, value = line.partition(": ")
        if key == name:
            return int(value)
    return 0
