"""Turns what a source says into files, and files into one reload per change.

``Syncer.apply(files)`` writes the set atomically (``sidecar.files``) only
when its content differs from what is on disk, and then, and only then,
notifies the app. ``run_url`` polls a URL every interval; ``run_object``
follows a ConfigMap/Secret watch. Both back off (jittered, capped) on errors
and keep the last good files. A deleted object keeps its last files too: the
app keeps running on the config it has, and the agent says so in its log and
``sidecar_config_source_missing``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from sidecar.backoff import Backoff, Deadline
from sidecar.config.sources import Files, HttpSource, ObjectSource
from sidecar.errors import OutputError, RetryableSourceError, SidecarError, SourceError
from sidecar.files import write_file_set
from sidecar.lifecycle import StopEvent
from sidecar.log import Logger
from sidecar.metrics import Registry
from sidecar.reload import Notifier

Fetch = Callable[[], Files | None]


class Syncer:
    def __init__(
        self, directory: Path, registry: Registry, log: Logger, notifier: Notifier | None
    ) -> None:
        self.directory = directory
        self.log = log
        self.notifier = notifier
        self.synced = False
        self.fetches = registry.counter("config_fetches_total", "Fetches by outcome", ("outcome",))
        self.changes = registry.counter("config_changes_total", "File set changes written")
        self.last_success = registry.gauge(
            "config_last_success_timestamp_seconds", "When the source was last read successfully"
        )
        self.relists = registry.counter(
            "config_relists_total", "Lists after the first (410 Gone or a broken watch)"
        )
        self.missing = registry.gauge(
            "config_source_missing", "1 while the ConfigMap/Secret does not exist"
        )

    def apply(self, files: Files | None) -> bool:
        """Write ``files`` if they changed; True when the app was told."""
        self.fetches.inc(outcome="ok")
        self.last_success.set(time.time())
        if files is None:
            self.missing.set(1)
            self.log.warning(
                "source object missing; keeping the last files", directory=str(self.directory)
            )
            self.synced = True
            return False
        self.missing.set(0)
        changed = write_file_set(self.directory, files)
        first = not self.synced
        self.synced = True
        if not changed:
            return False
        self.changes.inc()
        self.log.info("config written", directory=str(self.directory), keys=sorted(files))
        if self.notifier is not None and not first:
            return self.notifier.notify()
        return False

    def unchanged(self) -> None:
        self.fetches.inc(outcome="not_modified")
        self.last_success.set(time.time())
        self.synced = True

    def failed(self, error: SidecarError) -> None:
        self.fetches.inc(outcome="error")
        self.log.warning("fetch failed", error=str(error))


def run_url(source: HttpSource, syncer: Syncer, interval: float, stop: StopEvent) -> None:
    backoff = Backoff(initial=1.0, maximum=max(interval, 1.0))
    while not stop.is_set():
        try:
            files = source.fetch()
        except (SourceError, OutputError) as exc:
            syncer.failed(exc)
            stop.wait(backoff.next())
            continue
        backoff.reset()
        if files is None:
            syncer.unchanged()
        else:
            syncer.apply(files)
        stop.wait(interval)


def run_object(source: ObjectSource, syncer: Syncer, stop: StopEvent) -> None:
    backoff = Backoff(initial=0.5, maximum=30.0)
    while not stop.is_set():
        try:
            for event in source.events(stop):
                if event.relisted:
                    syncer.relists.inc()
                syncer.apply(event.files)
                backoff.reset()
                if stop.is_set():
                    return
        except (SourceError, OutputError) as exc:
            syncer.failed(exc)
            stop.wait(backoff.next())


def sync_once(fetch: Fetch, syncer: Syncer, deadline: Deadline, stop: StopEvent) -> None:
    """``--init``: one successful fetch and write, retried until the deadline."""
    backoff = Backoff(initial=0.2, maximum=5.0)
    last: SidecarError | None = None
    while not deadline.expired and not stop.is_set():
        try:
            files = fetch()
            if files is None:
                raise SourceError("source object does not exist")
            syncer.apply(files)
            return
        except RetryableSourceError as exc:
            last = exc
            syncer.failed(exc)
        except SourceError as exc:
            last = exc
            syncer.failed(exc)
            if "404" not in str(exc) and "does not exist" not in str(exc):
                raise
        stop.wait(min(backoff.next(), deadline.remaining()))
    raise SourceError(f"no configuration within the deadline: {last}")
