"""``sidecar config`` as a real process: --init, signals, and like a kubelet."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import kubelet
from tests.config.servers import ConfigServer, FakeApiServer, configmap, serve
from tests.support import free_port, http_status, wait_for

SIDECAR = [sys.executable, "-m", "sidecar", "config"]


@pytest.fixture
def config() -> Iterator[tuple[ConfigServer, str]]:
    state = ConfigServer(b"greeting: hello\n")
    with serve(state.handler()) as server:
        yield state, f"http://127.0.0.1:{server.server_address[1]}/app.yaml"


def test_init_writes_once_and_exits_zero(tmp_path: Path, config: tuple[ConfigServer, str]) -> None:
    _, url = config
    result = subprocess.run(
        [*SIDECAR, "--init", "--source", url, "--dir", str(tmp_path / "c"), "--file", "app.yaml"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "c" / "app.yaml").read_text() == "greeting: hello\n"


def test_init_with_unreachable_source_fails_within_its_deadline(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/app.yaml"  # nothing listens there
    started = time.monotonic()
    result = subprocess.run(
        [*SIDECAR, "--init", "--source", url, "--dir", str(tmp_path / "c"), "--deadline", "2s"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 1
    assert elapsed < 10
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"sidecar config: config source {url}: no configuration within")
    assert "unreachable" in last
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "c").exists() or not any((tmp_path / "c").iterdir())


def test_init_against_a_silent_server_ends_at_its_deadline(tmp_path: Path) -> None:
    """The server accepts connections and never answers: each request's
    timeout is what is left of the deadline, not the usual 10 s."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)  # the kernel completes handshakes; nobody reads
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/app.yaml"
        started = time.monotonic()
        result = subprocess.run(
            [*SIDECAR, "--init", "--source", url, "--dir", str(tmp_path / "c"), "--deadline", "1s"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        elapsed = time.monotonic() - started
    assert result.returncode == 1
    assert elapsed < 6, elapsed  # deadline 1s + interpreter start; 10s+ without the cap
    assert "timed out" in result.stderr.strip().splitlines()[-1]


def test_bad_value_exits_2_with_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [*SIDECAR, "--source", "configmap:Bad_Name"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "sidecar config: --source / SIDECAR_CONFIG_SOURCE: 'configmap:Bad_Name' is not an "
        "http(s):// URL, 'configmap:NAME' or 'secret:NAME' (NAME a lowercase DNS name)"
    )


COUNTER = """
import ctypes, signal, sys
ctypes.CDLL(None).prctl(15, b"cfg-app", 0, 0, 0)
count = 0
def on_hup(*_):
    global count
    count += 1
    open(sys.argv[1], "w").write(str(count))
signal.signal(signal.SIGHUP, on_hup)
open(sys.argv[1], "w").write("0")
while True:
    signal.pause()
"""


def test_change_reloads_a_process_by_signal_once(
    tmp_path: Path, config: tuple[ConfigServer, str]
) -> None:
    state, url = config
    hups = tmp_path / "hups"
    app = subprocess.Popen([sys.executable, "-c", COUNTER, str(hups)])
    port = free_port()
    agent = subprocess.Popen(
        [
            *SIDECAR,
            "--source",
            url,
            "--dir",
            str(tmp_path / "c"),
            "--interval",
            "1s",
            "--reload",
            "signal:SIGHUP:cfg-app",
            "--agent-addr",
            f"127.0.0.1:{port}",
        ],
        stderr=subprocess.PIPE,
    )
    try:
        wait_for(lambda: hups.exists() and hups.read_text() == "0", what="app started")
        wait_for(lambda: http_status(f"http://127.0.0.1:{port}/ready") == 200, what="ready")
        assert hups.read_text() == "0"  # the first sync is not a change for the app
        state.set(b"greeting: bonjour\n")
        wait_for(lambda: hups.read_text() == "1", what="one SIGHUP")
        wait_for(lambda: state.not_modified >= 2, what="later polls")
        assert hups.read_text() == "1"
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(timeout=10) == 0
    finally:
        for proc in (agent, app):
            if proc.poll() is None:
                proc.kill()
            proc.wait()


ok, why = kubelet.available()


@pytest.mark.skipif(not ok, reason=why)
def test_runs_like_a_kubelet_and_another_user_reads_the_files(
    tmp_path: Path, config: tuple[ConfigServer, str]
) -> None:
    _, url = config
    with kubelet.Pod(tmp_path / "pod") as pod:
        init = pod.run(
            [*kubelet.SIDECAR_IMAGE_COMMAND, "config", "--init"],
            user=1337,
            group=1337,
            mounts=[kubelet.Mount("sidecar-config", "/var/run/sidecar/config")],
            env={"SIDECAR_CONFIG_SOURCE": url, "SIDECAR_CONFIG_FILE": "app.yaml"},
        )
        assert init.returncode == 0, init.stderr
        written = pod.volume("sidecar-config") / "app.yaml"
        assert written.resolve().stat().st_uid == 1337
        reader = pod.run(
            [sys.executable, "-c", "print(open('/etc/app/app.yaml').read(), end='')"],
            user=1000,
            group=1000,
            mounts=[kubelet.Mount("sidecar-config", "/etc/app", read_only=True)],
        )
        assert reader.returncode == 0, reader.stderr
        assert reader.stdout == "greeting: hello\n"
        assert os.access(written, os.R_OK)


def test_init_of_a_configmap_names_the_source_when_the_api_is_unreachable(
    tmp_path: Path,
) -> None:
    token = tmp_path / "token"
    token.write_text("t")
    api = f"http://127.0.0.1:{free_port()}"
    result = subprocess.run(
        [
            *SIDECAR,
            "--init",
            "--source",
            "configmap:app-config",
            "--namespace",
            "ns",
            "--kube-api",
            api,
            "--kube-token-file",
            str(token),
            "--dir",
            str(tmp_path / "c"),
            "--deadline",
            "1s",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("sidecar config: config source configmap:app-config: no configuration")
    assert f"API server {api} unreachable" in last


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.mark.parametrize("kind", ["url", "configmap"])
def test_the_refresher_stays_within_30_mib_rss(
    tmp_path: Path, config: tuple[ConfigServer, str], kind: str
) -> None:
    """The issue's budget: <= 30 MiB RSS after a sync (stdlib only)."""
    _, url = config
    api = FakeApiServer("app-config")
    api.current = configmap("app-config", 1, {"app.yaml": "v: 1\n", "b": "2"})
    port = free_port()
    token = tmp_path / "token"
    token.write_text("t")
    with serve(api.handler()) as api_server:
        source = (
            ["--source", url]
            if kind == "url"
            else [
                "--source",
                "configmap:app-config",
                "--namespace",
                "ns",
                "--kube-api",
                f"http://127.0.0.1:{api_server.server_address[1]}",
                "--kube-token-file",
                str(token),
            ]
        )
        agent = subprocess.Popen(
            [
                *SIDECAR,
                *source,
                "--dir",
                str(tmp_path / "c"),
                "--interval",
                "1s",
                "--reload",
                "http://127.0.0.1:9/-/reload",
                "--agent-addr",
                f"127.0.0.1:{port}",
            ],
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_for(lambda: http_status(f"http://127.0.0.1:{port}/ready") == 200, what="ready")
            http_status(f"http://127.0.0.1:{port}/metrics")
            rss = _rss_kib(agent.pid)
            print(f"sidecar config ({kind}) VmRSS after a sync: {rss / 1024:.1f} MiB")
            assert rss <= 30 * 1024, f"{rss} KiB"
        finally:
            api.released.set()
            agent.terminate()
            agent.wait(timeout=10)
