"""``sidecar config [--init]``: entry point of the config role.

``--init`` fetches once, writes the file set and exits 0, or exits 1 at its
deadline naming the source and the last error. Without it the agent is the
refresher: it serves /healthz, /ready (200 after the first successful sync)
and /metrics, keeps the files current, and tells the app once per change.
"""

from __future__ import annotations

import threading

from sidecar.backoff import Deadline
from sidecar.config.kube import KubeClient
from sidecar.config.settings import ConfigSettings, KubeSource, UrlSource, load
from sidecar.config.sources import HttpSource, ObjectSource
from sidecar.config.syncer import Fetch, Syncer, run_object, run_url, sync_once
from sidecar.errors import SidecarError, SourceError
from sidecar.lifecycle import StopEvent, stop_event
from sidecar.log import Logger
from sidecar.metrics import Registry
from sidecar.reload import Notifier
from sidecar.server import AgentServer


def main(argv: list[str]) -> int:
    return run(load(argv), stop_event())


def _lister(source: ObjectSource | None) -> Fetch:
    assert source is not None
    return lambda timeout: source.list(timeout).files


def run(settings: ConfigSettings, stop: StopEvent) -> int:
    log = Logger("config", settings.log_level)
    registry = Registry("sidecar")
    notifier = (
        Notifier(settings.reload, registry, log) if settings.reload and not settings.init else None
    )
    syncer = Syncer(settings.directory, registry, log, notifier)
    source = settings.source
    http_source: HttpSource | None = None
    object_source: ObjectSource | None = None
    if isinstance(source, UrlSource):
        http_source = HttpSource(source.url, settings.file_name)
    elif isinstance(source, KubeSource) and settings.kube is not None:
        client = KubeClient(settings.kube)
        object_source = ObjectSource(client, source, settings.kube.namespace, settings.interval)
    else:  # pragma: no cover - settings guarantee one of the two
        raise SidecarError(f"source {source} has no access settings")

    if settings.init:
        fetch = http_source.fetch if http_source else _lister(object_source)
        try:
            sync_once(fetch, syncer, Deadline.after(settings.deadline), stop)
        except SourceError as exc:
            raise SourceError(f"config source {source}: {exc}") from exc
        log.info("initial config written", source=str(source), directory=str(settings.directory))
        return 0

    def readiness() -> tuple[bool, str]:
        if syncer.synced:
            return True, "ready"
        if syncer.missing.value() == 1:
            return False, f"{source} does not exist; no files yet"
        return False, f"first sync from {source} pending"

    server = AgentServer(
        settings.agent_host, settings.agent_port, registry, readiness, stop.set
    ).start()
    log.info("refresher started", source=str(source), directory=str(settings.directory))
    worker = threading.Thread(
        target=run_url if http_source else run_object,
        args=(http_source, syncer, settings.interval, stop)
        if http_source
        else (object_source, syncer, stop),
        name="config-sync",
        daemon=True,
    )
    worker.start()
    stop.wait()
    server.stop()
    log.info("stopped")
    return 0
