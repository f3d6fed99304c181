from __future__ import annotations

import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import StringIO
from pathlib import Path

import pytest

from sidecar.backoff import Backoff
from sidecar.log import Logger
from sidecar.metrics import Registry
from sidecar.reload import HttpTarget, Notifier, SignalTarget, parse_reload
from tests.support import wait_for


def test_parse_reload_forms() -> None:
    assert parse_reload("http://127.0.0.1:9/-/reload") == HttpTarget(
        "POST", "http://127.0.0.1:9/-/reload"
    )
    assert parse_reload("GET http://x/r") == HttpTarget("GET", "http://x/r")
    assert parse_reload("signal:SIGHUP") == SignalTarget(signal.SIGHUP, None)
    assert parse_reload("signal:hup:nginx") == SignalTarget(signal.SIGHUP, "nginx")


@pytest.mark.parametrize("text", ["ftp://x", "signal:SIGNOPE", "signal:SIGKILL", "DELETE http://x"])
def test_parse_reload_rejects(text: str) -> None:
    with pytest.raises(ValueError, match=r"signal|URL|SIG"):
        parse_reload(text)


class _App:
    """A real HTTP app on 127.0.0.1 that fails its first ``failures`` reloads."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0
        app = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                return

            def do_POST(self) -> None:
                app.calls += 1
                status = 500 if app.calls <= app.failures else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/-/reload"


@pytest.fixture
def app() -> Iterator[_App]:
    app = _App(failures=2)
    yield app
    app.server.shutdown()


def test_http_reload_retries_until_acknowledged(app: _App) -> None:
    registry = Registry()
    notifier = Notifier(
        parse_reload(app.url),
        registry,
        Logger("test", stream=StringIO()),
        backoff=Backoff(initial=0.01, maximum=0.05),
    )
    assert notifier.notify() is True
    assert app.calls == 3
    assert notifier.reloads.value(outcome="ok") == 1
    assert 'sidecar_reloads_total{outcome="ok"} 1' in registry.render()


def test_http_reload_gives_up_and_counts(app: _App) -> None:
    app.failures = 100
    notifier = Notifier(
        parse_reload(app.url),
        Registry(),
        Logger("test", stream=StringIO()),
        attempts=3,
        backoff=Backoff(initial=0.01, maximum=0.02),
    )
    assert notifier.notify() is False
    assert app.calls == 3
    assert notifier.reloads.value(outcome="failed") == 1


def test_signal_reload_reaches_a_named_process(tmp_path: Path) -> None:
    counter = tmp_path / "hups"
    script = (
        "import ctypes, signal, sys, time\n"
        "ctypes.CDLL(None).prctl(15, b'reload-target', 0, 0, 0)\n"  # PR_SET_NAME
        "n = 0\n"
        "def on_hup(*_):\n"
        "    global n; n += 1; open(sys.argv[1], 'w').write(str(n))\n"
        "signal.signal(signal.SIGHUP, on_hup)\n"
        "open(sys.argv[1], 'w').write('0')\n"
        "while True: signal.pause()\n"
    )
    child = subprocess.Popen([sys.executable, "-c", script, str(counter)])
    try:
        wait_for(lambda: counter.exists() and counter.read_text() == "0", what="child ready")
        notifier = Notifier(
            parse_reload("signal:SIGHUP:reload-target"), Registry(), Logger("t", stream=StringIO())
        )
        assert notifier.notify() is True
        wait_for(lambda: counter.read_text() == "1", what="one SIGHUP counted")
    finally:
        child.kill()
        child.wait()


def test_signal_reload_without_target_fails_clearly() -> None:
    log = StringIO()
    notifier = Notifier(
        parse_reload("signal:SIGHUP:no-such-process-xyz"),
        Registry(),
        Logger("t", stream=log),
        attempts=2,
        backoff=Backoff(initial=0.01, maximum=0.01),
    )
    assert notifier.notify() is False
    assert "shareProcessNamespace" in log.getvalue()
