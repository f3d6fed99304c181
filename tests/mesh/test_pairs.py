"""Envoy pairs in network namespaces: a calling pod's proxy and a called pod's
proxy, real Envoy, real certificates from the operator's real endpoint.

strict, permissive and off; an identity (SAN) mismatch; allow-from allowing,
denying and dry-running; certificates of two minutes renewed and a root
rotated (publish, switch, retire) under traffic with no failed request;
callers on the new root next to servers on the old one; the certificate
missing at start."""

from __future__ import annotations

import datetime as dt
import ssl
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from injector.admission.certs import generate_ca, generate_serving_cert
from injector.mesh import trust
from tests import netns
from tests.mesh.pairs import INBOUND, Mesh
from tests.netns import PEER_V4
from tests.proxy.harness import Upstream, metric
from tests.support import wait_for

ok, why = netns.available()
pytestmark = pytest.mark.skipif(not ok, reason=why)
MeshFactory = Callable[..., Mesh]


@pytest.fixture
def mesh(tmp_path: Path) -> Iterator[MeshFactory]:
    made: list[Mesh] = []

    def make(**kwargs: object) -> Mesh:
        made.append(Mesh(tmp_path, **kwargs))  # type: ignore[arg-type]
        return made[-1]

    yield make
    for world in made:
        world.close()


def test_strict_mtls_carries_the_callers_identity_and_refuses_plaintext(
    mesh: MeshFactory,
) -> None:
    world = mesh()
    server = world.proxy("peer", "shop", "api", "strict").start()
    client = world.proxy("pod", "shop", "web", "strict", SIDECAR_UPSTREAM_IDENTITY="shop/api")
    client.start()
    server.ready()
    client.ready()
    answer = world.call("/echo")
    assert answer.status == 200
    assert f"URI={client.identity}" in answer.json()["headers"]["x-forwarded-client-cert"]
    plain = world.call("/echo", INBOUND, PEER_V4)  # the calling pod's app, around its proxy
    assert plain.status == 403
    assert b"accepts mesh mTLS only" in plain.body
    body = server.metrics()
    assert metric(body, "sidecar_mesh_inbound_requests_total", tls="mtls") == 1
    assert metric(body, "sidecar_mesh_inbound_refused_total", reason="plaintext_in_strict") == 1
    refused = wait_for(lambda: server.warnings("mesh: plaintext request refused (mtls: strict)"))
    assert refused[0]["identity"] == server.identity
    assert "permissive" in refused[0]["fix"]
    assert server.warnings("mesh: inbound TLS handshake failed") == []
    with pytest.raises((ssl.SSLError, OSError)):  # TLS to the mesh chain without a certificate
        world.tls_call("api.shop.mesh.internal")
    failed = wait_for(lambda: server.warnings("mesh: inbound TLS handshake failed"))
    assert "CERTIFICATE" in failed[0]["reason"], failed
    assert failed[0]["sni"] == "api.shop.mesh.internal"
    assert (
        metric(
            server.metrics(),
            "sidecar_mesh_tls_failures_total",
            direction="inbound",
            reason="no_certificate",
        )
        == 1
    )


def test_permissive_counts_plaintext_and_passes_the_apps_own_tls(
    mesh: MeshFactory, tmp_path: Path
) -> None:
    world = mesh()
    ca = generate_ca()
    pair = generate_serving_cert(ca, ["app.example"])
    (tmp_path / "app.pem").write_bytes(pair.cert_pem + pair.key_pem)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "app.pem")
    tls_app = world.link.peer.call(lambda: Upstream(tls=context).start())
    server = world.proxy("peer", "shop", "api", "permissive").start().ready()
    assert world.call("/echo", INBOUND, PEER_V4).status == 200  # plaintext, counted
    client = world.proxy("pod", "shop", "web", "permissive", SIDECAR_UPSTREAM_IDENTITY="shop/api")
    client.start().ready()
    assert world.call("/echo").status == 200
    body = server.metrics()
    assert metric(body, "sidecar_mesh_inbound_requests_total", tls="plaintext") == 1
    assert metric(body, "sidecar_mesh_inbound_requests_total", tls="mtls") == 1
    access = wait_for(
        lambda: (
            len(inbound := [r for r in server.proxy.access_log() if r["direction"] == "inbound"])
            == 2
            and inbound
        )
    )
    assert sorted(r["tls"] for r in access) == ["mtls", "none"]
    # The app's own TLS goes through untouched: a second permissive pod whose app is TLS.
    passthrough = world.proxy(
        "peer", "shop", "tls-app", "permissive", SIDECAR_INBOUND_PORT=str(tls_app.port),
        SIDECAR_AGENT_ADDR="127.0.0.1:15021", SIDECAR_ADMIN_PORT="15010",
        SIDECAR_INBOUND_LISTEN_PORT="15016",
    )  # fmt: skip
    passthrough.start()
    wait_for(lambda: world.ready(15021), timeout=40, what="the passthrough pod's proxy")
    status, _ = world.tls_call("app.example", 15016)
    assert status == 200
    assert tls_app.sni == ["app.example"]
    world.link.peer.call(tls_app.close)


def test_off_serves_plaintext_and_a_mesh_caller_is_told_why_it_fails(mesh: MeshFactory) -> None:
    world = mesh()
    world.proxy("peer", "shop", "api", "off").start()
    wait_for(lambda: world.ready(15020), timeout=40, what="the mtls-off proxy")
    assert world.call("/echo", INBOUND, PEER_V4).status == 200
    client = world.proxy("pod", "shop", "web", "strict", SIDECAR_UPSTREAM_IDENTITY="shop/api")
    client.start().ready()
    answer = world.call("/echo")
    assert answer.status == 503
    assert b"cannot reach spiffe://cluster.local/ns/shop/sa/api" in answer.body
    logged = wait_for(lambda: client.warnings("mesh: upstream connection failed"))
    assert logged[0]["expected"] == "spiffe://cluster.local/ns/shop/sa/api"
    assert "not an injected pod with mtls on" in logged[0]["fix"]


def test_an_identity_mismatch_is_refused_by_the_caller_and_named(mesh: MeshFactory) -> None:
    world = mesh()
    server = world.proxy("peer", "shop", "api", "strict").start()
    client = world.proxy("pod", "shop", "web", "strict", SIDECAR_UPSTREAM_IDENTITY="shop/payments")
    client.start()
    server.ready()
    client.ready()
    answer = world.call("/echo")
    assert answer.status == 503
    assert b"CERTIFICATE_VERIFY_FAILED" in answer.body
    assert world.app.hits["/echo"] == 0
    body = client.metrics()
    assert (
        metric(
            body,
            "sidecar_mesh_tls_failures_total",
            direction="outbound",
            reason="identity_mismatch",
        )
        >= 1
    )
    logged = wait_for(lambda: client.warnings("mesh: upstream connection failed"))
    assert logged[0]["expected"] == "spiffe://cluster.local/ns/shop/sa/payments"
    assert "sidecar.example.io/upstream-identity" in logged[0]["fix"]


@pytest.mark.parametrize("mode", ["enforce", "dry-run"])
def test_allow_from_admits_listed_callers_and_denies_others_by_name(
    mesh: MeshFactory, mode: str
) -> None:
    world = mesh()
    server = world.proxy(
        "peer", "shop", "api", "strict",
        SIDECAR_ALLOW_FROM="shop/web,ops/*", SIDECAR_ALLOW_FROM_MODE=mode,
    ).start()  # fmt: skip
    allowed = world.proxy("pod", "shop", "web", "strict", SIDECAR_UPSTREAM_IDENTITY="shop/api")
    allowed.start()
    server.ready()
    allowed.ready()
    assert world.call("/echo").status == 200
    allowed.proxy.stop()
    intruder = world.proxy(
        "pod", "shop", "intruder", "strict", SIDECAR_UPSTREAM_IDENTITY="shop/api"
    )
    intruder.start().ready()
    answer = world.call("/echo")
    body = server.metrics()
    if mode == "enforce":
        assert answer.status == 403
        assert intruder.identity.encode() in answer.body
        assert b"sidecar.example.io/allow-from" in answer.body
        assert metric(body, "sidecar_mesh_rbac_denied_total", mode="enforce") == 1
        logged = wait_for(lambda: server.warnings("mesh: request denied by allow-from"))
    else:
        assert answer.status == 200
        assert metric(body, "sidecar_mesh_rbac_denied_total", mode="dry-run") == 1
        logged = wait_for(
            lambda: server.warnings("mesh: allow-from (dry-run) would deny this request")
        )
    assert logged[0]["peer"] == intruder.identity
    assert logged[0]["identity"] == server.identity


def test_two_minute_certificates_and_a_root_rotation_under_traffic(mesh: MeshFactory) -> None:
    """Certificates renewed at about half-life, a new root published, switched to
    and the old one retired, while the calling app sends requests all along."""
    world = mesh(lifetime=dt.timedelta(minutes=2))
    server = world.proxy("peer", "shop", "api", "strict").start()
    client = world.proxy("pod", "shop", "web", "strict", SIDECAR_UPSTREAM_IDENTITY="shop/api")
    client.start()
    server.ready()
    client.ready()
    traffic = Traffic(world)
    traffic.start()
    try:
        old = world.signer.state.active.fingerprint
        world.signer.rotate("test")
        world.publish()
        both = set(world.signer.state.fingerprints)
        wait_for(
            lambda: all(r.roots == both for r in world.signer.ledger.reports.values()),
            timeout=30,
            what="both agents to report both roots",
        )
        world.signer.switch()
        new = world.signer.state.active.fingerprint
        assert new != old
        for proxy in (server, client):  # renewed at about half of two minutes, by the new root
            wait_for(
                lambda p=proxy: len(p.issued()) >= 2, timeout=100, what=f"{proxy.name} renewal"
            )
        wait_for(lambda: server.get("/ready")[0] == 200 and client.get("/ready")[0] == 200)
        world.signer.view.state = retire(world.signer.state)
        world.publish()
        wait_for(
            lambda: all(len(p.certs()["ca_cert"]) == 1 for p in (server, client)),
            timeout=30,
            what="the old root to leave both bundles",
        )
        done = traffic.stop()
    finally:
        traffic.stop()
    assert done.failed == [], done.failed[:5]
    assert done.ok > 50
    new_root = world.signer.state.active.authority.certificate.subject
    for proxy in (server, client):
        serials = [int(r["serial"], 16) for r in proxy.issued()]
        assert proxy.certs()["cert_chain"] == [serials[-1]]
        assert proxy.issuer() == new_root


def test_callers_on_the_new_root_and_servers_on_the_old_one_talk_during_the_overlap(
    mesh: MeshFactory,
) -> None:
    world = mesh()
    server = world.proxy("peer", "shop", "api", "strict").start().ready()
    world.signer.rotate("overlap")
    world.publish()
    wait_for(lambda: len(server.certs()["ca_cert"]) == 2, timeout=30, what="server trusts both")
    world.signer.switch()
    client = world.proxy("pod", "shop", "web", "strict", SIDECAR_UPSTREAM_IDENTITY="shop/api")
    client.start().ready()
    state = world.signer.state
    old = next(r for r in state.roots if r.state == trust.RETIRING)
    assert client.issuer() == state.active.authority.certificate.subject
    assert server.issuer() == old.authority.certificate.subject
    assert world.call("/echo").status == 200


def test_a_certificate_missing_at_start_holds_the_pod_until_it_is_issued(
    mesh: MeshFactory,
) -> None:
    world = mesh()
    world.signer.stop()
    server = world.proxy("peer", "shop", "api", "strict").start()
    client = world.proxy("pod", "shop", "web", "strict", SIDECAR_UPSTREAM_IDENTITY="shop/api")
    client.start()
    waiting = wait_for(lambda: server.warnings("mesh: certificate request failed"), timeout=30)
    assert waiting[0]["reason"] == "SignerUnavailable"
    status, reason = server.get("/ready")
    assert status == 503
    assert "certificate request failed" in reason
    assert not (server.proxy.work_dir / "envoy.json").exists()  # no Envoy without a certificate
    world.signer.start()
    server.ready(timeout=60)
    client.ready(timeout=60)
    assert world.call("/echo").status == 200


class Traffic:
    """The calling app: one request every 50 ms through its proxy, outcomes recorded."""

    def __init__(self, world: Mesh) -> None:
        self.world = world
        self.ok = 0
        self.failed: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                answer = self.world.call("/echo")
                if answer.status == 200:
                    self.ok += 1
                else:
                    self.failed.append(f"{answer.status} {answer.body[:200]!r}")
            except OSError as exc:
                self.failed.append(repr(exc))
            self._stop.wait(0.05)

    def stop(self) -> Traffic:
        self._stop.set()
        self._thread.join(timeout=15)
        return self


def retire(state: trust.TrustState) -> trust.TrustState:
    """What the plan does once the retiring root's last certificate has expired."""
    retiring = next(r for r in state.roots if r.state == trust.RETIRING)
    assert retiring.retire_at is not None
    policy = trust.RotationPolicy(root_lifetime=dt.timedelta(days=30))
    return trust.plan(state, "td", retiring.retire_at, policy).state
