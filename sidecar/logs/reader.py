"""The reader loop: files -> records -> batches -> the shipper.

Each round reads one chunk from every followed file that has grown (so one
busy file cannot starve the others), frames it into records and adds them
to the open batch. A batch is closed and handed to the shipper when it is
full, when its oldest record has waited ``batch_wait``, or at once when the
files are idle and the shipper has nothing to do (so a quiet app's lines
leave within a poll). While the shipper's queue is full the closed batch
waits here and no file is read (back-pressure stops the reading, never the
app), but the directory is still watched: files that appear are opened (an
open descriptor keeps a rotated file's content) and truncations are seen,
so rotations during an outage are not missed.

Draining (SIGTERM or POST /quitquitquit): records held for a newline or a
multiline record are shipped at once, batches close as soon as the files
are idle, and the loop ends when everything read was acknowledged and no
file grew for ``DRAIN_QUIET`` (a classic sidecar's app may still be writing
its last lines), or at ``drain_timeout``, whichever comes first.
"""

from __future__ import annotations

import threading
import time

from sidecar.backoff import Backoff
from sidecar.log import Logger
from sidecar.logs.batch import Batch, BatchBuilder
from sidecar.logs.framing import PARTIAL, Frames
from sidecar.logs.logfile import CHUNK, MIN_READ, TRUNCATED, Growth, LogFile
from sidecar.logs.metrics import LogsMetrics
from sidecar.logs.records import Encoder, FileMeta
from sidecar.logs.settings import LogsSettings
from sidecar.logs.shipper import Shipper
from sidecar.logs.tracker import Tracker

DRAIN_QUIET = 1.0  # seconds without growth before a drain may end
BUSY_NAP = 0.05  # the longest nap while records wait for a flush or a batch


class Reader:
    def __init__(
        self,
        settings: LogsSettings,
        tracker: Tracker,
        encoder: Encoder,
        shipper: Shipper,
        metrics: LogsMetrics,
        log: Logger,
    ) -> None:
        self.settings = settings
        self.tracker = tracker
        self.encoder = encoder
        self.shipper = shipper
        self.metrics = metrics
        self.log = log
        self.builder = BatchBuilder(
            encoder, settings.compress and encoder_compresses(shipper), settings.batch_bytes
        )
        self.metas: dict[str, FileMeta] = {}
        self.waiting: Batch | None = None  # closed, refused by a full queue
        self.expansion = 2.0  # encoded bytes per file byte, measured as records go
        self.failures = Backoff(initial=0.5, maximum=30.0)

    def run(self, stop: threading.Event) -> bool:
        """Follow until ``stop``, then drain; True when everything read was shipped."""
        next_scan = 0.0
        draining = False
        timer: threading.Timer | None = None
        try:
            while True:
                now = time.monotonic()
                if not draining and stop.is_set():
                    draining = True
                    timer = threading.Timer(self.settings.drain_timeout, self.shipper.abort.set)
                    timer.daemon = True
                    timer.start()
                    self.log.info("draining", timeout=self.settings.drain_timeout)
                    next_scan = 0.0
                try:
                    if now >= next_scan:
                        self.tracker.scan(now, self.emit)
                        self._forget_metas()
                        next_scan = now + self.settings.poll
                    progressed = self._round(now, draining)
                except Exception as exc:  # a bug must not end shipping: the checkpoint holds
                    self.log.error(
                        "reading failed unexpectedly", error=f"{type(exc).__name__}: {exc}"
                    )
                    time.sleep(self.failures.next())
                    continue
                self.failures.reset()
                if draining and (self.shipper.abort.is_set() or self._drained(now)):
                    break
                if not progressed:
                    time.sleep(self._nap(draining))
        finally:
            if timer is not None:
                timer.cancel()
        return self._finish()

    def _round(self, now: float, draining: bool) -> bool:
        self._hand_over()
        progressed = self.pump(now) if self.waiting is None else False
        self.flush(now, force=draining)
        self.close_batch(now, idle=not progressed, force=draining)
        return progressed

    def pump(self, now: float) -> bool:
        progressed = False
        for file in list(self.tracker.files.values()):
            try:
                growth = file.read(now, self._read_size())
            except OSError as exc:
                self.log.warning("read failed", file=file.path, error=exc.strerror)
                continue
            if growth is None:
                continue
            progressed = True
            if growth is TRUNCATED:
                self.tracker.truncated(file, now, self.emit)
                continue
            assert isinstance(growth, Growth)
            self.metrics.read_bytes.inc(len(growth.data), file=file.path)
            self.emit(file, file.framer.feed(growth.data, now))
        return progressed

    def _read_size(self) -> int:
        """What fits in the open batch, given how much records grow when encoded."""
        room = self.settings.batch_bytes - self.builder.raw_bytes
        return min(CHUNK, max(MIN_READ, int(room / self.expansion)))

    def flush(self, now: float, force: bool) -> None:
        for file in list(self.tracker.files.values()):
            if file.framer.held():
                self.emit(file, file.framer.flush(now, force=force))

    def emit(self, file: LogFile, frames: Frames) -> None:
        if not frames.messages:
            return
        count = len(frames.messages)
        self.metrics.read_lines.inc(count, file=file.path)
        if frames.marks is not None:
            for mark in frames.marks:
                if mark:
                    kind = "partial" if mark == PARTIAL else "truncated"
                    self.metrics.marked_lines.inc(file=file.path, mark=kind)
        meta = self.metas.get(file.fid)
        if meta is None:
            meta = self.metas[file.fid] = self.encoder.meta(file.path, file.fid)
        before = self.builder.raw_bytes
        self.builder.add(meta, frames, time.monotonic(), time.time_ns())
        if frames.source_bytes:
            grown = (self.builder.raw_bytes - before) / frames.source_bytes
            self.expansion = 0.8 * self.expansion + 0.2 * max(1.0, grown)
        if self.builder.full:
            self._close()

    def close_batch(self, now: float, idle: bool, force: bool) -> None:
        if self.builder.empty:
            return
        waited = now - self.builder.created >= self.settings.batch_wait
        if waited or (idle and (force or self.shipper.idle)):
            self._close()

    def _close(self) -> None:
        """Close the open batch (unless one already waits) and hand it over."""
        if self.waiting is None and not self.builder.empty:
            self.waiting = self.builder.close()
        self._hand_over()

    def _hand_over(self) -> None:
        if self.waiting is not None and self.shipper.offer(self.waiting):
            self.waiting = None

    def _drained(self, now: float) -> bool:
        files = list(self.tracker.files.values())
        return (
            self.builder.empty
            and self.waiting is None
            and self.shipper.idle
            and all(f.at_eof and not f.framer.held() for f in files)
            and all(f.idle_for(now) >= DRAIN_QUIET for f in files)
        )

    def _nap(self, draining: bool) -> float:
        if self.waiting is not None:
            return min(self.settings.poll, BUSY_NAP)
        if draining or not self.builder.empty:
            return BUSY_NAP
        if any(f.framer.held() for f in self.tracker.files.values()):
            return min(self.settings.poll, BUSY_NAP * 4)
        return self.settings.poll

    def _forget_metas(self) -> None:
        if len(self.metas) > 2 * len(self.tracker.files) + 8:
            self.metas = {k: v for k, v in self.metas.items() if k in self.tracker.files}

    def _finish(self) -> bool:
        self.shipper.close(timeout=5.0)
        lag = {path: n for path, n in self.tracker.lag().items() if n}
        if lag or self.waiting is not None or not self.shipper.idle:
            self.log.error(
                "stopped with records not shipped",
                unshipped_bytes=lag,
                queued_records=self.shipper.pending_records(),
            )
            return False
        self.log.info("stopped; everything read was shipped")
        return True


def encoder_compresses(shipper: Shipper) -> bool:
    """stdout takes plain text; every HTTP sink takes gzip."""
    return shipper.sink.kind != "stdout"
