"""The operator's real certificate endpoint (``identity_service``) in the test
process, over real TLS, with the real signer core and trust plan.

Only *who is asking* is stood in for: ``StaticReviewer`` answers like
``KubeReviewer`` (TokenReview with our audience, then the live pod) from a
table of tokens the test registers, with the same refusals (``TokenInvalid``
401, ``PodMismatch``, ``PodGone``) and can be told to stall (``stall``) or
to fail (``fail_with``); the CSR path against a real API server is e2e's.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import secrets
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from injector.admission.certs import generate_ca, generate_serving_cert
from injector.admission.tls import ServingTLS
from injector.mesh import trust
from injector.mesh.signer import IssuancePolicy, RequestDenied
from injector.operator.identity_review import Caller
from injector.operator.identity_service import AckLedger, TrustView, create_app
from sidecar.files import write_file_set
from tests.operator.tlsserver import TLSServer

TRUST_DOMAIN = "cluster.local"


class StaticReviewer:
    def __init__(self) -> None:
        self.callers: dict[str, Caller] = {}
        self.gone: set[str] = set()
        self.stall = threading.Event()
        self.fail_with: RequestDenied | None = None
        self.calls = 0

    async def review(self, token: str, namespace: str, pod: str) -> Caller:
        self.calls += 1
        while self.stall.is_set():
            await asyncio.sleep(0.05)
        if self.fail_with is not None:
            raise self.fail_with
        caller = self.callers.get(token)
        if caller is None:
            raise RequestDenied("TokenInvalid", "the API server refused the token", 401)
        if (caller.namespace, caller.pod) != (namespace, pod):
            raise RequestDenied(
                "PodMismatch", f"the token belongs to pod {caller.namespace}/{caller.pod}"
            )
        if caller.pod_uid in self.gone:
            raise RequestDenied("PodGone", f"pod {namespace}/{pod} no longer exists")
        return caller


@dataclass
class Pod:
    namespace: str
    name: str
    service_account: str
    token: str
    uid: str


class SignerServer:
    """``start()`` / ``stop()`` (restartable); ``url``; ``ca_pem`` verifies it."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        lifetime: dt.timedelta = dt.timedelta(hours=1),
        bind: Callable[[], socket.socket] | None = None,
    ) -> None:
        self.host = host
        self.bind = bind
        self.ca = generate_ca()
        self.tls = ServingTLS()
        self.tls.load(generate_serving_cert(self.ca, ["localhost"], [host]))
        self.reviewer = StaticReviewer()
        self.policy = trust.RotationPolicy(
            root_lifetime=dt.timedelta(days=30), leaf_lifetime=lifetime
        )
        self.view = TrustView(trust.plan(None, TRUST_DOMAIN, _now(), self.policy).state)
        self.ledger = AckLedger()
        self.app = create_app(
            self.reviewer, self.view, self.ledger, IssuancePolicy(lifetime=lifetime)
        )
        self.port = 0
        self.server: TLSServer | None = None

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}"

    @property
    def state(self) -> trust.TrustState:
        assert self.view.state is not None
        return self.view.state

    def start(self) -> SignerServer:
        if self.bind is not None:
            sock = self.bind()
        else:
            sock = socket.socket()
            sock.bind((self.host, self.port))
        self.port = int(sock.getsockname()[1])
        self.server = TLSServer(self.app, self.tls, sock=sock).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    def pod(self, namespace: str, name: str, service_account: str) -> Pod:
        token = secrets.token_urlsafe(24)
        uid = secrets.token_hex(8)
        caller = Caller(namespace, service_account, name, uid, "node-1", TRUST_DOMAIN, "strict")
        self.reviewer.callers[token] = caller
        return Pod(namespace, name, service_account, token, uid)

    def rotate(self, request: str) -> trust.Plan:
        """Publish a next root now (what the operator's keeper does)."""
        step = trust.plan(self.state, TRUST_DOMAIN, _now(), self.policy, request=request)
        self.view.state = step.state
        return step

    def switch(self) -> trust.Plan:
        """Every agent reported: the next root signs from now on."""
        step = trust.plan(self.state, TRUST_DOMAIN, _now(), self.policy, trust.Acks(1))
        self.view.state = step.state
        return step

    def publish(self, directory: Path) -> None:
        """What the trust ConfigMap volume holds (kubelet-style atomic swap)."""
        write_file_set(
            directory,
            {
                "roots.pem": self.state.bundle_pem,
                "generation": str(self.state.generation).encode(),
                "signer-ca.pem": self.ca.cert_pem,
            },
        )


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
