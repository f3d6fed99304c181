"""The secrets role on the real node against a real Vault in the cluster
(``manifests/overlays/e2e/vault.yaml``: v1.21.0 in dev mode, its image
imported from a local archive). Vault reviews each pod's projected token with
the API server using its own ServiceAccount, bound to system:auth-delegator.

The ServiceAccount a role binds gets its KV v2 and KV v1 secrets before the
app starts; another ServiceAccount is refused, and its init container ends
with the reason and what to change (the pod's termination message, which
``kubectl describe`` shows).
"""

from __future__ import annotations

import json

import pytest

from e2e import workloads
from e2e.conftest import Injector
from e2e.kube import Kube
from e2e.workloads import request

pytestmark = pytest.mark.nodes
SECRETS = "/var/run/secrets/sidecar"
INIT_DEADLINE = 60  # SIDECAR_INIT_DEADLINE's default
ANNOTATIONS = {
    "inject": "true",
    "secrets-role": "e2e-app",  # binds ServiceAccount app only (vault.yaml)
    "secret-db": "secret/data/e2e/app",
    "secret-legacy": "kv/e2e/legacy",
}


def test_the_bound_service_account_gets_kv_v2_and_v1_secrets(
    kube: Kube, kubectl: str, namespace: str, injector: Injector
) -> None:
    account = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "app"}}
    app = workloads.container(env=[{"name": "READ_AT_START", "value": f"{SECRETS}/db"}])
    pod = workloads.pod("bound", ANNOTATIONS, serviceAccountName="app", containers=[app])
    workloads.apply(kubectl, namespace, account, pod)
    workloads.ready(kube, namespace, "bound")
    first = workloads.first_output(kubectl, namespace, "bound")
    assert first.startswith(f"read-at-start {SECRETS}/db "), first
    assert json.loads(first.split(" ", 2)[2]) == "password: s3cr3t\nusername: app\n"
    (answer,) = request(
        kubectl, namespace, "bound", "GET", f"http://127.0.0.1:8080/file?{SECRETS}/legacy"
    )
    assert json.loads(answer["body"])["content"] == "ttl: 1h\nuser: old\n"


def test_another_service_account_is_refused_with_the_reason(
    kube: Kube, kubectl: str, namespace: str, injector: Injector
) -> None:
    pod = workloads.pod("unbound", ANNOTATIONS, restartPolicy="Never")  # the default account
    workloads.apply(kubectl, namespace, pod)
    terminated = workloads.init_ended(kube, namespace, "unbound", INIT_DEADLINE + 60)
    assert terminated["exitCode"] == 1
    last = str(terminated.get("message", "")).strip().splitlines()[-1]
    assert last == (
        "sidecar secrets: secrets not rendered by the deadline (db, legacy): login as role "
        "'e2e-app' denied at auth/kubernetes: POST auth/kubernetes/login: 403 service account "
        "name not authorized (role 'e2e-app' does not bind this pod's ServiceAccount: add it "
        "to the role's bound_service_account_names or run the pod as one it binds)"
    )
    described = workloads.kubectl([kubectl], "-n", namespace, "describe", "pod", "unbound")
    assert "service account name not authorized" in described
