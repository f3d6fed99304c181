"""Mesh mTLS on a real node: injected Deployments, their proxies, the operator's roots.

``api`` (mtls strict, ``allow-from: <ns>/web``) behind Service ``api`` (port 80
-> the proxy's 15006); ``web`` and ``intruder`` call it through their proxies
(``proxy-upstream: http://api.<ns>.svc:80``, ``upstream-identity: <ns>/api``),
each under its own ServiceAccount. Certificates come from the operator's
endpoint: the installed one's Service, or the local injector at the node's
address (``e2e.harness``).

One namespace and one set of Deployments for the module (pods take most of
the time); the root rotation runs last: it leaves the cluster on a new root.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from cryptography import x509

from e2e import workloads
from e2e.conftest import Injector
from e2e.install import diagnosis
from e2e.kube import Kube, KubeError
from e2e.mesh import TRUST_DOMAIN, root_state, trust_files
from e2e.workloads import metric, request

pytestmark = pytest.mark.nodes

PROXY = "sidecar-proxy"
CERT_FILE = "/var/run/sidecar/proxy/mesh/cert.json"
STOP_FILE = "/tmp/stop-loop"  # in the app container
# The calling app during the rotation: one request every 50 ms through its
# proxy, a progress line every 20 requests, every failure kept, until STOP_FILE.
LOOP = r"""
import http.client, json, os, sys, time
ok, failed, hosts, started = 0, [], set(), time.monotonic()
while not os.path.exists(sys.argv[2]) and time.monotonic() - started < 900:
    connection = http.client.HTTPConnection("127.0.0.1", 15001, timeout=10)
    try:
        connection.request("GET", sys.argv[1])
        response = connection.getresponse()
        body = response.read().decode(errors="replace")
        if response.status == 200:
            ok += 1
            hosts.add(json.loads(body)["host"])
        else:
            failed.append([round(time.time(), 2), response.status, body[:300]])
    except OSError as exc:
        failed.append([round(time.time(), 2), 0, repr(exc)])
    finally:
        connection.close()
    if (ok + len(failed)) % 20 == 0:
        print(json.dumps({"ok": ok, "failed": len(failed)}), flush=True)
    time.sleep(0.05)
print(json.dumps({"done": ok, "failed": failed, "hosts": sorted(hosts)}), flush=True)
"""


@dataclass
class World:
    kube: Kube
    kubectl: str
    namespace: str

    def identity(self, account: str) -> str:
        return f"spiffe://{TRUST_DOMAIN}/ns/{self.namespace}/sa/{account}"

    def pods(self, app: str, count: int = 1) -> list[str]:
        """Names of the Ready pods of Deployment ``app``, once there are ``count``."""
        path = f"/api/v1/namespaces/{self.namespace}/pods?labelSelector=app%3D{app}"

        def ready() -> list[str] | None:
            names = [
                pod["metadata"]["name"]
                for pod in self.kube.get(path).expect(200)["items"]
                if not pod["metadata"].get("deletionTimestamp")
                and any(
                    c["type"] == "Ready" and c["status"] == "True"
                    for c in pod.get("status", {}).get("conditions", [])
                )
            ]
            return sorted(names) if len(names) == count else None

        try:
            found: list[str] = workloads.eventually(ready, workloads.TIMEOUT, f"{app} Ready")
        except KubeError as exc:
            raise KubeError(f"{exc}\n{self.diagnosis(path)}") from None
        return found

    def diagnosis(self, pods_path: str) -> str:
        """What the namespace shows, and the last lines of each proxy's log."""
        lines = [diagnosis(self.kube, self.namespace)]
        for pod in self.kube.get(pods_path).body.get("items", []):
            name = pod["metadata"]["name"]
            try:
                logs = workloads.kubectl(
                    [self.kubectl], "-n", self.namespace, "logs", name, "-c", PROXY, "--tail=15"
                )
            except KubeError as exc:
                logs = str(exc)
            lines.append(f"--- {name} {PROXY}:\n{logs}")
        return "\n".join(lines)

    def get(self, pod: str, url: str) -> dict[str, Any]:
        (result,) = request(self.kubectl, self.namespace, pod, "GET", url)
        return result

    def metrics(self, pod: str) -> str:
        result = self.get(pod, "http://127.0.0.1:15020/metrics")
        assert result["status"] == 200, result
        return str(result["body"])

    def proxy_log(self, pod: str) -> list[dict[str, Any]]:
        text = workloads.logs(self.kubectl, self.namespace, pod, PROXY)
        return [json.loads(line) for line in text.splitlines() if line.startswith("{")]

    def leaf(self, pod: str) -> x509.Certificate:
        """The certificate the pod's proxy serves, from its SDS file (chain only)."""
        program = (
            f"import json; s = json.load(open({CERT_FILE!r}))['resources'][0]; "
            "print(s['tls_certificate']['certificate_chain']['inline_string'])"
        )
        out = workloads.kubectl(
            [self.kubectl], "-n", self.namespace, "exec", pod, "-c", PROXY, "--",
            "python", "-c", program,
        )  # fmt: skip
        return x509.load_pem_x509_certificate(out.encode())


# How long after the switch every endpoint replica may still sign with the old
# root: --mesh-check-interval (10 s) times a loaded machine's slack.
SWITCH_SPREAD = 180.0


def _deployment(name: str, annotations: dict[str, str]) -> dict[str, Any]:
    template = workloads.pod(name, {"inject": "true", **annotations}, serviceAccountName=name)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": template["metadata"], "spec": template["spec"]},
        },
    }


def _account(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name}}


@pytest.fixture(scope="module")
def world(kube: Kube, kubectl: str, injector: Injector) -> Iterator[World]:
    namespace = kube.create_namespace("mesh")
    world = World(kube, kubectl, namespace)
    caller = {
        "proxy-upstream": f"http://api.{namespace}.svc:80",
        "upstream-identity": f"{namespace}/api",
    }
    server = {"mtls": "strict", "proxy-inbound-port": "8080", "allow-from": f"{namespace}/web"}
    try:
        workloads.apply(
            kubectl, namespace,
            *(_account(name) for name in ("api", "web", "intruder")),
            _deployment("api", server), workloads.service("api", 15006),
            _deployment("web", caller), _deployment("intruder", caller),
        )  # fmt: skip
        for app in ("api", "web", "intruder"):
            world.pods(app)
        workloads.routed(kubectl, namespace, world.pods("web")[0], "http://127.0.0.1:15001/")
        yield world
    finally:
        kube.delete_namespace(namespace)


def test_two_deployments_talk_mtls_and_the_server_sees_the_callers_identity(
    world: World,
) -> None:
    (web,), (api,) = world.pods("web"), world.pods("api")
    answer = world.get(web, "http://127.0.0.1:15001/hello")
    assert answer["status"] == 200, answer
    echo = json.loads(answer["body"])
    assert echo["host"] == api
    headers = {key.lower(): value for key, value in echo["headers"].items()}
    assert f"URI={world.identity('web')}" in headers["x-forwarded-client-cert"]
    assert f"By={world.identity('api')}" in headers["x-forwarded-client-cert"]
    server = world.metrics(api)
    assert metric(server, "sidecar_mesh_inbound_requests_total", tls="mtls") >= 1
    assert metric(server, "sidecar_mesh_inbound_requests_total", tls="plaintext") == 0
    client = world.metrics(web)
    assert metric(client, "envoy_cluster_ssl_handshake", envoy_cluster_name="outbound") >= 1
    assert metric(client, "sidecar_mesh_tls_failures_total", direction="outbound") == 0
    # Both proxies serve certificates of their own identity, from the same mesh root.
    for pod, account in ((web, "web"), (api, "api")):
        san = world.leaf(pod).extensions.get_extension_for_class(x509.SubjectAlternativeName)
        assert san.value.get_values_for_type(x509.UniformResourceIdentifier) == [
            world.identity(account)
        ]


def test_a_caller_missing_from_allow_from_gets_403_naming_it(world: World) -> None:
    (intruder,), (api,) = world.pods("intruder"), world.pods("api")
    before = metric(world.metrics(api), "sidecar_mesh_rbac_denied_total", mode="enforce")
    answer = world.get(intruder, "http://127.0.0.1:15001/")
    assert answer["status"] == 403, answer
    assert world.identity("intruder") in answer["body"]
    assert "sidecar.example.io/allow-from" in answer["body"]
    after = metric(world.metrics(api), "sidecar_mesh_rbac_denied_total", mode="enforce")
    assert after == before + 1
    denied = workloads.eventually(
        lambda: [
            line
            for line in world.proxy_log(api)
            if line.get("msg") == "mesh: request denied by allow-from"
        ],
        30,
        "the denial in api's proxy log",
    )
    assert denied[-1]["peer"] == world.identity("intruder")
    assert denied[-1]["identity"] == world.identity("api")


def test_strict_mode_refuses_plaintext_with_the_fix(world: World) -> None:
    (web,), (api,) = world.pods("web"), world.pods("api")
    # web's app straight to the Service, around its own proxy: plain HTTP.
    answer = world.get(web, f"http://api.{world.namespace}.svc/")
    assert answer["status"] == 403, answer
    assert "accepts mesh mTLS only" in answer["body"]
    server = world.metrics(api)
    assert metric(server, "sidecar_mesh_inbound_refused_total", reason="plaintext_in_strict") >= 1
    assert metric(server, "sidecar_mesh_inbound_requests_total", tls="plaintext") == 0


@pytest.mark.timeout(900)  # ConfigMap volumes refresh about once a minute
def test_a_root_rotation_fails_no_request(world: World) -> None:
    """docs/mesh.md's steps: annotate the CA Secret; the next root is published
    to every namespace, agents report it, issuance switches; a new pod gets a
    leaf of the new root and talks to a server still on the old one's."""
    (web,), (api,) = world.pods("web"), world.pods("api")
    old = _active(root_state(world.kube))
    loop = Loop(world, web)
    try:
        loop.wait_for_requests(20)
        new = _rotate(world, old)
        fresh = _replica_on(world, new, web)
        answer = world.get(fresh, "http://127.0.0.1:15001/from-the-new-root")
        loop.wait_for_requests(loop.seen + 20)
    finally:
        done = loop.stop()
    assert done["failed"] == [], done["failed"][:5]
    assert done["done"] >= 40
    assert done["hosts"] == [api]
    assert answer["status"] == 200, answer
    headers = {k.lower(): v for k, v in json.loads(answer["body"])["headers"].items()}
    assert f"URI={world.identity('web')}" in headers["x-forwarded-client-cert"]
    world.leaf(fresh).verify_directly_issued_by(new)
    world.leaf(api).verify_directly_issued_by(old)  # still the old root's leaf: both trusted
    reasons = [
        e["message"]
        for e in world.kube.get("/api/v1/namespaces/sidecar-injector/events").expect(200)["items"]
        if e["reason"] == "MeshRootRotation"
    ]
    assert any("published next root" in m for m in reasons), reasons
    assert any("now signs" in m for m in reasons), reasons


def _rotate(world: World, old: x509.Certificate) -> x509.Certificate:
    """The documented rotation request; the new active root once issuance switched."""
    generation = int(trust_files(world.kube, world.namespace)["generation"])
    workloads.kubectl(
        [world.kubectl], "-n", "sidecar-injector", "annotate", "secret", "sidecar-mesh-ca",
        f"sidecar.example.io/rotate-root={uuid.uuid4().hex}", "--overwrite",
    )  # fmt: skip
    workloads.eventually(
        lambda: int(trust_files(world.kube, world.namespace)["generation"]) > generation,
        60,
        "the next root in the namespace's trust ConfigMap",
    )

    # The kubelet refreshes ConfigMap volumes about once a minute; then every
    # agent reports the new root and the leader switches.
    def switched() -> x509.Certificate | None:
        active = _active(root_state(world.kube))
        return active if active != old else None

    new: x509.Certificate = workloads.eventually(switched, 240, "issuance to switch roots")
    return new


def _replica_on(world: World, root: x509.Certificate, existing: str) -> str:
    """A second web replica whose leaf ``root`` signed. The endpoint replicas that
    do not lead read the switch at their next look at the Secret (every
    --mesh-check-interval, 10 s): a pod that asked one of them meanwhile holds a
    leaf of the old root (still trusted); it is replaced until a deadline (a
    loaded machine stretches every replica's round), not a fixed number of times."""
    workloads.kubectl(
        [world.kubectl], "-n", world.namespace, "scale", "deployment", "web", "--replicas=2"
    )
    issuers = []
    deadline = time.monotonic() + SWITCH_SPREAD
    while True:
        (fresh,) = set(world.pods("web", 2)) - {existing}
        issuers.append(world.leaf(fresh).issuer)
        if issuers[-1] == root.subject:
            return fresh
        if time.monotonic() > deadline:
            break
        workloads.kubectl([world.kubectl], "-n", world.namespace, "delete", "pod", fresh)
    raise AssertionError(
        f"no new web replica got a leaf of {root.subject} within {SWITCH_SPREAD:.0f}s "
        f"of the switch ({len(issuers)} replicas): {issuers}"
    )


def _active(state: dict[str, Any]) -> x509.Certificate:
    (active,) = [r for r in state["roots"] if r["state"] == "active"]
    return x509.load_pem_x509_certificate(active["certificate"].encode())


@dataclass
class Loop:
    """LOOP running in pod ``web``'s app container (kubectl exec), read as it goes."""

    world: World
    pod: str
    seen: int = 0
    lines: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        w = self.world
        self.process = subprocess.Popen(
            [w.kubectl, "-n", w.namespace, "exec", self.pod, "-c", "app", "--",
             "python", "-c", LOOP, "/rotation", STOP_FILE],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            progress = json.loads(line)
            self.lines.append(progress)
            self.seen = int(progress.get("ok", progress.get("done", 0)))

    def wait_for_requests(self, count: int) -> None:
        workloads.eventually(
            lambda: self.seen >= count or self.process.poll() is not None,
            120,
            f"{count} requests of the client loop",
        )
        assert self.process.poll() is None, self.process.stderr and self.process.stderr.read()

    def stop(self) -> dict[str, Any]:
        try:
            w = self.world
            workloads.kubectl(
                [w.kubectl], "-n", w.namespace, "exec", self.pod, "-c", "app", "--",
                "python", "-c", f"open({STOP_FILE!r}, 'w')",
            )  # fmt: skip
            self.process.wait(timeout=60)
            self._reader.join(timeout=10)
        finally:
            self.process.kill()
        last = self.lines[-1] if self.lines else {}
        assert "done" in last, (self.lines[-3:], self.process.stderr and self.process.stderr.read())
        return last
