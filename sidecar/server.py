"""The agent's own HTTP endpoint (health, readiness, metrics, exit).

Each role serves it on its agent port (proxy 15020, secrets 15021, config
15022): ``GET /healthz`` (the agent is alive), ``GET /ready`` (200 once the
role says so, 503 with the reason otherwise), ``GET /metrics`` (Prometheus
text), ``POST /quitquitquit`` (ask the role to stop, for classic sidecars in
Jobs), ``POST /reload`` (``sidecar signal`` only: signal the app). A stdlib
``ThreadingHTTPServer`` in a daemon thread: no framework.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from sidecar.errors import SidecarError
from sidecar.metrics import Registry

Readiness = Callable[[], tuple[bool, str]]


class AgentServer:
    def __init__(
        self,
        host: str,
        port: int,
        registry: Registry,
        readiness: Readiness,
        on_quit: Callable[[], None] | None = None,
        on_reload: Callable[[], tuple[int, str]] | None = None,
    ) -> None:
        self.registry = registry
        self.readiness = readiness
        self.on_quit = on_quit
        self.on_reload = on_reload
        handler = _make_handler(self)
        try:
            self.httpd = ThreadingHTTPServer((host, port), handler)
        except OSError as exc:
            raise SidecarError(
                f"--agent-addr / SIDECAR_AGENT_ADDR: cannot listen on {host}:{port} "
                f"({exc.strerror}); is another agent running? pick a free port"
            ) from None
        self.httpd.daemon_threads = True
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="agent-http")
        self._thread.daemon = True

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    def start(self) -> AgentServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _make_handler(agent: AgentServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "sidecar-agent"

        def log_message(self, format: str, *args: object) -> None:
            return

        def _send(self, status: int, body: str, content_type: str = "text/plain") -> None:
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", f"{content_type}; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/healthz":
                self._send(200, "ok\n")
            elif path == "/ready":
                ready, reason = agent.readiness()
                self._send(200 if ready else 503, (reason or ("ready" if ready else "")) + "\n")
            elif path == "/metrics":
                self._send(200, agent.registry.render(), "text/plain; version=0.0.4")
            elif path == "/quitquitquit":
                self._send(405, "use POST\n")
            else:
                self._send(404, "not found: try /healthz, /ready, /metrics\n")

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(min(length, 65536))
            path = self.path.split("?", 1)[0]
            if path == "/quitquitquit" and agent.on_quit is not None:
                agent.on_quit()
                self._send(200, "stopping\n")
            elif path == "/reload" and agent.on_reload is not None:
                self._send(*agent.on_reload())
            else:
                self._send(404, "not found: POST /quitquitquit\n")

    return Handler
