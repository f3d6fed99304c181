from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from io import StringIO
from pathlib import Path

import pytest

from contract.reload import HttpTarget, SignalTarget, parse_reload
from sidecar.backoff import Backoff
from sidecar.log import Logger
from sidecar.metrics import Registry
from sidecar.reload import Notifier
from tests.support import ReloadApp, wait_for


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


@pytest.fixture
def app() -> Iterator[ReloadApp]:
    with ReloadApp(failures=2) as reload_app:
        yield reload_app


def test_http_reload_retries_until_acknowledged(app: ReloadApp) -> None:
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


def test_http_reload_gives_up_and_counts(app: ReloadApp) -> None:
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
