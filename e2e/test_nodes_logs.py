"""The logs role on a real node: ``kubectl logs`` shows what the stdout sink shipped.

A pod (restartPolicy Never) whose app, the sidecar image's Python as uid
1000, writes numbered lines to ``/var/log/app/app.log``, rotates it once by
rename, ends with a line without newline and exits. The native
``sidecar-logs`` stops after the app (so it sees the last lines), ships
what is left, and the pod succeeds; ``kubectl logs -c sidecar-logs`` then
holds every line as a JSON record naming the namespace, pod, container,
node and the chosen label.
"""

from __future__ import annotations

import json
import subprocess
import time
from typing import Any

import pytest
import yaml

from e2e.conftest import Injector
from e2e.kube import Kube

pytestmark = pytest.mark.nodes
IMAGE = "sidecar-injector/sidecar:e2e"
LINES = 200
APP = r"""
import os
path = "/var/log/app/app.log"
fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
for n in range(LINES):
    os.write(fd, f"line {n:08d} from the app\n".encode())
    if n == LINES // 2:
        os.rename(path, path + ".1")
        os.close(fd)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
os.write(fd, b"the last words")
print("written", flush=True)
""".replace("LINES", str(LINES))


def _pod() -> dict[str, Any]:
    prefix = "sidecar.example.io/"
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "shop",
            "labels": {"app": "shop"},
            "annotations": {
                prefix + "inject": "true",
                prefix + "native-sidecars": "true",
                prefix + "logs-path": "/var/log/app",
                prefix + "logs-labels": "app",
            },
        },
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 30,
            "containers": [
                {
                    "name": "app",
                    "image": IMAGE,
                    "imagePullPolicy": "IfNotPresent",
                    "command": ["python", "-c", APP],
                    "securityContext": {"runAsUser": 1000, "runAsGroup": 1000},
                }
            ],
        },
    }


def _kubectl(kubectl: str, *args: str, stdin: str = "") -> str:
    result = subprocess.run(
        [kubectl, *args], input=stdin, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, f"kubectl {' '.join(args)}: {result.stderr or result.stdout}"
    return result.stdout


def _done(kube: Kube, namespace: str, timeout: float = 240) -> tuple[dict[str, Any], Any]:
    """The pod once it succeeded and its logs sidecar ended; and that ending."""
    path = f"/api/v1/namespaces/{namespace}/pods/shop"
    deadline = time.monotonic() + timeout
    while True:
        pod = kube.get(path).expect(200)
        status = pod.get("status", {})
        ended = [
            s["state"]["terminated"]
            for s in status.get("initContainerStatuses", [])
            if s["name"] == "sidecar-logs" and "terminated" in s.get("state", {})
        ]
        if status.get("phase") == "Succeeded" and ended:
            return pod, ended[0]
        assert status.get("phase") != "Failed", json.dumps(status, indent=1)
        assert time.monotonic() < deadline, f"pod shop not done: {status}"
        time.sleep(1)


def test_kubectl_logs_shows_every_line_the_app_wrote(
    kube: Kube, kubectl: str, namespace: str, injector: Injector
) -> None:
    _kubectl(kubectl, "-n", namespace, "apply", "-f", "-", stdin=yaml.safe_dump(_pod()))
    pod, ended = _done(kube, namespace)
    assert ended["exitCode"] == 0, ended  # drained on SIGTERM after the app
    out = _kubectl(kubectl, "-n", namespace, "logs", "shop", "-c", "sidecar-logs")
    # stdout and stderr share the container log: the records are the objects
    # with @timestamp, the agent's own events have "msg"
    records = [json.loads(line) for line in out.splitlines() if line.startswith('{"@timestamp"')]
    messages = [r["message"] for r in records]
    numbered = {int(m.split()[1]) for m in messages if m.startswith("line ")}
    assert numbered == set(range(LINES))
    assert messages[-1] == "the last words"
    assert records[0]["kubernetes"] == {
        "namespace": namespace,
        "pod": "shop",
        "container": "app",
        "node": pod["spec"]["nodeName"],
        "labels": {"app": "shop"},
    }
    assert records[0]["log"] == {"file": {"path": "/var/log/app/app.log"}}
