"""``sidecar config`` with a ``configmap:`` source against a real API server.

The agent runs as a local process with what a kubelet would give its pod: a
ServiceAccount token bound to a Role that may get, list and watch ConfigMaps
(the RBAC the README documents), the API server's CA, the namespace. Updates
reach the files and the app once each; a 410 Gone (etcd compacted under an
idle watch) re-lists without rewriting anything or reloading the app.
"""

from __future__ import annotations

import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from e2e.conftest import CONFIGMAP_READER, ApiAccess, Etcd, service_account_dir
from e2e.kube import Kube
from sidecar.files import read_file_set
from tests.support import ReloadApp, free_port, http_status, wait_for


def configmap(name: str, data: dict[str, str]) -> dict[str, object]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}


@pytest.fixture
def app() -> Iterator[ReloadApp]:
    with ReloadApp() as reload_app:
        yield reload_app


def _metric(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_configmap_source_follows_updates_and_survives_410(
    kube: Kube,
    api_access: ApiAccess,
    namespace: str,
    etcd: Etcd,
    tmp_path: Path,
    app: ReloadApp,
) -> None:
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    kube.create(path, configmap("app-config", {"app.yaml": "v: 1\n"})).expect(201)
    env = service_account_dir(kube, api_access, namespace, "app", tmp_path / "sa", CONFIGMAP_READER)
    port = free_port()
    out = tmp_path / "config"
    agent = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sidecar",
            "config",
            "--source",
            "configmap:app-config",
            "--namespace",
            namespace,
            "--dir",
            str(out),
            "--interval",
            "3s",
            "--reload",
            app.url,
            "--agent-addr",
            f"127.0.0.1:{port}",
        ],
        env={"PATH": "/usr/bin:/bin", **env},
        stderr=subprocess.PIPE,
    )
    try:
        wait_for(
            lambda: http_status(f"http://127.0.0.1:{port}/ready") == 200,
            timeout=20,
            what="config agent ready",
        )
        assert read_file_set(out) == {"app.yaml": b"v: 1\n"}

        kube.apply(
            f"{path}/app-config",
            configmap("app-config", {"app.yaml": "v: 2\n", "extra.yaml": "x\n"}),
        ).expect(200, 201)
        wait_for(
            lambda: read_file_set(out) == {"app.yaml": b"v: 2\n", "extra.yaml": b"x\n"},
            timeout=20,
            what="the update in the files",
        )
        wait_for(lambda: app.calls == 1, what="one reload")

        # Move etcd on (other objects) and compact under the idle watch: when the
        # agent re-watches from its last resourceVersion, the API server says 410.
        for i in range(3):
            kube.create(path, configmap(f"noise-{i}", {"k": str(i)})).expect(201)
        etcd.compact()
        wait_for(
            lambda: _metric(port, "sidecar_config_relists_total") >= 1,
            timeout=30,
            what="a re-list after 410 Gone",
        )
        assert read_file_set(out) == {"app.yaml": b"v: 2\n", "extra.yaml": b"x\n"}
        assert app.calls == 1  # the re-list found the same content: no reload

        kube.apply(f"{path}/app-config", configmap("app-config", {"app.yaml": "v: 3\n"})).expect(
            200
        )
        wait_for(
            lambda: read_file_set(out) == {"app.yaml": b"v: 3\n"},
            timeout=20,
            what="an update after the re-list",
        )
        wait_for(lambda: app.calls == 2, what="the second reload")
    finally:
        agent.terminate()
        try:
            agent.wait(timeout=10)
        except subprocess.TimeoutExpired:
            agent.kill()
            agent.wait()


def test_without_rbac_the_init_fails_clearly(
    kube: Kube, api_access: ApiAccess, namespace: str, tmp_path: Path
) -> None:
    env = service_account_dir(kube, api_access, namespace, "norbac", tmp_path / "sa")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "sidecar",
            "config",
            "--init",
            "--source",
            "configmap:app-config",
            "--namespace",
            namespace,
            "--dir",
            str(tmp_path / "c"),
            "--deadline",
            "3s",
        ],
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "403" in result.stderr
    assert "needs get, list and watch" in result.stderr


def test_rbac_can_be_narrowed_to_the_one_configmap(
    kube: Kube, api_access: ApiAccess, namespace: str, tmp_path: Path
) -> None:
    """The README's claim: list/watch with fieldSelector=metadata.name=NAME are
    authorized against resourceNames, so a Role can name just that ConfigMap."""
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    kube.create(path, configmap("app-config", {"a": "1"})).expect(201)
    kube.create(path, configmap("other", {"b": "2"})).expect(201)
    rules: list[dict[str, object]] = [
        {
            "apiGroups": [""],
            "resources": ["configmaps"],
            "resourceNames": ["app-config"],
            "verbs": ["get", "list", "watch"],
        }
    ]
    env = service_account_dir(kube, api_access, namespace, "narrow", tmp_path / "sa", rules)

    def init(source: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "sidecar",
                "config",
                "--init",
                "--source",
                source,
                "--namespace",
                namespace,
                "--dir",
                str(tmp_path / source.replace(":", "-")),
                "--deadline",
                "3s",
            ],
            env={"PATH": "/usr/bin:/bin", **env},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    allowed = init("configmap:app-config")
    assert allowed.returncode == 0, allowed.stderr
    denied = init("configmap:other")
    assert denied.returncode == 1
    assert "403" in denied.stderr
