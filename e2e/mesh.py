"""The mesh in e2e tests and ``make bench``: meshed pods, tokens, the roots.

Without a kubelet: a pod is created with ``spec.nodeName`` set (on a Node
object that has no kubelet: it stays Pending) and injected by our webhook with
mtls strict (its status annotation then carries the mesh entry the operator
checks); ``pod_token`` asks the API server for the projected token the kubelet
would mount (TokenRequest bound to the pod, our audience, 10 minutes).

On any cluster: ``trust_files`` (a namespace's trust ConfigMap, once
published) and ``root_state`` (the operator's roots, from its Secret).
"""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

from e2e.kube import Kube, wait_for
from injector.operator.identity_review import AUDIENCE
from injector.operator.mesh_ca import TRUST_CONFIGMAP

CA_SECRET = "/api/v1/namespaces/sidecar-injector/secrets/sidecar-mesh-ca"

TRUST_DOMAIN = "cluster.local"


def create_node(kube: Kube, prefix: str = "mesh-node") -> dict[str, Any]:
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    return kube.create("/api/v1/nodes", {"metadata": {"name": name}}).expect(201)


def meshed_pod(
    kube: Kube, namespace: str, name: str, account: str, node: str, *, mesh: bool = True
) -> dict[str, Any]:
    """A pod our webhook injects (mtls strict, or off): its status annotation and
    label are the injector's own."""
    kube.create(f"/api/v1/namespaces/{namespace}/serviceaccounts", {"metadata": {"name": account}})
    pod = {
        "metadata": {
            "name": name,
            "annotations": {
                "sidecar.example.io/inject": "true",
                "sidecar.example.io/mtls": "strict" if mesh else "off",
                "sidecar.example.io/proxy-inbound-port": "8080",
            },
        },
        "spec": {
            "serviceAccountName": account,
            "nodeName": node,
            "containers": [{"name": "app", "image": "registry.example/app:1"}],
        },
    }
    created = kube.create(f"/api/v1/namespaces/{namespace}/pods", pod).expect(201)
    status = json.loads(created["metadata"]["annotations"]["sidecar.example.io/status"])
    assert ("mesh" in status) == mesh, status
    return created


def pod_token(
    kube: Kube, pod: dict[str, Any], audience: str = AUDIENCE, *, bound: bool = True
) -> str:
    meta = pod["metadata"]
    spec: dict[str, Any] = {"audiences": [audience], "expirationSeconds": 600}
    if bound:
        spec["boundObjectRef"] = {
            "apiVersion": "v1",
            "kind": "Pod",
            "name": meta["name"],
            "uid": meta["uid"],
        }
    account = pod["spec"]["serviceAccountName"]
    body = kube.create(
        f"/api/v1/namespaces/{meta['namespace']}/serviceaccounts/{account}/token",
        {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec},
    ).expect(201)
    return str(body["status"]["token"])


def trust_files(kube: Kube, namespace: str, timeout: float = 60) -> dict[str, str]:
    """The trust ConfigMap's data, once the operator published it in ``namespace``."""
    path = f"/api/v1/namespaces/{namespace}/configmaps/{TRUST_CONFIGMAP}"

    def published() -> dict[str, str] | None:
        found = kube.get(path)
        return dict(found.body["data"]) if found.ok else None

    return wait_for(published, timeout=timeout, what=f"ConfigMap {namespace}/{TRUST_CONFIGMAP}")


def root_state(kube: Kube) -> dict[str, Any]:
    """The operator's trust state (``state.json`` of Secret sidecar-mesh-ca):
    ``generation`` and ``roots`` (each ``state``, ``certificate``, ...)."""
    data = kube.get(CA_SECRET).expect(200)["data"]["state.json"]
    state: dict[str, Any] = json.loads(base64.b64decode(data))
    return state
