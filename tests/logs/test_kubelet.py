"""``sidecar logs`` run the way a kubelet runs the injected container, next to
an app that writes, rotates and truncates its log as another user.

The agent runs as 1337:1337 on a read-only root filesystem with no
capabilities; the logs volume is mounted read-only in it (read-write in the
app, at the same path), the state volume read-write. The app (uid 1000)
creates its files with its own umask: the agent reads them through their
``0644`` mode.
"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from standins.logsink import NdjsonStandIn
from tests import kubelet
from tests.logs.harness import eventually, numbers
from tests.support import free_port, http_status

ok, why = kubelet.available()
pytestmark = pytest.mark.skipif(not ok, reason=why)

ROOT = Path(__file__).resolve().parents[2]
LOGS = "/var/log/app"
STATE = "/var/run/sidecar/logs-state"
AGENT_MOUNTS = [
    kubelet.Mount("sidecar-logs", LOGS, read_only=True),
    kubelet.Mount("sidecar-logs-state", STATE),
]
APP_MOUNTS = [kubelet.Mount("sidecar-logs", LOGS)]


@pytest.fixture
def pod(tmp_path: Path) -> Iterator[kubelet.Pod]:
    with kubelet.Pod(tmp_path / "pod") as pod:
        yield pod


def start_agent(pod: kubelet.Pod, sink: str, port: int, stderr: Path) -> subprocess.Popen[bytes]:
    env = {
        "SIDECAR_LOGS_PATH": LOGS,
        "SIDECAR_LOGS_SINK": sink,
        "SIDECAR_LOGS_STATE_DIR": STATE,
        "SIDECAR_AGENT_ADDR": f"127.0.0.1:{port}",
        "SIDECAR_LOGS_POLL_INTERVAL": "100ms",
        "SIDECAR_POD_NAMESPACE": "shop",
        "SIDECAR_POD_NAME": "shop-0",
        "SIDECAR_LOGS_CONTAINER": "app",
    }
    with stderr.open("ab") as err:
        return pod.start(
            [*kubelet.SIDECAR_IMAGE_COMMAND, "logs"],
            user=1337,
            group=1337,
            mounts=AGENT_MOUNTS,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )


def test_the_agent_ships_what_another_user_writes_rotates_and_truncates(
    pod: kubelet.Pod, tmp_path: Path
) -> None:
    sink = NdjsonStandIn()
    port = free_port()
    stderr = tmp_path / "agent.stderr"
    agent = start_agent(pod, sink.url, port, stderr)
    try:
        eventually(
            lambda: agent.poll() is None and http_status(f"http://127.0.0.1:{port}/ready") == 200,
            what="the agent ready",
        )
        app = pod.run(
            [
                sys.executable,
                "-m",
                "tests.logs.writer",
                LOGS,
                "--lines=20000",
                "--rate=10000",
                "--rotate-every=3000",
            ],
            user=1000,
            group=1000,
            mounts=APP_MOUNTS,
            env={"PYTHONPATH": str(ROOT)},
            timeout=120,
        )
        assert app.returncode == 0, app.stderr
        assert app.stdout.startswith("done 20000 rotations 6")

        def shipped() -> bool:
            with sink.lock:
                return len({int(r["message"][5:13]) for r in sink.records}) == 20000

        eventually(shipped, what="20000 lines at the sink", timeout=60)
        # the agent cannot change the app's logs
        probe = pod.run(
            [sys.executable, "-c", f"open('{LOGS}/x', 'w')"],
            user=1337,
            group=1337,
            mounts=AGENT_MOUNTS,
        )
        assert probe.returncode != 0
        assert "Read-only file system" in probe.stderr
    finally:
        agent.terminate()
        code = agent.wait(30)
        sink.stop()
    assert code == 0, stderr.read_text()
    counts = Counter(numbers([r["message"] for r in sink.records]))
    assert set(counts) == set(range(20000))
    assert sink.records[0]["kubernetes"] == {
        "namespace": "shop",
        "pod": "shop-0",
        "container": "app",
    }
    volume = pod.volume("sidecar-logs")
    owners = {p.stat().st_uid for p in volume.iterdir()}
    assert owners == {1000}
    state = pod.volume("sidecar-logs-state") / "positions.json"
    assert (state.stat().st_uid, state.stat().st_mode & 0o777) == (1337, 0o600)
