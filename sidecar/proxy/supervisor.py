"""Running Envoy: validate, start, report readiness, drain, stop, notice death.

* ``prepare()`` writes the bootstrap to the work dir (atomically) and runs
  ``envoy --mode validate`` on it; a rejection becomes a ``UsageError`` that
  names the setting whose value appears in Envoy's message (or shows Envoy's
  message), before any Envoy serves anything.
* ``start()`` runs ``envoy -c FILE --disable-hot-restart --concurrency N``
  in its own process group (a Ctrl-C meant for the agent must not kill Envoy
  before the drain) with ``PR_SET_PDEATHSIG`` so it never outlives the agent.
  Envoy's stdout (the access log) is the agent's stdout; its stderr (its own
  log, JSON lines) is passed through and the last lines are kept.
* ``readiness()`` is true when Envoy answers ``/ready`` 200 and its workers
  and every listener are up (``listener_manager`` stats).
* ``drain()``: ``POST /healthcheck/fail``, ``POST
  /drain_listeners?graceful&inboundonly`` (Envoy keeps accepting on the
  inbound listener for ``--drain-grace`` while telling clients to close, then
  stops it), then poll the stats until no inbound connection and no outbound
  request is active, or the drain deadline passes.
* If Envoy exits on its own, ``on_exit`` is called and ``failure()`` describes
  it with Envoy's last log lines: the agent then exits non-zero and the
  kubelet restarts the container (we do not restart Envoy in place; see
  README "Proxy").
"""

from __future__ import annotations

import collections
import contextlib
import math
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import IO

from sidecar.errors import SidecarError, UsageError
from sidecar.files import write_atomic
from sidecar.log import Logger
from sidecar.metrics import Registry
from sidecar.proxy import bootstrap, config
from sidecar.proxy.admin import AdminError, EnvoyAdmin
from sidecar.proxy.settings import ProxySettings

LAST_LINES = 30
ACCESS_LOG_FLUSH_MS = 1000  # Envoy buffers the stdout access log; default 10s
STOP_TIMEOUT = 5.0
DRAIN_POLL = 0.1
# Envoy's own log as JSON lines, like the agent's (%j: the message, JSON-escaped).
LOG_FORMAT = '{"time":"%Y-%m-%dT%T.%eZ","level":"%l","role":"envoy","logger":"%n","msg":"%j"}'
# Envoy's info level lists every extension at start: the agent's info is Envoy's warning.
ENVOY_LOG_LEVEL = {"debug": "info", "info": "warning", "warning": "warning", "error": "error"}
# Inbound connections (explicit and captured) and requests on every HTTP listener.
DRAIN_STATS = (
    r"^(listener\.(capture_)?inbound\.downstream_cx_active"
    r"|http\.((capture_)?(inbound|outbound)|inbound_plaintext|egress)\.downstream_rq_active)$"
)
LISTENER_STATS = r"^listener_manager\.(workers_started|total_listeners_active)$"


class EnvoyFailed(SidecarError):
    """Envoy exited on its own, or could not be started."""


class Envoy:
    def __init__(self, settings: ProxySettings, log: Logger, registry: Registry) -> None:
        self.settings = settings
        self.log = log
        self.admin = EnvoyAdmin(settings.admin_port)
        self.proc: subprocess.Popen[bytes] | None = None
        self.last_lines: collections.deque[str] = collections.deque(maxlen=LAST_LINES)
        self._stopping = False
        self._draining = False
        self._listeners_up = False
        self._exited = threading.Event()
        self._reader: threading.Thread | None = None
        self.up = registry.gauge("proxy_envoy_up", "1 while the Envoy process runs")
        self.draining = registry.gauge("proxy_draining", "1 once a drain has started")
        self.ready_seconds = registry.gauge(
            "proxy_ready_seconds", "Seconds from agent start to the first ready"
        )
        registry.add_collector(self._collect)

    # -- before start -----------------------------------------------------

    def prepare(self) -> None:
        """Write the bootstrap and have Envoy validate it."""
        path = self.settings.bootstrap_path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(
                f"--work-dir / SIDECAR_WORK_DIR: cannot create {path.parent} ({exc.strerror}); "
                "mount a writable volume there"
            ) from None
        write_atomic(path, bootstrap.to_json(config.render(self.settings)), mode=0o400)
        try:
            result = subprocess.run(
                [
                    *(str(self.settings.envoy_path), "--mode", "validate", "-c", str(path)),
                    *("--log-level", "error", "--disable-hot-restart"),
                ],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
        except OSError as exc:
            raise UsageError(
                f"--envoy-path / SIDECAR_ENVOY_PATH: cannot run {self.settings.envoy_path} "
                f"({exc.strerror}); point it at an Envoy binary for this platform"
            ) from None
        except subprocess.TimeoutExpired:
            raise EnvoyFailed(
                f"envoy --mode validate -c {path} did not finish within 60s"
            ) from None
        if result.returncode != 0:
            path.unlink(missing_ok=True)
            raise UsageError(explain_rejection(result.stdout + result.stderr, self.settings))
        self.log.debug("bootstrap validated", path=str(path))

    def command(self) -> list[str]:
        s = self.settings
        return [
            str(s.envoy_path),
            "-c",
            str(s.bootstrap_path),
            "--disable-hot-restart",
            "--concurrency",
            str(s.concurrency),
            "--drain-time-s",
            str(math.ceil(s.drain_grace)),
            "--drain-strategy",
            "immediate",
            "--log-level",
            ENVOY_LOG_LEVEL[s.log_level],
            "--log-format",
            LOG_FORMAT,
            "--file-flush-interval-msec",
            str(ACCESS_LOG_FLUSH_MS),
        ]

    # -- running ----------------------------------------------------------

    def start(self, on_exit: Callable[[], None]) -> None:
        """Start Envoy (call from the main thread: the parent-death signal is
        tied to the thread that forks)."""
        try:
            self.proc = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                start_new_session=True,
                preexec_fn=_parent_death_hook(),  # noqa: PLW1509
            )
        except OSError as exc:
            raise EnvoyFailed(
                f"cannot start {self.settings.envoy_path}: {exc.strerror}; "
                "check --envoy-path / SIDECAR_ENVOY_PATH"
            ) from None
        self.up.set(1)
        self.log.info("envoy started", pid=self.proc.pid, concurrency=self.settings.concurrency)
        assert self.proc.stderr is not None
        self._reader = threading.Thread(
            target=self._pump, args=(self.proc.stderr,), name="envoy-log", daemon=True
        )
        self._reader.start()
        threading.Thread(
            target=self._watch, args=(self.proc, on_exit), name="envoy-wait", daemon=True
        ).start()

    def _pump(self, stream: IO[bytes]) -> None:
        """Pass Envoy's log through, one write per line (atomic on a pipe)."""
        for raw in stream:
            self.last_lines.append(raw.decode("utf-8", "replace").rstrip("\n"))
            with contextlib.suppress(OSError):
                os.write(sys.stderr.fileno(), raw if raw.endswith(b"\n") else raw + b"\n")

    def _watch(self, proc: subprocess.Popen[bytes], on_exit: Callable[[], None]) -> None:
        proc.wait()
        if self._reader is not None:
            self._reader.join(timeout=2.0)
        self.up.set(0)
        self._exited.set()
        if not self._stopping:
            on_exit()

    @property
    def died(self) -> bool:
        """Envoy exited without being asked to."""
        return self._exited.is_set() and not self._stopping

    def failure(self) -> EnvoyFailed:
        code = self.proc.returncode if self.proc is not None else None
        if code is not None and code < 0:
            how = f"was killed by {signal.Signals(-code).name}"
        else:
            how = f"exited with code {code}"
        lines = "\n".join("  " + line for line in self.last_lines) or "  (no output)"
        return EnvoyFailed(
            f"envoy {how}; exiting so that the kubelet restarts the container. "
            f"Envoy's last log lines:\n{lines}"
        )

    def readiness(self) -> tuple[bool, str]:
        if self._draining:
            return False, "draining"
        if self.proc is None or self._exited.is_set():
            return False, "envoy is not running"
        try:
            live, state = self.admin.ready()
            if not live:
                return False, f"envoy is {state}"
            if not self._listeners_up:
                stats = self.admin.stats(LISTENER_STATS)
                active = stats.get("listener_manager.total_listeners_active", 0)
                if stats.get("listener_manager.workers_started") != 1:
                    return False, "envoy workers are not started yet"
                if active < self.settings.listener_count:
                    return False, f"{active} of {self.settings.listener_count} listeners are up"
                self._listeners_up = True
        except AdminError as exc:
            return False, str(exc)
        return True, "ready"

    def wait_ready(self, started: float, stop: threading.Event) -> bool:
        """Poll readiness until ready or ``stop``; record start -> ready time."""
        while not stop.is_set():
            ready, _ = self.readiness()
            if ready:
                elapsed = time.monotonic() - started
                self.ready_seconds.set(round(elapsed, 3))
                self.log.info("ready", seconds=round(elapsed, 3))
                return True
            stop.wait(0.02)
        return False

    def _collect(self) -> str:
        if self.proc is None or self._exited.is_set():
            return ""
        return self.admin.prometheus()

    # -- stopping ---------------------------------------------------------

    def drain(self) -> None:
        """Fail readiness, drain the inbound listener, wait for in-flight work."""
        s = self.settings
        self._draining = True
        self.draining.set(1)
        started = time.monotonic()
        for path in ("/healthcheck/fail", "/drain_listeners?graceful&inboundonly"):
            try:
                self.admin.post(path)
            except AdminError as exc:
                self.log.warning("drain request failed", error=str(exc))
        self.log.info("draining", grace=s.drain_grace, deadline=s.drain_timeout)
        active: dict[str, int] = {}
        while not self._exited.is_set():
            elapsed = time.monotonic() - started
            try:
                active = self.admin.stats(DRAIN_STATS, used_only=True)
            except AdminError as exc:
                self.log.warning("drain poll failed", error=str(exc))
            if not _busy(active, elapsed >= s.drain_grace):
                self.log.info("drained", seconds=round(elapsed, 3))
                return
            if elapsed >= s.drain_timeout:
                self.log.warning(
                    "drain deadline reached; stopping envoy with work in flight",
                    deadline=s.drain_timeout,
                    active={k: v for k, v in active.items() if v},
                )
                return
            self._exited.wait(DRAIN_POLL)

    def stop(self) -> None:
        """Stop Envoy (SIGTERM, then SIGKILL after a few seconds). Idempotent."""
        self._stopping = True
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        self._exited.wait(STOP_TIMEOUT)
        self.log.info("envoy stopped", code=proc.returncode)


def _busy(active: dict[str, int], grace_over: bool) -> bool:
    """Work still in flight: an inbound connection (until the grace period is
    over; after it, idle keep-alive connections no longer count) or any
    request on either listener."""
    requests = sum(v for k, v in active.items() if k.startswith("http."))
    connections = sum(v for k, v in active.items() if k.startswith("listener."))
    return requests > 0 or (connections > 0 and not grace_over)


def explain_rejection(output: str, settings: ProxySettings) -> str:
    """Turn ``envoy --mode validate`` output into a message naming the setting."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    detail = next(
        (line for line in reversed(lines) if re.search(r"error|invalid|fail", line, re.I)),
        lines[-1] if lines else "no output",
    )
    detail = re.sub(r"^\[[^]]*\]\s*(\[[^]]*\]\s*)*", "", detail)[:400]
    candidates = {
        "--upstream-ca / SIDECAR_UPSTREAM_CA": str(settings.upstream_ca or ""),
        "--upstream / SIDECAR_UPSTREAM": settings.upstream.host if settings.upstream else "",
        "--retry-on / SIDECAR_RETRY_ON": ",".join(settings.retry_on),
    }
    for name, value in candidates.items():
        if value and value in output:
            return f"{name}: Envoy rejected {value!r}: {detail}"
    return (
        f"Envoy rejected the rendered bootstrap {settings.bootstrap_path}: {detail}; "
        "check the proxy settings (sidecar proxy --help)"
    )


def _parent_death_hook() -> Callable[[], None] | None:
    """A pre-exec hook that makes the child get SIGTERM when the agent dies
    (Linux ``PR_SET_PDEATHSIG``). Loaded here, in the parent: the child runs
    only the C call, no imports."""
    try:
        import ctypes  # noqa: PLC0415 (only the proxy role needs it)

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None

    def hook() -> None:
        prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG

    return hook
