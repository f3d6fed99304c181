"""The operator's mesh: the agents' certificate endpoint and the roots' keeper.

``Mesh.start(stop)`` returns the tasks the controller runs next to its own:
the endpoint (``identity_service`` on ``--mesh-port``, the webhook's TLS) and
``MeshCA``'s loop. The roots are loaded within a round (the endpoint
answers 503 ``NoRoot`` until then; that is not part of the webhook's readiness,
so a mesh problem never stops injection). ``--mesh-port 0`` turns it all off.
"""

from __future__ import annotations

import asyncio

from injector.admission.serve import ServeContext, bind
from injector.core.settings import SYSTEM_NAMESPACES
from injector.operator.certificates import CertificateKeeper
from injector.operator.identity_review import KubeReviewer
from injector.operator.identity_service import AckLedger, TrustView, create_app, serve
from injector.operator.kube import Kube
from injector.operator.lease import LeaderElector
from injector.operator.mesh_ca import MeshCA
from injector.operator.mesh_options import MeshOptions


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

    def start(self, stop: asyncio.Event) -> list[asyncio.Task[None]]:
        return [
            asyncio.create_task(self.keeper.run(stop), name="mesh roots"),
            asyncio.create_task(
                serve(self.app, self.ctx.tls, self.sock, stop),
                name="mesh endpoint",
            ),
        ]
