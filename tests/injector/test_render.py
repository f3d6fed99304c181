"""render details not covered by a golden case."""

from __future__ import annotations

import copy
from typing import Any

from injector.core.model import NamespaceInfo
from injector.core.patch import make_patch
from injector.core.render import render
from injector.core.specs import settings_from_spec
from tests.golden_tool import BASE_SETTINGS

SETTINGS = settings_from_spec(BASE_SETTINGS)
P = "sidecar.example.io/"
SA_MOUNT = {
    "name": "kube-api-access-x1",
    "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
    "readOnly": True,
}


def pod() -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "a",
            "annotations": {
                P + "inject": "true",
                P + "config-source": "configmap:x",
                P + "proxy-upstream": "http://x:80",
            },
        },
        "spec": {
            "containers": [{"name": "app", "image": "a", "volumeMounts": [dict(SA_MOUNT)]}],
            "volumes": [{"name": "kube-api-access-x1", "projected": {"sources": []}}],
        },
    }


def test_reinvocation_keeps_mounts_others_added_to_our_containers() -> None:
    """The apiserver re-runs the ServiceAccount plugin after our mutation (it mounts the
    API token into the new containers), then reinvokes us: the mount must survive."""
    first = render(pod(), NamespaceInfo("d"), SETTINGS).pod
    after_plugins = copy.deepcopy(dict(first))
    spec = after_plugins["spec"]
    for container in spec["initContainers"]:
        container["volumeMounts"].append(dict(SA_MOUNT))
    again = render(after_plugins, NamespaceInfo("d"), SETTINGS).pod
    assert make_patch(after_plugins, again) == []


def test_input_is_not_mutated() -> None:
    original = pod()
    snapshot = copy.deepcopy(original)
    render(original, NamespaceInfo("d"), SETTINGS)
    assert original == snapshot


def test_concurrency_comes_from_the_cpu_limit() -> None:
    result = render(pod(), NamespaceInfo("d"), SETTINGS).pod
    proxy = result["spec"]["initContainers"][0]
    env = {e["name"]: e for e in proxy["env"]}
    assert env["SIDECAR_CONCURRENCY"]["valueFrom"]["resourceFieldRef"] == {
        "containerName": "sidecar-proxy",
        "resource": "limits.cpu",
        "divisor": "1",
    }
    assert proxy["readinessProbe"]["httpGet"] == {"path": "/ready", "port": 15020}
    assert proxy["startupProbe"]["httpGet"] == {"path": "/ready", "port": 15020}
