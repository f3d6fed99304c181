"""The shipper: one batch in flight, acknowledged, then its positions saved.

Batches leave in the order they were closed, one request at a time, so the
positions a batch carries are committed only after everything before it was
acknowledged: after a SIGKILL at any moment, only the batch that was in
flight can reach the sink twice. The queue in front of it holds at most
``buffer_batches`` closed batches; ``offer`` refuses a batch while it is
full, and the reader stops reading until it is taken: the files on disk are
the buffer, memory stays bounded.

A retryable failure (connection, timeout, 408, 429, 5xx) sends the same
records again after a jittered, capped back-off (``Retry-After`` honoured);
Elasticsearch items answered 429/5xx are sent again alone; a 413 splits the
request in halves; a final refusal drops those records, counted and logged
with the sink's reason. ``abort`` (the drain deadline) ends all waiting.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass

from sidecar.backoff import Backoff
from sidecar.log import Logger
from sidecar.logs.batch import Batch
from sidecar.logs.errors import RejectedError, RetryableSinkError, StateError, TooLargeError
from sidecar.logs.metrics import LogsMetrics
from sidecar.logs.positions import Positions
from sidecar.logs.sinks import Sink, compress, raw_payload


@dataclass
class Request:
    payload: bytes
    indexes: list[int]  # the batch's record indexes this request carries


class Shipper:
    def __init__(
        self,
        sink: Sink,
        positions: Positions,
        metrics: LogsMetrics,
        log: Logger,
        capacity: int,
        backoff: Backoff | None = None,
    ) -> None:
        self.sink = sink
        self.positions = positions
        self.metrics = metrics
        self.log = log
        self.capacity = capacity
        self.backoff = backoff or Backoff(initial=0.5, maximum=30.0)
        self.abort = threading.Event()
        self._queue: deque[Batch] = deque()
        self._cond = threading.Condition()
        self._busy = False
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="logs-shipper", daemon=True)
        self.acked_batches = 0
        self._dropped: dict[str, int] = {}

    def start(self) -> Shipper:
        self._thread.start()
        return self

    @property
    def idle(self) -> bool:
        with self._cond:
            return not self._queue and not self._busy

    def offer(self, batch: Batch) -> bool:
        """Queue ``batch`` unless the queue is full (or after ``abort``)."""
        with self._cond:
            if len(self._queue) >= self.capacity or self.abort.is_set():
                return False
            self._queue.append(batch)
            self.metrics.queued.set(len(self._queue))
            self._cond.notify_all()
            return True

    def close(self, timeout: float) -> None:
        """No more batches: finish the queue (or stop at ``abort``), then return."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout)
        self.sink.close()

    def pending_records(self) -> int:
        with self._cond:
            return sum(b.records for b in self._queue)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait(0.5)
                if not self._queue or self.abort.is_set():
                    return
                batch = self._queue[0]
                self._busy = True
            try:
                done = self._deliver(batch)
            except Exception as exc:  # a bug must not stop shipping silently
                self.log.error("shipping failed unexpectedly", error=f"{type(exc).__name__}: {exc}")
                done = False
                self.abort.wait(self.backoff.next())
            with self._cond:
                if done:
                    self._queue.popleft()
                self._busy = False
                self.metrics.queued.set(len(self._queue))
                self._cond.notify_all()
            if done:
                self._commit(batch)
            elif self.abort.is_set():
                return

    def _deliver(self, batch: Batch) -> bool:
        """Send ``batch`` until every record is acknowledged or refused; False at abort."""
        requests = [Request(batch.payload, list(range(batch.records)))]
        raw: bytes | None = None
        self._dropped = {}
        while requests:
            if self.abort.is_set():
                return False
            request = requests[0]
            self.metrics.sent_bytes.inc(len(request.payload))
            try:
                result = self.sink.send(request.payload, batch.compressed, len(request.indexes))
            except TooLargeError as exc:
                self.metrics.requests.inc(outcome="too_large")
                if len(request.indexes) == 1:
                    self._drop(batch, request.indexes, str(exc))
                    requests.pop(0)
                    continue
                raw = raw if raw is not None else raw_payload(batch.payload, batch.compressed)
                half = len(request.indexes) // 2
                requests[0:1] = [
                    self._request(batch, raw, request.indexes[:half]),
                    self._request(batch, raw, request.indexes[half:]),
                ]
                continue
            except RejectedError as exc:
                self.metrics.requests.inc(outcome="rejected")
                self._drop(batch, request.indexes, str(exc))
                requests.pop(0)
                continue
            except RetryableSinkError as exc:
                self.metrics.requests.inc(outcome="retryable")
                self._retry_later(
                    batch, request.indexes, str(exc), getattr(exc, "retry_after", None)
                )
                continue
            self.metrics.requests.inc(outcome="ok")
            requests.pop(0)
            if result.duplicates:
                self.metrics.duplicates.inc(result.duplicates)
            if result.dropped:
                self._drop(batch, [request.indexes[i] for i in result.dropped], result.reason)
            if result.retry:
                again = [request.indexes[i] for i in result.retry]
                raw = raw if raw is not None else raw_payload(batch.payload, batch.compressed)
                requests.insert(0, self._request(batch, raw, again))
                self._retry_later(batch, again, f"{len(again)} items answered 429/5xx", None)
            else:
                self.backoff.reset()
        return True

    def _request(self, batch: Batch, raw: bytes, indexes: list[int]) -> Request:
        body = self.sink.select(raw, indexes)
        return Request(compress(body, batch.compressed), indexes)

    def _retry_later(
        self, batch: Batch, indexes: list[int], error: str, retry_after: float | None
    ) -> None:
        for path, count in batch.paths_of(indexes).items():
            self.metrics.retried_lines.inc(count, file=path)
        wait = self.backoff.next()
        if retry_after is not None:
            wait = max(wait, retry_after)
        self.log.warning(
            "sink failed; sending again",
            sink=str(self.sink.spec),
            error=error,
            records=len(indexes),
            retry_in=round(wait, 2),
        )
        self.abort.wait(wait)

    def _drop(self, batch: Batch, indexes: list[int], reason: str) -> None:
        for path, count in batch.paths_of(sorted(indexes)).items():
            self.metrics.dropped_lines.inc(count, file=path)
            self._dropped[path] = self._dropped.get(path, 0) + count
        self.log.error(
            "sink refused records; dropped",
            sink=str(self.sink.spec),
            records=len(indexes),
            reason=reason,
        )

    def _commit(self, batch: Batch) -> None:
        try:
            self.positions.commit(batch.positions)
        except StateError as exc:
            self.log.error("positions not saved", error=str(exc))
        shipped: dict[str, int] = {}
        for run in batch.runs:
            shipped[run.path] = shipped.get(run.path, 0) + run.records
            self.metrics.shipped_bytes.inc(run.source_bytes, file=run.path)
        for path, count in shipped.items():
            self.metrics.shipped_lines.inc(count - self._dropped.get(path, 0), file=path)
        self.metrics.last_ack.set(time.time())
        self.acked_batches += 1
