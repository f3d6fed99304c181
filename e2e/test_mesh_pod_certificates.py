"""The signer's PodCertificateRequest front door against the real API server
(the local control plane serves the beta API): what the kubelet would ask is
created here, the operator answers, and the API server's own validation of
the status (times, key, chain) is the judge."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from e2e.conftest import Injector
from e2e.kube import Kube, wait_for
from e2e.mesh import TRUST_DOMAIN, create_node, meshed_pod

API = "/apis/certificates.k8s.io/v1beta1"
SIGNER = "sidecar.example.io/mesh"


@pytest.fixture(scope="module")
def served(kube: Kube, injector: Injector) -> None:
    found = kube.get(API)
    if not found.ok or not any(
        r.get("name") == "podcertificaterequests" for r in found.body.get("resources", [])
    ):
        pytest.skip("this API server serves no PodCertificateRequests (beta, off by default)")
    injector.require_local()


@pytest.fixture(scope="module")
def node(kube: Kube) -> Iterator[dict[str, Any]]:
    created = create_node(kube, "pcr-node")
    yield created
    kube.delete(f"/api/v1/nodes/{created['metadata']['name']}")


def request_for(
    kube: Kube, pod: dict[str, Any], node: dict[str, Any], key: Any, max_seconds: int = 86400
) -> dict[str, Any]:
    """What the kubelet creates for a podCertificate volume (stub CSR, empty)."""
    meta = pod["metadata"]
    account = kube.get(
        f"/api/v1/namespaces/{meta['namespace']}/serviceaccounts/{pod['spec']['serviceAccountName']}"
    ).expect(200)
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .sign(key, hashes.SHA256())
    )
    body = {
        "metadata": {"generateName": f"{meta['name']}-"},
        "spec": {
            "signerName": SIGNER,
            "podName": meta["name"],
            "podUID": meta["uid"],
            "serviceAccountName": pod["spec"]["serviceAccountName"],
            "serviceAccountUID": account["metadata"]["uid"],
            "nodeName": node["metadata"]["name"],
            "nodeUID": node["metadata"]["uid"],
            "maxExpirationSeconds": max_seconds,
            "stubPKCS10Request": base64.b64encode(
                csr.public_bytes(serialization.Encoding.DER)
            ).decode(),
        },
    }
    return kube.create(f"{API}/namespaces/{meta['namespace']}/podcertificaterequests", body).expect(
        201
    )


def answered(kube: Kube, pcr: dict[str, Any]) -> dict[str, Any]:
    meta = pcr["metadata"]
    path = f"{API}/namespaces/{meta['namespace']}/podcertificaterequests/{meta['name']}"

    def done() -> dict[str, Any] | None:
        status = kube.get(path).expect(200).get("status") or {}
        return status if status.get("conditions") else None

    return wait_for(done, timeout=60, what=f"an answer to {meta['name']}")


def test_a_meshed_pods_request_is_issued_and_kubernetes_accepts_it(
    kube: Kube, namespace: str, node: dict[str, Any], served: None
) -> None:
    pod = meshed_pod(kube, namespace, "web-1", "web", node["metadata"]["name"])
    key = ec.generate_private_key(ec.SECP256R1())
    status = answered(kube, request_for(kube, pod, node, key))
    assert [c["type"] for c in status["conditions"]] == ["Issued"]
    leaf = x509.load_pem_x509_certificate(status["certificateChain"].encode())
    assert leaf.public_key() == key.public_key()
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [
        f"spiffe://{TRUST_DOMAIN}/ns/{namespace}/sa/web"
    ]
    assert status["notAfter"] == leaf.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.mark.parametrize("case", ["p384-key", "not-meshed", "other-pod-uid", "short-lifetime"])
def test_requests_that_can_never_succeed_are_denied_or_failed_with_the_reason(
    kube: Kube, namespace: str, node: dict[str, Any], served: None, case: str
) -> None:
    pod = meshed_pod(
        kube, namespace, "web-1", "web", node["metadata"]["name"], mesh=case != "not-meshed"
    )
    curve = ec.SECP384R1() if case == "p384-key" else ec.SECP256R1()
    if case == "other-pod-uid":
        pod = {
            **pod,
            "metadata": {**pod["metadata"], "uid": "00000000-0000-0000-0000-000000000000"},
        }
    max_seconds = 3600 if case == "short-lifetime" else 86400
    status = answered(
        kube, request_for(kube, pod, node, ec.generate_private_key(curve), max_seconds)
    )
    condition = status["conditions"][0]
    expected = {
        "p384-key": ("Denied", "UnsupportedKeyType"),
        "not-meshed": ("Denied", "PodNotInjected"),
        "other-pod-uid": ("Denied", "PodGone"),
        "short-lifetime": ("Issued", "Issued"),  # 1 h is Kubernetes' floor: still signed
    }[case]
    assert (condition["type"], condition["reason"]) == expected, condition
    if case != "short-lifetime":
        assert "certificateChain" not in status
