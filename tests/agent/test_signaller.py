"""``sidecar signal``, run as a kubelet would run it (tests/kubelet.py): as the
app's user, no volume, on 127.0.0.1. ``POST /reload`` signals the app's
processes (by name, or every process of its user), and answers 503 naming
why when it cannot: no such process, or only another user's."""

from __future__ import annotations

import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from sidecar.errors import UsageError
from sidecar.signaller import load
from tests import kubelet
from tests.support import Processes, free_port, wait_for

ok, why = kubelet.available()
APP = (
    "import pathlib, signal, sys, time\n"
    "out = pathlib.Path(sys.argv[1])\n"
    "signal.signal(signal.SIGHUP, lambda *_: out.write_text('SIGHUP'))\n"
    "out.with_suffix('.ready').write_text('ready')\n"
    "while True:\n"
    "    time.sleep(0.05)\n"
)


def post(port: int) -> tuple[int, str]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/reload", method="POST", data=b"")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.fixture
def pod(tmp_path: Path) -> Iterator[kubelet.Pod]:
    with kubelet.Pod(tmp_path / "pod") as p:
        yield p


@pytest.fixture
def running() -> Iterator[Processes]:
    processes = Processes()
    yield processes
    processes.stop()


def start_app(pod: kubelet.Pod, running: Processes, name: str, user: int) -> Path:
    """An app process named ``name`` (its /proc/PID/comm) running as ``user``,
    from a volume mounted at /var/run/testapp (the pytest tmp dir is root's)."""
    volume = pod.volume("testapp")
    exe = volume / name
    if not exe.exists():
        exe.symlink_to(sys.executable)
    out = volume / f"{name}-{user}.txt"
    mount = kubelet.Mount("testapp", "/var/run/testapp")
    argv = [f"/var/run/testapp/{name}", "-c", APP, f"/var/run/testapp/{out.name}"]
    running.add(pod.start(argv, user=user, group=user, mounts=[mount]))
    wait_for(lambda: out.with_suffix(".ready").exists(), timeout=20, what=f"app {name} ready")
    return out


def start_signaller(pod: kubelet.Pod, running: Processes, target: str, user: int) -> int:
    port = free_port()
    command = [*kubelet.SIDECAR_IMAGE_COMMAND, "signal"]
    env = {"SIDECAR_SIGNAL": target, "SIDECAR_AGENT_ADDR": f"127.0.0.1:{port}"}
    running.add(pod.start(command, user=user, group=user, env=env))
    wait_for(lambda: _healthy(port), timeout=20, what="sidecar signal serving")
    return port


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


@pytest.mark.skipif(not ok, reason=why)
def test_post_reload_signals_the_named_app_process(pod: kubelet.Pod, running: Processes) -> None:
    out = start_app(pod, running, "shopapp", 4242)
    port = start_signaller(pod, running, "SIGHUP:shopapp", 4242)
    assert post(port) == (200, "signalled\n")
    wait_for(lambda: out.exists() and out.read_text() == "SIGHUP", timeout=10, what="the SIGHUP")


@pytest.mark.skipif(not ok, reason=why)
def test_without_a_name_every_process_of_its_user_is_signalled(
    pod: kubelet.Pod, running: Processes
) -> None:
    mine = start_app(pod, running, "app", 4242)
    theirs = start_app(pod, running, "app", 4243)
    port = start_signaller(pod, running, "SIGHUP", 4242)
    assert post(port)[0] == 200
    wait_for(lambda: mine.exists() and mine.read_text() == "SIGHUP", timeout=10, what="SIGHUP")
    assert not theirs.exists()  # another user's process is out of reach


@pytest.mark.skipif(not ok, reason=why)
def test_no_process_to_signal_is_a_503_saying_why(pod: kubelet.Pod, running: Processes) -> None:
    start_app(pod, running, "other", 4243)
    port = start_signaller(pod, running, "SIGHUP:missing", 4242)
    status, text = post(port)
    assert status == 503
    assert "no process named 'missing' is visible" in text
    port = start_signaller(pod, running, "SIGUSR1:other", 4242)
    status, text = post(port)
    assert status == 503
    assert "not allowed to signal" in text


def test_bad_signal_names_the_flag_and_variable() -> None:
    with pytest.raises(UsageError, match="--signal / SIDECAR_SIGNAL"):
        load([], environ={"SIDECAR_SIGNAL": "SIGNOPE"})
    with pytest.raises(UsageError, match="SIGKILL cannot be a reload signal"):
        load(["--signal", "KILL"], environ={})
    with pytest.raises(UsageError, match="--signal / SIDECAR_SIGNAL is required"):
        load([], environ={})
    settings = load(["--signal", "hup:nginx"], environ={})
    assert str(settings.target) == "signal:SIGHUP:nginx"
    assert (settings.agent_host, settings.agent_port) == ("127.0.0.1", 15023)
