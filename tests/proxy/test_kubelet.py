"""``sidecar proxy`` run the way a kubelet runs the injected container: read-only
root filesystem, only its work-dir volume writable, as UID/GID 1337, no
capabilities, next to an app running as another user."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.kubelet import SIDECAR_IMAGE_COMMAND, Mount, Pod, available
from tests.proxy.harness import Upstream, free_ports, request
from tests.support import free_port, http_status, wait_for

ok, why = available()
pytestmark = pytest.mark.skipif(not ok, reason=why)

WORK_DIR = "/var/run/sidecar/proxy"


@pytest.fixture
def pod(tmp_path: Path) -> Iterator[Pod]:
    with Pod(tmp_path) as pod:
        yield pod


def test_proxy_runs_as_1337_with_only_its_volume_writable(
    pod: Pod, upstream: Upstream, tmp_path: Path
) -> None:
    ports = dict(zip(("agent", "admin", "outbound", "inbound"), free_ports(4), strict=True))
    env = {
        "SIDECAR_AGENT_ADDR": f"127.0.0.1:{ports['agent']}",
        "SIDECAR_ADMIN_PORT": str(ports["admin"]),
        "SIDECAR_OUTBOUND_PORT": str(ports["outbound"]),
        "SIDECAR_INBOUND_LISTEN_PORT": str(ports["inbound"]),
        "SIDECAR_UPSTREAM": f"http://127.0.0.1:{upstream.port}",
        "SIDECAR_INBOUND_PORT": str(upstream.port),
        "SIDECAR_CONCURRENCY": "1",
        "SIDECAR_DRAIN_GRACE": "1s",
    }
    stderr = tmp_path / "proxy.stderr"
    with stderr.open("wb") as err:
        proc = pod.start(
            [*SIDECAR_IMAGE_COMMAND, "proxy"],
            user=1337,
            group=1337,
            mounts=[Mount("proxy-work", WORK_DIR)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    try:
        agent = f"http://127.0.0.1:{ports['agent']}"

        def ready() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"proxy exited {proc.returncode}: {stderr.read_text()}")
            return http_status(agent + "/ready") == 200

        wait_for(ready, timeout=30, what="the proxy to be ready in the pod")
        assert request(ports["outbound"], "/echo").status == 200
        assert request(ports["inbound"], "/echo").status == 200

        bootstrap = pod.volume("proxy-work") / "envoy.json"
        assert bootstrap.stat().st_uid == 1337
        envoy = next(
            int(p.name)
            for p in Path("/proc").iterdir()
            if p.name.isdigit() and _parent(p) == proc.pid and b"envoy" in _cmdline(p)
        )
        assert Path(f"/proc/{envoy}").stat().st_uid == 1337

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, stderr.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "Traceback" not in stderr.read_text()


def _parent(proc_dir: Path) -> int:
    try:
        stat = (proc_dir / "stat").read_text()
    except OSError:
        return -1
    return int(stat.rpartition(")")[2].split()[1])


def _cmdline(proc_dir: Path) -> bytes:
    try:
        return (proc_dir / "cmdline").read_bytes()
    except OSError:
        return b""


def test_unwritable_work_dir_is_a_clear_error(pod: Pod) -> None:
    result = pod.run(
        [*SIDECAR_IMAGE_COMMAND, "proxy"],
        user=1337,
        group=1337,
        env={"SIDECAR_INBOUND_PORT": "8080", "SIDECAR_AGENT_ADDR": f"127.0.0.1:{free_port()}"},
    )
    assert result.returncode != 0
    assert result.stderr.startswith("sidecar proxy: ")
    assert WORK_DIR in result.stderr
    assert "writable volume" in result.stderr
    assert "Traceback" not in result.stderr
