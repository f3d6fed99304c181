"""``sidecar logs``: entry point of the logs role.

1. Read flags and ``SIDECAR_LOGS_*`` variables once (``settings.load``); a bad
   value exits 2 naming it. The state volume must be writable (exit 1 if not).
2. Serve /healthz, /ready (200 once the last run's positions are resumed),
   /metrics and POST /quitquitquit on the agent address (15024).
3. Follow the files, ship batches, checkpoint positions after each
   acknowledgement, until SIGTERM/SIGINT or /quitquitquit; then drain for at
   most ``--drain-timeout`` and exit 0 (an error line names what was left).
"""

from __future__ import annotations

import threading
import time

from sidecar.lifecycle import StopEvent, stop_event
from sidecar.log import Logger
from sidecar.logs.metrics import LogsMetrics
from sidecar.logs.positions import Positions
from sidecar.logs.reader import Reader
from sidecar.logs.records import encoder_for
from sidecar.logs.settings import LogsSettings, load
from sidecar.logs.shipper import Shipper
from sidecar.logs.sinks import make_sink
from sidecar.logs.tracker import Tracker
from sidecar.metrics import Registry
from sidecar.server import AgentServer


def main(argv: list[str]) -> int:
    return run(load(argv), stop_event())


def run(settings: LogsSettings, stop: StopEvent | threading.Event) -> int:
    log = Logger("logs", settings.log_level)
    registry = Registry("sidecar")
    metrics = LogsMetrics(registry)
    positions = Positions(settings.state_dir)
    positions.check_writable()
    encoder = encoder_for(settings.sink, settings.identity, settings.format == "json")
    sink = make_sink(
        settings.sink,
        settings.sink_timeout,
        settings.sink_ca,
        settings.sink_auth_file,
        settings.loki_tenant,
    )
    resumed = threading.Event()

    def readiness() -> tuple[bool, str]:
        if resumed.is_set():
            return True, "ready"
        return False, "resuming from the last checkpoint"

    server = AgentServer(*settings.agent_addr, registry, readiness, stop.set).start()
    shipper = Shipper(sink, positions, metrics, log, settings.buffer_batches).start()
    tracker = Tracker(settings, positions, metrics, log, encoder.needs_starts)
    metrics.lag_from(tracker.lag)
    try:
        tracker.resume(time.monotonic())
        resumed.set()
        log.info(
            "shipping",
            path=settings.path,
            files=list(settings.files),
            sink=str(settings.sink),
            format=settings.format,
        )
        Reader(settings, tracker, encoder, shipper, metrics, log).run(stop)
    finally:
        server.stop()
    return 0
