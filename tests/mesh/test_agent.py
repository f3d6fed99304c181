"""The proxy agent's identity against the real certificate endpoint (loopback):
first certificate before Envoy starts, readiness tied to what Envoy serves,
clear failures, trust bundle swaps and reports."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from contract.spiffe import SpiffeId
from injector.mesh.signer import RequestDenied
from sidecar.files import write_atomic
from sidecar.proxy.admin import EnvoyAdmin
from tests.mesh.pki import leaf
from tests.mesh.signer_server import Pod, SignerServer
from tests.proxy.harness import Proxy, Upstream, get_text, metric
from tests.support import http_status, wait_for

ProxyFactory = Callable[..., Proxy]


@pytest.fixture
def signer() -> Iterator[SignerServer]:
    server = SignerServer().start()
    yield server
    server.stop()


def mesh_env(signer: SignerServer, pod: Pod, tmp_path: Path, **extra: str) -> dict[str, str]:
    trust_dir = tmp_path / "trust"
    signer.publish(trust_dir)
    token = tmp_path / "token"
    token.write_text(pod.token)
    return {
        "SIDECAR_MTLS": "permissive",
        "SIDECAR_POD_NAME": pod.name,
        "SIDECAR_POD_NAMESPACE": pod.namespace,
        "SIDECAR_SERVICE_ACCOUNT": pod.service_account,
        "SIDECAR_SIGNER": signer.url,
        "SIDECAR_SIGNER_CA": str(trust_dir / "signer-ca.pem"),
        "SIDECAR_TRUST_BUNDLE": str(trust_dir / "roots.pem"),
        "SIDECAR_IDENTITY_TOKEN": str(token),
        **extra,
    }


def envoy_certs(proxy: Proxy) -> dict[str, list[int]]:
    return EnvoyAdmin(proxy.admin_port).certificates()


def test_ready_only_once_envoy_serves_the_issued_certificate(
    signer: SignerServer, proxy: ProxyFactory, upstream: Upstream, tmp_path: Path
) -> None:
    pod = signer.pod("shop", "web-1", "web")
    p = proxy(inbound_port=upstream.port, env=mesh_env(signer, pod, tmp_path)).start().ready()
    issued = [r for r in p.logs() if r.get("msg") == "mesh: certificate issued"]
    assert issued[0]["identity"] == "spiffe://cluster.local/ns/shop/sa/web"
    assert int(issued[0]["serial"], 16) in envoy_certs(p)["cert_chain"]
    body = p.metrics()
    assert metric(body, "sidecar_mesh_certificate_served") == 1
    assert metric(body, "sidecar_mesh_certificate_renewals_total", outcome="issued") == 1
    assert metric(body, "sidecar_mesh_mtls_mode", mode="permissive") == 1
    ledger = list(signer.ledger.reports.values())
    assert ledger[0].pod == "shop/web-1"


def test_signer_down_at_start_holds_readiness_and_says_why(
    signer: SignerServer, proxy: ProxyFactory, upstream: Upstream, tmp_path: Path
) -> None:
    pod = signer.pod("shop", "web-1", "web")
    env = mesh_env(signer, pod, tmp_path)
    signer.stop()
    p = proxy(inbound_port=upstream.port, env=env).start()
    failure = wait_for(
        lambda: [r for r in p.logs() if r.get("msg") == "mesh: certificate request failed"],
        timeout=20,
        what="a logged failure",
    )[0]
    assert failure["reason"] == "SignerUnavailable"
    assert "15012" in failure["fix"]
    status, reason = get_text(p.agent + "/ready")
    assert status == 503
    assert "certificate request failed (SignerUnavailable)" in reason
    assert not (p.work_dir / "envoy.json").exists()  # Envoy waits for its certificate
    signer.start()
    p.ready(timeout=40)


def test_a_refusal_is_logged_with_its_reason_and_fix(
    signer: SignerServer, proxy: ProxyFactory, upstream: Upstream, tmp_path: Path
) -> None:
    pod = signer.pod("shop", "web-1", "web")
    signer.reviewer.fail_with = RequestDenied("PodNotInjected", "pod shop/web-1 has no mesh entry")
    p = proxy(inbound_port=upstream.port, env=mesh_env(signer, pod, tmp_path)).start()
    failure = wait_for(
        lambda: [r for r in p.logs() if r.get("msg") == "mesh: certificate request failed"],
        timeout=20,
        what="a logged refusal",
    )[0]
    assert failure["reason"] == "PodNotInjected"
    assert "re-create it" in failure["fix"]
    assert pod.token not in p.stderr()
    assert http_status(p.agent + "/ready") == 503
    signer.reviewer.fail_with = None
    p.ready(timeout=40)


def test_trust_bundle_from_the_configmap_is_swapped_in_and_reported(
    signer: SignerServer, proxy: ProxyFactory, upstream: Upstream, tmp_path: Path
) -> None:
    pod = signer.pod("shop", "web-1", "web")
    p = proxy(inbound_port=upstream.port, env=mesh_env(signer, pod, tmp_path)).start().ready()
    first = set(signer.state.fingerprints)
    signer.rotate("test")
    signer.publish(tmp_path / "trust")
    both = set(signer.state.fingerprints)
    assert len(both) == 2
    wait_for(
        lambda: next(iter(signer.ledger.reports.values())).roots == both,
        timeout=30,
        what="the agent to report both roots",
    )
    assert len(envoy_certs(p)["ca_cert"]) == 2
    assert first < both
    assert metric(p.metrics(), "sidecar_mesh_trust_bundle_generation") == 2


def test_pod_certificates_from_the_kubelet_are_served_and_followed(
    proxy: ProxyFactory, upstream: Upstream, tmp_path: Path
) -> None:
    """issuance: podCertificate: the kubelet writes key + chain (credentialBundlePath)
    and refreshes it; the agent serves each version and needs no signer."""
    signer = SignerServer()  # only its roots and trust files: nothing is served
    trust = tmp_path / "trust"
    signer.publish(trust)
    identity = SpiffeId("cluster.local", "shop", "web")
    credentials = tmp_path / "credentials" / "credentials.pem"
    credentials.parent.mkdir()

    def kubelet_writes() -> int:
        made = leaf(signer.state.active.authority, identity)
        write_atomic(credentials, made.key_pem + made.chain_pem, mode=0o444)
        return made.issued.serial

    first = kubelet_writes()
    env = {
        "SIDECAR_MTLS": "strict",
        "SIDECAR_POD_NAME": "web-1",
        "SIDECAR_POD_NAMESPACE": "shop",
        "SIDECAR_SERVICE_ACCOUNT": "web",
        "SIDECAR_POD_CREDENTIALS": str(credentials),
        "SIDECAR_TRUST_BUNDLE": str(trust / "roots.pem"),
    }
    p = proxy(inbound_port=upstream.port, env=env).start().ready()
    assert envoy_certs(p)["cert_chain"] == [first]
    second = kubelet_writes()
    wait_for(lambda: envoy_certs(p)["cert_chain"] == [second], timeout=30, what="the refresh")
    assert http_status(p.agent + "/ready") == 200
