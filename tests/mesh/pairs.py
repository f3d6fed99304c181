"""Two pods' proxies in their own network namespaces, and the operator's endpoint.

``Mesh`` builds on ``tests.netns.Link``: the "pod" namespace (10.251.0.2)
holds the calling pod (its app is the test, its ``sidecar proxy`` on the
default ports); the "peer" namespace (10.251.0.1) holds the called pod (an
app on 127.0.0.1 and its ``sidecar proxy`` on 15006) and the operator's
real certificate endpoint (``SignerServer``) on 10.251.0.1:15012. Every proxy
is a real ``sidecar proxy`` process with real Envoy, started with ``nsenter``;
the test reaches them from threads that joined the namespaces.
"""

from __future__ import annotations

import datetime as dt
import json
import socket
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509

from sidecar.proxy.admin import EnvoyAdmin
from tests.mesh.signer_server import SignerServer
from tests.netns import PEER_V4, Link, Namespace
from tests.proxy.harness import Proxy, Response, Upstream, get_text, request
from tests.support import http_status, wait_for

SIGNER_PORT = 15012
INBOUND = 15006
OUTBOUND = 15001


def _bind(host: str, port: int) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


@dataclass
class MeshProxy:
    """A ``sidecar proxy`` in a namespace; agent, admin and listeners on the default ports."""

    ns: Namespace
    proxy: Proxy
    name: str
    identity: str

    def start(self) -> MeshProxy:
        p = self.proxy
        with p.stdout_path.open("wb") as out, p.stderr_path.open("wb") as err:
            p.proc = self.ns.start(p.argv(), stdout=out, stderr=err, env=p.environ())
        return self

    def get(self, path: str) -> tuple[int, str]:
        return self.ns.call(get_text, f"http://127.0.0.1:15020{path}")

    def ready(self, timeout: float = 40.0) -> MeshProxy:
        def check() -> bool:
            assert self.proxy.proc is not None
            if self.proxy.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited: {self.proxy.stderr()}")
            return self.get("/ready")[0] == 200

        wait_for(check, timeout=timeout, what=f"{self.name} /ready")
        return self

    def metrics(self) -> str:
        return self.get("/metrics")[1]

    def certs(self) -> dict[str, list[int]]:
        return self.ns.call(EnvoyAdmin(15000).certificates)

    def issued(self) -> list[dict[str, Any]]:
        return [r for r in self.proxy.logs() if r.get("msg") == "mesh: certificate issued"]

    def warnings(self, message: str) -> list[dict[str, Any]]:
        return [r for r in self.proxy.logs() if r.get("msg") == message]

    def issuer(self) -> x509.Name:
        """Who signed the certificate the agent last wrote for Envoy."""
        sds = json.loads((self.proxy.work_dir / "mesh" / "cert.json").read_text())
        chain = sds["resources"][0]["tls_certificate"]["certificate_chain"]["inline_string"]
        return x509.load_pem_x509_certificate(chain.encode()).issuer


@dataclass
class Mesh:
    tmp: Path
    lifetime: dt.timedelta = dt.timedelta(hours=1)
    link: Link = field(init=False)
    signer: SignerServer = field(init=False)
    app: Upstream = field(init=False)
    proxies: list[MeshProxy] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.link = Link()
        try:
            self.signer = SignerServer(
                host=PEER_V4,
                lifetime=self.lifetime,
                bind=lambda: self.link.peer.call(_bind, PEER_V4, SIGNER_PORT),
            ).start()
            self.app = self.link.peer.call(lambda: Upstream().start())
        except BaseException:
            self.link.close()
            raise

    def proxy(
        self, side: str, namespace: str, account: str, mode: str = "strict", **env: str
    ) -> MeshProxy:
        """A meshed pod's proxy: ``side`` "pod" (caller) or "peer" (called)."""
        ns = self.link.pod if side == "pod" else self.link.peer
        name = f"{side}-{account}-{len(self.proxies)}"
        directory = self.tmp / name
        directory.mkdir()
        pod = self.signer.pod(namespace, name, account)
        (directory / "token").write_text(pod.token)
        self.signer.publish(directory / "trust")
        variables = {
            "SIDECAR_AGENT_ADDR": "127.0.0.1:15020",
            "SIDECAR_MTLS": mode,
            "SIDECAR_POD_NAME": name,
            "SIDECAR_POD_NAMESPACE": namespace,
            "SIDECAR_SERVICE_ACCOUNT": account,
            "SIDECAR_SIGNER": self.signer.url,
            "SIDECAR_SIGNER_CA": str(directory / "trust" / "signer-ca.pem"),
            "SIDECAR_TRUST_BUNDLE": str(directory / "trust" / "roots.pem"),
            "SIDECAR_IDENTITY_TOKEN": str(directory / "token"),
            "SIDECAR_LOG_LEVEL": "info",
            **env,
        }
        if side == "peer":
            variables.setdefault("SIDECAR_INBOUND_PORT", str(self.app.port))
        else:
            variables.setdefault("SIDECAR_UPSTREAM", f"http://{PEER_V4}:{INBOUND}")
        proxy = Proxy(
            directory,
            env=variables,
            agent_port=15020,
            admin_port=15000,
            outbound_port=OUTBOUND,
            inbound_listen_port=INBOUND,
        )
        made = MeshProxy(ns, proxy, name, f"spiffe://cluster.local/ns/{namespace}/sa/{account}")
        self.proxies.append(made)
        return made

    def publish(self) -> None:
        """The operator writes the trust ConfigMap; the kubelet updates every pod's volume."""
        for made in self.proxies:
            self.signer.publish(made.proxy.tmp / "trust")

    def call(self, path: str = "/echo", port: int = OUTBOUND, host: str = "127.0.0.1") -> Response:
        """The calling pod's app: plain HTTP to its own proxy (or anywhere)."""
        return self.link.pod.call(_get, host, port, path)

    def tls_call(
        self, server_name: str, port: int = INBOUND, path: str = "/echo"
    ) -> tuple[int, bytes]:
        """A client with its own TLS (not a mesh proxy) from the calling pod to the peer."""
        return self.link.pod.call(_tls_get, PEER_V4, port, server_name, path)

    def ready(self, port: int) -> bool:
        """An agent in the peer namespace on another port answers /ready 200."""
        return bool(
            self.link.peer.call(lambda: http_status(f"http://127.0.0.1:{port}/ready")) == 200
        )

    def close(self) -> None:
        for made in self.proxies:
            made.proxy.stop()
        self.signer.stop()
        self.link.peer.call(self.app.close)
        self.link.close()


def _get(host: str, port: int, path: str) -> Response:
    if host == "127.0.0.1":
        return request(port, path)
    import http.client

    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        conn.request("GET", path)
        answer = conn.getresponse()
        body = answer.read()
        return Response(answer.status, {k.lower(): v for k, v in answer.getheaders()}, body)
    finally:
        conn.close()


def _tls_get(host: str, port: int, server_name: str, path: str) -> tuple[int, bytes]:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection((host, port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname=server_name) as tls:
            tls.sendall(
                f"GET {path} HTTP/1.1\r\nHost: {server_name}\r\nConnection: close\r\n\r\n".encode()
            )
            data = b""
            while chunk := tls.recv(65536):
                data += chunk
    status = int(data.split(b" ", 2)[1])
    return status, data.split(b"\r\n\r\n", 1)[1]
