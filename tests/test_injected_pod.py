"""An injected pod, run the way a kubelet would run it.

``render()`` injects a pod asking for secrets and config; its init
containers then run exactly as rendered (command, env, volume mounts,
securityContext user, fsGroup, read-only root) against a Vault stand-in and a
real config server on 127.0.0.1, and the app container, as its own user,
must read what they wrote and be unable to change it. This is where the
injector's rendering and the agent's runtime contract meet.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from injector.core.model import NamespaceInfo
from injector.core.render import render
from injector.core.settings import Settings
from standins.vault import VaultStandIn, make_jwt
from tests import kubelet
from tests.config.servers import ConfigServer, serve

ok, why = kubelet.available()
pytestmark = pytest.mark.skipif(not ok, reason=why)

APP_READS = (
    "import pathlib\n"
    "print(pathlib.Path('/var/run/secrets/sidecar/db').read_text().strip())\n"
    "print(pathlib.Path('/etc/app/config/app.yaml').read_text().strip())\n"
    "for p in ('/var/run/secrets/sidecar/db', '/etc/app/config/app.yaml'):\n"
    "    try:\n"
    "        open(p, 'a')\n"
    "        print('WROTE', p)\n"
    "    except OSError as e:\n"
    "        print('refused', e.errno)\n"
)


@pytest.fixture
def vault() -> Iterator[VaultStandIn]:
    server = VaultStandIn()
    server.add_role("app", ["app"], ["shop"], ["secret/data/app/"])
    server.put_kv2("app/db", {"username": "shop", "password": "s3cret"})
    yield server
    server.stop()


def pod(vault_addr: str, config_url: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "shop",
            "namespace": "shop",
            "annotations": {
                "sidecar.example.io/inject": "true",
                "sidecar.example.io/secret-db": "secret/data/app/db",
                "sidecar.example.io/secret-template-db": "{{ data.username }}:{{ data.password }}",
                "sidecar.example.io/secrets-role": "app",
                "sidecar.example.io/secrets-vault-addr": vault_addr,
                "sidecar.example.io/config-source": config_url,
                "sidecar.example.io/config-path": "/etc/app/config",
            },
        },
        "spec": {
            "securityContext": {"fsGroup": 2000},
            "containers": [
                {
                    "name": "app",
                    "image": "registry.example.io/shop:1",
                    "command": [sys.executable, "-c", APP_READS],
                    "securityContext": {"runAsUser": 1000, "runAsGroup": 1000},
                }
            ],
        },
    }


def test_init_containers_prepare_files_the_app_user_can_read(
    tmp_path: Path, vault: VaultStandIn
) -> None:
    config = ConfigServer(b"greeting: hello\n")
    with serve(config.handler()) as server:
        url = f"http://127.0.0.1:{server.server_address[1]}/app.yaml"
        result = render(pod(vault.addr, url), NamespaceInfo("shop"), Settings())
        spec = result.pod["spec"]
        init_names = [c["name"] for c in spec["initContainers"]]
        assert init_names[:2] == ["sidecar-secrets-init", "sidecar-config-init"]
        with kubelet.Pod(tmp_path / "pod", fs_group=spec["securityContext"]["fsGroup"]) as run:
            # The projected service-account token volume the kubelet would mount.
            run.volume("sidecar-vault-token").joinpath("token").write_text(make_jwt("app", "shop"))
            for container in spec["initContainers"][:2]:
                env = {e["name"]: e.get("value") for e in container.get("env", [])}
                if container["name"] == "sidecar-config-init":
                    assert env.get("SIDECAR_CONFIG_SOURCE") == url
                proc = run.start_container(
                    container, field_refs={"metadata.namespace": "shop"}, stdout=-1, stderr=-1
                )
                out, err = proc.communicate(timeout=60)
                assert proc.returncode == 0, f"{container['name']}: {err.decode()}"
            app = next(c for c in spec["containers"] if c["name"] == "app")
            mounts = {m["mountPath"]: m.get("readOnly", False) for m in app["volumeMounts"]}
            assert mounts == {"/var/run/secrets/sidecar": True, "/etc/app/config": True}
            sc = app["securityContext"]
            proc = run.start(
                app["command"],
                user=sc["runAsUser"],
                group=sc["runAsGroup"],
                mounts=[
                    kubelet.Mount(m["name"], m["mountPath"], m.get("readOnly", False))
                    for m in app["volumeMounts"]
                ],
                stdout=-1,
                stderr=-1,
            )
            out, err = proc.communicate(timeout=30)
            assert proc.returncode == 0, err.decode()
            lines = out.decode().splitlines()
            assert lines[:2] == ["shop:s3cret", "greeting: hello"]
            # Refused twice over: read-only mounts, files owned by the agent's user.
            assert len(lines) == 4
            assert all(line.startswith("refused") for line in lines[2:]), lines
    status = json.loads(result.pod["metadata"]["annotations"]["sidecar.example.io/status"])
    assert status["roles"] == ["secrets", "config"]
