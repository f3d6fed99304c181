"""The mesh bench's world: a local control plane, the injector with its operator
(run as e2e runs it), namespace ``bench`` with meshed pods and their tokens.

Needs the control-plane binaries (``make e2e-local`` builds them once into
``~/.cache/sidecar-injector``); without them the section is not measured.
"""

from __future__ import annotations

import json
import os
import ssl
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from bench.errors import BenchError
from bench.mesh import Issued, fire
from bench.processes import cpu_seconds, free_port
from e2e import build, harness
from e2e.cluster import ClusterError, ControlPlane
from e2e.kube import Kube
from e2e.mesh import TRUST_DOMAIN, create_node, meshed_pod, pod_token, trust_files
from sidecar.files import write_atomic
from sidecar.identity import protocol
from sidecar.proxy import mesh_tls

NAMESPACE = "bench"


class MeshCluster:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.state = Path(tempfile.mkdtemp(prefix="sidecar-bench-cluster-"))
        self.plane = ControlPlane(self.state, detach=False)
        self.installed: harness.Installed | None = None
        self.kube: Kube | None = None
        self.node = ""
        self.trust: dict[str, str] = {}

    def __enter__(self) -> MeshCluster:
        try:
            build.ensure()
            info = self.plane.start()
        except (ClusterError, build.BuildError) as exc:
            self.plane.stop()
            raise BenchError(f"no local control plane ({exc}); run `make e2e-local` once") from None
        try:
            self._install(info.kubeconfig, info.kubectl)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _install(self, kubeconfig: str, kubectl: str) -> None:
        self.kube = kube = Kube(kubeconfig)
        overlay = harness.manifests_overlay()
        if overlay is None:
            raise BenchError("manifests/overlays/e2e is missing")
        self.installed = harness.install_with_operator(
            kube, kubectl, kubeconfig, overlay, self.workdir, free_port()
        )
        self.installed.injector.start()
        kube.create("/api/v1/namespaces", {"metadata": {"name": NAMESPACE}}).expect(201)
        kube.create(
            f"/api/v1/namespaces/{NAMESPACE}/serviceaccounts", {"metadata": {"name": "default"}}
        )
        self.node = create_node(kube)["metadata"]["name"]
        self.trust = trust_files(kube, NAMESPACE, timeout=90)

    @property
    def mesh_url(self) -> str:
        assert self.installed is not None
        url = self.installed.injector.mesh_url
        assert url is not None
        return url

    def _trust_dir(self, directory: Path) -> Path:
        trust = directory / "trust"
        trust.mkdir(parents=True, exist_ok=True)
        for key, value in self.trust.items():
            (trust / key).write_text(value)
        return trust

    def agent_env(self, directory: Path, pod: str, account: str) -> dict[str, str]:
        """A meshed pod and what its kubelet would give its proxy container."""
        assert self.kube is not None
        created = meshed_pod(self.kube, NAMESPACE, pod, account, self.node)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "token").write_text(pod_token(self.kube, created))
        trust = self._trust_dir(directory)
        return {
            **os.environ,
            "SIDECAR_POD_NAME": pod,
            "SIDECAR_POD_NAMESPACE": NAMESPACE,
            "SIDECAR_SERVICE_ACCOUNT": account,
            "SIDECAR_TRUST_DOMAIN": TRUST_DOMAIN,
            "SIDECAR_SIGNER": self.mesh_url,
            "SIDECAR_SIGNER_CA": str(trust / "signer-ca.pem"),
            "SIDECAR_TRUST_BUNDLE": str(trust / "roots.pem"),
            "SIDECAR_IDENTITY_TOKEN": str(directory / "token"),
        }

    def client_context(self, directory: Path) -> ssl.SSLContext:
        """TLS as a mesh caller, with the certificate the agent in ``directory`` holds."""
        sds = json.loads((directory / "work" / "mesh" / "cert.json").read_text())
        secret = sds["resources"][0]["tls_certificate"]
        pem = directory / "client.pem"
        pem.write_text(
            secret["certificate_chain"]["inline_string"] + secret["private_key"]["inline_string"]
        )
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.minimum_version = ssl.TLSVersion.TLSv1_3
        context.check_hostname = False
        context.load_verify_locations(cadata=self.trust["roots.pem"])
        context.load_cert_chain(pem)
        return context

    def issuance(self, rate: float, seconds: float, rounds: int) -> Issued:
        """``rate * seconds`` pods ask for a certificate, ``rate`` per second, ``rounds``
        times; the least disturbed round (lowest p99) is kept."""
        assert self.kube is not None
        requests = []
        ca = self._trust_dir(self.workdir / "issuance") / "signer-ca.pem"
        for index in range(int(rate * seconds)):
            name = f"pod-{index}"
            pod = meshed_pod(self.kube, NAMESPACE, name, "worker", self.node)
            key = ec.generate_private_key(ec.SECP256R1())
            uri = f"spiffe://{TRUST_DOMAIN}/ns/{NAMESPACE}/sa/worker"
            csr = (
                x509.CertificateSigningRequestBuilder()
                .subject_name(x509.Name([]))
                .add_extension(
                    x509.SubjectAlternativeName([x509.UniformResourceIdentifier(uri)]),
                    critical=True,
                )
                .sign(key, hashes.SHA256())
            )
            key_pem = key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            document = {
                "csr": csr.public_bytes(serialization.Encoding.PEM).decode(),
                "pod": {"namespace": NAMESPACE, "name": name},
                "trustedRoots": [],
            }
            requests.append((pod_token(self.kube, pod), document, key_pem, index))
        out = self.workdir / "issuance"

        def send(request: tuple[str, dict[str, Any], bytes, int]) -> float:
            token, document, key_pem, index = request
            started = time.perf_counter()
            answer = protocol.post(self.mesh_url, protocol.CERTIFICATES, document, token, ca)
            chain = str(answer.body["certificateChain"]).encode()
            write_atomic(
                out / f"cert-{index}.json", mesh_tls.sds_certificate(chain, key_pem), mode=0o400
            )
            return (time.perf_counter() - started) * 1000

        owners = {
            "operator": self.installed.injector.process.pid,  # type: ignore[union-attr]
            "apiserver": self.plane.processes["kube-apiserver"].pid,
        }
        outcomes = []
        for _ in range(rounds):  # the same pods renew: tokens and CSRs are reused
            before = {k: cpu_seconds(pid) for k, pid in owners.items()}
            outcome = fire(requests, rate, send)
            outcome.cpu_ms = {
                k: (cpu_seconds(pid) - before[k]) * 1000 / max(1, len(outcome.latencies))
                for k, pid in owners.items()
            }
            outcomes.append(outcome)
        return min(outcomes, key=lambda o: (len(o.errors), o.p99))

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self.installed is not None:
            self.installed.injector.stop()
        if self.kube is not None:
            self.kube.close()
        self.plane.stop()
