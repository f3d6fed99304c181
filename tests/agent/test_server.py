from __future__ import annotations

import threading
import urllib.error
import urllib.request

import pytest

from sidecar.metrics import Registry
from sidecar.server import AgentServer


def _get(url: str, method: str = "GET") -> tuple[int, str]:
    request = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_health_readiness_metrics_and_quit() -> None:
    registry = Registry("sidecar")
    counter = registry.counter("fetches_total", "Fetches by outcome", ("outcome",))
    counter.inc(outcome="ok")
    registry.add_collector(lambda: "envoy_up 1\n")
    state = {"ready": False}
    quit_called = threading.Event()
    server = AgentServer(
        "127.0.0.1",
        0,
        registry,
        readiness=lambda: (state["ready"], "ready" if state["ready"] else "first sync pending"),
        on_quit=quit_called.set,
    ).start()
    base = f"http://127.0.0.1:{server.port}"
    try:
        assert _get(base + "/healthz") == (200, "ok\n")
        assert _get(base + "/ready") == (503, "first sync pending\n")
        state["ready"] = True
        assert _get(base + "/ready")[0] == 200
        status, body = _get(base + "/metrics")
        assert status == 200
        assert 'sidecar_fetches_total{outcome="ok"} 1' in body
        assert "envoy_up 1" in body
        assert _get(base + "/quitquitquit")[0] == 405
        assert _get(base + "/quitquitquit", "POST")[0] == 200
        assert quit_called.is_set()
        assert _get(base + "/nope")[0] == 404
    finally:
        server.stop()


def test_metric_labels_are_checked() -> None:
    registry = Registry()
    counter = registry.counter("x_total", "x", ("outcome",))
    with pytest.raises(ValueError, match="takes labels"):
        counter.inc(result="ok")


def test_a_taken_port_is_a_clear_error() -> None:
    from sidecar.errors import SidecarError

    first = AgentServer("127.0.0.1", 0, Registry(), readiness=lambda: (True, "")).start()
    try:
        with pytest.raises(
            SidecarError, match=r"SIDECAR_AGENT_ADDR: cannot listen on 127\.0\.0\.1:"
        ):
            AgentServer("127.0.0.1", first.port, Registry(), readiness=lambda: (True, ""))
    finally:
        first.stop()
