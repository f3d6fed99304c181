"""A tiny Prometheus registry for the agent (text exposition format 0.0.4).

The agent does not import prometheus-client: counters and gauges with fixed
label names are all it needs, and the stdlib keeps its memory and start-up
small. Thread-safe.
"""

from __future__ import annotations

import threading
from collections.abc import Callable


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class _Metric:
    kind = ""

    def __init__(self, name: str, help_text: str, labels: tuple[str, ...] = ()) -> None:
        self.name = name
        self.help = help_text
        self.labels = labels
        self._values: dict[tuple[str, ...], float] = {}
        self._lock = threading.Lock()
        if not labels:
            self._values[()] = 0.0

    def _key(self, labels: dict[str, str]) -> tuple[str, ...]:
        if set(labels) != set(self.labels):
            raise ValueError(f"metric {self.name} takes labels {self.labels}, got {tuple(labels)}")
        return tuple(labels[name] for name in self.labels)

    def value(self, **labels: str) -> float:
        with self._lock:
            return self._values.get(self._key(labels), 0.0)

    def render(self) -> str:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]
        with self._lock:
            items = sorted(self._values.items())
        for key, value in items:
            if key:
                pairs = ",".join(
                    f'{n}="{_escape(v)}"' for n, v in zip(self.labels, key, strict=True)
                )
                lines.append(f"{self.name}{{{pairs}}} {value:g}")
            else:
                lines.append(f"{self.name} {value:g}")
        return "\n".join(lines) + "\n"


class Counter(_Metric):
    kind = "counter"

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        key = self._key(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount


class Gauge(_Metric):
    kind = "gauge"

    def set(self, value: float, **labels: str) -> None:
        key = self._key(labels)
        with self._lock:
            self._values[key] = value


class Registry:
    """Holds the agent's metrics; ``render()`` gives the /metrics body."""

    def __init__(self, prefix: str = "sidecar") -> None:
        self.prefix = prefix
        self._metrics: list[_Metric] = []
        self._collectors: list[Callable[[], str]] = []

    def counter(self, name: str, help_text: str, labels: tuple[str, ...] = ()) -> Counter:
        metric = Counter(f"{self.prefix}_{name}", help_text, labels)
        self._metrics.append(metric)
        return metric

    def gauge(self, name: str, help_text: str, labels: tuple[str, ...] = ()) -> Gauge:
        metric = Gauge(f"{self.prefix}_{name}", help_text, labels)
        self._metrics.append(metric)
        return metric

    def add_collector(self, collect: Callable[[], str]) -> None:
        """Extra exposition text appended to /metrics (e.g. Envoy's own stats)."""
        self._collectors.append(collect)

    def render(self) -> str:
        parts = [m.render() for m in self._metrics]
        for collect in self._collectors:
            try:
                parts.append(collect())
            except Exception as exc:
                parts.append(f"# collector failed: {type(exc).__name__}\n")
        return "".join(parts)
