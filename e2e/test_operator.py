"""The operator against a real API server: certificates, caBundle, rotation, profiles.

Local control plane (``make e2e-local``): the session's harness applied
manifests/overlays/e2e server-side and runs the Deployment's command line
(``serve --operator``) locally as the manifests' ServiceAccount, so the RBAC
in manifests/ is exactly what the operator can do. This module replaces that
process with the same command line checking certificates every second,
starting from a fresh install (no Secret, no Lease, no caBundle), and puts
the session's process back at the end.

Any other cluster (``make e2e`` after ``make e2e-kind``): the installed
operator is checked the same way, except what needs its process (the served
certificate, a second replica); rotations then take up to its 30s interval.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import os
import signal
import socket
import ssl
import subprocess
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e import harness
from e2e.cluster import free_port
from e2e.conftest import Injector
from e2e.kube import Kube, wait_for
from injector.admission import certs
from injector.operator import rotation

NAMESPACE = "sidecar-injector"
SECRET = "sidecar-injector-tls"
WEBHOOK = "sidecar-injector"
LEASE = "sidecar-injector"
WEBHOOK_PATH = f"/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/{WEBHOOK}"
SECRET_PATH = f"/api/v1/namespaces/{NAMESPACE}/secrets/{SECRET}"
LEASE_PATH = f"/apis/coordination.k8s.io/v1/namespaces/{NAMESPACE}/leases/{LEASE}"
PROFILES = "/apis/sidecar.example.io/v1alpha1/sidecarprofiles"
JSON_PATCH = "application/json-patch+json"
WAIT = 60.0  # local: the operator checks every second; a cluster: every 30s


def served_certificate(port: int) -> bytes:
    """The DER certificate a TLS handshake with 127.0.0.1:port presents."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return der


def der(pem: bytes) -> bytes:
    return ssl.PEM_cert_to_DER_cert(pem.decode())


class OperatorProcess:
    """The session injector's own command line (the e2e Deployment's, run locally as its
    ServiceAccount), with a 1s certificate check so rotations show up at once."""

    def __init__(self, workdir: Path, args: list[str], env: dict[str, str], name: str) -> None:
        listen = next(a for a in args if a.startswith("--listen="))
        self.port = int(listen.rsplit(":", 1)[1])
        # --mesh-port=0: two replicas on one host would both want 15012 (the mesh has its own e2e).
        self.args = [*args, "--cert-check-interval=1s", "--log-level=debug", "--mesh-port=0"]
        self.env = {**env, "POD_NAME": name}
        self.log = workdir / f"{name}.log"
        self.name = name
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def start(self) -> OperatorProcess:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [*harness.injector_command(), *self.args],
                cwd=harness.ROOT,
                env={**os.environ, **self.env},
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def readyz(self) -> tuple[int, str]:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        try:
            with urllib.request.urlopen(self.url + "/readyz", timeout=5, context=context) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def wait_ready(self) -> None:
        def ready() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"operator exited: {self.log_tail()}")
            try:
                return self.readyz()[0] == 200
            except OSError:
                return False

        wait_for(ready, WAIT, f"{self.name} to be ready; log:\n{self.log_tail()}")

    def stop(self) -> int | None:
        process, self.process = self.process, None
        if process is None:
            return None
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        return process.returncode

    def log_tail(self, lines: int = 40) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return "(no log)"


@dataclass
class OperatorUnderTest:
    kube: Kube
    local: OperatorProcess | None
    workdir: Path

    def secret(self) -> rotation.WebhookCerts:
        body = self.kube.get(SECRET_PATH).expect(200)
        return rotation.from_secret_data(body["data"])

    def ca_bundle(self) -> bytes:
        config = self.kube.get(WEBHOOK_PATH).expect(200)
        bundles = {w["clientConfig"].get("caBundle", "") for w in config["webhooks"]}
        assert len(bundles) == 1, bundles
        return base64.b64decode(bundles.pop())

    def injects(self, namespace: str) -> bool:
        response = self.kube.create(
            f"/api/v1/namespaces/{namespace}/pods", pod("probe"), dry_run=True
        )
        return response.ok and harness.is_injected(response.body)


def pod(name: str, profile: str | None = None) -> dict[str, Any]:
    annotations = {"sidecar.example.io/inject": "true"}
    if profile:
        annotations["sidecar.example.io/profile"] = profile
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "annotations": annotations},
        "spec": {
            "containers": [
                {
                    "name": "app",
                    "image": "registry.k8s.io/pause:3.10",
                    "ports": [{"containerPort": 8080}],
                }
            ]
        },
    }


@pytest.fixture(scope="module")
def operator(
    kube: Kube, injector: Injector, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorUnderTest]:
    """Local mode: the session injector is replaced, for this module, by the same
    command line checking certificates every second, starting from a fresh
    install (no Secret, no Lease, no caBundle); it is put back afterwards."""
    workdir = tmp_path_factory.mktemp("operator")
    session = injector.local
    if session is None:
        wait_for(lambda: kube.get(SECRET_PATH).ok, WAIT, "the installed operator's Secret")
        yield OperatorUnderTest(kube, None, workdir)
        return
    if "--operator" not in session.args:
        pytest.skip("the session injector runs without --operator (SIDECAR_E2E_OPERATOR=0)")
    session.stop()
    process = OperatorProcess(workdir, session.args, session.env, "operator-a")
    kube.delete(SECRET_PATH)
    kube.delete(LEASE_PATH)
    config = kube.get(WEBHOOK_PATH).expect(200)
    ops = [
        {"op": "remove", "path": f"/webhooks/{i}/clientConfig/caBundle"}
        for i, webhook in enumerate(config["webhooks"])
        if "caBundle" in webhook["clientConfig"]
    ]
    if ops:
        kube.request("PATCH", WEBHOOK_PATH, ops, content_type=JSON_PATCH).expect(200)
    process.start()
    try:
        process.wait_ready()
        yield OperatorUnderTest(kube, process, workdir)
    finally:
        process.stop()
        session.start()
        injector.wait_ready()


@pytest.fixture
def probe_namespace(kube: Kube) -> Iterator[str]:
    name = kube.create_namespace("e2e-op")
    yield name
    kube.delete_namespace(name)


def test_the_operator_creates_the_secret_patches_the_ca_bundle_and_serves_the_cert(
    operator: OperatorUnderTest, probe_namespace: str
) -> None:
    made = wait_for(operator.secret, WAIT, "the certificate Secret")
    wait_for(lambda: operator.ca_bundle() == made.ca_bundle, WAIT, "caBundle = the Secret's")
    names, ips = certs.san_names(made.serving.certificate)
    assert set(certs.service_dns_names("sidecar-injector", NAMESPACE)) <= names
    secret = operator.kube.get(SECRET_PATH).expect(200)
    assert secret["type"] == "kubernetes.io/tls"
    if operator.local is not None:
        assert "127.0.0.1" in ips
        port = operator.local.port
        wait_for(lambda: served_certificate(port) == der(made.serving.cert_pem), WAIT, "cert")
        status, body = operator.local.readyz()
        assert status == 200, body
    wait_for(lambda: operator.injects(probe_namespace), WAIT, "a pod to be injected")


def test_a_reset_ca_bundle_is_put_back(operator: OperatorUnderTest) -> None:
    made = operator.secret()
    config = operator.kube.get(WEBHOOK_PATH).expect(200)
    stale = base64.b64encode(certs.generate_ca("someone-else").cert_pem).decode()
    ops = [
        {"op": "replace", "path": f"/webhooks/{i}/clientConfig/caBundle", "value": stale}
        for i in range(len(config["webhooks"]))
    ]
    operator.kube.request("PATCH", WEBHOOK_PATH, ops, content_type=JSON_PATCH).expect(200)
    wait_for(lambda: operator.ca_bundle() == made.ca_bundle, WAIT + 30, "caBundle put back")


def write_secret(kube: Kube, made: rotation.WebhookCerts) -> None:
    current = kube.get(SECRET_PATH).expect(200)
    current["data"] = rotation.to_secret_data(made)
    kube.request("PUT", SECRET_PATH, current).expect(200)


def test_a_serving_certificate_near_expiry_is_renewed_under_the_same_ca(
    operator: OperatorUnderTest, probe_namespace: str
) -> None:
    now = dt.datetime.now(dt.UTC)
    current = operator.secret()
    names = certs.service_dns_names("sidecar-injector", NAMESPACE)
    old = certs.generate_serving_cert(
        current.ca, names, ["127.0.0.1"], now=now - dt.timedelta(days=80)
    )
    write_secret(operator.kube, rotation.WebhookCerts(current.ca, old, current.ca_bundle))

    def renewed() -> rotation.WebhookCerts | None:
        made = operator.secret()
        return (
            made if made.serving.cert_pem not in (old.cert_pem, current.serving.cert_pem) else None
        )

    made = wait_for(renewed, WAIT + 30, "the serving certificate to be renewed")
    assert made.ca == current.ca
    assert made.serving.not_after > now + dt.timedelta(days=80)
    assert certs.signed_by(made.serving.certificate, current.ca.certificate)
    assert operator.ca_bundle() == current.ca_bundle
    if operator.local is not None:
        port = operator.local.port
        wait_for(lambda: served_certificate(port) == der(made.serving.cert_pem), WAIT, "new cert")
    wait_for(lambda: operator.injects(probe_namespace), WAIT, "injection after the renewal")


def test_a_ca_near_expiry_is_renewed_and_the_old_ca_stays_trusted(
    operator: OperatorUnderTest, probe_namespace: str
) -> None:
    now = dt.datetime.now(dt.UTC)
    names = certs.service_dns_names("sidecar-injector", NAMESPACE)
    old = rotation.ensure(None, names, ["127.0.0.1"], now=now - dt.timedelta(days=360)).certs
    old_serving = certs.generate_serving_cert(
        old.ca, names, ["127.0.0.1"], now=now - dt.timedelta(days=1)
    )
    write_secret(operator.kube, rotation.WebhookCerts(old.ca, old_serving, old.ca_bundle))

    def renewed() -> rotation.WebhookCerts | None:
        made = operator.secret()
        return made if made.ca != old.ca else None

    made = wait_for(renewed, WAIT + 30, "the CA to be renewed")
    bundle = certs.load_certificates(made.ca_bundle, "bundle")
    assert bundle == [made.ca.certificate, old.ca.certificate]
    assert certs.signed_by(made.serving.certificate, made.ca.certificate)
    wait_for(lambda: operator.ca_bundle() == made.ca_bundle, WAIT, "caBundle with both CAs")
    if operator.local is not None:
        port = operator.local.port
        wait_for(lambda: served_certificate(port) == der(made.serving.cert_pem), WAIT, "new cert")
    wait_for(lambda: operator.injects(probe_namespace), WAIT, "injection after the CA renewal")


def profile_path(name: str) -> str:
    return f"{PROFILES}/{name}"


def status_of(kube: Kube, name: str) -> dict[str, Any]:
    return dict(kube.get(profile_path(name)).expect(200).get("status") or {})


def injected_image(kube: Kube, namespace: str, profile: str) -> str | None:
    response = kube.create(f"/api/v1/namespaces/{namespace}/pods", pod("p", profile), dry_run=True)
    if not response.ok:
        return None
    spec = response.body["spec"]
    for container in spec.get("initContainers", []) + spec["containers"]:
        if container["name"].startswith("sidecar-"):
            return str(container["image"])
    return None


def test_profiles_take_effect_for_the_next_admission_and_report_their_status(
    operator: OperatorUnderTest, probe_namespace: str
) -> None:
    kube = operator.kube
    name = f"e2e-{uuid.uuid4().hex[:6]}"
    body: dict[str, Any] = {
        "apiVersion": "sidecar.example.io/v1alpha1",
        "kind": "SidecarProfile",
        "metadata": {"name": name},
        "spec": {
            "image": "registry.example.com/sidecar:1",
            "nativeSidecars": "true",
            "namespaces": {"matchLabels": {"e2e-profile": name}},
        },
    }
    kube.create(PROFILES, body).expect(201)
    namespace_path = f"/api/v1/namespaces/{probe_namespace}"
    try:
        wait_for(
            lambda: (
                status_of(kube, name).get("valid") is True
                and status_of(kube, name).get("inUse") is True
            ),
            WAIT,
            "the profile's status to say valid and in use",
        )
        assert status_of(kube, name)["default"] is False
        # Not the default: only namespaces the profile allows may name it.
        denied = kube.create(f"{namespace_path}/pods", pod("p", name), dry_run=True)
        assert denied.status == 403, denied.message
        assert f"may not be used in namespace {probe_namespace}" in denied.message
        kube.request(
            "PATCH",
            namespace_path,
            {"metadata": {"labels": {"e2e-profile": name}}},
            content_type="application/merge-patch+json",
        ).expect(200)
        wait_for(
            lambda: injected_image(kube, probe_namespace, name) == "registry.example.com/sidecar:1",
            WAIT,
            "pods naming the profile to get its image once their namespace has the label",
        )
        # An update applies to the next admission.
        kube.request(
            "PATCH",
            profile_path(name),
            {"spec": {"image": "registry.example.com/sidecar:2"}},
            content_type="application/merge-patch+json",
        ).expect(200)
        wait_for(
            lambda: injected_image(kube, probe_namespace, name) == "registry.example.com/sidecar:2",
            WAIT,
            "the updated image",
        )
        # An invalid update keeps the last valid generation in service, and says so.
        kube.request(
            "PATCH",
            profile_path(name),
            {"spec": {"vault": {"address": "vault:8200"}}},
            content_type="application/merge-patch+json",
        ).expect(200)

        def invalid() -> dict[str, Any] | None:
            status = status_of(kube, name)
            return status if status.get("valid") is False else None

        status = wait_for(invalid, WAIT, "the status to say invalid")
        assert status["inUse"] is True
        assert "vault.address" in status["message"]
        assert "still serving generation" in status["message"]
        assert injected_image(kube, probe_namespace, name) == "registry.example.com/sidecar:2"
    finally:
        kube.delete(profile_path(name))
        kube.request(
            "PATCH",
            namespace_path,
            {"metadata": {"labels": {"e2e-profile": None}}},
            content_type="application/merge-patch+json",
        )
    # A deleted profile is no longer served: pods naming it are denied.
    wait_for(lambda: injected_image(kube, probe_namespace, name) is None, WAIT, "denial")


def test_the_default_profile_applies_to_pods_without_the_annotation(
    operator: OperatorUnderTest, probe_namespace: str
) -> None:
    kube = operator.kube
    status = wait_for(lambda: status_of(kube, "default").get("default"), WAIT, "default status")
    assert status is True
    newer = f"e2e-default-{uuid.uuid4().hex[:6]}"
    kube.create(
        PROFILES,
        {
            "apiVersion": "sidecar.example.io/v1alpha1",
            "kind": "SidecarProfile",
            "metadata": {"name": newer},
            "spec": {"default": True, "image": "registry.example.com/other:1"},
        },
    ).expect(201)
    try:

        def told() -> str | None:
            message = str(status_of(kube, newer).get("message", ""))
            return message if "default: true ignored" in message else None

        message = wait_for(told, WAIT, "the newer default to be told the older one wins")
        assert "profile default is the default" in message
        response = kube.create(f"/api/v1/namespaces/{probe_namespace}/pods", pod("d"), dry_run=True)
        assert response.ok, response.message
        assert "registry.example.com/other:1" not in yaml.safe_dump(response.body)
    finally:
        kube.delete(profile_path(newer))


def test_a_second_replica_serves_the_shared_certificate_and_takes_over_the_lease(
    operator: OperatorUnderTest,
) -> None:
    if operator.local is None:
        pytest.skip("needs the operator as local processes (make e2e-local)")
    first = operator.local
    holder = wait_for(
        lambda: operator.kube.get(LEASE_PATH).expect(200)["spec"].get("holderIdentity"),
        WAIT,
        "a Lease holder",
    )
    assert str(holder).startswith(first.name)
    args = [a for a in first.args if not a.startswith("--listen=")]
    args.append(f"--listen=127.0.0.1:{free_port()}")
    second = OperatorProcess(operator.workdir, args, first.env, "operator-b").start()
    try:
        second.wait_ready()
        made = operator.secret()
        assert served_certificate(second.port) == der(made.serving.cert_pem)
        lease = operator.kube.get(LEASE_PATH).expect(200)["spec"]
        assert str(lease["holderIdentity"]).startswith(first.name)
        # The leader stops (SIGTERM): it releases the Lease and the other replica takes over.
        assert first.stop() == 0
        wait_for(
            lambda: str(
                operator.kube.get(LEASE_PATH).expect(200)["spec"].get("holderIdentity")
            ).startswith(second.name),
            WAIT,
            "the second replica to lead",
        )
    finally:
        second.stop()
        first.start()  # the module fixture stops it at the end
        first.wait_ready()
