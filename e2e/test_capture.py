"""Transparent capture and the egress proxy through a real API server: the
injected pods are stored as rendered (``status.podIPs`` in the app's env is
accepted), and the API server's own PodSecurity admission judges them after
our webhook: capture needs the ``privileged`` level, egress passes
``restricted`` (what the README says)."""

from __future__ import annotations

from typing import Any

import pytest

from e2e.harness import PREFIX, is_injected
from e2e.kube import Kube

pytestmark = pytest.mark.usefixtures("injector")

ENFORCE = "pod-security.kubernetes.io/enforce"
APP_IMAGE = "registry.k8s.io/pause:3.10"
# An app container that passes the restricted level by itself.
RESTRICTED_APP = {
    "name": "app",
    "image": APP_IMAGE,
    "ports": [{"containerPort": 8080}],
    "securityContext": {
        "runAsNonRoot": True,
        "runAsUser": 1000,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    },
}


def pod(name: str, annotations: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "annotations": {
                PREFIX + "inject": "true",
                **{PREFIX + k: v for k, v in annotations.items()},
            },
        },
        "spec": {"containers": [RESTRICTED_APP]},
    }


@pytest.mark.parametrize(
    ("level", "annotations", "admitted"),
    [
        ("baseline", {"proxy-capture": "iptables"}, False),
        ("privileged", {"proxy-capture": "iptables"}, True),
        ("restricted", {"proxy-egress": "http-proxy"}, True),
        ("restricted", {"proxy-upstream": "http://payments:8080"}, True),
    ],
    ids=["capture-baseline", "capture-privileged", "egress-restricted", "explicit-restricted"],
)
def test_the_pod_security_level_each_mode_needs(
    kube: Kube, level: str, annotations: dict[str, str], admitted: bool
) -> None:
    namespace = kube.create_namespace("capture", labels={ENFORCE: level})
    try:
        created = kube.create(f"/api/v1/namespaces/{namespace}/pods", pod("shop", annotations))
        if not admitted:
            assert created.status == 403, created.body
            assert 'violates PodSecurity "baseline' in created.message
            assert "NET_ADMIN" in created.message
            assert "sidecar-capture-init" in created.message
            return
        stored = created.expect(201)
        assert is_injected(stored)
        spec = stored["spec"]
        inits = [c["name"] for c in spec.get("initContainers", [])]
        if "proxy-capture" in annotations:
            assert inits[0] == "sidecar-capture-init"
        if "proxy-egress" in annotations:
            env = {e["name"]: e for e in spec["containers"][-1].get("env", [])}
            assert env["SIDECAR_POD_IPS"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIPs"
            assert env["HTTPS_PROXY"]["value"] == "http://127.0.0.1:15004"
    finally:
        kube.delete_namespace(namespace)
