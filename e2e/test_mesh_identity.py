"""The mesh certificate path against the real API server: the operator's
endpoint, real projected tokens (TokenRequest bound to a pod), TokenReview
with our audience, the live pod, the trust ConfigMap and a root rotation.

No kubelet here: pods are created with ``spec.nodeName`` set (a Node object
exists) and stay Pending; the agent's issuance step (``sidecar.identity.issue``,
the same child the proxy agent runs) is run as a local process.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from e2e.conftest import Injector
from e2e.kube import Kube, wait_for
from e2e.mesh import (
    CA_SECRET,
    TRUST_DOMAIN,
    create_node,
    meshed_pod,
    pod_token,
    root_state,
    trust_files,
)
from e2e.mesh import (
    TRUST_CONFIGMAP as TRUST,
)
from injector.operator.mesh_acks import ACKS_LABEL, ACKS_PREFIX


@pytest.fixture(scope="module")
def mesh_url(injector: Injector) -> str:
    local = injector.require_local()
    if local.mesh_url is None:
        pytest.skip("the local injector runs no mesh endpoint")
    return local.mesh_url


@pytest.fixture(scope="module")
def node(kube: Kube) -> Iterator[dict[str, Any]]:
    created = create_node(kube)
    yield created
    kube.delete(f"/api/v1/nodes/{created['metadata']['name']}")


def trust_dir(kube: Kube, namespace: str, directory: Path) -> Path:
    """What the trust ConfigMap volume holds, once the operator published it."""
    directory.mkdir(parents=True, exist_ok=True)
    for key, value in trust_files(kube, namespace).items():
        (directory / key).write_text(value)
    return directory


def issue(
    directory: Path, mesh_url: str, trust: Path, token: str, namespace: str, pod: str, account: str
) -> dict[str, Any]:
    """The agent's issuance child, as the proxy agent runs it."""
    (directory / "token").write_text(token)
    request = {
        "identity": f"spiffe://{TRUST_DOMAIN}/ns/{namespace}/sa/{account}",
        "namespace": namespace,
        "pod": pod,
        "signer": mesh_url,
        "signer_ca": str(trust / "signer-ca.pem"),
        "token_file": str(directory / "token"),
        "cert_file": str(directory / "cert.json"),
        "trusted_roots": [],
    }
    done = subprocess.run(
        [sys.executable, "-m", "sidecar.identity.issue"],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    assert token not in done.stdout + done.stderr
    return result


def test_a_pod_gets_its_identity_with_its_own_bound_token(
    kube: Kube, namespace: str, node: dict[str, Any], mesh_url: str, tmp_path: Path
) -> None:
    trust = trust_dir(kube, namespace, tmp_path / "trust")
    pod = meshed_pod(kube, namespace, "web-1", "web", node["metadata"]["name"])
    result = issue(tmp_path, mesh_url, trust, pod_token(kube, pod), namespace, "web-1", "web")
    assert "error" not in result, result
    sds = json.loads((tmp_path / "cert.json").read_text())
    chain = sds["resources"][0]["tls_certificate"]["certificate_chain"]["inline_string"]
    leaf = x509.load_pem_x509_certificate(chain.encode())
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [
        f"spiffe://{TRUST_DOMAIN}/ns/{namespace}/sa/web"
    ]
    assert result["trustBundle"] == (trust / "roots.pem").read_text()
    assert (tmp_path / "cert.json").stat().st_mode & 0o777 == 0o400


@pytest.mark.parametrize(
    "case",
    ["another-pod", "deleted-pod", "recreated-pod", "other-audience", "unbound", "not-meshed"],
)
def test_tokens_that_are_not_this_live_meshed_pods_are_refused(
    kube: Kube, namespace: str, node: dict[str, Any], mesh_url: str, tmp_path: Path, case: str
) -> None:
    trust = trust_dir(kube, namespace, tmp_path / "trust")
    node_name = node["metadata"]["name"]
    web = meshed_pod(kube, namespace, "web-1", "web", node_name, mesh=case != "not-meshed")
    other = meshed_pod(kube, namespace, "db-1", "db", node_name)
    token, name, account = pod_token(kube, web), "web-1", "web"
    expected = {
        "another-pod": "PodMismatch",
        "deleted-pod": "TokenInvalid",
        "recreated-pod": "TokenInvalid",
        "other-audience": "TokenInvalid",
        "unbound": "NotBoundToPod",
        "not-meshed": "PodNotInjected",
    }[case]
    if case == "another-pod":
        token = pod_token(kube, other)  # db-1's token, asking as web-1
    elif case in ("deleted-pod", "recreated-pod"):
        kube.request(
            "DELETE", f"/api/v1/namespaces/{namespace}/pods/web-1", {"gracePeriodSeconds": 0}
        ).expect(200)
        wait_for(
            lambda: kube.get(f"/api/v1/namespaces/{namespace}/pods/web-1").status == 404,
            timeout=30,
            what="web-1 gone",
        )
        if case == "recreated-pod":
            meshed_pod(kube, namespace, "web-1", "web", node_name)
    elif case == "other-audience":
        token = pod_token(kube, web, audience="vault")
    elif case == "unbound":
        token = pod_token(kube, web, bound=False)
    result = issue(tmp_path, mesh_url, trust, token, namespace, name, account)
    assert result.get("error") == expected, result
    assert result["retry"] is False
    assert not (tmp_path / "cert.json").exists()


def test_a_root_rotation_waits_for_running_pods_to_report_it(
    kube: Kube, namespace: str, node: dict[str, Any], mesh_url: str, tmp_path: Path
) -> None:
    """Publish (ConfigMap generation + 1, both roots), no switch while a running
    meshed pod has not reported the new root, switch once it did, Events on the way."""
    trust = trust_dir(kube, namespace, tmp_path / "trust")
    pod = meshed_pod(kube, namespace, "web-1", "web", node["metadata"]["name"])
    pod["status"] = {"phase": "Running"}
    kube.request("PUT", f"/api/v1/namespaces/{namespace}/pods/web-1/status", pod).expect(200)
    token = pod_token(kube, pod)
    first = issue(tmp_path, mesh_url, trust, token, namespace, "web-1", "web")
    old_roots = first["roots"]
    request = uuid.uuid4().hex
    kube.request(
        "PATCH",
        CA_SECRET,
        {"metadata": {"annotations": {"sidecar.example.io/rotate-root": request}}},
        content_type="application/merge-patch+json",
    ).expect(200)
    published = wait_for(
        lambda: _bundle_roots(kube, namespace, len(old_roots) + 1),
        timeout=60,
        what="the next root in the trust ConfigMap",
    )
    state = root_state(kube)
    assert [r["state"] for r in state["roots"]] == ["active", "next"]
    second = issue(
        tmp_path,
        mesh_url,
        trust_dir(kube, namespace, tmp_path / "t2"),
        token,
        namespace,
        "web-1",
        "web",
    )
    assert second["roots"][0] == old_roots[0]  # still signed by the old root: not all reported
    report_trust(mesh_url, tmp_path / "t2", token, namespace, "web-1", published)
    wait_for(
        lambda: [r["state"] for r in root_state(kube)["roots"]] == ["retiring", "active"],
        timeout=60,
        what="the switch after the report",
    )
    third = issue(tmp_path, mesh_url, trust, token, namespace, "web-1", "web")
    leaf = json.loads((tmp_path / "cert.json").read_text())["resources"][0]
    chain = leaf["tls_certificate"]["certificate_chain"]["inline_string"]
    issuer = x509.load_pem_x509_certificate(chain.encode()).issuer
    new_root = x509.load_pem_x509_certificates((tmp_path / "t2" / "roots.pem").read_bytes())[1]
    assert issuer == new_root.subject
    assert "error" not in third
    events = kube.get("/api/v1/namespaces/sidecar-injector/events").expect(200)["items"]
    reasons = [e["message"] for e in events if e["reason"] == "MeshRootRotation"]
    assert any("published next root" in m for m in reasons)
    assert any("now signs" in m for m in reasons)


def test_a_pod_whose_certificate_was_not_renewed_gets_a_warning_event(
    kube: Kube, namespace: str, node: dict[str, Any], mesh_url: str
) -> None:
    """A running meshed pod whose last certificate, as an endpoint replica
    recorded it in its acks ConfigMap, is older than 3/4 of the lifetime (24 h):
    the leader puts a Warning Event on the pod naming the expiry and the fix."""
    pod = meshed_pod(kube, namespace, "web-1", "web", node["metadata"]["name"])
    pod["status"] = {"phase": "Running"}
    kube.request("PUT", f"/api/v1/namespaces/{namespace}/pods/web-1/status", pod).expect(200)
    now = int(time.time())
    row = [pod["metadata"]["uid"], "", now, now - 20 * 3600]  # issued 20 h ago
    acks = f"{ACKS_PREFIX}e2e-{uuid.uuid4().hex[:8]}"
    configmaps = "/api/v1/namespaces/sidecar-injector/configmaps"
    kube.create(
        configmaps,
        {
            "metadata": {"name": acks, "labels": {ACKS_LABEL: "true"}},
            "data": {"acks.json": json.dumps([row])},
        },
    ).expect(201)
    events_path = f"/api/v1/namespaces/{namespace}/events"
    try:
        events = wait_for(
            lambda: [
                e
                for e in kube.get(events_path).expect(200)["items"]
                if e["reason"] == "MeshCertificateNotRenewed"
            ],
            timeout=60,
            what="the MeshCertificateNotRenewed event",
        )
    finally:
        kube.delete(f"{configmaps}/{acks}")
    assert events[0]["type"] == "Warning"
    assert events[0]["involvedObject"]["name"] == "web-1"
    assert "renewal keeps failing" in events[0]["message"]
    assert "mesh: certificate request failed" in events[0]["message"]


def _bundle_roots(kube: Kube, namespace: str, count: int) -> list[str] | None:
    found = kube.get(f"/api/v1/namespaces/{namespace}/configmaps/{TRUST}").body
    pem = found.get("data", {}).get("roots.pem", "")
    certs = x509.load_pem_x509_certificates(pem.encode()) if pem else []
    if len(certs) != count:
        return None
    from hashlib import sha256  # noqa: PLC0415

    from cryptography.hazmat.primitives.serialization import Encoding  # noqa: PLC0415

    return [sha256(c.public_bytes(Encoding.DER)).hexdigest() for c in certs]


def report_trust(
    mesh_url: str, trust: Path, token: str, namespace: str, pod: str, roots: list[str]
) -> None:
    from sidecar.identity import protocol  # noqa: PLC0415

    protocol.post(
        mesh_url,
        protocol.TRUST_REPORTS,
        {"pod": {"namespace": namespace, "name": pod}, "trustedRoots": roots},
        token,
        trust / "signer-ca.pem",
    )
