"""The cluster itself and the access fixtures other suites build on.

The config role's ConfigMap source needs URL + CA + token and a way to make a
watch expire (410 Gone): ``api_access``, ``service_account_token`` and ``etcd``
(``etcd.compact()``) in conftest.py. These tests show they work.
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from e2e.conftest import (
    CONFIGMAP_READER,
    ApiAccess,
    Etcd,
    service_account_dir,
    service_account_token,
)
from e2e.kube import Kube


def _get(access: ApiAccess, token: str, path: str) -> tuple[int, Any]:
    context = ssl.create_default_context(cafile=access.ca_file)
    request = urllib.request.Request(
        access.server + path, headers={"Authorization": f"Bearer {token}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_api_access_token_lists_configmaps(api_access: ApiAccess, namespace: str) -> None:
    if not api_access.token:
        pytest.skip("the kubeconfig authenticates without a bearer token")
    status, body = _get(api_access, api_access.token, f"/api/v1/namespaces/{namespace}/configmaps")
    assert status == 200, body
    assert body["kind"] == "ConfigMapList"


def test_service_account_token_is_authenticated_and_authorized_by_rbac(
    kube: Kube, api_access: ApiAccess, namespace: str
) -> None:
    token = service_account_token(kube, namespace, "reader")
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    status, body = _get(api_access, token, path)
    assert status == 403, body  # authenticated, but RBAC grants nothing yet
    assert f"system:serviceaccount:{namespace}:reader" in body["message"]
    kube.create(
        f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/roles",
        {
            "metadata": {"name": "configmap-reader"},
            "rules": [
                {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch"]}
            ],
        },
    ).expect(201)
    kube.create(
        f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/rolebindings",
        {
            "metadata": {"name": "reader"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": "configmap-reader",
            },
            "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": namespace}],
        },
    ).expect(201)
    assert _get(api_access, token, path)[0] == 200


def test_watch_from_a_compacted_revision_is_gone(kube: Kube, etcd: Etcd, namespace: str) -> None:
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    created = kube.create(path, {"metadata": {"name": "app"}, "data": {"k": "1"}}).expect(201)
    old = created["metadata"]["resourceVersion"]
    for value in range(2, 5):
        kube.request(
            "PUT", f"{path}/app", {"metadata": {"name": "app"}, "data": {"k": str(value)}}
        ).expect(200)
    etcd.compact()
    status, events = kube.watch(path, old)
    # From a compacted revision: HTTP 410, or (served by the watch cache) a 200
    # stream whose first event is an ERROR Status with code 410.
    if status == 200:
        assert events, "the watch ended without an event"
        assert events[0]["type"] == "ERROR", events[0]
        assert events[0]["object"]["code"] == 410, events[0]
    else:
        assert status == 410, events


def test_service_account_dir_reads_configmaps_like_a_pod(
    kube: Kube, api_access: ApiAccess, namespace: str, tmp_path: Path
) -> None:
    env = service_account_dir(
        kube, api_access, namespace, "config-agent", tmp_path / "sa", CONFIGMAP_READER
    )
    assert (tmp_path / "sa" / "namespace").read_text() == namespace
    token = Path(env["SIDECAR_KUBE_TOKEN_FILE"]).read_text()
    access = ApiAccess(env["SIDECAR_KUBE_API"], env.get("SIDECAR_KUBE_CA_FILE"), token)
    assert _get(access, token, f"/api/v1/namespaces/{namespace}/configmaps")[0] == 200
    assert _get(access, token, f"/api/v1/namespaces/{namespace}/secrets")[0] == 403


@pytest.mark.nodes
def test_nodes_are_ready(has_nodes: bool) -> None:
    assert has_nodes
