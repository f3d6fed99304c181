"""``sidecar proxy``: the agent that runs Envoy next to the app.

1. Read flags and ``SIDECAR_*`` variables once (``settings.load``); a bad value
   exits 2 with a message naming it, before anything is written or started.
2. Write the Envoy bootstrap to the work dir and validate it with ``envoy
   --mode validate``.
3. Serve /healthz, /ready, /metrics and POST /quitquitquit on the agent
   address; start Envoy.
4. Wait for SIGTERM/SIGINT, POST /quitquitquit, or Envoy's death.
   SIGTERM/quit: fail readiness, drain (see ``supervisor.Envoy.drain``), stop
   Envoy, exit 0. Envoy's death: exit 1 with Envoy's last log lines.

``sidecar proxy --wait-ready [--wait-timeout 60s]`` does none of that: it
polls the running agent's /ready (at ``--agent-addr``) and exits 0 once it
answers 200, or 1 at the deadline; a postStart hook for classic sidecars.
"""

from __future__ import annotations

import http.client
import sys
import threading
import time
from urllib.parse import urlsplit

from sidecar.lifecycle import stop_event
from sidecar.log import Logger
from sidecar.metrics import Registry
from sidecar.proxy.mesh_stats import mesh_identity, readiness
from sidecar.proxy.settings import ProxySettings, WaitReadySettings, load_any
from sidecar.proxy.supervisor import Envoy
from sidecar.server import AgentServer


def main(argv: list[str]) -> int:
    started = time.monotonic()
    settings = load_any(argv)
    if isinstance(settings, WaitReadySettings):
        return wait_ready(settings)
    return run(settings, started)


def run(settings: ProxySettings, started: float) -> int:
    log = Logger("proxy", settings.log_level)
    stop = stop_event()
    quit_requested = threading.Event()
    registry = Registry("sidecar")
    envoy = Envoy(settings, log, registry)
    identity = mesh_identity(settings, log, registry, envoy)
    if identity is None:
        envoy.prepare()

    def on_quit() -> None:
        quit_requested.set()
        stop.set()

    server = AgentServer(
        settings.agent_host, settings.agent_port, registry, readiness(envoy, identity), on_quit
    ).start()
    try:
        if identity is not None:  # Envoy starts with its certificate on disk
            if not identity.obtain_first(stop):
                return 0
            envoy.prepare()
        if stop.is_set():  # stopped while validating: nothing to drain
            return 0
        envoy.start(on_exit=stop.set)
        if identity is not None:
            identity.start(stop)
        envoy.wait_ready(started, stop)
        stop.wait()
        if envoy.died:
            raise envoy.failure()
        reason = "quitquitquit" if quit_requested.is_set() else "signal"
        log.info("stopping", reason=reason)
        envoy.drain()
        if envoy.died:
            raise envoy.failure()
        envoy.stop()
        log.info("stopped")
        return 0
    finally:
        envoy.stop()
        server.stop()


def wait_ready(settings: WaitReadySettings) -> int:
    """Poll the agent's /ready until 200 or the deadline."""
    deadline = time.monotonic() + settings.timeout
    url = urlsplit(settings.url)
    last = "no answer yet"
    while True:
        conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=2.0)
        try:
            conn.request("GET", url.path)
            response = conn.getresponse()
            if response.status == 200:
                return 0
            last = f"{response.status} {response.read(200).decode('utf-8', 'replace').strip()}"
        except (OSError, http.client.HTTPException) as exc:
            last = str(exc) or type(exc).__name__
        finally:
            conn.close()
        if time.monotonic() >= deadline:
            print(
                f"sidecar proxy --wait-ready: {settings.url} not ready after "
                f"{settings.timeout:g}s (last: {last})",
                file=sys.stderr,
            )
            return 1
        time.sleep(0.1)
