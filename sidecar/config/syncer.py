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
from sidecar.files import DATA_LINK, write_file_set
from sidecar.lifecycle import StopEvent
from sidecar.log import Logger
from sidecar.metrics import Registry
from sidecar.reload import Notifier

# One fetch for ``--init``, given the socket timeout left by the deadline.
Fetch = Callable[[float], Files | None]


class Syncer:
    def __init__(
        self, directory: Path, registry: Registry, log: Logger, notifier: Notifier | None
    ) -> None:
        self.directory = directory
        self.log = log
        self.notifier = notifier
        self.synced = False
        # Files already there (from the init container, or before a restart) may
        # have been read by the app: changing them is a change for the app, even
        # on this process's first sync.
        self.app_may_have_read = (directory / DATA_LINK).is_dir()
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
        if files is None:
            self.fetches.inc(outcome="missing")
            self.last_success.set(time.time())
            self.missing.set(1)
            have = (self.directory / DATA_LINK).is_dir()
            self.log.warning(
                "source object missing; keeping the last files"
                if have
                else "source object missing; no files yet, not ready",
                directory=str(self.directory),
            )
            # Ready only with files: a pod must not start on no configuration.
            self.synced = self.synced or have
            return False
        changed = write_file_set(self.directory, files)
        self.fetches.inc(outcome="ok")
        self.last_success.set(time.time())
        self.missing.set(0)
        tell = changed and (self.synced or self.app_may_have_read)
        self.synced = True
        self.app_may_have_read = True
        if not changed:
            return False
        self.changes.inc()
        self.log.info("config written", directory=str(self.directory), keys=sorted(files))
        if self.notifier is not None and tell:
            return self.notifier.notify()
        return False

    def unchanged(self) -> None:
        self.fetches.inc(outcome="not_modified")
        self.last_success.set(time.time())
        self.synced = True

    def failed(self, error: BaseException) -> None:
        self.fetches.inc(outcome="error")
        if isinstance(error, SidecarError):
            self.log.warning("sync failed", error=str(error))
        else:  # a bug or an answer nobody anticipated: keep going, say what it was
            self.log.error("sync failed unexpectedly", error=f"{type(error).__name__}: {error}")


def run_url(source: HttpSource, syncer: Syncer, interval: float, stop: StopEvent) -> None:
    backoff = Backoff(initial=1.0, maximum=max(interval, 1.0))
    while not stop.is_set():
        try:
            files = source.fetch()
            if files is None:
                syncer.unchanged()
            else:
                syncer.apply(files)
        except Exception as exc:  # the loop must outlive any one failure
            if isinstance(exc, OutputError) or not isinstance(exc, SidecarError):
                source.forget()  # not written: fetch the whole body next time
            syncer.failed(exc)
            stop.wait(backoff.next())
            continue
        backoff.reset()
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
        except Exception as exc:  # the loop must outlive any one failure
            if not isinstance(exc, RetryableSourceError):
                # Not written, or not understood: list again rather than
                # resume the watch past it.
                source.invalidate()
            syncer.failed(exc)
            stop.wait(backoff.next())


def sync_once(fetch: Fetch, syncer: Syncer, deadline: Deadline, stop: StopEvent) -> None:
    """``--init``: one successful fetch and write, retried until the deadline.
    Failures that need a fix (a 403, a bad answer, a file that cannot be
    written) end it at once."""
    backoff = Backoff(initial=0.2, maximum=5.0)
    last: SidecarError | None = None
    while not deadline.expired and not stop.is_set():
        try:
            files = fetch(max(0.1, min(10.0, deadline.remaining())))
            if files is None:
                raise RetryableSourceError("the source object does not exist (yet)")
            syncer.apply(files)
            return
        except RetryableSourceError as exc:
            last = exc
            syncer.failed(exc)
        stop.wait(min(backoff.next(), deadline.remaining()))
    raise SourceError(f"no configuration within the deadline: {last}")
