"""Install the injector into a cluster as an operator would (``SIDECAR_E2E_INJECTOR=install``).

What ``e2e/kind.sh`` does with kubectl, for a cluster whose nodes already
hold the images (the local node imports them; kind loads them): the CRD
first, established, then ``kubectl apply --server-side -k
manifests/overlays/e2e``; then the real Vault, its set-up Job, the Vault
stand-in and the injector become available, the operator patches the caBundle, and the API
server calls the injector through its Service. ``uninstall`` deletes what
was applied and waits until the namespaces are gone.

When something does not come up, the error carries what a person would look
at: the pods' states, the namespace's recent events and the injector's log.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from e2e import harness
from e2e.kube import Kube, KubeError, wait_for

VAULT_NAMESPACE = "sidecar-e2e-vault"
TIMEOUT = 180.0


class InstallError(harness.HarnessError):
    """The overlay did not come up; the message says what the cluster shows."""


def _kubectl(kubectl: str, kubeconfig: str | None, *args: str, stdin: str = "") -> str:
    result = subprocess.run(
        [kubectl, *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=dict(os.environ, **({"KUBECONFIG": kubeconfig} if kubeconfig else {})),
        check=False,
        timeout=180,
    )
    if result.returncode != 0:
        raise InstallError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout


def diagnosis(kube: Kube, namespace: str) -> str:
    """Pods (phase, container states) and the last events of namespace, as text."""
    lines = []
    pods = kube.get(f"/api/v1/namespaces/{namespace}/pods").body.get("items", [])
    for pod in pods:
        status = pod.get("status", {})
        states = [
            f"{c['name']}: {json.dumps(c.get('state', {}))} restarts={c.get('restartCount', 0)}"
            for c in status.get("initContainerStatuses", []) + status.get("containerStatuses", [])
        ]
        lines.append(f"pod {pod['metadata']['name']} {status.get('phase')}: {'; '.join(states)}")
        lines += _crash_logs(kube, pod)
    events = kube.get(f"/api/v1/namespaces/{namespace}/events").body.get("items", [])
    for event in events[-15:]:
        involved = event.get("involvedObject", {})
        lines.append(
            f"event {involved.get('kind')}/{involved.get('name')}: "
            f"{event.get('reason')}: {event.get('message')}"
        )
    return "\n".join(lines) or f"(no pods or events in {namespace})"


def _crash_logs(kube: Kube, pod: dict[str, Any]) -> list[str]:
    """The last lines of every container that restarted, from its previous run."""
    lines = []
    namespace, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
    status = pod.get("status", {})
    for container in status.get("initContainerStatuses", []) + status.get("containerStatuses", []):
        if not container.get("restartCount"):
            continue
        response = kube.request(
            "GET",
            f"/api/v1/namespaces/{namespace}/pods/{name}/log",
            query={"container": container["name"], "previous": "true", "tailLines": "20"},
        )
        lines.append(f"previous log of {name}/{container['name']}:\n{response.message}")
    return lines


def wait_available(kube: Kube, namespace: str, name: str, timeout: float = TIMEOUT) -> None:
    path = f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}"

    def available() -> bool:
        body = kube.get(path).expect(200)
        wanted = body["spec"].get("replicas", 1)
        return bool(body.get("status", {}).get("availableReplicas", 0) >= wanted)

    try:
        wait_for(available, timeout, f"Deployment {namespace}/{name} to be available")
    except KubeError as exc:
        raise InstallError(f"{exc}\n{diagnosis(kube, namespace)}") from None


def wait_complete(kube: Kube, namespace: str, name: str, timeout: float = TIMEOUT) -> None:
    path = f"/apis/batch/v1/namespaces/{namespace}/jobs/{name}"

    def complete() -> bool:
        return bool(kube.get(path).expect(200).get("status", {}).get("succeeded"))

    try:
        wait_for(complete, timeout, f"Job {namespace}/{name} to complete")
    except KubeError as exc:
        raise InstallError(f"{exc}\n{diagnosis(kube, namespace)}") from None


def install(kube: Kube, kubectl: str, kubeconfig: str | None, overlay: Path) -> None:
    crds = [
        doc
        for doc in harness.manifest_documents(kubectl, overlay)
        if doc["kind"] == "CustomResourceDefinition"
    ]
    harness._kubectl_apply(kubectl, kubeconfig, crds)
    harness._wait_established(kube, [crd["metadata"]["name"] for crd in crds])
    _kubectl(
        kubectl,
        kubeconfig,
        "apply",
        "--server-side",
        "--field-manager=sidecar-e2e",
        "-k",
        str(overlay),
    )
    wait_available(kube, VAULT_NAMESPACE, "vault")
    wait_available(kube, VAULT_NAMESPACE, "vault-standin")
    wait_complete(kube, VAULT_NAMESPACE, "vault-setup")
    wait_available(kube, harness.INJECTOR_NAMESPACE, "sidecar-injector")

    def patched() -> bool:
        return harness.ca_bundle(kube, harness.WEBHOOK_CONFIGURATION) is not None

    try:
        wait_for(patched, 60, "the operator to patch the webhook's caBundle")
    except KubeError as exc:
        logs = _logs(kubectl, kubeconfig)
        raise InstallError(f"{exc}; injector log:\n{logs}") from None


def _logs(kubectl: str, kubeconfig: str | None) -> str:
    try:
        return _kubectl(
            kubectl,
            kubeconfig,
            "-n",
            harness.INJECTOR_NAMESPACE,
            "logs",
            "deployment/sidecar-injector",
            "--tail=40",
        )
    except InstallError as exc:
        return str(exc)


def uninstall(kube: Kube, kubectl: str, kubeconfig: str | None, overlay: Path) -> None:
    _kubectl(
        kubectl, kubeconfig, "delete", "--ignore-not-found", "--wait=false", "-k", str(overlay)
    )

    def gone() -> bool:
        return all(
            kube.get(f"/api/v1/namespaces/{name}").status == 404
            for name in (harness.INJECTOR_NAMESPACE, VAULT_NAMESPACE)
        )

    wait_for(gone, 120, "the overlay's namespaces to be deleted")
