"""The logs role's Prometheus metrics (``sidecar_logs_*``).

Per file (label ``file``, the path the file was found under, which a
rotation keeps): lines and bytes read, lines and bytes shipped
(acknowledged), lines retried (sent again), lines dropped (refused by the
sink for good), long lines marked, truncations, rotations, and
``sidecar_logs_lag_bytes``: bytes written but not acknowledged yet. A "line"
is a record: a multiline record counts once.
"""

from __future__ import annotations

from collections.abc import Callable

from sidecar.metrics import Registry

FILE = ("file",)


class LogsMetrics:
    def __init__(self, registry: Registry) -> None:
        c = registry.counter
        self.read_lines = c("logs_read_lines_total", "Records read from files", FILE)
        self.read_bytes = c("logs_read_bytes_total", "Bytes read from files", FILE)
        self.shipped_lines = c("logs_shipped_lines_total", "Records the sink acknowledged", FILE)
        self.shipped_bytes = c(
            "logs_shipped_bytes_total", "File bytes whose records the sink acknowledged", FILE
        )
        self.retried_lines = c("logs_retried_lines_total", "Records sent again", FILE)
        self.dropped_lines = c(
            "logs_dropped_lines_total", "Records the sink refused for good", FILE
        )
        self.marked_lines = c(
            "logs_long_lines_total",
            "Records marked partial or truncated (over --max-line)",
            ("file", "mark"),
        )
        self.truncations = c(
            "logs_truncations_total",
            "Files truncated under the agent, by whether a copy held the rest",
            ("file", "copy"),
        )
        self.rotations = c("logs_rotations_total", "Files renamed or deleted while followed", FILE)
        self.requests = c("logs_requests_total", "Requests to the sink by outcome", ("outcome",))
        self.sent_bytes = c("logs_sent_bytes_total", "Request bytes sent (compressed)")
        self.duplicates = c(
            "logs_duplicates_total", "Records the sink already had (Elasticsearch 409)"
        )
        self.queued = registry.gauge("logs_queued_batches", "Batches waiting for the sink")
        self.files = registry.gauge("logs_files", "Files followed")
        self.last_ack = registry.gauge(
            "logs_last_ack_timestamp_seconds", "When the sink last acknowledged a batch"
        )
        self._lag: Callable[[], dict[str, int]] = dict
        registry.add_collector(self._render_lag)

    def lag_from(self, lag: Callable[[], dict[str, int]]) -> None:
        self._lag = lag

    def _render_lag(self) -> str:
        lines = [
            "# HELP sidecar_logs_lag_bytes Bytes written to a file and not acknowledged yet",
            "# TYPE sidecar_logs_lag_bytes gauge",
        ]
        for path, lag in sorted(self._lag().items()):
            name = path.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
            lines.append(f'sidecar_logs_lag_bytes{{file="{name}"}} {lag}')
        return "\n".join(lines) + "\n"
