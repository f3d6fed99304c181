"""Our injector as a local process, admitting pods for a real API server.

As envtest does for controller webhooks: the injector runs on 127.0.0.1 with
a serving certificate for ``IP:127.0.0.1``, and the MutatingWebhookConfiguration
from ``manifests/`` is applied with each webhook's ``clientConfig`` rewritten
to ``url: https://127.0.0.1:PORT/mutate`` and that certificate's CA as
``caBundle``. Everything else (rules, namespaceSelector, failurePolicy,
reinvocationPolicy, timeouts) is exactly what a cluster gets. Until
``manifests/`` has a webhook configuration, ``default_webhook_configuration``
stands in with the rules issue 5 specifies.

The API server picks webhook configurations up through an informer, so
``wait_until_injecting`` retries a server-side dry-run probe pod until it
comes back mutated.
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from e2e import pki
from e2e.cluster import free_port
from e2e.kube import Kube, KubeError, wait_for

ROOT = Path(__file__).resolve().parent.parent
PREFIX = "sidecar.example.io/"
STATUS_ANNOTATION = PREFIX + "status"
INJECTOR_NAMESPACE = "sidecar-injector"
WEBHOOK_CONFIGURATION = "sidecar-injector"
REVIEWS_METRIC = "sidecar_injector_reviews_total"


class HarnessError(RuntimeError):
    """The injector or its webhook configuration could not be brought up."""


@dataclass(frozen=True)
class ServingCert:
    ca_pem: bytes
    cert_file: Path
    key_file: Path
    ca_file: Path


def serving_cert(directory: Path) -> ServingCert:
    ca = pki.CertificateAuthority("sidecar-injector-e2e-webhook-ca")
    issued = ca.issue(
        "sidecar-injector.e2e", dns_names=("localhost",), ip_addresses=("127.0.0.1",), server=True
    )
    return ServingCert(
        ca_pem=ca.cert_pem,
        ca_file=pki.write(directory / "webhook-ca.crt", ca.cert_pem),
        cert_file=pki.write(directory / "webhook.crt", issued.cert_pem),
        key_file=pki.write(directory / "webhook.key", issued.key_pem, secret=True),
    )


def injector_command() -> list[str]:
    """``sidecar-injector`` of this checkout: this interpreter (the project's .venv
    under make) with ``-m injector``, never whatever ``sidecar-injector`` is on PATH
    (another clone's, or none at all in a fresh venv that is not activated)."""
    return [sys.executable, "-m", "injector"]


class LocalInjector:
    """``sidecar-injector ARGS`` listening on 127.0.0.1:PORT, stoppable and restartable.

    ``trust`` returns the CA the injector's serving certificate chains to (None
    while there is none yet): a fixed one, or the caBundle the operator patched.
    """

    def __init__(
        self,
        workdir: Path,
        args: list[str],
        port: int,
        trust: Callable[[], bytes | None],
        env: dict[str, str] | None = None,
    ) -> None:
        self.workdir = workdir
        self.args = args
        self.port = port
        self.trust = trust
        self.env = env or {}
        self.log = workdir / "injector.log"
        self.ca_file = workdir / "trusted-ca.crt"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def mesh_url(self) -> str | None:
        """The operator's certificate endpoint (``--mesh-port``), if it runs one."""
        ports = [a.split("=", 1)[1] for a in self.args if a.startswith("--mesh-port=")]
        return f"https://127.0.0.1:{ports[-1]}" if ports and ports[-1] != "0" else None

    def command(self) -> list[str]:
        return [*injector_command(), *self.args]

    def start(self, timeout: float = 90) -> None:
        with self.log.open("ab") as out:
            out.write(f"\n$ {' '.join(self.command())}\n".encode())
            out.flush()
            self.process = subprocess.Popen(
                self.command(),
                cwd=ROOT,
                env=dict(os.environ, **self.env),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while not self._healthy():
            if self.process.poll() is not None:
                raise HarnessError(
                    f"the injector exited with {self.process.returncode} before it was healthy; "
                    f"command: {' '.join(self.command())}; log {self.log}:\n{self.log_tail()}"
                )
            if time.monotonic() > deadline:
                raise HarnessError(
                    f"the injector was not healthy after {timeout}s; log {self.log}:\n"
                    f"{self.log_tail()}"
                )
            time.sleep(0.2)

    def _context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))

    def _get(self, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(
                self.url + path, timeout=5, context=self._context()
            ) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def _healthy(self) -> bool:
        try:
            ca = self.trust()
            if not ca:
                return False
            pki.write(self.ca_file, ca)
            return self._get("/healthz")[0] == 200
        except (OSError, urllib.error.URLError, KubeError):
            return False

    def metrics(self) -> str:
        status, body = self._get("/metrics")
        if status != 200:
            raise HarnessError(f"GET {self.url}/metrics answered {status}")
        return body.decode()

    def reviews(self) -> float:
        """How many AdmissionReviews the injector answered (all outcomes)."""
        return metric_sum(self.metrics(), REVIEWS_METRIC)

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def metric_sum(text: str, name: str) -> float:
    """Sum of every sample of one Prometheus metric (all label sets)."""
    pattern = re.compile(rf"^{re.escape(name)}(?:\{{[^}}]*\}})? (\S+)$", re.M)
    return sum(float(value) for value in pattern.findall(text))


def webhook_calls(kube: Kube, webhook: str) -> float:
    """How many times the API server called webhook, by its own metrics
    (``apiserver_admission_webhook_request_total``; one API server's count)."""
    response = kube.request("GET", "/metrics", timeout=30)
    if response.status != 200:
        raise HarnessError(f"GET /metrics of the API server answered {response.status}")
    text = str(response.body.get("message", ""))
    pattern = re.compile(
        r'^apiserver_admission_webhook_request_total\{[^}]*name="'
        + re.escape(webhook)
        + r'"[^}]*\} (\S+)$',
        re.M,
    )
    return sum(float(value) for value in pattern.findall(text))


# --- the webhook configuration --------------------------------------------------


def default_webhook_configuration() -> dict[str, Any]:
    """What issue 5 specifies, used until manifests/ provides its own."""
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": WEBHOOK_CONFIGURATION},
        "webhooks": [
            {
                "name": "inject.sidecar.example.io",
                "admissionReviewVersions": ["v1"],
                "sideEffects": "None",
                "timeoutSeconds": 5,
                "failurePolicy": "Ignore",
                "matchPolicy": "Equivalent",
                "reinvocationPolicy": "IfNeeded",
                "rules": [
                    {
                        "apiGroups": [""],
                        "apiVersions": ["v1"],
                        "operations": ["CREATE"],
                        "resources": ["pods"],
                        "scope": "Namespaced",
                    }
                ],
                "namespaceSelector": {
                    "matchExpressions": [
                        {
                            "key": "kubernetes.io/metadata.name",
                            "operator": "NotIn",
                            "values": [
                                "kube-system",
                                "kube-public",
                                "kube-node-lease",
                                INJECTOR_NAMESPACE,
                            ],
                        },
                        {
                            "key": PREFIX + "injection",
                            "operator": "NotIn",
                            "values": ["disabled"],
                        },
                    ]
                },
                "clientConfig": {
                    "service": {
                        "name": "sidecar-injector",
                        "namespace": INJECTOR_NAMESPACE,
                        "path": "/mutate",
                    }
                },
            }
        ],
    }


def manifest_documents(kubectl: str, overlay: Path) -> list[dict[str, Any]]:
    """``kubectl kustomize OVERLAY`` as a list of objects."""
    result = subprocess.run(
        [kubectl, "kustomize", str(overlay)], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise HarnessError(f"`kubectl kustomize {overlay}` failed: {result.stderr.strip()}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def manifests_overlay() -> Path | None:
    candidate = ROOT / "manifests" / "overlays" / "e2e"
    return candidate if (candidate / "kustomization.yaml").exists() else None


def rewrite_for_local(config: dict[str, Any], url: str, ca_pem: bytes | None) -> dict[str, Any]:
    """Every webhook calls url + its path (trusting ca_pem if given; else the
    operator patches caBundle); nothing else changes."""
    rewritten: dict[str, Any] = yaml.safe_load(yaml.safe_dump(config))
    for metadata_key in ("resourceVersion", "uid", "creationTimestamp", "managedFields"):
        rewritten["metadata"].pop(metadata_key, None)
    for webhook in rewritten["webhooks"]:
        path = webhook.get("clientConfig", {}).get("service", {}).get("path", "/mutate")
        webhook["clientConfig"] = {"url": url + path}
        if ca_pem is not None:
            webhook["clientConfig"]["caBundle"] = base64.b64encode(ca_pem).decode()
    return rewritten


def _config_path(name: str) -> str:
    return f"/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/{name}"


def apply_webhook_configuration(kube: Kube, config: dict[str, Any]) -> None:
    kube.apply(_config_path(config["metadata"]["name"]), config).expect(200, 201)


def delete_webhook_configuration(kube: Kube, name: str) -> None:
    kube.delete(_config_path(name))


def ca_bundle(kube: Kube, name: str) -> bytes | None:
    """The caBundle of the first webhook of configuration name (None if unset)."""
    response = kube.get(_config_path(name))
    if response.status == 404:
        return None
    webhooks = response.expect(200).get("webhooks") or [{}]
    bundle = webhooks[0].get("clientConfig", {}).get("caBundle")
    return base64.b64decode(bundle) if bundle else None


@dataclass
class Installed:
    """A local injector and the webhook configuration that sends pods to it."""

    injector: LocalInjector
    webhook_configuration: str
    source: str  # what was installed: the overlay, or the built-in stand-in


def _kubectl_apply(kubectl: str, kubeconfig: str | None, docs: list[dict[str, Any]]) -> None:
    result = subprocess.run(
        [kubectl, "apply", "--server-side", "--field-manager=sidecar-e2e", "-f", "-"],
        input=yaml.safe_dump_all(docs),
        capture_output=True,
        text=True,
        env=dict(os.environ, **({"KUBECONFIG": kubeconfig} if kubeconfig else {})),
        check=False,
        timeout=120,
    )
    if result.returncode != 0:
        raise HarnessError(f"kubectl apply --server-side failed: {result.stderr.strip()}")


def _wait_established(kube: Kube, crd_names: list[str], timeout: float = 60) -> None:
    def established() -> bool:
        for name in crd_names:
            crd = kube.get(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
            conditions = crd.expect(200).get("status", {}).get("conditions", [])
            if not any(c["type"] == "Established" and c["status"] == "True" for c in conditions):
                return False
        return True

    wait_for(established, timeout, f"CRDs {crd_names} to be established")


def service_account_kubeconfig(
    kube: Kube, namespace: str, name: str, path: Path, seconds: int = 4 * 3600
) -> Path:
    """A kubeconfig that authenticates as ServiceAccount namespace/name (TokenRequest),
    so a local process runs with exactly the RBAC our manifests grant it."""
    token = kube.create(
        f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token",
        {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"expirationSeconds": seconds},
        },
    ).expect(201)["status"]["token"]
    cluster: dict[str, Any] = {"server": kube.server}
    if kube.configuration.ssl_ca_cert:
        cluster["certificate-authority"] = str(kube.configuration.ssl_ca_cert)
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "e2e", "cluster": cluster}],
        "users": [{"name": name, "user": {"token": token}}],
        "contexts": [{"name": "e2e", "context": {"cluster": "e2e", "user": name}}],
        "current-context": "e2e",
    }
    return pki.write(path, yaml.safe_dump(config).encode(), secret=True)


def install_with_operator(
    kube: Kube,
    kubectl: str,
    kubeconfig: str | None,
    overlay: Path,
    workdir: Path,
    port: int,
    node_ip: str | None = None,
) -> Installed:
    """Apply the overlay server-side (webhook URL rewritten, caBundle left to the
    operator) and run the Deployment's own command line locally as its
    ServiceAccount, listening on 127.0.0.1:port with 127.0.0.1 in its cert.
    With ``node_ip`` (the local node's address; this process then runs in the
    node's private network namespace) it listens on every address and pods get
    its mesh certificate endpoint at that address."""
    docs = manifest_documents(kubectl, overlay)
    url = f"https://127.0.0.1:{port}"
    deployments = [
        d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == INJECTOR_NAMESPACE
    ]
    configs = [d for d in docs if d["kind"] == "MutatingWebhookConfiguration"]
    if len(deployments) != 1 or len(configs) != 1:
        raise HarnessError(
            f"{overlay}: expected one Deployment {INJECTOR_NAMESPACE} and one "
            f"MutatingWebhookConfiguration, found {len(deployments)} and {len(configs)}"
        )
    deployment, config = deployments[0], configs[0]
    # The Deployment runs here instead (a cluster with nodes would run it too).
    docs = [d for d in docs if d is not config and d is not deployment]
    docs.append(rewrite_for_local(config, url, None))
    kube.delete(
        f"/apis/apps/v1/namespaces/{deployment['metadata']['namespace']}/deployments/"
        f"{deployment['metadata']['name']}"
    )
    first = [d for d in docs if d["kind"] in ("Namespace", "CustomResourceDefinition")]
    _kubectl_apply(kubectl, kubeconfig, first)
    _wait_established(
        kube, [d["metadata"]["name"] for d in first if d["kind"] == "CustomResourceDefinition"]
    )
    _kubectl_apply(kubectl, kubeconfig, docs)

    namespace = deployment["metadata"]["namespace"]
    pod_spec = deployment["spec"]["template"]["spec"]
    container = pod_spec["containers"][0]
    args = [a for a in container.get("args", []) if not a.startswith(("--listen", "--metrics"))]
    mesh_port = free_port()
    host = "127.0.0.1" if node_ip is None else "0.0.0.0"  # the node's own netns
    args += [f"--listen={host}:{port}", "--cert-ip=127.0.0.1", f"--mesh-port={mesh_port}"]
    if node_ip is not None:
        args += [f"--cert-ip={node_ip}", f"--mesh-signer=https://{node_ip}:{mesh_port}"]
    if any(a.startswith("--metrics-listen") for a in container.get("args", [])):
        args.append("--metrics-listen=127.0.0.1:0")  # an ephemeral port: runs in parallel
    sa_kubeconfig = service_account_kubeconfig(
        kube, namespace, pod_spec.get("serviceAccountName", "default"), workdir / "kubeconfig"
    )
    name = config["metadata"]["name"]
    injector = LocalInjector(
        workdir,
        [*container.get("command", [])[1:], *args],
        port,
        trust=lambda: ca_bundle(kube, name),
        env={
            "KUBECONFIG": str(sa_kubeconfig),
            "POD_NAME": "local-injector",
            "POD_NAMESPACE": namespace,
        },
    )
    return Installed(injector, name, str(overlay.relative_to(ROOT)))


def install_webhook_only(kube: Kube, kubeconfig: str | None, workdir: Path, port: int) -> Installed:
    """No manifests: ``serve`` with a certificate made here and the webhook
    configuration issue 5 specifies (``default_webhook_configuration``)."""
    tls = serving_cert(workdir)
    version = kube.get("/version").expect(200)
    minor = "".join(ch for ch in str(version["minor"]) if ch.isdigit())
    config = rewrite_for_local(
        default_webhook_configuration(), f"https://127.0.0.1:{port}", tls.ca_pem
    )
    apply_webhook_configuration(kube, config)
    injector = LocalInjector(
        workdir,
        [
            "serve",
            f"--listen=127.0.0.1:{port}",
            f"--tls-cert={tls.cert_file}",
            f"--tls-key={tls.key_file}",
            f"--cluster-version={version['major']}.{minor}",
            "--failure-policy=Ignore",
        ],
        port,
        trust=lambda: tls.ca_pem,
        env={"KUBECONFIG": kubeconfig} if kubeconfig else {},
    )
    return Installed(injector, config["metadata"]["name"], "e2e/harness.py stand-in")


# --- probing ----------------------------------------------------------------------


def probe_pod(name: str = "probe") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "annotations": {PREFIX + "inject": "true"}},
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


def is_injected(pod: dict[str, Any]) -> bool:
    return STATUS_ANNOTATION in (pod.get("metadata", {}).get("annotations") or {})


def wait_until_injecting(kube: Kube, namespace: str, timeout: float = 60) -> None:
    """Until a dry-run probe pod in namespace comes back injected.

    Admitted uninjected (the configuration is not picked up yet, or the call
    failed under failurePolicy Ignore) or a 5xx: retry. Denied by our webhook:
    it was reached but refuses the probe, which retrying will not change."""
    path = f"/api/v1/namespaces/{namespace}/pods"
    deadline = time.monotonic() + timeout
    last = "no answer yet"
    while time.monotonic() < deadline:
        response = kube.create(path, probe_pod(), dry_run=True)
        if response.ok and is_injected(response.body):
            return
        if "denied the request" in response.message:
            raise HarnessError(f"our webhook denied the probe pod: {response.message}")
        last = f"HTTP {response.status} {response.message or '(admitted, not injected)'}"
        time.sleep(0.2)
    raise HarnessError(
        f"the API server did not call the injector for pods in {namespace} within "
        f"{timeout}s; last answer: {last}"
    )


def wait_until_not_injecting(kube: Kube, namespace: str, timeout: float = 60) -> None:
    path = f"/api/v1/namespaces/{namespace}/pods"

    def bypassed() -> bool:
        response = kube.create(path, probe_pod(), dry_run=True)
        return response.ok and not is_injected(response.body)

    wait_for(bypassed, timeout, f"pods in {namespace} to be admitted without the injector")
