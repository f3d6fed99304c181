"""The secrets and config roles on a real node, with the real Vault in the cluster
(the profile's; ``test_nodes_vault.py`` tests its logins) and, for dynamic
credentials (no database runs in the cluster), the Vault stand-in.

One pod with every role (proxy, secrets, config, logs) under a pod ``fsGroup``,
its app running as another user than the agents: the secret is on disk
before the app's first instruction and that user reads it through the
kubelet's fsGroup handling; a changed ConfigMap reaches the app's files
and reloads it exactly once. Its create -> Ready time is reported at the end
of the run, with when each container started. A dynamic secret with a
6-second lease is renewed while its pod runs; an unreachable Vault fails the
init container within its deadline, with the reason in ``kubectl describe``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from e2e import workloads
from e2e.conftest import Injector, record_startup
from e2e.kube import Kube
from e2e.workloads import request

pytestmark = pytest.mark.nodes
SECRETS = "/var/run/secrets/sidecar"
CONFIG = "/etc/sidecar/config"
APP_USER, FS_GROUP = 1000, 2000
INIT_DEADLINE = 60  # SIDECAR_INIT_DEADLINE's default


@dataclass(frozen=True)
class AllRoles:
    namespace: str
    kubectl: str
    seconds_to_ready: float


def _config_reader(namespace: str) -> list[dict[str, object]]:
    rule = {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch"]}
    return [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "config-reader"},
            "rules": [rule],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "config-reader"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": "config-reader",
            },
            "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": namespace}],
        },
    ]


@pytest.fixture(scope="module")
def all_roles(kube: Kube, kubectl: str, injector: Injector) -> Iterator[AllRoles]:
    namespace = kube.create_namespace("e2e-roles")
    config = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "app-config"},
        "data": {"app.yaml": "version: 1\n"},
    }
    workloads.apply(kubectl, namespace, config, *_config_reader(namespace))
    app = workloads.container(
        env=[{"name": "READ_AT_START", "value": f"{SECRETS}/db"}],
        securityContext={"runAsUser": APP_USER, "runAsGroup": APP_USER},
    )
    pod = workloads.pod(
        "all",
        {
            "inject": "true",
            "proxy-inbound-port": "8080",
            "secrets-role": "e2e",
            "secret-db": "secret/data/e2e/app",
            "config-source": "configmap:app-config",
            "reload": "http://127.0.0.1:8080/-/reload",
            "logs-path": "/var/log/app",
        },
        containers=[app],
        securityContext={"fsGroup": FS_GROUP},
    )
    started = time.monotonic()
    workloads.apply(kubectl, namespace, pod)
    ready = workloads.ready(kube, namespace, "all")
    seconds = time.monotonic() - started
    what = "all-roles pod (proxy, secrets, config, logs) create -> Ready"
    record_startup(f"{what} [{_started(ready)}]", seconds)
    yield AllRoles(namespace, kubectl, seconds)
    kube.delete_namespace(namespace)


def test_secret_is_there_before_the_app_starts_and_the_app_user_reads_it(
    all_roles: AllRoles,
) -> None:
    first = workloads.first_output(all_roles.kubectl, all_roles.namespace, "all")
    assert first.startswith(f"read-at-start {SECRETS}/db "), first
    content = json.loads(first.split(" ", 2)[2])
    assert "username: app" in content
    assert "password: s3cr3t" in content
    script = (
        "import os, json; s = os.stat('/var/run/secrets/sidecar/db');"
        "print(json.dumps([os.getuid(), os.getgroups(), s.st_uid, s.st_gid, oct(s.st_mode)]))"
    )
    out = workloads.kubectl(
        [all_roles.kubectl], "-n", all_roles.namespace, "exec", "all", "-c", "app", "--",
        "python", "-c", script,
    )  # fmt: skip
    uid, groups, owner, group, mode = json.loads(out)
    assert uid == APP_USER
    assert FS_GROUP in groups  # the kubelet gave the app the pod's fsGroup
    assert (owner, group, mode) == (1337, FS_GROUP, "0o100440")


def test_configmap_change_reaches_the_app_and_reloads_it_once(
    kube: Kube, all_roles: AllRoles
) -> None:
    namespace, kubectl = all_roles.namespace, all_roles.kubectl

    def app_file() -> str:
        (result,) = request(
            kubectl, namespace, "all", "GET", f"http://127.0.0.1:8080/file?{CONFIG}/app.yaml"
        )
        return str(json.loads(result["body"])["content"])

    def app_state() -> dict[str, int]:
        (result,) = request(kubectl, namespace, "all", "GET", "http://127.0.0.1:8080/state")
        return dict(json.loads(result["body"]))

    assert app_file() == "version: 1\n"
    assert app_state()["reloads"] == 0  # the first files are no change
    kube.apply(
        f"/api/v1/namespaces/{namespace}/configmaps/app-config",
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "app-config"},
         "data": {"app.yaml": "version: 2\n"}},
    ).expect(200)  # fmt: skip
    workloads.eventually(lambda: app_file() == "version: 2\n", 60, "the new file in the app")
    workloads.eventually(lambda: app_state()["reloads"] >= 1, 30, "the app to be reloaded")
    (metrics,) = request(kubectl, namespace, "all", "GET", "http://127.0.0.1:15022/metrics")
    assert workloads.metric(metrics["body"], "sidecar_config_changes_total") == 1
    assert workloads.metric(metrics["body"], "sidecar_reloads_total", outcome="ok") == 1
    assert app_state()["reloads"] == 1


def test_dynamic_secret_lease_is_renewed_while_the_pod_runs(
    kube: Kube, kubectl: str, namespace: str, injector: Injector
) -> None:
    # The stand-in's database role "short" gives 6-second leases (overlay config).
    pod = workloads.pod(
        "lease",
        {
            "inject": "true",
            "secrets-role": "e2e",
            "secret-creds": "database/creds/short",
            "secrets-vault-addr": "http://vault-standin.sidecar-e2e-vault.svc:8200",
        },
    )
    workloads.apply(kubectl, namespace, pod)
    workloads.ready(kube, namespace, "lease")

    def renewals() -> float:
        (result,) = request(kubectl, namespace, "lease", "GET", "http://127.0.0.1:15021/metrics")
        return workloads.metric(result["body"], "sidecar_secrets_renewals_total", kind="lease")

    workloads.eventually(lambda: renewals() >= 2, 60, "two lease renewals")


def test_unreachable_vault_fails_the_init_container_within_its_deadline(
    kube: Kube, kubectl: str, namespace: str, injector: Injector
) -> None:
    pod = workloads.pod(
        "novault",
        {
            "inject": "true",
            "secrets-role": "e2e",
            "secret-db": "secret/data/e2e/app",
            "secrets-vault-addr": f"http://nowhere.{namespace}.svc:8200",
        },
        restartPolicy="Never",
    )
    workloads.apply(kubectl, namespace, pod)
    terminated = workloads.init_ended(kube, namespace, "novault", INIT_DEADLINE + 60)
    assert terminated["exitCode"] == 1
    message = str(terminated.get("message", ""))
    assert "unreachable" in message, message
    started = _timestamp(str(terminated["startedAt"]))
    finished = _timestamp(str(terminated["finishedAt"]))
    assert finished - started <= INIT_DEADLINE + 5, (started, finished)
    described = workloads.kubectl([kubectl], "-n", namespace, "describe", "pod", "novault")
    assert message.strip().splitlines()[-1].strip() in described


def _started(pod: dict[str, Any]) -> str:
    """When each container started, in seconds after the pod was created (the
    API's timestamps have whole seconds), e.g. ``sidecar-proxy +1, app +6``."""
    created = _timestamp(pod["metadata"]["creationTimestamp"])
    status = pod["status"]
    starts = []
    for entry in [*status.get("initContainerStatuses", []), *status["containerStatuses"]]:
        state = entry["state"].get("running") or entry["state"].get("terminated") or {}
        if "startedAt" in state:
            starts.append((_timestamp(state["startedAt"]) - created, entry["name"]))
    return ", ".join(f"{name} +{offset:.0f}" for offset, name in sorted(starts))


def _timestamp(value: str) -> float:
    return time.mktime(time.strptime(value, "%Y-%m-%dT%H:%M:%SZ"))
