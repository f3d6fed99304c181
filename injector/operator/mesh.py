"""The operator's mesh: the agents' certificate endpoint and the roots' keeper.

``Mesh.start(stop)`` returns the tasks the controller runs next to its own:
the endpoint (``identity_service`` on ``--mesh-port``, the webhook's TLS) and
``MeshCA``'s loop. The roots are loaded within a round (the endpoint
answers 503 ``NoRoot`` until then; that is not part of the webhook's readiness,
so a mesh problem never stops injection). ``--mesh-port 0`` turns it all off.

``register(registry)`` (before kopf starts) looks the PodCertificateRequest
API up; where it is served, kopf watches the requests and the leader answers
them (``pod_certificates``), and sweeps pending ones every round and when it
becomes the leader.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, cast

import kopf

from injector.admission.serve import ServeContext, bind
from injector.core.settings import SYSTEM_NAMESPACES
from injector.operator.certificates import CertificateKeeper
from injector.operator.identity_review import KubeReviewer
from injector.operator.identity_service import AckLedger, TrustView, create_app, serve
from injector.operator.kube import Kube
from injector.operator.lease import LeaderElector, wait_any
from injector.operator.mesh_ca import MeshCA
from injector.operator.mesh_options import MeshOptions
from injector.operator.pod_certificates import GROUP_VERSION, PLURAL, PodCertificateSigner, discover

log = logging.getLogger("injector.operator.mesh")


class Mesh:
    def __init__(
        self,
        ctx: ServeContext,
        options: MeshOptions,
        kube: Kube,
        leader: LeaderElector,
        certificates: CertificateKeeper,
        namespace: str,
        replica: str,
    ) -> None:
        self.ctx = ctx
        self.options = options
        self.kube = kube
        self.leader = leader
        self.leadership = leader.listen()
        self.pod_certificates: PodCertificateSigner | None = None
        self.view = TrustView()
        self.ledger = AckLedger()
        registry = ctx.metrics.registry
        self.app = create_app(
            KubeReviewer(kube), self.view, self.ledger, options.issuance(), registry
        )
        self.keeper = MeshCA(
            kube,
            leader,
            certificates,
            self.view,
            self.ledger,
            options,
            namespace,
            replica,
            frozenset(SYSTEM_NAMESPACES),
            registry,
        )
        self.sock = bind(ctx.host, options.port)  # a port in use fails the operator's start

    async def register(self, registry: kopf.OperatorRegistry) -> bool:
        """Whether the API server serves PodCertificateRequests (then they are watched)."""
        if not await discover(self.kube):
            log.info("mesh: the API server serves no PodCertificateRequests: CSR endpoint only")
            return False
        signer = PodCertificateSigner(self.kube, self.view, self.options.issuance())
        self.pod_certificates = signer
        group, version = GROUP_VERSION.split("/")
        leader = self.leader

        @kopf.on.event(group, version, PLURAL, registry=registry, id="podcertificaterequests")
        async def podcertificaterequest_event(event: kopf.RawEvent, **_: Any) -> None:
            if leader.is_leader and event.get("type") != "DELETED":
                await signer.handle(cast(dict[str, Any], event.get("object") or {}))

        log.info("mesh: answering PodCertificateRequests for signer sidecar.example.io/mesh")
        return True

    async def sweep(self, stop: asyncio.Event) -> None:
        """Pending PodCertificateRequests, every round and on becoming the leader."""
        while not stop.is_set():
            self.leadership.clear()
            if self.pod_certificates is not None and self.leader.is_leader:
                try:
                    await self.pod_certificates.sweep()
                except Exception as exc:  # a round must never end the loop
                    log.warning("mesh: PodCertificateRequest sweep: %s", exc)
            await wait_any(self.options.interval, stop, self.leadership)

    def start(self, stop: asyncio.Event) -> list[asyncio.Task[None]]:
        return [
            asyncio.create_task(self.sweep(stop), name="pod certificates"),
            asyncio.create_task(self.keeper.run(stop), name="mesh roots"),
            asyncio.create_task(
                serve(self.app, self.ctx.tls, self.sock, stop),
                name="mesh endpoint",
            ),
        ]
