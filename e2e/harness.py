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
import shutil
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from e2e import pki
from e2e.kube import Kube, wait_for

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


def _injector_command() -> list[str]:
    script = shutil.which("sidecar-injector")
    return [script] if script else [sys.executable, "-m", "injector"]


class LocalInjector:
    """``sidecar-injector serve`` on 127.0.0.1:PORT, stoppable and restartable."""

    def __init__(
        self,
        workdir: Path,
        kubeconfig: str | None,
        port: int,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.workdir = workdir
        self.kubeconfig = kubeconfig
        self.port = port
        self.extra_args = extra_args
        self.tls = serving_cert(workdir)
        self.log = workdir / "injector.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [
            *_injector_command(),
            "serve",
            "--listen",
            f"127.0.0.1:{self.port}",
            "--tls-cert",
            str(self.tls.cert_file),
            "--tls-key",
            str(self.tls.key_file),
            *self.extra_args,
        ]

    def start(self, timeout: float = 60) -> None:
        env = dict(os.environ)
        if self.kubeconfig:
            env["KUBECONFIG"] = self.kubeconfig
        with self.log.open("ab") as out:
            out.write(f"\n$ {' '.join(self.command())}\n".encode())
            out.flush()
            self.process = subprocess.Popen(
                self.command(),
                cwd=ROOT,
                env=env,
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
            time.sleep(0.1)

    def _context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.tls.ca_file))

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
            return self._get("/healthz")[0] == 200
        except (OSError, urllib.error.URLError):
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
    for candidate in (ROOT / "manifests" / "overlays" / "e2e", ROOT / "manifests" / "base"):
        if (candidate / "kustomization.yaml").exists():
            return candidate
    return None


def webhook_configuration(kubectl: str) -> tuple[dict[str, Any], str]:
    """Our MutatingWebhookConfiguration and where it came from."""
    overlay = manifests_overlay()
    if overlay is not None:
        for doc in manifest_documents(kubectl, overlay):
            if doc.get("kind") == "MutatingWebhookConfiguration":
                return doc, str(overlay.relative_to(ROOT))
    return default_webhook_configuration(), "e2e/harness.py (no manifests yet)"


def rewrite_for_local(config: dict[str, Any], url: str, ca_pem: bytes) -> dict[str, Any]:
    """Every webhook calls url + its path, trusting ca_pem; nothing else changes."""
    rewritten = yaml.safe_load(yaml.safe_dump(config))
    for metadata_key in ("resourceVersion", "uid", "creationTimestamp", "managedFields"):
        rewritten["metadata"].pop(metadata_key, None)
    bundle = base64.b64encode(ca_pem).decode()
    for webhook in rewritten["webhooks"]:
        path = webhook.get("clientConfig", {}).get("service", {}).get("path", "/mutate")
        webhook["clientConfig"] = {"url": url + path, "caBundle": bundle}
    return rewritten


def apply_webhook_configuration(kube: Kube, config: dict[str, Any]) -> None:
    name = config["metadata"]["name"]
    path = f"/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/{name}"
    kube.apply(path, config).expect(200, 201)


def delete_webhook_configuration(kube: Kube, name: str) -> None:
    kube.delete(f"/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/{name}")


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
