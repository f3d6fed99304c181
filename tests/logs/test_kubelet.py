"""The logs role as ``render()`` injects it, run the way a kubelet runs it,
next to an app that writes, rotates and truncates its log as another user.

The pod asks for logs with annotations; the injected ``sidecar-logs``
container runs exactly as rendered (command, env with the downward API
resolved, mounts, user 1337, read-only root, no capabilities), the app
container with the mounts the injector gave it, as uid 1000. The Secret
volume holding the sink's credentials is filled as the kubelet would.
"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from contract import layout
from injector.core.model import NamespaceInfo
from injector.core.render import render
from injector.core.specs import settings_from_spec
from standins.logsink import NdjsonStandIn
from tests import kubelet
from tests.logs.harness import eventually, numbers
from tests.support import free_port, http_status

ok, why = kubelet.available()
pytestmark = pytest.mark.skipif(not ok, reason=why)

ROOT = Path(__file__).resolve().parents[2]
LOGS = "/var/log/shop"
FIELDS = {
    "metadata.namespace": "shop",
    "metadata.name": "shop-0",
    "spec.nodeName": "node-1",
    "metadata.labels['app']": "shop",
}


@pytest.fixture
def pod(tmp_path: Path) -> Iterator[kubelet.Pod]:
    with kubelet.Pod(tmp_path / "pod") as pod:
        yield pod


def injected(sink: str) -> dict[str, Any]:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "shop-0",
            "namespace": "shop",
            "labels": {"app": "shop"},
            "annotations": {
                "sidecar.example.io/inject": "true",
                "sidecar.example.io/logs-path": LOGS,
                "sidecar.example.io/logs-sink": sink,
                "sidecar.example.io/logs-sink-auth": "shop-logs/token",
                "sidecar.example.io/logs-labels": "app",
            },
        },
        "spec": {
            "containers": [
                {"name": "app", "image": "shop:1", "securityContext": {"runAsUser": 1000}}
            ]
        },
    }
    settings = settings_from_spec({"clusterVersion": "1.30"})
    result = render(pod, NamespaceInfo("shop"), settings)
    assert result.injected
    return dict(result.pod)


def mounts(container: Mapping[str, Any]) -> list[kubelet.Mount]:
    return [
        kubelet.Mount(m["name"], m["mountPath"], bool(m.get("readOnly", False)))
        for m in container.get("volumeMounts", [])
    ]


def test_the_injected_agent_ships_what_another_user_writes_rotates_and_truncates(
    pod: kubelet.Pod, tmp_path: Path
) -> None:
    sink = NdjsonStandIn()
    spec = injected(f"{sink.url}/ingest")["spec"]
    (agent_spec,) = [c for c in spec["initContainers"] if c["name"] == layout.LOGS_CONTAINER]
    (app_spec,) = spec["containers"]
    assert agent_spec["restartPolicy"] == "Always"
    port = free_port()  # tests run in parallel: not the rendered 15024
    agent_spec = {
        **agent_spec,
        "env": [*agent_spec["env"], {"name": "SIDECAR_AGENT_ADDR", "value": f"127.0.0.1:{port}"}],
    }
    auth = pod.volume(layout.LOGS_AUTH_VOLUME) / "authorization"  # what the kubelet projects
    auth.write_text("Bearer shop-token")
    auth.chmod(0o444)
    stderr = tmp_path / "agent.stderr"
    with stderr.open("wb") as err:
        agent = pod.start_container(
            agent_spec, field_refs=FIELDS, stdout=subprocess.DEVNULL, stderr=err
        )
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
            mounts=mounts(app_spec),
            env={"PYTHONPATH": str(ROOT)},
            timeout=120,
        )
        assert app.returncode == 0, app.stderr
        assert app.stdout.startswith("done 20000 rotations 6")

        def shipped() -> bool:
            with sink.lock:
                return len({int(r["message"][5:13]) for r in sink.records}) == 20000

        eventually(shipped, what="20000 lines at the sink", timeout=60)
        probe = pod.run(  # the agent cannot change the app's logs
            [sys.executable, "-c", f"open('{LOGS}/x', 'w')"],
            user=1337,
            group=1337,
            mounts=mounts(agent_spec),
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
        "node": "node-1",
        "labels": {"app": "shop"},
    }
    assert {r.authorization for r in sink.requests} == {"Bearer shop-token"}
    owners = {p.stat().st_uid for p in pod.volume(layout.LOGS_VOLUME).iterdir()}
    assert owners == {1000}
    state = pod.volume(layout.LOGS_STATE_VOLUME) / "positions.json"
    assert (state.stat().st_uid, state.stat().st_mode & 0o777) == (1337, 0o600)
